//! The whole data path in test memory: the two-client system of virt_rx, virt_tx and two
//! copiers ([`build`]) that the conservation test (`tests/pipeline/tests/conservation.rs`)
//! shares with the `pipeline` fuzz target, and the frames the scripted driver and clients send
//! ([`frame`]).
//!
//! Client 0 has MAC [`MACS`]`[0]`, client 1 [`MACS`]`[1]`; every queue holds [`CAP`]
//! descriptors (the driver's TX queue twice as many), every data region [`REGION`] bytes of
//! 2 KiB buffers.
use sddf::config::*;
use sddf::queue::{DrainSide, FillSide};
use sddf::testing::Layout;
use zerocopy::FromZeros;

/// Entries of each queue between two components (the driver's TX queue has twice as many).
pub const CAP: u16 = 8;
/// The MACs of client 0 and client 1.
pub const MACS: [[u8; 6]; 2] = [[2, 0, 0, 0, 0, 0x10], [2, 0, 0, 0, 0, 0x11]];
/// Bytes of each data region: [`CAP`] buffers of 2 KiB.
pub const REGION: u64 = CAP as u64 * 2048;

/// The configurations of every component, and the test memory their regions sit in.
pub struct System {
    /// Where every region lies.
    pub layout: Layout,
    /// virt_rx's configuration.
    pub rx: Box<NetVirtRxConfig>,
    /// virt_tx's configuration.
    pub tx: Box<NetVirtTxConfig>,
    /// The copier of each client.
    pub copy: Vec<NetCopyConfig>,
    /// Each client's own configuration.
    pub client: Vec<NetClientConfig>,
}

impl System {
    /// The scripted driver's sides of its queues: RX fill side, TX drain side.
    pub fn driver_sides(&self) -> (FillSide<'_>, DrainSide<'_>) {
        let (f, a) = self.layout.queues(&self.rx.driver);
        let rx = FillSide::new(f, a);
        let (f, a) = self.layout.queues(&self.tx.driver);
        (rx, DrainSide::new(f, a))
    }

    /// Each client's sides of its queues: RX drain sides, TX fill sides (their free queues
    /// filled with the client's buffers, as a client's init does).
    pub fn client_sides(&self) -> (Vec<DrainSide<'_>>, Vec<FillSide<'_>>) {
        let (mut rx, mut tx) = (vec![], vec![]);
        for c in &self.client {
            let (f, a) = self.layout.queues(&c.rx);
            rx.push(DrainSide::new(f, a));
            let (f, a) = self.layout.queues(&c.tx);
            tx.push(FillSide::new_self_provided(f, a, CAP).expect("a fresh queue"));
        }
        (rx, tx)
    }
}

/// The two-client system, with the RX DMA region at IO address `rx_io` and the clients' TX
/// regions at `tx_io` (the addresses the driver sees in IO-address mode; 0 for offsets).
pub fn build(rx_io: u64, tx_io: [u64; 2]) -> System {
    let mut l = Layout::new();
    let mut rx = NetVirtRxConfig::new_box_zeroed().expect("allocation");
    let mut tx = NetVirtTxConfig::new_box_zeroed().expect("allocation");
    rx.magic = NET_MAGIC;
    tx.magic = NET_MAGIC;
    rx.driver = l.connection(CAP, 0);
    rx.data = DeviceRegionResource {
        region: l.region(REGION),
        io_addr: rx_io,
    };
    tx.driver = l.connection(2 * CAP, 0);
    let (mut copy, mut client) = (vec![], vec![]);
    for (i, mac) in MACS.iter().enumerate() {
        let virt_copier = l.connection(CAP, 1 + i as u8);
        let copier_client = l.connection(CAP, 1);
        let client_tx = l.connection(CAP, 1 + i as u8);
        rx.clients[i].conn = virt_copier;
        rx.clients[i].mac_addrs[0] = *mac;
        rx.clients[i].num_macs = 1;
        let mut c = NetCopyConfig::new_box_zeroed().expect("allocation");
        c.magic = NET_MAGIC;
        c.rx = virt_copier;
        c.rx_data[0] = rx.data.region;
        c.client = copier_client;
        c.client_data = l.region(REGION);
        let mut cl = NetClientConfig::new_box_zeroed().expect("allocation");
        cl.magic = NET_MAGIC;
        cl.rx = copier_client;
        cl.rx_data = c.client_data;
        cl.tx = client_tx;
        cl.tx_data = l.region(REGION);
        cl.mac_addr = *mac;
        tx.clients[i].conn = client_tx;
        tx.clients[i].regions[0] = VirtTxDataRegion::new_zeroed();
        tx.clients[i].regions[0].data = DeviceRegionResource {
            region: cl.tx_data,
            io_addr: tx_io[i],
        };
        tx.clients[i].regions[0].num_buffers = CAP as u32;
        tx.clients[i].num_regions = 1;
        copy.push(*c);
        client.push(*cl);
    }
    rx.num_clients = 2;
    tx.num_clients = 2;
    System {
        layout: l,
        rx,
        tx,
        copy,
        client,
    }
}

/// A frame of `len` bytes (at least 10) to `dest` carrying `seq`, its payload derived from
/// `seq` so that a corrupted or misplaced frame shows.
pub fn frame(dest: [u8; 6], seq: u32, len: u16) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(seq) as u8)
        .collect();
    f[..6].copy_from_slice(&dest);
    f[6..10].copy_from_slice(&seq.to_le_bytes());
    f
}

/// Local delivery for [`build`]'s system (`netvm_api::vswitch`): a local queue pair from virt_tx
/// to each copier (channel `10 + i` at virt_tx, `2` at the copier), each copier reading the
/// other client's TX region. Returns virt_tx's config and each copier's.
pub fn local(
    sys: &mut System,
) -> (
    netvm_api::vswitch::VirtTxLocalConfig,
    Vec<netvm_api::vswitch::CopyLocalConfig>,
) {
    use netvm_api::vswitch::{CopyLocalConfig, LocalPort, VirtTxLocalConfig};
    let (mut ports, mut copiers) = (vec![], vec![]);
    for (i, mac) in MACS.iter().enumerate() {
        // Every TX buffer of the system fits: the queues never refuse a frame.
        let at_virt = sys.layout.connection(2 * CAP, 10 + i as u8);
        let mut at_copier = at_virt;
        at_copier.id = 2;
        ports.push(LocalPort::new(at_virt, *mac));
        let mut sources = [RegionResource::default(); 2];
        sources[1 - i] = sys.client[1 - i].tx_data;
        copiers.push(CopyLocalConfig::new(at_copier, &sources));
    }
    (VirtTxLocalConfig::new(&ports), copiers)
}
