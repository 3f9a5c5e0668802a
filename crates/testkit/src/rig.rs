//! virt_rx and virt_tx each between a scripted driver and scripted clients, over test memory:
//! the configurations and the queue handles their tests (and the fuzz targets) drive.
use netvm_api::reconnect::ControlWords;
use sddf::config::NET_MAGIC;
use sddf::config::{ConnectionResource, DeviceRegionResource, NetVirtRxConfig, NetVirtTxConfig};
use sddf::queue::{Capacity, DrainSide, FillSide};
use sddf::testing::Layout;
use sddf::BuffDesc;
use zerocopy::FromZeros;

/// virt_rx's configuration: the driver on channel 0, client `i` on channel `1 + i` with one MAC.
pub struct RxRig {
    /// Where every region lies.
    pub layout: Layout,
    /// virt_rx's configuration.
    pub cfg: Box<NetVirtRxConfig>,
    /// The queues between the driver and virt_rx.
    pub driver: ConnectionResource,
    /// The queues between virt_rx and each client.
    pub clients: Vec<ConnectionResource>,
    cap: u16,
}

impl RxRig {
    /// One client a MAC of `macs`, every queue `cap` entries, the DMA region (`cap` buffers of
    /// 2 KiB) at IO address `io`.
    pub fn new(macs: &[[u8; 6]], cap: u16, io: u64) -> RxRig {
        let mut layout = Layout::new();
        let mut cfg = NetVirtRxConfig::new_box_zeroed().expect("allocation");
        cfg.magic = NET_MAGIC;
        let driver = layout.connection(cap, 0);
        cfg.driver = driver;
        cfg.data = DeviceRegionResource {
            region: layout.region(u64::from(cap) * 2048),
            io_addr: io,
        };
        cfg.buffer_metadata = layout.region(0x1000);
        let mut clients = vec![];
        for (i, mac) in macs.iter().enumerate() {
            let conn = layout.connection(cap, 1 + i as u8);
            cfg.clients[i].conn = conn;
            cfg.clients[i].mac_addrs[0] = *mac;
            cfg.clients[i].num_macs = 1;
            clients.push(conn);
        }
        cfg.num_clients = macs.len() as u8;
        RxRig {
            layout,
            cfg,
            driver,
            clients,
            cap,
        }
    }

    /// The driver's side of its queues.
    pub fn driver_side(&self) -> FillSide<'_> {
        let (f, a) = self.layout.queues(&self.driver);
        FillSide::new(f, a)
    }

    /// Each client's side of its queues.
    pub fn client_sides(&self) -> Vec<DrainSide<'_>> {
        self.clients
            .iter()
            .map(|conn| {
                let (f, a) = self.layout.queues(conn);
                DrainSide::new(f, a)
            })
            .collect()
    }

    /// The reconnect words of the driver's queues.
    pub fn driver_words(&self) -> ControlWords<'_> {
        control_words(&self.layout, &self.driver, self.cap)
    }
}

/// virt_tx's configuration: the driver on channel 0, client `i` on channel `1 + i` with one
/// data region.
pub struct TxRig {
    /// Where every region lies.
    pub layout: Layout,
    /// virt_tx's configuration.
    pub cfg: Box<NetVirtTxConfig>,
    /// The queues between virt_tx and the driver.
    pub driver: ConnectionResource,
    /// The queues between each client and virt_tx.
    pub clients: Vec<ConnectionResource>,
    driver_cap: u16,
    cap: u16,
}

impl TxRig {
    /// The driver's queues `driver_cap` entries; one client a region of `cap` buffers of 2 KiB
    /// at each IO address of `io`, its queues `cap` entries.
    pub fn new(driver_cap: u16, cap: u16, io: &[u64]) -> TxRig {
        let mut layout = Layout::new();
        let mut cfg = NetVirtTxConfig::new_box_zeroed().expect("allocation");
        cfg.magic = NET_MAGIC;
        let driver = layout.connection(driver_cap, 0);
        cfg.driver = driver;
        let mut clients = vec![];
        for (i, io) in io.iter().enumerate() {
            let conn = layout.connection(cap, 1 + i as u8);
            cfg.clients[i].conn = conn;
            cfg.clients[i].regions[0].data = DeviceRegionResource {
                region: layout.region(u64::from(cap) * 2048),
                io_addr: *io,
            };
            cfg.clients[i].regions[0].num_buffers = cap.into();
            cfg.clients[i].num_regions = 1;
            clients.push(conn);
        }
        cfg.num_clients = io.len() as u8;
        TxRig {
            layout,
            cfg,
            driver,
            clients,
            driver_cap,
            cap,
        }
    }

    /// Client `i`'s side of its queues, its free queue filled with its buffers (as a client's
    /// init does).
    pub fn client(&self, i: usize) -> FillSide<'_> {
        let (f, a) = self.layout.queues(&self.clients[i]);
        FillSide::new_self_provided(f, a, self.cap).expect("a fresh queue")
    }

    /// The driver's side of its queues.
    pub fn driver(&self) -> DrainSide<'_> {
        let (f, a) = self.layout.queues(&self.driver);
        DrainSide::new(f, a)
    }

    /// Client `i` (side `c`) sends `len` bytes of `tag` from its next free buffer.
    pub fn send(&self, c: &mut FillSide<'_>, i: usize, tag: u8, len: u16) -> BuffDesc {
        let d = c.free.dequeue().expect("a free buffer");
        let region = self
            .layout
            .view(&self.cfg.clients[i].regions[0].data.region);
        region
            .write(d.io_or_offset as usize, &vec![tag; len as usize])
            .expect("a buffer in the region");
        let out = BuffDesc::new(d.io_or_offset, len, 0);
        c.active.enqueue(out).expect("room in the active queue");
        out
    }

    /// The reconnect words of the driver's queues.
    pub fn driver_words(&self) -> ControlWords<'_> {
        control_words(&self.layout, &self.driver, self.driver_cap)
    }

    /// The reconnect words of client `c`'s queues.
    pub fn client_words(&self, c: usize) -> ControlWords<'_> {
        control_words(&self.layout, &self.clients[c], self.cap)
    }
}

fn control_words<'l>(layout: &'l Layout, conn: &ConnectionResource, cap: u16) -> ControlWords<'l> {
    let cap = Capacity::new(cap.into()).expect("a valid capacity");
    ControlWords::new(layout.view(&conn.free_queue), cap).expect("words in the free queue")
}
