//! The files in `tests/valid/` parse, and every field comes out as written (or as Microkit's
//! default where the file leaves it out).

use std::path::{Path, PathBuf};

use sdf::{
    parse, Arch, EntryMasks, Map, PdChannel, Perms, ProtectionDomain, SetVarKind,
    SystemDescription, Trigger,
};

fn path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/valid")
        .join(name)
}

fn load(name: &str) -> SystemDescription {
    let path = path(name);
    parse(&path, Arch::Aarch64).unwrap_or_else(|err| panic!("{err}"))
}

fn pd<'a>(sys: &'a SystemDescription, name: &str) -> &'a ProtectionDomain {
    sys.pd(name).unwrap_or_else(|| panic!("no PD {name}"))
}

/// (symbol, kind) pairs, which is what the host runner patches.
fn setvars(sys: &SystemDescription, name: &str) -> Vec<(String, SetVarKind)> {
    sys.setvars_of(name)
        .unwrap()
        .iter()
        .map(|s| (s.symbol.clone(), s.kind.clone()))
        .collect()
}

fn map_summary(maps: &[Map]) -> Vec<(&str, u64, String, bool)> {
    maps.iter()
        .map(|m| (m.mr.as_str(), m.vaddr, m.perms.to_string(), m.cached))
        .collect()
}

const R: Perms = Perms {
    read: true,
    write: false,
    execute: false,
};

#[test]
fn three_pds() {
    let sys = load("three_pds.xml");
    let names: Vec<&str> = sys.pds().map(|(pd, _)| pd.name.as_str()).collect();
    assert_eq!(names, ["client", "server", "logger"]);
    assert!(sys.pds().all(|(_, parent)| parent.is_none()));

    let client = pd(&sys, "client");
    assert_eq!(
        (client.priority, client.budget, client.period),
        (100, 500, 1000)
    );
    assert_eq!(client.stack_size, 0x4000);
    assert_eq!(
        (client.passive, client.cpu, client.smc, client.fpu),
        (false, 0, false, true)
    );
    assert_eq!(client.id, None);
    assert_eq!(client.program_image.path, Path::new("client.elf"));
    assert_eq!(client.program_image.path_for_symbols, None);
    assert_eq!(
        map_summary(&client.maps),
        [
            ("shared", 0x500_0000, "rw".to_string(), true),
            ("dma", 0x600_0000, "r".to_string(), false),
        ]
    );
    assert_eq!(client.maps[0].setvar_vaddr.as_deref(), Some("shared_vaddr"));
    assert_eq!(client.maps[0].setvar_size.as_deref(), Some("shared_size"));
    assert_eq!(client.maps[1].perms, R);
    assert!(client.irqs.is_empty() && client.children.is_empty());
    assert_eq!(
        setvars(&sys, "client"),
        [
            ("shared_vaddr".into(), SetVarKind::Vaddr(0x500_0000)),
            (
                "shared_size".into(),
                SetVarKind::Size {
                    mr: "shared".into()
                }
            ),
            (
                "dma_paddr".into(),
                SetVarKind::RegionPaddr { mr: "dma".into() }
            ),
            // Channel-end setvars come after the PD's own, as in the tool.
            ("server_ch".into(), SetVarKind::Id(0)),
        ]
    );

    let server = pd(&sys, "server");
    assert_eq!(
        (server.priority, server.budget, server.period),
        (200, 1000, 1000)
    );
    assert_eq!(
        (server.passive, server.fpu, server.stack_size),
        (true, false, 0x2000)
    );
    assert_eq!(server.irqs.len(), 1);
    let irq = &server.irqs[0];
    assert_eq!((irq.irq, irq.id, irq.trigger), (33, 0, Trigger::Edge));
    assert_eq!(irq.setvar_id.as_deref(), Some("uart_irq"));
    assert_eq!(
        setvars(&sys, "server"),
        [
            ("shared_vaddr".into(), SetVarKind::Vaddr(0x400_0000)),
            ("uart_irq".into(), SetVarKind::Id(0)),
        ]
    );

    let logger = pd(&sys, "logger");
    assert_eq!((logger.priority, logger.cpu, logger.smc), (10, 1, true));
    assert!(setvars(&sys, "logger").is_empty());

    let dma = sys.memory_region("dma").unwrap();
    assert_eq!(
        (dma.size, dma.page_size, dma.phys_addr),
        (0x20_0000, 0x20_0000, Some(0x5000_0000))
    );
    let shared = sys.memory_region("shared").unwrap();
    assert_eq!(
        (shared.size, shared.page_size, shared.phys_addr),
        (0x1000, 0x1000, None)
    );
    assert!(sys.memory_region("nope").is_none());

    // Notify both ways and PPC client -> passive server.
    assert_eq!(
        sys.channels_of("client"),
        [
            PdChannel {
                local_id: 0,
                peer_pd: "server",
                peer_id: 3,
                pp: true,
                notify: true,
                peer_pp: false,
                peer_notify: true,
            },
            PdChannel {
                local_id: 2,
                peer_pd: "logger",
                peer_id: 7,
                pp: false,
                notify: true,
                peer_pp: false,
                peer_notify: false,
            },
        ]
    );
    assert_eq!(
        sys.channels_of("server"),
        [PdChannel {
            local_id: 3,
            peer_pd: "client",
            peer_id: 0,
            pp: false,
            notify: true,
            peer_pp: true,
            peer_notify: true,
        }]
    );
    assert_eq!(
        sys.entry_masks("client"),
        Some(EntryMasks {
            irqs: 0,
            notifications: 1 << 0 | 1 << 2,
            pps: 1 << 0,
        })
    );
    assert_eq!(
        sys.entry_masks("server"),
        Some(EntryMasks {
            irqs: 1 << 0,
            notifications: 1 << 3,
            pps: 0,
        })
    );
    assert_eq!(sys.entry_masks("logger").unwrap().notifications, 0);
    assert_eq!(sys.needs_endpoint("server"), Some(true));
    assert_eq!(sys.needs_endpoint("client"), Some(false));
    assert_eq!(sys.needs_endpoint("nope"), None);

    // Positions point at the elements.
    assert_eq!((client.pos.line, client.pos.col), (8, 5));
    assert_eq!((server.irqs[0].pos.line, server.irqs[0].pos.col), (18, 9));
    assert_eq!(
        (
            sys.channels[1].ends[0].pos.line,
            sys.channels[1].ends[0].pos.col
        ),
        (30, 9)
    );
    assert_eq!(&*sys.pos.file, path("three_pds.xml").as_path());
}

#[test]
fn hierarchy() {
    let sys = load("hierarchy.xml");
    let walk: Vec<(&str, Option<&str>)> = sys
        .pds()
        .map(|(pd, parent)| (pd.name.as_str(), parent.map(|p| p.name.as_str())))
        .collect();
    assert_eq!(
        walk,
        [
            ("restarter", None),
            ("crasher", Some("restarter")),
            ("grandchild", Some("crasher")),
            ("bystander", None),
        ]
    );
    assert_eq!(
        sys.parent_of("grandchild").map(|p| p.name.as_str()),
        Some("crasher")
    );
    assert!(sys.parent_of("restarter").is_none());

    let restarter = pd(&sys, "restarter");
    assert_eq!(restarter.children.len(), 1);
    assert_eq!(
        setvars(&sys, "restarter"),
        [("crasher_id".into(), SetVarKind::Id(1))]
    );
    assert_eq!(sys.needs_endpoint("restarter"), Some(true));

    let crasher = pd(&sys, "crasher");
    assert_eq!((crasher.id, crasher.priority), (Some(1), 200));
    assert_eq!(crasher.setvar_id.as_deref(), Some("crasher_id"));
    assert_eq!(
        crasher.program_image.path_for_symbols.as_deref(),
        Some(Path::new("crasher.debug.elf"))
    );
    // The child's setvar_id patches the parent, not the child.
    assert!(setvars(&sys, "crasher").is_empty());
    assert_eq!(pd(&sys, "grandchild").id, Some(0));
    // Children are full PDs: they have channels too.
    assert_eq!(sys.channels_of("crasher")[0].peer_pd, "bystander");
}

#[test]
fn sdfgen_shaped_echo_network() {
    let sys = load("echo_net.xml");
    let walk: Vec<(&str, Option<u8>, u8)> = sys
        .pds()
        .map(|(pd, _)| (pd.name.as_str(), pd.id, pd.priority))
        .collect();
    assert_eq!(
        walk,
        [
            ("bench0", None, 254),
            ("timer_driver", Some(0), 102),
            ("ethernet_driver", Some(1), 101),
            ("net_virt_tx", Some(2), 100),
            ("net_virt_rx", Some(3), 99),
            ("client0_net_copier", Some(4), 98),
            ("client0", Some(5), 97),
            ("bench_idle0", Some(6), 1),
        ]
    );
    assert!(sys
        .pds()
        .skip(1)
        .all(|(_, parent)| parent.map(|p| p.name.as_str()) == Some("bench0")));

    let driver = pd(&sys, "ethernet_driver");
    assert_eq!((driver.budget, driver.period), (100, 400));
    assert_eq!(
        (
            driver.irqs[0].irq,
            driver.irqs[0].id,
            driver.irqs[0].trigger
        ),
        (48, 0, Trigger::Edge)
    );
    assert_eq!(driver.maps.len(), 6);
    assert_eq!(
        map_summary(&driver.maps[..2]),
        [
            (
                "virtio_mmio@a000000/drivers/network/virtio/mmio/regs",
                0x2000_0000,
                "rw".to_string(),
                false
            ),
            (
                "virtio_mmio@a000000/drivers/network/virtio/mmio/hw_ring_buffer",
                0x2000_1000,
                "rw".to_string(),
                false
            ),
        ]
    );
    let timer = pd(&sys, "timer_driver");
    assert!(timer.passive);
    assert_eq!(
        (timer.irqs[0].irq, timer.irqs[0].trigger),
        (30, Trigger::Level)
    );
    assert_eq!(
        pd(&sys, "net_virt_tx").period,
        20000,
        "period defaults to budget"
    );

    let tx_data = sys
        .memory_region("virtio_mmio@a000000/net/tx/data/client/client0")
        .unwrap();
    assert_eq!(
        (tx_data.size, tx_data.phys_addr),
        (0x10_0000, Some(0x5fdf_0000))
    );

    // The table of sddf-net.md §4.3 as seen from client0.
    let client: Vec<(u8, &str, u8, bool, bool)> = sys
        .channels_of("client0")
        .iter()
        .map(|c| (c.local_id, c.peer_pd, c.peer_id, c.pp, c.notify))
        .collect();
    assert_eq!(
        client,
        [
            (0, "bench0", 1, false, true),
            (1, "bench0", 2, false, true),
            (3, "client0_net_copier", 1, false, true),
            (4, "net_virt_tx", 1, false, true),
            (5, "timer_driver", 1, true, false),
        ]
    );
    assert_eq!(
        sys.entry_masks("client0"),
        Some(EntryMasks {
            irqs: 0,
            notifications: 0b1_1011,
            pps: 1 << 5,
        })
    );
    assert_eq!(sys.needs_endpoint("timer_driver"), Some(true));
    assert_eq!(sys.needs_endpoint("net_virt_rx"), Some(false));
    // bench0's channel ids 0..2 and child ids 0..6 overlap: separate id spaces.
    let bench = pd(&sys, "bench0");
    assert_eq!(bench.children.len(), 7);
    assert_eq!(
        sys.channels_of("bench0")
            .iter()
            .map(|c| c.local_id)
            .collect::<Vec<_>>(),
        [0, 1, 2]
    );
}

#[test]
fn driver_vm() {
    let sys = load("driver_vm.xml");
    let vmm = pd(&sys, "vmm");
    assert_eq!((vmm.priority, vmm.budget, vmm.period), (101, 200, 400));
    let vm = vmm.virtual_machine.as_ref().unwrap();
    assert_eq!(vm.name, "linux");
    assert_eq!((vm.priority, vm.budget, vm.period), (100, 100, 400));
    assert_eq!(vm.vcpus.len(), 1);
    assert_eq!((vm.vcpus[0].id, vm.vcpus[0].cpu), (0, None));
    assert_eq!(vm.vcpus[0].setvar_id.as_deref(), Some("boot_vcpu"));
    assert_eq!(
        map_summary(&vm.maps),
        [
            ("guest_ram", 0x4000_0000, "rwx".to_string(), true),
            ("gic_vcpu", 0x801_0000, "rw".to_string(), false),
            ("virtio_net_regs", 0xa00_3000, "rw".to_string(), false),
            ("rx_free", 0x20_0000, "rw".to_string(), false),
            ("rx_active", 0x22_0000, "rw".to_string(), false),
        ]
    );
    assert!(vm.maps.iter().all(|m| m.setvar_vaddr.is_none()));
    assert_eq!(
        setvars(&sys, "vmm"),
        [
            ("guest_ram_vaddr".into(), SetVarKind::Vaddr(0x4000_0000)),
            (
                "guest_ram_size".into(),
                SetVarKind::Size {
                    mr: "guest_ram".into()
                }
            ),
            (
                "guest_ram_paddr".into(),
                SetVarKind::RegionPaddr {
                    mr: "guest_ram".into()
                }
            ),
            ("virtio_net_irq".into(), SetVarKind::Id(2)),
            ("boot_vcpu".into(), SetVarKind::Id(0)),
        ]
    );
    let ram = sys.memory_region("guest_ram").unwrap();
    assert_eq!(
        (ram.size, ram.page_size, ram.phys_addr),
        (0x1000_0000, 0x20_0000, Some(0x4000_0000))
    );
    // A PD with a VM takes faults on an endpoint.
    assert_eq!(sys.needs_endpoint("vmm"), Some(true));
    // Default perms are rw.
    assert_eq!(pd(&sys, "net_virt_rx").maps[0].perms, Perms::READ_WRITE);
}

#[test]
fn valid_files_round_trip_through_parse_str() {
    // parse() and parse_str() agree, and positions name the file given.
    for name in [
        "three_pds.xml",
        "hierarchy.xml",
        "echo_net.xml",
        "driver_vm.xml",
    ] {
        let text = std::fs::read_to_string(path(name)).unwrap();
        let from_str = sdf::parse_str(&text, path(name), Arch::Aarch64).unwrap();
        assert_eq!(from_str, load(name), "{name}");
    }
}

#[test]
fn a_larger_config_accepts_what_the_default_rejects() {
    // cpu 5 is out of range on qemu_virt_aarch64's 4 cores but fine with 8.
    let text = r#"<system><protection_domain name="a" cpu="5"><program_image path="a.elf"/></protection_domain></system>"#;
    assert!(sdf::parse_str(text, "x.xml", Arch::Aarch64).is_err());
    let config = sdf::Config {
        num_cores: 8,
        ..sdf::Config::default()
    };
    let sys = sdf::parse_str_with_config(text, "x.xml", &config).unwrap();
    assert_eq!(sys.protection_domains[0].cpu, 5);
}

#[test]
fn mixed_cacheability_between_a_vm_and_a_pd_is_accepted_only_when_allowed() {
    let text = r#"<system><memory_region name="q" size="0x1000"/>
        <protection_domain name="virt"><program_image path="v.elf"/>
            <map mr="q" vaddr="0x20000000" perms="r"/></protection_domain>
        <protection_domain name="vmm"><program_image path="m.elf"/>
            <virtual_machine name="linux"><vcpu id="0"/>
                <map mr="q" vaddr="0x30000000" perms="rw" cached="false"/></virtual_machine>
        </protection_domain></system>"#;
    let e = sdf::parse_str(text, "x.xml", Arch::Aarch64).unwrap_err();
    assert!(
        e.to_string().contains(
            "mapped cached by protection domain 'virt' but uncached by virtual machine 'linux'"
        ),
        "{e}"
    );
    let config = sdf::Config {
        allow_mixed_cacheability: true,
        ..sdf::Config::default()
    };
    assert!(sdf::parse_str_with_config(text, "x.xml", &config).is_ok());
    // The same attributes on both sides are what the check asks for.
    let same = text.replace(r#"perms="r"/>"#, r#"perms="r" cached="false"/>"#);
    assert!(sdf::parse_str(&same, "x.xml", Arch::Aarch64).is_ok());
}
