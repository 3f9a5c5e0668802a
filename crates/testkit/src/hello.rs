//! The manifests of the hello system (examples/hello-pds) for the host runtime, written by
//! hand as a runner would derive them from its SDF: the microkit host-runtime test
//! (`crates/microkit/tests/host_system.rs`, whose PDs are its own binary) and the example's own
//! host test (`examples/hello-pds/tests/host_run.rs`) both run this system.
//!
//! PD indices: client 0, server 1 (passive), crasher 2. Client ch 0 <-> server ch 3 (the
//! client notifies and calls, the server notifies); crasher ch 0 -> client ch 2, the crasher
//! being the client's child 1. The region `shared` is at [`SHARED_CLIENT_VADDR`] in the client
//! and [`SHARED_SERVER_VADDR`] in the server (setvar `shared_vaddr`); `crash_count` at
//! [`COUNT_VADDR`] in the crasher (setvar `crash_count_vaddr`).
use std::path::Path;

use microkit::host::manifest::{
    ChannelEnd, ChildPd, Manifest, ParentLink, Perms, Region, SectionData, SetVarValue,
};

/// Where the client sees the shared region.
pub const SHARED_CLIENT_VADDR: u64 = 0x400_0000;
/// Where the server sees the shared region.
pub const SHARED_SERVER_VADDR: u64 = 0x500_0000;
/// Where the crasher sees its run count.
pub const COUNT_VADDR: u64 = 0x600_0000;
/// The size of each region.
pub const PAGE: u64 = 0x1000;

/// Read and write, no execute.
pub fn rw() -> Perms {
    Perms {
        read: true,
        write: true,
        execute: false,
    }
}

/// Maps into `pd` a page-sized RW region `name` at `vaddr` backed by the file `path`, with the
/// setvar `symbol` that tells the PD where it is.
pub fn map_page(pd: &mut Manifest, name: &str, vaddr: u64, path: &Path, symbol: &str) {
    pd.regions.push(Region {
        name: name.into(),
        vaddr,
        size: PAGE,
        perms: rw(),
        path: path.into(),
    });
    pd.setvars.push(SetVarValue {
        symbol: symbol.into(),
        value: vaddr,
    });
}

/// The client, server and crasher manifests: control region at `control`, the region files
/// `shared` and `count` (each [`PAGE`] bytes), the server's `.hello_config` section `config`.
pub fn manifests(control: &Path, shared: &Path, count: &Path, config: Vec<u8>) -> [Manifest; 3] {
    let mut client = Manifest::new("client", 0, control);
    map_page(
        &mut client,
        "shared",
        SHARED_CLIENT_VADDR,
        shared,
        "shared_vaddr",
    );
    client.channels.push(ChannelEnd {
        id: 0,
        peer: 1,
        peer_id: 3,
        notify: true,
        pp: true,
    });
    client.channels.push(ChannelEnd {
        id: 2,
        peer: 2,
        peer_id: 0,
        notify: false,
        pp: false,
    });
    client.children.push(ChildPd { id: 1, index: 2 });

    let mut server = Manifest::new("server", 1, control);
    server.passive = true;
    map_page(
        &mut server,
        "shared",
        SHARED_SERVER_VADDR,
        shared,
        "shared_vaddr",
    );
    server.channels.push(ChannelEnd {
        id: 3,
        peer: 0,
        peer_id: 0,
        notify: true,
        pp: false,
    });
    server.sections.push(SectionData {
        name: ".hello_config".into(),
        bytes: config,
    });

    let mut crasher = Manifest::new("crasher", 2, control);
    map_page(
        &mut crasher,
        "crash_count",
        COUNT_VADDR,
        count,
        "crash_count_vaddr",
    );
    crasher.channels.push(ChannelEnd {
        id: 0,
        peer: 0,
        peer_id: 2,
        notify: true,
        pp: false,
    });
    crasher.parent = Some(ParentLink {
        index: 0,
        child_id: 1,
    });
    [client, server, crasher]
}
