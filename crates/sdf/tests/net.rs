//! `sdf::net`: the sDDF net config blobs derived from a system description.
//!
//! The reference is the real sdfgen 0.35: `derived_blobs_are_byte_identical_to_sdfgen` generates
//! two systems with it (`scripts/sdfgen_net_system.py`, and `tests/net/sdfgen_variant.py` with a
//! copier-less client and a rounded-up driver TX queue), derives every blob from the `.system`
//! file alone and compares bytes. It needs the project venv (`scripts/setup.sh`); without it the
//! test says it was skipped, unless skipping is forbidden (`NETVM_NO_SKIP`), when it fails.
//!
//! The other tests need no sdfgen: they use `tests/net/two_clients.system`, the output of
//! `scripts/sdfgen_net_system.py` (kept equal to it by the sdfgen test), and break it one element
//! at a time.

use std::path::{Path, PathBuf};
use std::process::Command;

use sddf::config::{parse_owned, NetClientConfig, NetDriverConfig, NetVirtTxConfig};
use sdf::net::{
    derive, format_mac, parse_mac, parse_mac_list, sdfgen_blob_sections, NetClientSpec, NetError,
    NetSystemSpec, CLIENT_SECTION, DRIVER_SECTION,
};
use sdf::{parse_str, Arch, Section, SystemDescription};

const FIXTURE: &str = "tests/net/two_clients.system";
/// The MACs `scripts/sdfgen_net_system.py` gives its clients (its `CLIENT_MACS`).
const FIXTURE_MACS: &str = "client0=52:54:01:00:00:10,client1=52:54:01:00:00:11";
/// The clients of `tests/net/sdfgen_variant.py` (its `CLIENTS`): name, copier, MAC.
const VARIANT_CLIENTS: [(&str, Option<&str>, &str); 3] = [
    ("echo_a", Some("copier_a"), "52:54:01:00:00:20"),
    ("echo_b", None, "02:00:00:00:00:21"),
    ("echo_c", Some("copier_c"), "52:54:01:00:00:22"),
];

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture_text() -> String {
    std::fs::read_to_string(manifest().join(FIXTURE)).unwrap()
}

fn parse(text: &str) -> SystemDescription {
    parse_str(text, FIXTURE, Arch::Aarch64).unwrap_or_else(|e| panic!("{e}"))
}

fn mac(text: &str) -> [u8; 6] {
    parse_mac(text).unwrap()
}

/// The fixture's roles, written out by hand: what `NetSystemSpec::infer` must also find.
fn fixture_spec() -> NetSystemSpec {
    let mut spec = NetSystemSpec::new("generic", "driver_vm", "net_virt_rx", "net_virt_tx");
    for (client, m) in [
        ("client0", "52:54:01:00:00:10"),
        ("client1", "52:54:01:00:00:11"),
    ] {
        let copier = format!("{client}_net_copier");
        spec.clients
            .push(NetClientSpec::new(client, Some(&copier), mac(m)));
    }
    spec
}

fn derive_err(text: &str, spec: &NetSystemSpec) -> String {
    match derive(&parse(text), spec) {
        Ok(_) => panic!("derivation succeeded"),
        Err(e) => e.to_string(),
    }
}

/// `FIXTURE:line:col` of the first line containing `needle` (at its first `<`).
fn pos_of(text: &str, needle: &str) -> String {
    let (i, line) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(needle))
        .unwrap_or_else(|| panic!("fixture has no {needle}"));
    format!("{FIXTURE}:{}:{}", i + 1, line.find('<').unwrap() + 1)
}

/// The text without the lines `first..first+count` counted from the line containing `needle`.
fn remove_lines(text: &str, needle: &str, before: usize, count: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let at = lines.iter().position(|l| l.contains(needle)).unwrap() - before;
    let mut kept = lines[..at].to_vec();
    kept.extend(&lines[at + count..]);
    kept.join("\n")
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{from}");
    text.replacen(from, to, 1)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("netvm-sdf-net-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs an sdfgen generator script into a fresh directory; `None` (with a SKIPPED line) when the
/// venv is missing (a failure where skipping is forbidden: see `testkit`).
fn sdfgen(script: &Path, name: &str) -> Option<PathBuf> {
    let python = manifest().join("../../.venv/bin/python");
    if !python.exists() {
        testkit::skip(
            &format!("sdfgen comparison {name}"),
            format_args!(
                "no venv at {} (scripts/setup.sh makes it)",
                python.display()
            ),
        );
        return None;
    }
    let out = temp_dir(name);
    let result = Command::new(&python)
        .arg(script)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&result.stderr)
    );
    Some(out)
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or((a.len() != b.len()).then_some(a.len().min(b.len())))
}

fn assert_same_blobs(derived: &[Section], reference: &[Section]) {
    let keys = |blobs: &[Section]| -> Vec<(String, String)> {
        blobs
            .iter()
            .map(|s| (s.pd.clone(), s.name.clone()))
            .collect()
    };
    assert_eq!(keys(derived), keys(reference));
    for (ours, theirs) in derived.iter().zip(reference) {
        if let Some(at) = first_difference(&ours.bytes, &theirs.bytes) {
            let (pd, section) = (&ours.pd, &ours.name);
            panic!("{pd} {section}: derived blob differs from sdfgen's at byte {at}");
        }
    }
}

#[test]
fn derived_blobs_are_byte_identical_to_sdfgen() {
    let script = manifest().join("../../scripts/sdfgen_net_system.py");
    let Some(dir) = sdfgen(&script, "two") else {
        return;
    };
    let text = std::fs::read_to_string(dir.join("net.system")).unwrap();
    assert_eq!(
        text,
        fixture_text(),
        "{FIXTURE} is stale: copy {}/net.system over it",
        dir.display()
    );
    let sys = sdf::parse(dir.join("net.system"), Arch::Aarch64).unwrap();
    let reference = sdfgen_blob_sections(&dir, &sys).unwrap();
    let data_files = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("data".as_ref()))
        .count();
    assert_eq!(reference.len(), data_files, "every sdfgen blob is mapped");
    assert_same_blobs(&derive(&sys, &fixture_spec()).unwrap(), &reference);
    let inferred = NetSystemSpec::infer(&sys, &parse_mac_list(FIXTURE_MACS).unwrap()).unwrap();
    assert_eq!(inferred, fixture_spec());
    std::fs::remove_dir_all(&dir).ok();

    let Some(dir) = sdfgen(&manifest().join("tests/net/sdfgen_variant.py"), "variant") else {
        return;
    };
    let sys = sdf::parse(dir.join("net.system"), Arch::Aarch64).unwrap();
    let reference = sdfgen_blob_sections(&dir, &sys).unwrap();
    let macs: Vec<(String, [u8; 6])> = VARIANT_CLIENTS
        .iter()
        .map(|(name, _, m)| (name.to_string(), mac(m)))
        .collect();
    let spec = NetSystemSpec::infer(&sys, &macs).unwrap();
    let roles: Vec<(&str, Option<&str>)> = spec
        .clients
        .iter()
        .map(|c| (c.name.as_str(), c.copier.as_deref()))
        .collect();
    let expected_roles: Vec<(&str, Option<&str>)> =
        VARIANT_CLIENTS.iter().map(|(n, c, _)| (*n, *c)).collect();
    assert_eq!(roles, expected_roles);
    assert_eq!(
        (
            spec.driver.as_str(),
            spec.virt_rx.as_str(),
            spec.virt_tx.as_str()
        ),
        ("vmm", "rx_virt", "tx_virt")
    );
    // 3 x 512 TX buffers need a driver TX queue of 2048: sdfgen rounds up, and so must we.
    assert_eq!(spec.driver_tx_buffers().unwrap().get(), 2048);
    assert_same_blobs(&derive(&sys, &spec).unwrap(), &reference);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn fixture_blobs_hold_the_system_values() {
    let sys = parse(&fixture_text());
    let blobs = derive(&sys, &fixture_spec()).unwrap();
    let order: Vec<(&str, &str)> = blobs
        .iter()
        .map(|s| (s.pd.as_str(), s.name.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            ("driver_vm", DRIVER_SECTION),
            ("driver_vm", ".device_resources"),
            ("net_virt_rx", ".net_virt_rx_config"),
            ("net_virt_tx", ".net_virt_tx_config"),
            ("client0_net_copier", ".net_copy_config"),
            ("client1_net_copier", ".net_copy_config"),
            ("client0", CLIENT_SECTION),
            ("client1", CLIENT_SECTION),
        ]
    );
    // Spot checks against values read off the fixture by eye; the sdfgen test checks every byte.
    let driver = parse_owned::<NetDriverConfig>(&blobs[0].bytes).unwrap();
    assert_eq!(driver.virt_tx.free_queue.vaddr, 0x2000_6000);
    assert_eq!(driver.virt_tx.free_queue.size, 0x5000);
    assert_eq!((driver.virt_tx.num_buffers, driver.virt_tx.id), (1024, 1));
    let tx = parse_owned::<NetVirtTxConfig>(&blobs[3].bytes).unwrap();
    let region = tx.clients()[1].regions()[0];
    assert_eq!(region.data.region.vaddr, 0x2011_6000);
    assert_eq!(region.data.io_addr, 0x5fd0_0000);
    let client1 = parse_owned::<NetClientConfig>(&blobs[7].bytes).unwrap();
    assert_eq!(client1.mac_addr, mac("52:54:01:00:00:11"));
    assert_eq!((client1.tx.id, client1.tx_data.vaddr), (1, 0x2010_c000));
}

#[test]
fn sdfgen_file_names_map_to_pds_and_sections() {
    let sys = parse(&fixture_text());
    let blobs = derive(&sys, &fixture_spec()).unwrap();
    let dir = temp_dir("names");
    let files = [
        "net_driver.data",
        "driver_vm_device_resources.data",
        "net_virt_rx.data",
        "net_virt_tx.data",
        "net_copy_client0_net_copier.data",
        "net_copy_client1_net_copier.data",
        "net_client_client0.data",
        "net_client_client1.data",
    ];
    for (blob, file) in blobs.iter().zip(files) {
        std::fs::write(dir.join(file), &blob.bytes).unwrap();
    }
    // sdfgen writes the system next to its blobs; files that are not .data are not blobs.
    std::fs::write(dir.join("net.system"), fixture_text()).unwrap();
    assert_eq!(sdfgen_blob_sections(&dir, &sys).unwrap(), blobs);

    std::fs::write(dir.join("net_client_client0.data"), &blobs[6].bytes[..100]).unwrap();
    let err = sdfgen_blob_sections(&dir, &sys).unwrap_err().to_string();
    assert!(
        err.contains("net_client_client0.data") && err.contains("100 bytes"),
        "{err}"
    );

    std::fs::remove_file(dir.join("net_client_client0.data")).unwrap();
    let err = sdfgen_blob_sections(&dir, &sys).unwrap_err();
    assert!(
        matches!(&err, NetError::MissingBlob { pd, .. } if pd == "client0"),
        "{err}"
    );

    std::fs::write(dir.join("net_client_client0.data"), &blobs[6].bytes).unwrap();
    std::fs::write(dir.join("net_vswitch.data"), [0u8; 8]).unwrap();
    let err = sdfgen_blob_sections(&dir, &sys).unwrap_err();
    assert!(
        matches!(&err, NetError::UnknownBlob { path } if path.ends_with("net_vswitch.data")),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn missing_channel_is_named_at_the_pd() {
    let text = fixture_text();
    // The channel net_virt_tx (id 1) <-> client0 (id 1): <channel>, two <end>s, </channel>.
    let broken = remove_lines(&text, r#"<end pd="net_virt_tx" id="1" />"#, 1, 4);
    let err = derive_err(&broken, &fixture_spec());
    let at = pos_of(&broken, r#"<protection_domain name="net_virt_tx""#);
    assert_eq!(
        err,
        format!("{at}: no channel between 'net_virt_tx' and 'client0'")
    );
}

#[test]
fn second_channel_between_the_same_pds_is_ambiguous() {
    let text = fixture_text();
    let extra = concat!(
        r#"<channel><end pd="client0" id="5" /><end pd="net_virt_tx" id="9" /></channel>"#,
        "\n</system>"
    );
    let broken = replace_once(&text, "</system>", extra);
    let err = derive_err(&broken, &fixture_spec());
    assert!(
        err.contains("a second channel between 'net_virt_tx' and 'client0'"),
        "{err}"
    );
    assert!(
        err.starts_with(&pos_of(&broken, "<channel><end pd=\"client0\" id=\"5\"")),
        "{err}"
    );
}

#[test]
fn queue_region_too_small_for_the_capacity_is_named() {
    let text = fixture_text();
    let mr = "generic/net/queue/net_virt_tx/client0/free";
    let broken = replace_once(
        &text,
        &format!(r#"name="{mr}" size="0x3000""#),
        &format!(r#"name="{mr}" size="0x2000""#),
    );
    let err = derive_err(&broken, &fixture_spec());
    let at = pos_of(&broken, &format!(r#"<memory_region name="{mr}""#));
    assert_eq!(
        err,
        format!(
            "{at}: memory region '{mr}' is 0x2000 bytes, too small for a queue of 512 \
             descriptors (0x2008 bytes)"
        )
    );

    // The capacity is the spec's, not the region's: asking for more than fits is caught too.
    let mut spec = fixture_spec();
    spec.clients[0].rx_buffers = 1024;
    let err = derive_err(&text, &spec);
    assert!(
        err.contains(
            "'generic/net/queue/client0_net_copier/client0/free' is 0x3000 bytes, too small for \
             a queue of 1024 descriptors (0x4008 bytes)"
        ),
        "{err}"
    );
}

#[test]
fn data_region_too_small_for_its_buffers_is_named() {
    let text = fixture_text();
    let broken = replace_once(
        &text,
        r#"name="generic/net/rx/data/device" size="0x100000""#,
        r#"name="generic/net/rx/data/device" size="0x80000""#,
    );
    let err = derive_err(&broken, &fixture_spec());
    assert!(
        err.ends_with(
            "memory region 'generic/net/rx/data/device' is 0x80000 bytes, too small for 512 RX \
             DMA buffers (0x100000 bytes)"
        ),
        "{err}"
    );
}

#[test]
fn missing_map_is_named_at_the_pd() {
    let text = fixture_text();
    let mr = "generic/net/tx/data/client/client1";
    let needle = format!(r#"<map mr="{mr}" vaddr="0x2010c000" perms="rw" />"#);
    let broken = remove_lines(&text, &needle, 0, 1);
    let err = derive_err(&broken, &fixture_spec());
    let at = pos_of(&broken, r#"<protection_domain name="client1""#);
    assert_eq!(
        err,
        format!("{at}: protection domain 'client1' does not map '{mr}'")
    );
}

#[test]
fn region_mapped_twice_is_ambiguous() {
    let text = fixture_text();
    let map = r#"<map mr="generic/net/rx/virt_metadata" vaddr="0x20106000" perms="rw" />"#;
    let twice = format!("{map}\n<map mr=\"generic/net/rx/virt_metadata\" vaddr=\"0x30000000\" />");
    let broken = replace_once(&text, map, &twice);
    let err = derive_err(&broken, &fixture_spec());
    assert!(
        err.starts_with(&pos_of(&broken, r#"vaddr="0x30000000""#))
            && err.contains("'net_virt_rx' maps 'generic/net/rx/virt_metadata' more than once"),
        "{err}"
    );
}

#[test]
fn missing_region_and_missing_phys_addr_are_named() {
    let text = fixture_text();
    let broken = replace_once(
        &text,
        r#"size="0x100000" phys_addr="0x5fe00000""#,
        r#"size="0x100000""#,
    );
    let err = derive_err(&broken, &fixture_spec());
    let at = pos_of(&broken, r#"name="generic/net/tx/data/client/client0""#);
    assert_eq!(
        err,
        format!(
            "{at}: memory region 'generic/net/tx/data/client/client0' has no phys_addr, but \
             'net_virt_tx' needs its IO address"
        )
    );

    let mut spec = fixture_spec();
    spec.device = "virtio_mmio@a000000".to_owned();
    let err = derive_err(&text, &spec);
    assert_eq!(
        err,
        format!(
            "{FIXTURE}:2:1: no memory region \
             'virtio_mmio@a000000/net/queue/driver_vm/net_virt_rx/free' (a queue of 512 descriptors)"
        )
    );
}

#[test]
fn spec_errors_name_the_pd_or_client() {
    let text = fixture_text();
    let mut spec = fixture_spec();
    spec.virt_rx = "rx".to_owned();
    assert_eq!(
        derive_err(&text, &spec),
        format!("{FIXTURE}:2:1: no protection domain 'rx' (the virt_rx)")
    );

    let mut spec = fixture_spec();
    spec.clients[1].mac = spec.clients[0].mac;
    assert_eq!(
        derive_err(&text, &spec),
        "clients 'client0' and 'client1' have the same MAC address 52:54:01:00:00:10"
    );

    let mut spec = fixture_spec();
    spec.clients[0].mac = mac("01:00:5e:00:00:01");
    assert!(derive_err(&text, &spec).contains("multicast"));

    let mut spec = fixture_spec();
    spec.clients[1].copier = Some("client0_net_copier".to_owned());
    assert_eq!(
        derive_err(&text, &spec),
        "protection domain 'client0_net_copier' is both the copier of client 'client0' and the \
         copier of client 'client1'"
    );

    let mut spec = fixture_spec();
    spec.clients[0].tx_buffers = 500;
    assert_eq!(
        derive_err(&text, &spec),
        "client 'client0' TX: capacity 500 is not a power of two in 1..=32768"
    );

    let mut spec = fixture_spec();
    spec.clients[0].copier = None;
    spec.clients[0].rx_buffers = 256;
    assert!(derive_err(&text, &spec).contains("has no copier"));

    let mut spec = fixture_spec();
    spec.clients.clear();
    assert_eq!(
        derive_err(&text, &spec),
        "0 clients: sDDF net configs hold 1 to 64"
    );

    let mut spec = fixture_spec();
    spec.device_irqs.push(33);
    let err = derive_err(&text, &spec);
    assert!(
        err.ends_with("driver 'driver_vm' has no irq 33 for its device resources"),
        "{err}"
    );
}

#[test]
fn inference_needs_every_mac_and_only_client_macs() {
    let sys = parse(&fixture_text());
    let only_one = parse_mac_list("client0=52:54:01:00:00:10").unwrap();
    assert_eq!(
        NetSystemSpec::infer(&sys, &only_one)
            .unwrap_err()
            .to_string(),
        "no MAC address for client 'client1' (give one as client1=aa:bb:cc:dd:ee:ff)"
    );
    let list = format!("{FIXTURE_MACS},net_virt_rx=52:54:01:00:00:12");
    assert!(NetSystemSpec::infer(&sys, &parse_mac_list(&list).unwrap())
        .unwrap_err()
        .to_string()
        .contains("'net_virt_rx', which is not a net client"));
}

#[test]
fn inference_rejects_systems_without_the_convention() {
    let text = fixture_text().replace("generic/net/rx/virt_metadata", "metadata");
    let sys = parse(&text);
    let macs = parse_mac_list(FIXTURE_MACS).unwrap();
    assert_eq!(
        NetSystemSpec::infer(&sys, &macs).unwrap_err().to_string(),
        format!(
            "{FIXTURE}:2:1: cannot infer the net system: no PD mapping \
             'generic/net/rx/virt_metadata' (virt_rx)"
        )
    );
    // A client with TX queues but no RX path: drop client1's copier->client queue regions.
    let text = fixture_text().replace(
        "client1_net_copier/client1/",
        "client1_net_copier/elsewhere/",
    );
    let err = NetSystemSpec::infer(&parse(&text), &macs)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("client 'client1' has TX queues from virt_tx but no RX path"),
        "{err}"
    );
}

#[test]
fn mac_lists_parse_from_options_and_files() {
    let file = "# client MACs\nclient0=52:54:01:00:00:10\n  client1=02:AB:cd:00:00:11  # trusted\n";
    assert_eq!(
        parse_mac_list(file).unwrap(),
        [
            ("client0".to_owned(), mac("52:54:01:00:00:10")),
            ("client1".to_owned(), [0x02, 0xab, 0xcd, 0, 0, 0x11]),
        ]
    );
    assert_eq!(parse_mac_list(FIXTURE_MACS).unwrap().len(), 2);
    assert_eq!(
        format_mac(&[0x02, 0xab, 0xcd, 0, 0, 0x11]),
        "02:ab:cd:00:00:11"
    );
    for bad in [
        "52:54:01:00:00",
        "52:54:01:00:00:10:11",
        "52:54:01:00:0:10",
        "+1:54:01:00:00:10",
    ] {
        assert_eq!(
            parse_mac(bad).unwrap_err().to_string(),
            format!("'{bad}' is not a MAC address (want aa:bb:cc:dd:ee:ff)")
        );
    }
    assert!(matches!(
        parse_mac_list("client0 52:54:01:00:00:10"),
        Err(NetError::BadMacEntry { .. })
    ));
    assert!(matches!(
        parse_mac_list("=52:54:01:00:00:10"),
        Err(NetError::BadMacEntry { .. })
    ));
    assert!(matches!(
        parse_mac_list("a=52:54:01:00:00:10,a=52:54:01:00:00:11"),
        Err(NetError::MacGivenTwice { .. })
    ));
}
