//! The one derivation on the repository's system.xml: what the two writers get, and typed errors.

use std::path::{Path, PathBuf};

use system_plan::{parse_echo_ips, parse_macs, plan, Inputs, PlanError, Subject, Writer};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn system() -> (sdf::SystemDescription, PathBuf) {
    let path = root().join("system.xml");
    let sys = sdf::parse(&path, sdf::Arch::Aarch64).unwrap_or_else(|e| panic!("{e}"));
    (sys, path)
}

fn macs() -> Vec<(String, [u8; 6])> {
    parse_macs(&format!("@{}", root().join("system.macs").display())).unwrap()
}

#[test]
fn both_writers_get_the_same_sections_but_for_the_driver_pd() {
    let (sys, path) = system();
    let (macs, echo) = (
        macs(),
        parse_echo_ips("client0=10.0.0.10/24,client1=dhcp").unwrap(),
    );
    let inputs = |writer| Inputs {
        buffers: Default::default(),
        macs: Some(&macs),
        echo: &echo,
        echo_peers: &[],
        bootargs: "console=ttyAMA0",
        writer,
    };
    let sel4 = plan(&sys, &path, &inputs(Writer::Sel4Image)).unwrap();
    let host = plan(&sys, &path, &inputs(Writer::Host)).unwrap();
    let vm = sel4
        .driver_vm
        .as_ref()
        .expect("system.xml runs a driver VM");
    assert!(host.driver_vm.is_none(), "host mode stands the driver in");
    for s in &sel4.sections {
        if s.name == vmm_api::SECTION {
            assert_eq!(s.pd, vm.driver);
            assert_eq!(s.bytes, vm.vmm_config.to_bytes().to_vec());
        } else {
            assert!(
                host.sections.contains(s),
                "host mode lacks {} {}",
                s.pd,
                s.name
            );
        }
    }
    for s in host.sections.iter().filter(|s| !sel4.sections.contains(s)) {
        assert_eq!(s.pd, vm.driver, "{} {} only in host mode", s.pd, s.name);
    }
    // At most one of each section per PD, for either writer.
    for sections in [&sel4.sections, &host.sections] {
        for (i, s) in sections.iter().enumerate() {
            assert!(!sections[..i]
                .iter()
                .any(|o| o.pd == s.pd && o.name == s.name));
        }
    }
}

#[test]
fn errors_say_which_pd_or_channel_they_are_about() {
    let (sys, path) = system();
    let macs = macs();
    let echo = parse_echo_ips("client0=10.0.0.10/24").unwrap();
    let inputs = Inputs {
        buffers: Default::default(),
        macs: Some(&macs),
        echo: &echo,
        echo_peers: &[],
        bootargs: "",
        writer: Writer::Sel4Image,
    };
    let err = plan(&sys, &path, &inputs).unwrap_err();
    assert!(
        matches!(&err, PlanError::System { subject: Subject::Pd(pd), .. } if pd == "client1"),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with(&path.display().to_string()),
        "{err}"
    );

    // The vmm's channel to net_virt_tx removed: the channel is named.
    let text = std::fs::read_to_string(&path).unwrap();
    let end = "<end pd=\"vmm\" id=\"1\" />";
    let at = text.find(end).expect("system.xml has the vmm's channel 1");
    let open = text[..at].rfind("<channel>").unwrap();
    let close = at + text[at..].find("</channel>").unwrap() + "</channel>".len();
    let cut = format!("{}{}", &text[..open], &text[close..]);
    let sys = sdf::parse_str(&cut, "cut.xml", sdf::Arch::Aarch64).unwrap_or_else(|e| panic!("{e}"));
    let echo = parse_echo_ips("client0=10.0.0.10/24,client1=dhcp").unwrap();
    let inputs = Inputs {
        echo: &echo,
        ..inputs
    };
    let err = plan(&sys, Path::new("cut.xml"), &inputs).unwrap_err();
    assert!(
        matches!(&err, PlanError::System { subject: Subject::Channel { pd, peer }, .. }
            if pd == "vmm" && peer == "net_virt_tx"),
        "{err:?}"
    );
}

/// The 64-entry-queue system (every queue region one page): without buffer counts the default
/// 512-entry queues do not fit and the error names a region; with `rx=64,client_rx=64,
/// client_tx=32` both writers' configs and the guest's device tree say 64, the same numbers
/// the guest's driver and the host stand-in read.
#[test]
fn buffer_counts_reach_every_config_and_the_guest() {
    let dir = std::env::temp_dir().join(format!("system-plan-q64-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("system64.xml");
    let text = std::fs::read_to_string(root().join("system.xml")).unwrap();
    std::fs::write(&path, testkit::system::with_64_entry_queue_regions(&text)).unwrap();
    let sys = sdf::parse(&path, sdf::Arch::Aarch64).unwrap_or_else(|e| panic!("{e}"));
    let (macs, echo) = (
        macs(),
        parse_echo_ips("client0=10.0.0.10/24,client1=10.0.0.11/24").unwrap(),
    );
    let inputs = |writer, buffers| Inputs {
        buffers,
        macs: Some(&macs),
        echo: &echo,
        echo_peers: &[],
        bootargs: "console=ttyAMA0",
        writer,
    };
    let err = plan(&sys, &path, &inputs(Writer::Host, Default::default()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("too small") && err.contains("/net/queue/"),
        "{err}"
    );

    let buffers = sdf::net::BufferCounts::parse(testkit::system::QUEUES_64_BUFFERS).unwrap();
    for writer in [Writer::Host, Writer::Sel4Image] {
        let p = plan(&sys, &path, &inputs(writer, buffers)).unwrap_or_else(|e| panic!("{e}"));
        let driver = p
            .sections
            .iter()
            .find(|s| s.name == sdf::net::DRIVER_SECTION)
            .expect("the driver's config");
        let config = uio_driver::config::DriverConfig::parse(&driver.bytes, "plan").unwrap();
        assert_eq!(
            (config.rx_capacity.get(), config.tx_capacity.get()),
            (64, 64),
            "{writer:?}"
        );
        if let Some(vm) = &p.driver_vm {
            assert_eq!(
                vm.layout.net_driver_config, driver.bytes,
                "the guest's copy"
            );
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `.echo_peers` goes to the PDs named, the same for both writers; the others get none (the
/// role stays off), and a PD without an address cannot originate.
#[test]
fn echo_peers_reach_only_the_pds_named() {
    let (sys, path) = system();
    let macs = macs();
    let echo = parse_echo_ips("client0=10.0.0.10/24,client1=10.0.0.11/24").unwrap();
    let peers = system_plan::parse_echo_peers("client1=node1+10.0.2.10/msg=10.0.255.1").unwrap();
    let inputs = |writer, echo_peers| Inputs {
        buffers: Default::default(),
        macs: Some(&macs),
        echo: &echo,
        echo_peers,
        bootargs: "",
        writer,
    };
    for writer in [Writer::Sel4Image, Writer::Host] {
        let sections = plan(&sys, &path, &inputs(writer, &peers)).unwrap().sections;
        let named: Vec<&str> = sections
            .iter()
            .filter(|s| s.name == echo_api::peers::SECTION)
            .map(|s| s.pd.as_str())
            .collect();
        assert_eq!(named, ["client1"]);
        let bytes = &sections
            .iter()
            .find(|s| s.name == echo_api::peers::SECTION)
            .unwrap()
            .bytes;
        let parsed = echo_api::peers::EchoPeersSection::parse(bytes).unwrap();
        assert_eq!(parsed, Some(peers[0].1));
        // Version 2 with node messaging's master in bytes 88..92.
        assert_eq!((bytes.len(), bytes[4]), (96, 2));
        assert_eq!(&bytes[88..92], &[10, 0, 255, 1]);
        let none = plan(&sys, &path, &inputs(writer, &[])).unwrap().sections;
        assert!(!none.iter().any(|s| s.name == echo_api::peers::SECTION));
    }
    let stray = system_plan::parse_echo_peers("client7=node1").unwrap();
    let err = plan(&sys, &path, &inputs(Writer::Host, &stray)).unwrap_err();
    assert!(
        matches!(&err, PlanError::System { subject: Subject::Pd(pd), .. } if pd == "client7"),
        "{err:?}"
    );
    assert!(err.to_string().contains("--echo-ips"), "{err}");
}

/// The driver VM's counters page: a UIO region for the guest where system.xml maps
/// `netvm/stats/driver_vm` into the VM (writable), none where it does not.
#[test]
fn the_driver_vms_stats_page_becomes_a_uio_region_when_the_vm_maps_it() {
    use netvm_api::uio;
    let (sys, path) = system();
    let (macs, echo) = (
        macs(),
        parse_echo_ips("client0=10.0.0.10/24,client1=dhcp").unwrap(),
    );
    let inputs = Inputs {
        buffers: Default::default(),
        macs: Some(&macs),
        echo: &echo,
        echo_peers: &[],
        bootargs: "console=ttyAMA0",
        writer: Writer::Sel4Image,
    };
    let stats_of = |sys: &sdf::SystemDescription, path: &Path| {
        let p = plan(sys, path, &inputs).unwrap_or_else(|e| panic!("{e}"));
        let vm = p.driver_vm.expect("a driver VM");
        vm.layout
            .uio_regions
            .iter()
            .find(|r| r.name == uio::STATS)
            .map(|r| (r.reg.base, r.reg.size))
    };
    assert_eq!(stats_of(&sys, &path), Some((0x3034_0000, 0x1000)));
    assert_eq!(
        format!("{}{}", sdf::net::STATS_PREFIX, uio::STATS_COMPONENT),
        "netvm/stats/driver_vm"
    );

    // Without the map (or mapped read-only) there is no page, and the guest publishes nothing.
    let text = std::fs::read_to_string(&path).unwrap();
    let map = r#"<map mr="netvm/stats/driver_vm" vaddr="0x30340000" perms="rw" cached="false" />"#;
    assert!(text.contains(map));
    let dir = std::env::temp_dir().join(format!("system-plan-stats-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (tag, replacement) in [("none", ""), ("ro", &*map.replace("\"rw\"", "\"r\""))] {
        let p = dir.join(format!("{tag}.xml"));
        std::fs::write(&p, text.replace(map, replacement)).unwrap();
        let sys = sdf::parse(&p, sdf::Arch::Aarch64).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stats_of(&sys, &p), None, "{tag}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
