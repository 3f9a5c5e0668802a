//! Hostile input: arbitrary bytes, mutated valid files and randomly assembled SDF never make
//! the parser panic, and whatever it accepts satisfies the documented invariants.

use std::collections::HashSet;
use std::path::Path;

use proptest::prelude::*;
use sdf::{parse_str, Arch, Config, SystemDescription};

const VALID: [&str; 4] = [
    include_str!("valid/three_pds.xml"),
    include_str!("valid/hierarchy.xml"),
    include_str!("valid/echo_net.xml"),
    include_str!("valid/driver_vm.xml"),
];

/// What every accepted system must satisfy, re-checked from the outside.
fn assert_invariants(sys: &SystemDescription) {
    let config = Config::default();
    let mut names = HashSet::new();
    for (pd, parent) in sys.pds() {
        assert!(names.insert(pd.name.clone()), "duplicate PD {}", pd.name);
        assert_ne!(pd.name, "monitor");
        assert!(pd.priority <= 254);
        assert!(pd.budget <= pd.period);
        assert!((0x1000..=0x100_0000).contains(&pd.stack_size) && pd.stack_size % 0x1000 == 0);
        assert!(pd.cpu < config.num_cores);
        assert_eq!(pd.id.is_some(), parent.is_some());
        assert!(pd.id.is_none_or(|id| id <= 61));
        for irq in &pd.irqs {
            assert!(irq.id <= 61 && irq.irq <= config.max_irq);
        }
        let stack_bottom = config.pd_stack_bottom(pd.stack_size);
        for map in &pd.maps {
            let mr = sys.memory_region(&map.mr).expect("map names a region");
            assert_eq!(map.vaddr % mr.page_size, 0);
            assert!(map.vaddr + mr.size <= stack_bottom);
            assert!(map.perms.read || map.perms.execute || !map.perms.write);
        }
        let symbols: HashSet<_> = pd.setvars.iter().map(|s| &s.symbol).collect();
        assert_eq!(symbols.len(), pd.setvars.len());
        if let Some(vm) = &pd.virtual_machine {
            assert!(!vm.vcpus.is_empty() && vm.priority <= 254);
            for map in &vm.maps {
                let mr = sys.memory_region(&map.mr).expect("map names a region");
                assert!(map.vaddr + mr.size <= config.vm_map_limit());
            }
        }
    }
    assert!(!names.is_empty() && names.len() <= 63);
    for mr in &sys.memory_regions {
        assert!(mr.size > 0 && mr.size % mr.page_size == 0);
        assert!(Arch::Aarch64.page_sizes().contains(&mr.page_size));
    }
    for channel in &sys.channels {
        let [a, b] = &channel.ends;
        assert_ne!(a.pd, b.pd);
        assert!(names.contains(&a.pd) && names.contains(&b.pd));
        assert!(a.id <= 61 && b.id <= 61);
        assert!(!(a.pp && b.pp));
    }
}

fn check(text: &str) {
    match parse_str(text, "fuzz.xml", Arch::Aarch64) {
        Ok(sys) => assert_invariants(&sys),
        Err(err) => {
            let message = err.to_string();
            assert!(message.starts_with("fuzz.xml:"), "{message}");
            assert_eq!(&*err.pos().file, Path::new("fuzz.xml"));
        }
    }
}

/// One edit of a text: delete a span, insert a token, or duplicate a span.
#[derive(Debug, Clone)]
enum Edit {
    Delete { at: usize, len: usize },
    Insert { at: usize, token: &'static str },
    Duplicate { at: usize, len: usize },
}

const TOKENS: &[&str] = &[
    "<",
    ">",
    "/>",
    "</system>",
    "\"",
    "=",
    " ",
    "0",
    "1",
    "61",
    "62",
    "254",
    "255",
    "0x",
    "0x1000",
    "0x200000",
    "_",
    "-1",
    "true",
    "false",
    "w",
    "x",
    "rwx",
    "edge",
    "id=\"3\"",
    "pp=\"true\"",
    "<map mr=\"shared\" vaddr=\"0x1000\"/>",
    "<end pd=\"server\" id=\"9\"/>",
    "<protection_domain name=\"p\"><program_image path=\"p.elf\"/></protection_domain>",
    "<virtual_machine name=\"v\"><vcpu id=\"0\"/></virtual_machine>",
    "setvar_id=\"s\"",
    "<irq irq=\"33\" id=\"1\"/>",
    "priority=\"",
    "&amp;",
    "&bogus;",
    "<!--",
    "-->",
    "<![CDATA[x]]>",
    "\u{e9}",
    "\u{1F600}",
];

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 0usize..40).prop_map(|(at, len)| Edit::Delete { at, len }),
        (any::<usize>(), prop::sample::select(TOKENS))
            .prop_map(|(at, token)| Edit::Insert { at, token }),
        (any::<usize>(), 0usize..200).prop_map(|(at, len)| Edit::Duplicate { at, len }),
    ]
}

fn char_boundary(text: &str, at: usize) -> usize {
    let mut at = at % (text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn apply(text: &mut String, edit: &Edit) {
    match *edit {
        Edit::Delete { at, len } => {
            let start = char_boundary(text, at);
            let end = char_boundary(text, (start + len).min(text.len()));
            text.replace_range(start..end, "");
        }
        Edit::Insert { at, token } => {
            let at = char_boundary(text, at);
            text.insert_str(at, token);
        }
        Edit::Duplicate { at, len } => {
            let start = char_boundary(text, at);
            let end = char_boundary(text, (start + len).min(text.len()));
            let copy = text[start..end].to_string();
            text.insert_str(end, &copy);
        }
    }
}

/// Random but SDF-shaped documents, so that the cross-element rules are exercised too. Values
/// lean towards valid ones (about one document in twenty is accepted, and every rule fires)
/// with the boundary cases mixed in.
fn sdf_document() -> impl Strategy<Value = String> {
    fn pick(values: &[&'static str]) -> impl Strategy<Value = &'static str> + Clone {
        prop::sample::select(values.to_vec())
    }
    let priority = pick(&[
        "0", "1", "50", "100", "150", "200", "254", "254", "254", "255",
    ]);
    let stack = pick(&[
        "0x1000", "0x2000", "0x2000", "0x2000", "0x4000", "0x4000", "0x10000", "0x800", "0x1800",
    ]);
    let id = pick(&["0", "1", "2", "3", "4", "5", "6", "7", "61", "62"]);
    let irq_number = pick(&["30", "33", "48", "79", "159", "160"]);
    let vaddr = pick(&[
        "0x1000000",
        "0x2000000",
        "0x4000_0000",
        "0x200000",
        "0x800000",
        "0x1000_0000",
        "0xff_ffff_b000",
        "0x1001000",
    ]);
    let name = pick(&["a", "b", "c", "c", "monitor"]);
    let symbol = pick(&["s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8"]);
    let mr = pick(&["m", "n", "big"]);
    let boolean = pick(&[
        "true", "false", "false", "false", "false", "false", "false", "false", "false", "false",
        "yes",
    ]);
    let perms = pick(&["r", "rw", "rw", "w", "x", "rwx"]);
    let map = (
        mr.clone(),
        vaddr.clone(),
        perms,
        prop::option::of(symbol.clone()),
    )
        .prop_map(|(mr, vaddr, perms, sym)| {
            let sym = sym
                .map(|s| format!(r#" setvar_vaddr="{s}""#))
                .unwrap_or_default();
            format!(r#"<map mr="{mr}" vaddr="{vaddr}" perms="{perms}"{sym}/>"#)
        });
    let irq =
        (irq_number, id.clone(), prop::option::of(symbol.clone())).prop_map(|(irq, id, sym)| {
            let sym = sym
                .map(|s| format!(r#" setvar_id="{s}""#))
                .unwrap_or_default();
            format!(r#"<irq irq="{irq}" id="{id}"{sym}/>"#)
        });
    let child = (name.clone(), id.clone(), priority.clone())
        .prop_map(|(name, id, prio)| format!(r#"<protection_domain name="{name}{id}" id="{id}" priority="{prio}"><program_image path="c.elf"/></protection_domain>"#));
    let vm = (priority.clone(), id.clone(), mr.clone(), vaddr).prop_map(|(prio, vcpu, mr, vaddr)| {
        format!(r#"<virtual_machine name="vm" priority="{prio}"><vcpu id="{vcpu}"/><map mr="{mr}" vaddr="{vaddr}"/></virtual_machine>"#)
    });
    let body = prop::collection::vec(prop_oneof![3 => map, 2 => irq, 1 => child, 1 => vm], 0..4);
    // PD names mostly come from the PD's position (a, b, c), so duplicates are the exception.
    let pd = (prop::option::weighted(0.1, name.clone()), priority, stack, boolean.clone(), body).prop_map(
        |(name, prio, stack, passive, body)| {
            let name = name.unwrap_or("{NAME}");
            format!(
                r#"<protection_domain name="{name}" priority="{prio}" stack_size="{stack}" passive="{passive}"><program_image path="{name}.elf"/>{}</protection_domain>"#,
                body.concat()
            )
        },
    );
    // (size, page_size): mostly coherent pairs, a few broken ones.
    let layout = prop_oneof![
        19 => pick(&["0x2000/0x1000", "0x1000/0x1000", "0x4000/0x1000", "0x200000/0x200000"]),
        1 => pick(&["0x1800/0x1000", "0/0x1000", "0x1000/0x3000", "0x100000/0x200000"]),
    ];
    let region = (
        layout,
        prop::option::weighted(0.1, pick(&["0x4000_0000", "0x4000_1000", "0x4020_0000"])),
    )
        .prop_map(|(layout, paddr)| {
            let (size, page) = layout.split_once('/').unwrap_or_default();
            let paddr = paddr
                .map(|p| format!(r#" phys_addr="{p}""#))
                .unwrap_or_default();
            format!(r#" size="{size}" page_size="{page}"{paddr}/>"#)
        });
    // Regions m, n and big, each present or not; rarely a second "m".
    let regions = (
        prop::collection::vec(prop::option::weighted(0.8, region.clone()), 3),
        prop::option::weighted(0.05, region),
    )
        .prop_map(|(regions, duplicate)| {
            let named = regions
                .into_iter()
                .zip(["m", "n", "big"])
                .filter_map(|(r, name)| r.map(|r| (name, r)));
            named
                .chain(duplicate.map(|r| ("m", r)))
                .map(|(name, rest)| format!(r#"<memory_region name="{name}"{rest}"#))
                .collect::<String>()
        });
    let end = (name, id, boolean.clone(), boolean, prop::option::of(symbol)).prop_map(
        |(pd, id, pp, notify, sym)| {
            let sym = sym
                .map(|s| format!(r#" setvar_id="{s}""#))
                .unwrap_or_default();
            format!(r#"<end pd="{pd}" id="{id}" pp="{pp}" notify="{notify}"{sym}/>"#)
        },
    );
    let ends = prop_oneof![8 => Just(2usize), 1 => Just(1usize), 1 => Just(3usize)]
        .prop_flat_map(move |n| prop::collection::vec(end.clone(), n));
    let channel = ends.prop_map(|ends| format!("<channel>{}</channel>", ends.concat()));
    (
        regions,
        prop::collection::vec(pd, 1..4),
        prop::collection::vec(channel, 0..3),
    )
        .prop_map(|(regions, pds, channels)| {
            let pds: String = pds
                .iter()
                .zip(["a", "b", "c"])
                .map(|(pd, name)| pd.replace("{NAME}", name))
                .collect();
            format!("<system>{regions}{pds}{}</system>", channels.concat())
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn mutated_valid_files_never_panic(
        file in 0..VALID.len(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let mut text = VALID[file].to_string();
        for e in &edits {
            apply(&mut text, e);
        }
        check(&text);
    }

    #[test]
    fn random_sdf_documents_never_panic_and_accepted_ones_hold_the_invariants(doc in sdf_document()) {
        check(&doc);
    }
}

#[test]
fn deep_nesting_is_rejected_without_exhausting_the_stack() {
    let depth = 20_000;
    let mut text = String::from("<system>");
    for i in 0..depth {
        text.push_str(&format!(r#"<protection_domain name="p{i}" id="0">"#));
    }
    for _ in 0..depth {
        text.push_str("</protection_domain>");
    }
    text.push_str("</system>");
    let err = parse_str(&text, "deep.xml", Arch::Aarch64).unwrap_err();
    // The top-level PD may not have an id; the parser says so before descending.
    assert!(err.to_string().contains("invalid attribute 'id'"), "{err}");

    let mut text =
        String::from(r#"<system><protection_domain name="p"><program_image path="p.elf"/>"#);
    for i in 0..depth {
        text.push_str(&format!(
            r#"<protection_domain name="p{i}" id="0"><program_image path="p.elf"/>"#
        ));
    }
    for _ in 0..=depth {
        text.push_str("</protection_domain>");
    }
    text.push_str("</system>");
    let err = parse_str(&text, "deep.xml", Arch::Aarch64).unwrap_err();
    assert!(
        err.to_string().contains("too many protection domains"),
        "{err}"
    );
}

#[test]
fn the_valid_files_hold_the_invariants() {
    for text in VALID {
        assert_invariants(&parse_str(text, "valid.xml", Arch::Aarch64).unwrap());
    }
}
