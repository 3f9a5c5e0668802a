//! Writes the seed corpora under `corpus/<target>/seed-*` from real inputs: the repository's
//! system descriptions and MAC list, the sDDF config blobs `sdf::net` derives from `system.xml`
//! (byte-identical to sdfgen 0.35's), real frames, and op sequences that drive each component
//! through its normal paths (so the fuzzer starts from working traffic, not from nothing).
//!
//! Run from anywhere: `cargo +nightly run --manifest-path fuzz/Cargo.toml --example seeds`. The
//! output is deterministic and committed; `scripts/fuzz-smoke.sh` does not rerun it.
use std::fs;
use std::path::{Path, PathBuf};

use net_client::mock::frames;
use netvm_api::options::{NetOptions, DRIVER_OFFSETS};
use sdf::net::{derive, parse_mac_list, NetSystemSpec};
use sdf::{parse_str, Arch};
use zerocopy::IntoBytes;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = root().join("fuzz/corpus").join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

fn read(path: &str) -> Vec<u8> {
    fs::read(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn main() {
    // SDF: the real system, valid test systems and a few invalid ones.
    for path in [
        "system.xml",
        "crates/sdf/tests/net/two_clients.system",
        "crates/sdf/tests/valid/driver_vm.xml",
        "crates/sdf/tests/valid/echo_net.xml",
        "crates/sdf/tests/invalid/channel_duplicate_id.xml",
        "crates/sdf/tests/invalid/budget_gt_period.xml",
        "crates/sdf/tests/invalid/channel_pp_to_lower_priority.xml",
    ] {
        let name = Path::new(path).file_name().unwrap().to_str().unwrap();
        write("sdf", name, &read(path));
    }
    // MAC lists.
    let macs_text = read("system.macs");
    write("mac_list", "system.macs", &macs_text);
    write(
        "mac_list",
        "cli",
        b"client0=52:54:01:00:00:10,client1=02:00:00:00:00:21",
    );
    write("mac_list", "mac", b"52:54:01:00:00:10");

    // Config blobs derived from system.xml, as `netvm run` and the Makefile do.
    let text = String::from_utf8(read("system.xml")).unwrap();
    let sys = parse_str(&text, "system.xml", Arch::Aarch64).unwrap();
    let macs = parse_mac_list(std::str::from_utf8(&macs_text).unwrap()).unwrap();
    let spec = NetSystemSpec::infer(&sys, &macs).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for sdf::Section {
        pd,
        name: section,
        bytes: blob,
    } in derive(&sys, &spec).unwrap()
    {
        let selector = match section.as_str() {
            ".net_driver_config" => 0u8,
            ".net_virt_rx_config" => 1,
            ".net_virt_tx_config" => 2,
            ".net_copy_config" => 3,
            ".net_client_config" => 4,
            ".device_resources" => 5,
            _ => continue,
        };
        if !seen.insert(selector) {
            continue;
        }
        let mut seed = vec![selector, 0];
        seed.extend_from_slice(&blob);
        write("config", &format!("{pd}{section}"), &seed);
    }
    let options = NetOptions::new(DRIVER_OFFSETS, 0);
    let mut seed = vec![6, 0];
    seed.extend_from_slice(options.as_bytes());
    write("config", "netvm_net_options", &seed);

    // Pipeline: offset mode, budget 2; frames for both clients, broadcast and multicast, every
    // component stepped, client 0 sending, client 1 misbehaving, the driver transmitting.
    let mut p = vec![0u8, 2];
    for round in 0u8..6 {
        p.extend_from_slice(&[0, round % 5, 60, 0]); // the NIC receives
        p.extend_from_slice(&[2]); // virt_rx
        p.extend_from_slice(&[3, 0, 3, 1]); // both copiers
        p.extend_from_slice(&[5, 1, 100, 0]); // client 0 receives and sends
        p.extend_from_slice(&[6, 0, round, 0, 2, 60, 0, round % 3, 0]); // client 1: garbage
        p.extend_from_slice(&[4, 9, 2]); // virt_tx, driver TX, virt_rx
    }
    write("pipeline", "traffic", &p);
    let mut chaos = p.clone();
    chaos[0] = 1;
    chaos.extend_from_slice(&[10, 1, 3, 2, 0, 2, 0, 0xff, 0xff, 2, 3]);
    write("pipeline", "chaos", &chaos);
    let mut io = vec![2u8, 0];
    for base in [0x5fef_0000u64, 0x6000_0000, 0x6100_0000] {
        io.extend_from_slice(&base.to_le_bytes());
    }
    io.extend_from_slice(&p[2..]);
    write("pipeline", "io_addresses", &io);

    // Queue: capacity 8, a fitting region, zero header, then enqueue/dequeue/rearm/signals.
    let mut q = vec![3u8, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
    for k in 0u8..10 {
        q.extend_from_slice(&[0, 0, k, 2, 60, 0, 1]); // enqueue a plausible descriptor
        q.extend_from_slice(&[7, 3, 6]); // signal, dequeue, rearm
    }
    q.extend_from_slice(&[9, 2, 0, 2, 0, 0x34, 0x12]); // scribble on head
    q.extend_from_slice(&[3, 0, 0, 0, 0]);
    write("queue", "round_trip", &q);

    // uio-driver: one TX region; frames in, buffers provided, descriptors out.
    let mut u = vec![0u8, 1, 0];
    for k in 0u8..4 {
        u.extend_from_slice(&[5, 1, 5, 1]); // virt_rx provides two buffers
        u.extend_from_slice(&[0, 1, 60 + k, 0, 1]); // a 60-byte frame
        u.extend_from_slice(&[2, 6]); // driver RX, virt_rx drains
        u.extend_from_slice(&[7, 0, k, 2, 100, 0, 0]); // virt_tx sends buffer k, oid 0
        u.extend_from_slice(&[3, 8]); // driver TX, virt_tx collects
    }
    write("uio_driver", "traffic", &u);

    // Echo server: static address; ARP, ping, UDP echo, a TCP SYN, processing between.
    let mut e = vec![0u8];
    e.extend_from_slice(&[1, 1]);
    e.extend_from_slice(&[2, 4, 0, 1, 2, 3, 4, 1, 0, 1, 0, 1]);
    e.extend_from_slice(&[3, 3, 5, 0, b'h', b'e', b'l', b'l', b'o', 1]);
    e.extend_from_slice(&[4, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0xff, 0xff, 0, 0, 1]);
    e.extend_from_slice(&[7, 1, 6, 0x10, 0x27, 1, 7, 1]);
    write("echo_server", "arp_ping_udp_tcp", &e);
    let frame = frames::udp(
        [2, 0, 0, 0, 0, 2],
        [2, 0, 0, 0, 0, 1],
        "10.0.0.1".parse().unwrap(),
        "10.0.0.2".parse().unwrap(),
        5000,
        1235,
        b"echo me",
    );
    let mut raw = vec![0u8, 0];
    raw.extend_from_slice(&(frame.len() as u16).to_le_bytes());
    raw.extend_from_slice(&frame);
    raw.extend_from_slice(&[1, 7, 1]);
    write("echo_server", "raw_udp", &raw);

    // VMM faults: a data abort (VMFault) and an hvc (UnknownSyscall).
    let mut f = vec![1u8, 5];
    for mr in [0x4008_0000u64, 0x0900_0000, 0, 0x9380_0046] {
        f.extend_from_slice(&mr.to_le_bytes());
    }
    write("vmm_fault", "vm_fault", &f);
    write(
        "vmm_fault",
        "unknown_syscall",
        &[1, 2, 0, 0, 0, 0x84, 0, 0, 0, 0],
    );

    // vGIC: Linux's boot sequence in miniature: enable the distributor, set a priority, enable
    // INTIDs 27 and 79, inject them, EOI.
    let mut g = Vec::new();
    let mut write_reg = |off: u16, width: u8, value: u32| {
        g.push(1);
        g.extend_from_slice(&off.to_le_bytes());
        g.extend_from_slice(&[width, 2]);
        g.extend_from_slice(&value.to_le_bytes());
    };
    write_reg(0x000, 2, 1);
    write_reg(0x41b, 1, 0xa0);
    write_reg(0x100, 2, 1 << 27);
    write_reg(0x108, 2, 1 << 15);
    for irq in [27u16, 79] {
        g.extend_from_slice(&[1, 0, 0, 2, 4]);
        g.extend_from_slice(&irq.to_le_bytes());
    }
    g.extend_from_slice(&[1, 0, 0, 2, 5, 0, 1, 0, 0, 2, 0, 0xfe, 0x0f, 2, 0]);
    write("vgic", "linux_boot", &g);

    // node_msg: both nodes join (a step), A sends 5000 bytes to B and B 100 to A, time passes
    // on a clean and then a lossy link (every third datagram dropped), A leaves.
    let step = |ms: u16, lossy: u8| {
        let mut v = vec![0, 0, 3];
        v.extend_from_slice(&ms.to_le_bytes());
        v.push(lossy);
        v
    };
    let send = |node: u8, len: u16, dest: u8| {
        let mut v = vec![0, 0, 2, node];
        v.extend_from_slice(&len.to_le_bytes());
        v.extend_from_slice(&[dest, 0x5a]);
        v
    };
    let mut m = vec![1];
    for part in [
        step(10, 0),
        step(10, 0),
        send(0, 5000, 2),
        send(1, 100, 1),
        step(10, 0),
        step(10, 0),
        send(0, 16384, 2),
        step(300, 3),
        step(300, 3),
        vec![0, 0, 4, 0],
        step(300, 0),
    ] {
        m.extend_from_slice(&part);
    }
    write("node_msg", "exchange", &m);
}
