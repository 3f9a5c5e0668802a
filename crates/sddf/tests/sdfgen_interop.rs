//! Interop with the real sdfgen (PyPI, 0.35.x): generate a two-client network system, decode
//! every config blob with this crate, and check each field against the generated system XML.
//!
//! Needs the project venv (`scripts/test.sh` creates it). Without it the test says it was
//! skipped, unless skipping is forbidden (`NETVM_NO_SKIP`, set by the test command), when it fails.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use sddf::config::*;

struct System {
    /// (pd, mr) -> vaddr
    maps: HashMap<(String, String), u64>,
    /// mr -> (size, phys)
    mrs: HashMap<String, (u64, Option<u64>)>,
    /// (pd, peer pd) -> id of pd's end
    channels: HashMap<(String, String), u8>,
}

fn num(s: &str) -> u64 {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).unwrap(),
        None => s.parse().unwrap(),
    }
}

impl System {
    fn parse(xml: &str) -> System {
        let doc = roxmltree::Document::parse(xml).unwrap();
        let mut sys = System {
            maps: HashMap::new(),
            mrs: HashMap::new(),
            channels: HashMap::new(),
        };
        for n in doc.root_element().children().filter(|n| n.is_element()) {
            match n.tag_name().name() {
                "memory_region" => {
                    sys.mrs.insert(
                        n.attribute("name").unwrap().into(),
                        (
                            num(n.attribute("size").unwrap()),
                            n.attribute("phys_addr").map(num),
                        ),
                    );
                }
                "protection_domain" => {
                    let pd = n.attribute("name").unwrap();
                    for m in n.children().filter(|m| m.has_tag_name("map")) {
                        sys.maps.insert(
                            (pd.into(), m.attribute("mr").unwrap().into()),
                            num(m.attribute("vaddr").unwrap()),
                        );
                    }
                }
                "channel" => {
                    let ends: Vec<_> = n.children().filter(|e| e.has_tag_name("end")).collect();
                    let (a, b) = (ends[0], ends[1]);
                    let (pa, pb) = (a.attribute("pd").unwrap(), b.attribute("pd").unwrap());
                    sys.channels.insert(
                        (pa.into(), pb.into()),
                        num(a.attribute("id").unwrap()) as u8,
                    );
                    sys.channels.insert(
                        (pb.into(), pa.into()),
                        num(b.attribute("id").unwrap()) as u8,
                    );
                }
                _ => {}
            }
        }
        sys
    }

    fn vaddr(&self, pd: &str, mr: &str) -> u64 {
        *self
            .maps
            .get(&(pd.into(), mr.into()))
            .unwrap_or_else(|| panic!("{pd} does not map {mr}"))
    }

    fn region(&self, pd: &str, mr: &str) -> RegionResource {
        RegionResource {
            vaddr: self.vaddr(pd, mr),
            size: self.mrs[mr].0,
        }
    }

    fn channel(&self, pd: &str, peer: &str) -> u8 {
        self.channels[&(pd.into(), peer.into())]
    }

    /// A connection as `pd` sees the queue pair `queue_prefix` towards `peer`.
    fn check_conn(
        &self,
        conn: &ConnectionResource,
        pd: &str,
        queue_prefix: &str,
        peer: &str,
        n: u16,
    ) {
        let free = format!("{queue_prefix}/free");
        let active = format!("{queue_prefix}/active");
        assert_eq!(conn.free_queue, self.region(pd, &free), "{pd}: {free}");
        assert_eq!(
            conn.active_queue,
            self.region(pd, &active),
            "{pd}: {active}"
        );
        assert_eq!(conn.id, self.channel(pd, peer), "{pd}: channel to {peer}");
        assert_eq!(conn.num_buffers, n, "{pd}: num_buffers towards {peer}");
        assert!(sddf::queue::queue_bytes(n.into()) as u64 <= conn.free_queue.size);
    }
}

fn generate() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv/bin/python");
    if !python.exists() {
        testkit::skip(
            "sdfgen_interop",
            format_args!(
                "no venv at {} (scripts/setup.sh makes it)",
                python.display()
            ),
        );
        return None;
    }
    let out = std::env::temp_dir().join(format!("netvm-sdfgen-{}", std::process::id()));
    let status = Command::new(&python)
        .arg(root.join("scripts/sdfgen_net_system.py"))
        .arg(&out)
        .status()
        .expect("run sdfgen generator");
    if !status.success() {
        testkit::skip(
            "sdfgen_interop",
            format_args!("the sdfgen generator failed ({status}); is sdfgen installed?"),
        );
        return None;
    }
    Some(out)
}

fn blob<C: Config>(dir: &Path, file: &str) -> Box<C> {
    let bytes = std::fs::read(dir.join(file)).unwrap();
    parse_owned::<C>(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[test]
fn every_sdfgen_blob_decodes_and_matches_the_system() {
    let Some(dir) = generate() else { return };
    let sys = System::parse(&std::fs::read_to_string(dir.join("net.system")).unwrap());
    let clients = ["client0", "client1"];
    let macs = [[0x52, 0x54, 1, 0, 0, 0x10], [0x52, 0x54, 1, 0, 0, 0x11]];
    let (drv, vrx, vtx) = ("driver_vm", "net_virt_rx", "net_virt_tx");
    let q = "generic/net/queue";

    let d = blob::<NetDriverConfig>(&dir, "net_driver.data");
    sys.check_conn(&d.virt_rx, drv, &format!("{q}/{drv}/{vrx}"), vrx, 512);
    // The driver's TX queues hold every client's TX buffers: 2 x 512.
    sys.check_conn(&d.virt_tx, drv, &format!("{q}/{drv}/{vtx}"), vtx, 1024);

    let rx = blob::<NetVirtRxConfig>(&dir, "net_virt_rx.data");
    sys.check_conn(&rx.driver, vrx, &format!("{q}/{drv}/{vrx}"), drv, 512);
    let dma = "generic/net/rx/data/device";
    assert_eq!(rx.data.region, sys.region(vrx, dma));
    assert_eq!(Some(rx.data.io_addr), sys.mrs[dma].1);
    assert_eq!(
        rx.buffer_metadata,
        sys.region(vrx, "generic/net/rx/virt_metadata")
    );
    assert_eq!(rx.clients().len(), 2);
    for (i, c) in clients.iter().enumerate() {
        let copier = format!("{c}_net_copier");
        let rc = &rx.clients()[i];
        sys.check_conn(&rc.conn, vrx, &format!("{q}/{vrx}/{copier}"), &copier, 512);
        assert_eq!(rc.macs(), &[macs[i]]);
    }

    let tx = blob::<NetVirtTxConfig>(&dir, "net_virt_tx.data");
    sys.check_conn(&tx.driver, vtx, &format!("{q}/{drv}/{vtx}"), drv, 1024);
    assert_eq!(tx.clients().len(), 2);
    for (i, c) in clients.iter().enumerate() {
        let tc = &tx.clients()[i];
        sys.check_conn(&tc.conn, vtx, &format!("{q}/{vtx}/{c}"), c, 512);
        let data = format!("generic/net/tx/data/client/{c}");
        assert_eq!(tc.regions().len(), 1);
        assert_eq!(tc.regions()[0].data.region, sys.region(vtx, &data));
        assert_eq!(Some(tc.regions()[0].data.io_addr), sys.mrs[&data].1);
        assert_eq!(tc.regions()[0].num_buffers, 512);
    }

    for (i, c) in clients.iter().enumerate() {
        let copier = format!("{c}_net_copier");
        let cp = blob::<NetCopyConfig>(&dir, &format!("net_copy_{copier}.data"));
        sys.check_conn(&cp.rx, &copier, &format!("{q}/{vrx}/{copier}"), vrx, 512);
        assert_eq!(cp.rx_data[0], sys.region(&copier, dma));
        assert!(cp.rx_data[1..]
            .iter()
            .all(|r| *r == RegionResource::default()));
        sys.check_conn(&cp.client, &copier, &format!("{q}/{copier}/{c}"), c, 512);
        let private = format!("generic/net/rx/data/client/{c}");
        assert_eq!(cp.client_data, sys.region(&copier, &private));

        let cl = blob::<NetClientConfig>(&dir, &format!("net_client_{c}.data"));
        sys.check_conn(&cl.rx, c, &format!("{q}/{copier}/{c}"), &copier, 512);
        assert_eq!(cl.rx_data, sys.region(c, &private));
        sys.check_conn(&cl.tx, c, &format!("{q}/{vtx}/{c}"), vtx, 512);
        assert_eq!(
            cl.tx_data,
            sys.region(c, &format!("generic/net/tx/data/client/{c}"))
        );
        assert_eq!(cl.mac_addr, macs[i]);
    }

    let dev = blob::<DeviceResources>(&dir, "driver_vm_device_resources.data");
    assert_eq!((dev.num_regions, dev.num_irqs), (0, 0));
    std::fs::remove_dir_all(&dir).ok();
}
