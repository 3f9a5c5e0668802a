//! The standalone driver VM of examples/vmm-boot (no sDDF net part): the device tree's UIO
//! regions come from the memory regions named like them, `.vmm_config` has the timer channel and
//! no virtualiser channels, and it is the only section derived.
use std::path::{Path, PathBuf};

use echo_api::IpConfig;
use system_plan::{driver_vm, sections, Clients, RX_FAULT_GPA, TX_FAULT_GPA};

fn example() -> (sdf::SystemDescription, PathBuf) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/vmm-boot/system.xml");
    (sdf::parse(&path, sdf::Arch::Aarch64).unwrap(), path)
}

#[test]
fn the_vmm_boot_example_is_derived_like_the_full_system() {
    let (sys, path) = example();
    let vm = driver_vm(&sys, &path, "console=ttyAMA0", &Clients::default()).unwrap();
    assert!(vm.standalone);
    // No virtualisers to agree with: sdfgen's default capacity, still given as data.
    let config =
        uio_driver::config::DriverConfig::parse(&vm.layout.net_driver_config, "layout").unwrap();
    assert_eq!(
        (config.rx_capacity.get(), config.tx_capacity.get()),
        (512, 512)
    );
    assert_eq!(vm.driver, "vmm");
    let cfg = vm.vmm_config;
    assert_eq!((cfg.virt_rx, cfg.virt_tx), (None, None));
    assert_eq!(cfg.timer, Some(3), "the vmm's end of the timer channel");
    assert_eq!(cfg.uart.map(|u| (u.channel, u.intid)), Some((1, 33)));
    assert_eq!(cfg.nic.map(|n| (n.channel, n.intid)), Some((2, 79)));
    assert_eq!((cfg.rx_fault, cfg.tx_fault), (RX_FAULT_GPA, TX_FAULT_GPA));
    let region = |name: &str| {
        vm.layout
            .uio_regions
            .iter()
            .find(|r| r.name == name)
            .map(|r| (r.reg.base, r.reg.size))
    };
    assert_eq!(region("rx_free"), Some((0x3000_0000, 0x4000)));
    assert_eq!(region("tx_data1"), Some((0x3030_0000, 0x10_0000)));
    assert_eq!(region("tx_data2"), None);

    let derived = sections(&sys, &path, &vm, &Clients::default(), (&[], &[])).unwrap();
    assert_eq!(derived.len(), 1);
    assert_eq!(
        (derived[0].pd.as_str(), derived[0].name.as_str()),
        ("vmm", ".vmm_config")
    );
    assert_eq!(derived[0].bytes, cfg.to_bytes());

    // An address for an echo client the system does not have is refused, named.
    let echo = [("client0".to_string(), IpConfig::Dhcp)];
    let err = sections(&sys, &path, &vm, &Clients::default(), (&echo, &[])).unwrap_err();
    assert!(err.to_string().contains("'client0'"), "{err}");
}

#[test]
fn a_vm_without_the_uio_regions_is_still_refused() {
    let (_, path) = example();
    let map = "<map mr=\"rx_free\" vaddr=\"0x30000000\" perms=\"rw\" cached=\"false\" />";
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(map));
    let sys = sdf::parse_str(&text.replace(map, ""), "vmm-boot.xml", sdf::Arch::Aarch64).unwrap();
    // Neither an sDDF net system nor a standalone VM: the net part's error is what is reported.
    let err = driver_vm(&sys, &path, "", &Clients::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("system.xml"), "{err}");
}
