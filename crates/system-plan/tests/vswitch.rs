//! The local queues' `.netvm_vswitch` sections, derived from system.xml for both writers; a
//! system without local queues gets none; a half-described one is refused, naming what is missing.

use std::path::{Path, PathBuf};

use netvm_api::vswitch::{CopyLocalConfig, VirtTxLocalConfig, SECTION};
use system_plan::{parse_macs, plan, Inputs, PlanError, Section, Writer};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn xml() -> String {
    std::fs::read_to_string(root().join("system.xml")).unwrap()
}

fn sections(text: &str, writer: Writer) -> Result<Vec<Section>, PlanError> {
    let path = root().join("system.xml");
    let sys = sdf::parse_str(text, &path, sdf::Arch::Aarch64).unwrap_or_else(|e| panic!("{e}"));
    let macs = parse_macs(&format!("@{}", root().join("system.macs").display())).unwrap();
    let echo = system_plan::parse_echo_ips("client0=10.0.0.10/24,client1=dhcp").unwrap();
    let inputs = Inputs {
        buffers: Default::default(),
        macs: Some(&macs),
        echo: &echo,
        echo_peers: &[],
        bootargs: "",
        writer,
    };
    plan(&sys, &path, &inputs).map(|p| p.sections)
}

fn local(sections: &[Section], pd: &str) -> Option<Vec<u8>> {
    sections
        .iter()
        .find(|s| s.pd == pd && s.name == SECTION)
        .map(|s| s.bytes.clone())
}

#[test]
fn system_xml_gives_virt_tx_a_port_per_client_and_each_copier_the_other_tx_region() {
    for writer in [Writer::Sel4Image, Writer::Host] {
        let s = sections(&xml(), writer).unwrap();
        let tx = VirtTxLocalConfig::parse(&local(&s, "net_virt_tx").unwrap())
            .unwrap()
            .unwrap();
        let ports = tx.ports();
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[1].mac, [0x52, 0x54, 1, 0, 0, 0x11]);
        assert_eq!((ports[0].conn.id, ports[1].conn.id), (3, 4));
        assert_eq!(ports[1].conn.free_queue.vaddr, 0x7202_0000);
        assert_eq!(
            ports[0].conn.num_buffers, 1024,
            "every TX buffer of the system"
        );
        let c0 = CopyLocalConfig::parse(&local(&s, "client0_net_copier").unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(c0.conn.id, 2);
        assert_eq!(c0.conn.active_queue.vaddr, 0x7201_0000);
        assert_eq!(
            c0.sources()[0].vaddr,
            0,
            "its own client's region is not a source"
        );
        assert_eq!(c0.sources()[1].vaddr, 0x7410_0000);
        assert!(local(&s, "client1_net_copier").is_some());
    }
}

/// system.xml without the lines that mention `needle`.
fn without(needle: &str) -> String {
    let mut out = String::new();
    for line in xml().lines().filter(|l| !l.contains(needle)) {
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[test]
fn a_system_without_local_queues_gets_no_sections() {
    let old = without("/net/vswitch/");
    let s = sections(&old, Writer::Host).unwrap();
    assert!(s.iter().all(|s| s.name != SECTION), "local delivery off");
}

#[test]
fn a_half_described_system_is_refused_naming_what_is_missing() {
    // client1's copier lost its map of its local free queue.
    let text = xml().replace(
        "<map mr=\"generic/net/vswitch/client1_net_copier/free\" vaddr=\"0x72000000\"",
        "<map mr=\"generic/net/vswitch/unused\" vaddr=\"0x72000000\"",
    );
    let text = text.replace(
        "    <memory_region name=\"generic/net/vswitch/client1_net_copier/active\"",
        "    <memory_region name=\"generic/net/vswitch/unused\" size=\"0x5000\" />\n    <memory_region name=\"generic/net/vswitch/client1_net_copier/active\"",
    );
    let e = sections(&text, Writer::Host).unwrap_err().to_string();
    assert!(
        e.contains("client1_net_copier")
            && e.contains("generic/net/vswitch/client1_net_copier/free"),
        "{e}"
    );
    // The copier cannot read client0's TX buffers.
    let text = xml().replace(
        "<map mr=\"generic/net/tx/data/client/client0\" vaddr=\"0x74000000\" perms=\"r\" cached=\"false\" />",
        "",
    );
    let e = sections(&text, Writer::Sel4Image).unwrap_err().to_string();
    assert!(e.contains("generic/net/tx/data/client/client0"), "{e}");
    // No channel between virt_tx and client0's copier.
    let text = xml().replace(
        "<end pd=\"net_virt_tx\" id=\"3\" />\n        <end pd=\"client0_net_copier\" id=\"2\" />",
        "<end pd=\"idle\" id=\"5\" />\n        <end pd=\"client0_net_copier\" id=\"2\" />",
    );
    let e = sections(&text, Writer::Host).unwrap_err().to_string();
    assert!(
        e.contains("net_virt_tx") && e.contains("client0_net_copier"),
        "{e}"
    );
}
