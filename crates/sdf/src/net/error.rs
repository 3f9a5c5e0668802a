//! Why the sDDF net configs could not be derived.
//!
//! Errors about the system description start with the `file:line:col` of the element involved
//! (the `<system>` element when the thing is missing altogether); errors about the
//! [`NetSystemSpec`](super::NetSystemSpec) or the MAC list name the client or value instead. The
//! doc comment of each variant is its message.

use std::path::PathBuf;

use crate::model::SourcePos;

/// Why the sDDF net configs of a system could not be derived or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// no protection domain '{pd}' (the {role})
    #[error("{at}: no protection domain '{pd}' (the {role})")]
    MissingPd {
        /// The `<system>` element.
        at: SourcePos,
        /// The PD the spec names.
        pd: String,
        /// Its role: "driver", "virt_rx", "copier of client0", ...
        role: String,
    },
    /// protection domain '{pd}' is both the {first} and the {second}
    #[error("protection domain '{pd}' is both the {first} and the {second}")]
    RoleClash {
        /// The PD.
        pd: String,
        /// Its first role.
        first: String,
        /// Its second role.
        second: String,
    },
    /// no memory region '{mr}' ({what})
    #[error("{at}: no memory region '{mr}' ({what})")]
    MissingMr {
        /// The `<system>` element.
        at: SourcePos,
        /// The region the naming convention asks for.
        mr: String,
        /// What it would hold.
        what: String,
    },
    /// protection domain '{pd}' does not map '{mr}'
    #[error("{at}: protection domain '{pd}' does not map '{mr}'")]
    MissingMap {
        /// The `<protection_domain>` element.
        at: SourcePos,
        /// The PD.
        pd: String,
        /// The region.
        mr: String,
    },
    /// protection domain '{pd}' maps '{mr}' more than once, so its config address is ambiguous
    #[error(
        "{at}: protection domain '{pd}' maps '{mr}' more than once, so its config address is ambiguous"
    )]
    DuplicateMap {
        /// The second `<map>`.
        at: SourcePos,
        /// The PD.
        pd: String,
        /// The region.
        mr: String,
    },
    /// memory region '{mr}' is {size:#x} bytes, too small for {what} ({needed:#x} bytes)
    #[error(
        "{at}: memory region '{mr}' is {size:#x} bytes, too small for {what} ({needed:#x} bytes)"
    )]
    MrTooSmall {
        /// The `<memory_region>` element.
        at: SourcePos,
        /// The region.
        mr: String,
        /// Its size.
        size: u64,
        /// The bytes the configured capacity needs.
        needed: u64,
        /// What it must hold.
        what: String,
    },
    /// memory region '{mr}' has no phys_addr, but '{pd}' needs its IO address
    #[error("{at}: memory region '{mr}' has no phys_addr, but '{pd}' needs its IO address")]
    NoPhysAddr {
        /// The `<memory_region>` element.
        at: SourcePos,
        /// The region.
        mr: String,
        /// The PD whose config holds the IO address.
        pd: String,
    },
    /// no channel between '{pd}' and '{peer}'
    #[error("{at}: no channel between '{pd}' and '{peer}'")]
    MissingChannel {
        /// The `<protection_domain>` element of `pd`.
        at: SourcePos,
        /// The PD whose config needs the channel id.
        pd: String,
        /// The peer.
        peer: String,
    },
    /// a second channel between '{pd}' and '{peer}' makes the queue's channel id ambiguous
    #[error(
        "{at}: a second channel between '{pd}' and '{peer}' makes the queue's channel id ambiguous"
    )]
    DuplicateChannel {
        /// The second `<channel>`.
        at: SourcePos,
        /// One PD.
        pd: String,
        /// The other.
        peer: String,
    },
    /// driver '{pd}' has no irq {irq} for its device resources
    #[error("{at}: driver '{pd}' has no irq {irq} for its device resources")]
    MissingIrq {
        /// The driver's `<protection_domain>` element.
        at: SourcePos,
        /// The driver PD.
        pd: String,
        /// The hardware IRQ number the spec lists.
        irq: u64,
    },
    /// {what}: capacity {value} is not a power of two in 1..=32768
    #[error("{what}: capacity {value} is not a power of two in 1..=32768")]
    BadCapacity {
        /// Which queue pair.
        what: String,
        /// The capacity given or computed.
        value: u64,
    },
    /// client '{client}' has no copier, so it shares virt_rx's RX queue of {system} buffers, but its spec asks for {client_rx}
    #[error(
        "client '{client}' has no copier, so it shares virt_rx's RX queue of {system} buffers, but its spec asks for {client_rx}"
    )]
    RxBuffersWithoutCopier {
        /// The client.
        client: String,
        /// The system's RX DMA buffer count.
        system: u16,
        /// The client's `rx_buffers`.
        client_rx: u16,
    },
    /// {count} clients: sDDF net configs hold 1 to 64
    #[error("{count} clients: sDDF net configs hold 1 to 64")]
    ClientCount {
        /// Clients in the spec.
        count: usize,
    },
    /// {count} {what}: device_resources holds at most 64
    #[error("{count} {what}: device_resources holds at most 64")]
    DeviceCount {
        /// Entries in the spec.
        count: usize,
        /// "device regions" or "device irqs".
        what: &'static str,
    },
    /// clients '{first}' and '{second}' have the same MAC address {mac}
    #[error("clients '{first}' and '{second}' have the same MAC address {mac}")]
    DuplicateMac {
        /// The earlier client.
        first: String,
        /// The later client.
        second: String,
        /// The address, `aa:bb:cc:dd:ee:ff`.
        mac: String,
    },
    /// client '{client}' has the multicast MAC address {mac}; a client needs a unicast one
    #[error("client '{client}' has the multicast MAC address {mac}; a client needs a unicast one")]
    MulticastMac {
        /// The client.
        client: String,
        /// The address.
        mac: String,
    },
    /// '{text}' is not a MAC address (want aa:bb:cc:dd:ee:ff)
    #[error("'{text}' is not a MAC address (want aa:bb:cc:dd:ee:ff)")]
    BadMac {
        /// The text given.
        text: String,
    },
    /// bad buffer counts '{text}': {reason}
    #[error("bad buffer counts '{text}': {reason} (want e.g. rx=64,client_rx=64,client_tx=32)")]
    BadBufferCounts {
        /// The text given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// '{text}' is not a client=MAC entry (want client0=52:54:01:00:00:10)
    #[error("'{text}' is not a client=MAC entry (want client0=52:54:01:00:00:10)")]
    BadMacEntry {
        /// The entry given.
        text: String,
    },
    /// no MAC address for client '{client}' (give one as {client}=aa:bb:cc:dd:ee:ff)
    #[error("no MAC address for client '{client}' (give one as {client}=aa:bb:cc:dd:ee:ff)")]
    MissingMac {
        /// The client.
        client: String,
    },
    /// the MAC address of client '{client}' is given twice
    #[error("the MAC address of client '{client}' is given twice")]
    MacGivenTwice {
        /// The client.
        client: String,
    },
    /// a MAC address is given for '{name}', which is not a net client of this system
    #[error("a MAC address is given for '{name}', which is not a net client of this system")]
    MacForNonClient {
        /// The name in the MAC list.
        name: String,
    },
    /// cannot infer the net system: {reason}
    #[error("{at}: cannot infer the net system: {reason}")]
    Infer {
        /// The `<system>` element, or the element that makes the system ambiguous.
        at: SourcePos,
        /// What is missing or ambiguous.
        reason: String,
    },
    /// cannot read sdfgen output {path}: {source}
    #[error("cannot read sdfgen output {}: {source}", path.display())]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// sdfgen output {path} is missing (expected for {pd})
    #[error("sdfgen output {} is missing (expected for {pd})", path.display())]
    MissingBlob {
        /// The file.
        path: PathBuf,
        /// The PD it configures.
        pd: String,
    },
    /// sdfgen output {path} is not a config of this system's net PDs
    #[error("sdfgen output {} is not a config of this system's net PDs", path.display())]
    UnknownBlob {
        /// The file.
        path: PathBuf,
    },
    /// sdfgen output {path}: {error}
    #[error("sdfgen output {}: {error}", path.display())]
    BadBlob {
        /// The file.
        path: PathBuf,
        /// What the config parser found.
        error: sddf::config::ConfigError,
    },
}
