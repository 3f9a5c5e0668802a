//! Host mode end to end: the real system.xml, every PD a process, the driver on a real veth in a
//! network namespace the test creates, real kernel peers. Checks ARP, ping, UDP and TCP echo on
//! both clients, broadcast delivery to both, that unicast to client 0 never reaches client 1
//! (from virt_rx's counters and from the pcap files, read back with tcpdump too), that each
//! client's timer wakes it to retransmit a SYN-ACK nobody answered, that every
//! sDDF buffer is back in a queue once the system is idle, and that killing one client leaves
//! the other echoing while the runner reports the fault by PD name. Needs root (network
//! namespaces); otherwise it says it was skipped.
mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::system::{
    assert_buffers_accounted, counters, delta, echo_check, exclusive, one_at_a_time, ping,
    system_bins, Running, ALL_UP, BOTH_CLIENTS,
};
use netvm::demo::lan;

/// Destination MACs of every frame in a pcap file.
fn pcap_destinations(path: &Path) -> Vec<[u8; 6]> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = pcap_file::pcap::PcapReader::new(file).expect("a pcap file");
    let mut out = Vec::new();
    while let Some(packet) = reader.next_packet() {
        let packet = packet.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        out.push(packet.data[..6].try_into().expect("an Ethernet header"));
    }
    out
}

#[test]
fn host_mode_echo_system_end_to_end() {
    let Some(_one) = exclusive("host_e2e") else {
        return;
    };
    let root = common::workspace();
    let pcap = common::temp_dir("e2e-pcap");
    let mut sys = Running::echo_system(
        "nvt",
        &[
            "--echo-ips".as_ref(),
            BOTH_CLIENTS.as_ref(),
            "--on-fault".as_ref(),
            "continue".as_ref(),
            "--pcap".as_ref(),
            pcap.as_os_str(),
        ],
        &ALL_UP,
    );
    let peer = sys.peer();

    // ARP and ping: each ping first broadcasts an ARP request, which virt_rx must deliver to
    // every client (broadcast) and only the addressed client answers.
    for target in lan::CLIENTS {
        assert!(ping(&peer, target), "ping {target}");
    }
    let neigh = Command::new("ip")
        .args(["-n", &peer, "neigh"])
        .output()
        .unwrap();
    let neigh = String::from_utf8_lossy(&neigh.stdout);
    let macs = std::fs::read_to_string(root.join("system.macs")).unwrap();
    for (target, mac) in lan::CLIENTS
        .iter()
        .zip(macs.lines().filter(|l| !l.starts_with('#')))
    {
        let mac = mac.split_once('=').unwrap().1;
        assert!(
            neigh
                .lines()
                .any(|l| l.starts_with(&format!("{target} ")) && l.contains(mac)),
            "ARP for {target} should resolve to {mac}: {neigh}"
        );
    }

    let view = sys.view();
    assert_buffers_accounted(&view, "after ARP and ping", &[]);
    // Every component's page reads; the driver VM's page (system.xml maps
    // `netvm/stats/driver_vm` into the VM only) is no component here: host mode runs no VM,
    // and its stand-in publishes the driver's counters in the vmm's page.
    let components = view.stats();
    for c in &components {
        assert!(c.snapshot.is_ok(), "{}: {:?}", c.pd, c.snapshot);
    }
    assert!(!components.iter().any(|c| c.pd == "driver_vm"));
    assert!(components.iter().any(|c| c.pd == "vmm"));

    // UDP and TCP echo on both clients: every echo verified byte for byte by the bench. While
    // only client 0 is addressed, client 1 gets exactly the broadcast and multicast frames.
    for (i, target) in lan::CLIENTS.iter().enumerate() {
        let before = counters(&view, "net_virt_rx");
        for proto in ["udp", "tcp"] {
            let (received, bad) = echo_check(&peer, target, proto);
            assert!(
                received > 10_000_000,
                "{proto} echo from {target}: {received} b/s"
            );
            assert_eq!(bad, 0, "{proto} echo from {target}: bad packets");
        }
        let after = counters(&view, "net_virt_rx");
        // The first window is clean: nothing was ever unicast to client 1 but a ping that was
        // answered before it began. (In the second, late TCP segments of the first may still
        // reach client 0 legitimately; the pcaps below check that direction exactly.)
        if i == 0 {
            let shared = delta(&before, &after, "driver.broadcast")
                + delta(&before, &after, "driver.multicast");
            let to_client1 = delta(&before, &after, "client1.frames")
                + delta(&before, &after, "client1.dropped_full");
            assert_eq!(
                to_client1, shared,
                "while only client0 was addressed, client1 got {to_client1} frames, not just the {shared} broadcast/multicast ones\nbefore: {before:?}\nafter: {after:?}"
            );
        }
        assert!(delta(&before, &after, &format!("client{i}.frames")) > 1000);
        assert_buffers_accounted(&view, &format!("after echo to {target}"), &[]);
    }

    // The pcaps agree: each client's RX capture holds no frame unicast to the other.
    let macs_text = std::fs::read_to_string(root.join("system.macs")).unwrap();
    let macs: Vec<[u8; 6]> = macs_text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| sdf::net::parse_mac(l.split_once('=').unwrap().1).unwrap())
        .collect();
    for (i, mac) in macs.iter().enumerate() {
        let own = pcap_destinations(&pcap.join(format!("client{i}-rx.pcap")));
        let other = pcap_destinations(&pcap.join(format!("client{}-rx.pcap", 1 - i)));
        assert!(
            own.iter().filter(|d| *d == mac).count() > 1000,
            "client{i}-rx.pcap"
        );
        assert!(
            !other.contains(mac),
            "client{}-rx.pcap holds a frame unicast to client{i}",
            1 - i
        );
        assert!(own.contains(&[0xff; 6]), "broadcast reaches client{i}");
    }
    let driver_rx = pcap_destinations(&pcap.join("driver-rx.pcap"));
    assert!(
        driver_rx.len() > 4000,
        "driver-rx.pcap: {} frames",
        driver_rx.len()
    );
    match Command::new("tcpdump")
        .args(["-n", "-r"])
        .arg(pcap.join("client0-tx.pcap"))
        .output()
    {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "tcpdump: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                text.lines().any(|l| l.contains("10.0.0.10.1235 >")),
                "tcpdump sees the UDP echoes"
            );
        }
        Err(e) => testkit::skip(
            "host_e2e reading the pcap files with tcpdump",
            format_args!("{e} (scripts/setup.sh installs tcpdump)"),
        ),
    }

    // Each client wakes by itself through its timer (`.timer_client_config`, the timer PD):
    // a SYN whose SYN-ACK is never answered gets the SYN-ACK again with no other traffic.
    for target in lan::CLIENTS {
        let out = Command::new("ip")
            .args(["netns", "exec", &peer, "python3"])
            .arg(root.join("scripts/synack_probe.py"))
            .args(["peer0", target, "1236", "20"])
            .output()
            .expect("python3");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{target} never retransmitted its SYN-ACK (its timer does not wake it): {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("{target}: {}", text.trim());
    }

    // Kill client1: the runner reports it by name and client0 keeps echoing.
    let pid = sys.pd_pid("client1").expect("client1's process");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    sys.wait_line("fault report for client1", Duration::from_secs(10), |l| {
        l.contains("client1") && (l.contains("killed") || l.contains("MON|ERROR"))
    });
    let (received, bad) = echo_check(&peer, lan::CLIENTS[0], "udp");
    assert!(
        received > 10_000_000 && bad == 0,
        "client0 after client1 died: {received} b/s, {bad} bad"
    );
    // A dead client's buffers stay in its queues: still every one accounted for.
    assert_buffers_accounted(&view, "after client1 died", &[]);
    drop(view);
    drop(sys);
    let _ = std::fs::remove_dir_all(&pcap);
    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&left.stdout).contains(&format!("nvt{}", std::process::id())),
        "namespaces left behind"
    );
}

#[test]
fn an_echo_client_takes_its_address_from_a_real_dhcp_server() {
    let Some(_one) = exclusive("host_e2e DHCP") else {
        return;
    };
    let dir = common::temp_dir("dhcp");
    let mut sys = Running::echo_system(
        "nvd",
        &[
            "--echo-ips".as_ref(),
            "client0=10.0.0.10/24,client1=dhcp".as_ref(),
            "--pcap".as_ref(),
            dir.as_os_str(),
        ],
        &ALL_UP,
    );
    let peer = sys.peer();
    // dnsmasq as the LAN's DHCP server (no DNS), leasing from 10.0.0.50..60, started after the
    // client so that its first DISCOVERs go unanswered and only its retries (timer) succeed.
    let mut cmd = netvm::demo::Lan::exec(&peer, Path::new("/usr/sbin/dnsmasq"));
    cmd.args([
        "--no-daemon",
        "--port=0",
        "--conf-file=/dev/null",
        "--interface=peer0",
        "--bind-interfaces",
        "--user=root",
        "--dhcp-range=10.0.0.50,10.0.0.60,255.255.255.0,1h",
    ])
    .arg(format!("--dhcp-leasefile={}", dir.join("leases").display()))
    .arg(format!("--pid-file={}", dir.join("pid").display()))
    .arg("--log-dhcp")
    .arg(format!(
        "--log-facility={}",
        dir.join("dnsmasq.log").display()
    ))
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    std::thread::sleep(Duration::from_secs(2));
    match sys.lan.spawn("dnsmasq", cmd) {
        Ok(_) => {}
        Err(e) => {
            testkit::skip(
                "host_e2e DHCP",
                format_args!("cannot start dnsmasq (scripts/setup.sh installs it): {e}"),
            );
            return;
        }
    }
    sys.wait_line(
        &format!(
            "client1's DHCP lease (see dnsmasq.log and client1-rx/tx.pcap in {})",
            dir.display()
        ),
        Duration::from_secs(30),
        |l| l.contains("client1: address 10.0.0.5") || l.contains("client1: address 10.0.0.60"),
    );
    let line = sys
        .seen
        .iter()
        .find(|l| l.contains("client1: address 10.0.0."))
        .cloned()
        .unwrap();
    let addr = line.rsplit(' ').next().unwrap().to_string();
    let leases = std::fs::read_to_string(dir.join("leases")).unwrap_or_default();
    assert!(leases.contains(&addr), "dnsmasq leased {addr}: {leases}");
    assert!(ping(&peer, &addr), "ping the leased address {addr}");
    let (received, bad) = echo_check(&peer, &addr, "udp");
    assert!(
        received > 10_000_000 && bad == 0,
        "UDP echo at {addr}: {received} b/s, {bad} bad"
    );
    drop(sys);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_main_job_runs_unprivileged_in_a_user_namespace() {
    use std::os::unix::fs::PermissionsExt;
    let as_nobody = |args: &[&str]| {
        Command::new("runuser")
            .args(["-u", "nobody", "--"])
            .args(args)
            .output()
    };
    let probe = as_nobody(&["unshare", "--user", "--map-root-user", "--net", "true"]);
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        testkit::skip(
            "unprivileged demo",
            format_args!(
                "cannot run as nobody in an unprivileged user namespace here ({:?})",
                probe.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            ),
        );
        return;
    }
    let _one = one_at_a_time();
    let bins = system_bins();
    let root = common::workspace();
    let out = common::temp_dir("userns-demo");
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    // What nobody runs and reads is staged where nobody can reach it: the checkout may sit in
    // a folder only root can enter (as `mktemp -d` makes them). Hard links where possible.
    let staged = out.join("bin");
    std::fs::create_dir(&staged).unwrap();
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755)).unwrap();
    for entry in std::fs::read_dir(&bins).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
            let to = staged.join(entry.file_name());
            if std::fs::hard_link(entry.path(), &to).is_err() {
                std::fs::copy(entry.path(), &to).unwrap();
            }
        }
    }
    let netvm = staged.join("netvm");
    let system = out.join("system.xml");
    let macs = out.join("system.macs");
    std::fs::copy(root.join("system.xml"), &system).unwrap();
    std::fs::copy(root.join("system.macs"), &macs).unwrap();
    let out_dir = out.join("demo");
    std::fs::create_dir(&out_dir).unwrap();
    std::fs::set_permissions(&out_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let run = as_nobody(&[
        netvm.to_str().unwrap(),
        "demo",
        "--system",
        system.to_str().unwrap(),
        "--macs",
        macs.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--udp-rates",
        "20M",
        "--tcp-rates",
        "20M",
        "--warmup",
        "300ms",
        "--duration",
        "1s",
        "--cooldown",
        "300ms",
    ])
    .expect("runuser");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "demo as nobody failed:\n{stdout}\n{stderr}"
    );
    assert!(stderr.contains("unprivileged user namespace"), "{stderr}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("udp ") && l.contains("20 Mb/s")),
        "{stdout}"
    );
    assert_eq!(stdout.matches("all accounted for").count(), 4, "{stdout}");
    // Split by default: the load generator on CPUs of its own (receive steering may not be
    // permitted without root in the first user namespace; the line says so then).
    let cpus = stdout.lines().find(|l| l.starts_with("cpus: echo side"));
    assert!(cpus.is_some(), "{stdout}");
    eprintln!("{}", cpus.unwrap_or_default());
    std::fs::remove_dir_all(&out).ok();
}

/// The real system.xml with every queue region shrunk to one page
/// (`testkit::system::with_64_entry_queue_regions`), written into `dir`. Returns its path.
fn system_with_64_entry_queues(dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(common::workspace().join("system.xml")).unwrap();
    let xml = dir.join("system64.xml");
    std::fs::write(&xml, testkit::system::with_64_entry_queue_regions(&text)).unwrap();
    xml
}

#[test]
fn a_system_with_64_entry_queues_in_page_sized_regions_echoes() {
    let Some(_one) = exclusive("host_e2e 64-entry queues") else {
        return;
    };
    let bins = system_bins();
    let dir = common::temp_dir("e2e-64");
    let xml = system_with_64_entry_queues(&dir);
    let mut sys = Running::start(
        "nv64",
        &xml,
        &bins,
        &[
            // 64 RX buffers, 64 RX and 32 TX per client: the driver's TX queue is 64 too.
            "--buffers".as_ref(),
            testkit::system::QUEUES_64_BUFFERS.as_ref(),
            "--echo-ips".as_ref(),
            BOTH_CLIENTS.as_ref(),
        ],
        &ALL_UP,
    );
    // The driver uses the configured 64, not what a 4 KiB map could hold.
    sys.wait_for("rx_capacity=64 tx_capacity=64", Duration::from_secs(1));
    let peer = sys.peer();
    for target in lan::CLIENTS {
        assert!(ping(&peer, target), "ping {target}");
        let (received, bad) = echo_check(&peer, target, "udp");
        assert!(
            received > 1_000_000 && bad == 0,
            "UDP echo from {target} with 64-entry queues: {received} b/s, {bad} bad"
        );
    }
    // No buffer accounting here: the observer (`sdf::net::buffer_pools_of`) still assumes the
    // default capacities of a system description rather than reading its configs.
    drop(sys);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A driver-VM system that sdfgen generated itself, with a topology system.xml does not have
/// (three clients), run from sdfgen's own serialised blobs (`--sdfgen-dir`) rather than configs
/// derived by netvm: every client answers. (It used to come up, say ready, and never answer: the
/// blobs carry no options section, so the virtualisers expected IO addresses from a driver that
/// speaks offsets.)
#[test]
fn a_driver_vm_system_from_sdfgens_own_blobs_echoes_on_every_client() {
    let Some(_one) = exclusive("host_e2e sdfgen blobs") else {
        return;
    };
    let root = common::workspace();
    let python = root.join(".venv/bin/python");
    if !python.exists() {
        testkit::skip(
            "host_e2e sdfgen blobs",
            format_args!(
                "no venv at {} (scripts/setup.sh makes it)",
                python.display()
            ),
        );
        return;
    }
    let bins = system_bins();
    let dir = common::temp_dir("e2e-sdfgen");
    let (xml, macs, blobs) = (
        dir.join("sys3.xml"),
        dir.join("sys3.macs"),
        dir.join("blobs"),
    );
    std::fs::write(&macs, "").unwrap();
    let out = Command::new(&python)
        .arg(root.join("scripts/gen_system.py"))
        .arg(&xml)
        .arg(&macs)
        .env("NETVM_GEN_CLIENTS", "3")
        .env("NETVM_GEN_BLOBS", &blobs)
        .output()
        .expect("gen_system.py");
    assert!(
        out.status.success(),
        "gen_system.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let clients = ["10.0.0.10", "10.0.0.11", "10.0.0.12"];
    let sys = Running::start(
        "nvsg",
        &xml,
        &bins,
        &[
            "--sdfgen-dir".as_ref(),
            blobs.as_os_str(),
            "--echo-ips".as_ref(),
            "client0=10.0.0.10/24,client1=10.0.0.11/24,client2=10.0.0.12/24".as_ref(),
        ],
        &[
            "uio-driver: ready",
            "client0: echo server up",
            "client1: echo server up",
            "client2: echo server up",
        ],
    );
    let peer = sys.peer();
    for target in clients {
        assert!(ping(&peer, target), "ping {target}");
        let (received, bad) = echo_check(&peer, target, "udp");
        assert!(
            received > 1_000_000 && bad == 0,
            "UDP echo from {target} (sdfgen's blobs): {received} b/s, {bad} bad"
        );
    }
    drop(sys);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `netvm demo --cpus split` steers each side's links' receive processing to that side's CPUs
/// (RPS); this reads the mask back from the device in its namespace.
#[test]
fn the_demo_steers_a_links_receive_processing_to_the_given_cpus() {
    use netvm::demo::cpus;
    let Some(_one) = exclusive("demo receive steering") else {
        return;
    };
    let allowed = cpus::allowed_cpus().unwrap();
    let split = cpus::Split::of(&allowed).expect("at least two CPUs");
    let ns = format!("nvcpu{}", std::process::id());
    let ip = |args: &[&str]| assert!(Command::new("ip").args(args).status().unwrap().success());
    ip(&["netns", "add", &ns]);
    ip(&[
        "-n", &ns, "link", "add", "a0", "type", "veth", "peer", "name", "b0",
    ]);
    let read = |dev: &str| {
        let out = Command::new("ip")
            .args(["netns", "exec", &ns, "cat"])
            .arg(format!("/sys/class/net/{dev}/queues/rx-0/rps_cpus"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let steered = cpus::steer_receive(&ns, "a0", &split.echo)
        .and_then(|()| cpus::steer_receive(&ns, "b0", &split.generator));
    let (a, b) = (read("a0"), read("b0"));
    let missing = cpus::steer_receive(&ns, "nosuchdev", &split.echo);
    ip(&["netns", "del", &ns]);
    steered.unwrap();
    // The kernel prints the mask in as many 32-bit words as the machine has CPUs for.
    let value = |m: &str| u128::from_str_radix(&m.replace(',', ""), 16).unwrap();
    assert_eq!(value(&a), value(&cpus::rps_mask(&split.echo)), "{a}");
    assert_eq!(value(&b), value(&cpus::rps_mask(&split.generator)), "{b}");
    assert_ne!(value(&a), value(&b));
    let e = missing.unwrap_err().to_string();
    assert!(e.contains("nosuchdev") && e.contains(&ns), "{e}");
}
