//! Guest smoke test: builds the guest (or reuses the cache), boots it on qemu-system-aarch64
//! (`virt`, cortex-a53, TCG, no slirp: the NIC's backend is a unix datagram socket), waits for
//! the uio-driver's ready line, checks that `/init` found every UIO region by name at the
//! address and size of the device tree, then powers the guest off through the console.
//!
//! qemu-system-aarch64 missing is a failure, not a skip: scripts/setup-guest.sh installs it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use guest_image::layout::names;
use guest_image::{build, BuildOptions, GuestLayout};

const RAM_MIB: u64 = 512;
/// From QEMU start to the ready line; a boot takes about 3–5 s under TCG on a 2-core host.
const READY_TIMEOUT: Duration = Duration::from_secs(45);
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(15);
const READY_LINE: &str = "uio-driver: ready";

/// Kills QEMU if the test fails half-way.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

#[test]
fn guest_boots_and_uio_driver_finds_every_region() {
    let t0 = Instant::now();
    let qemu_bin = "qemu-system-aarch64";
    if let Err(e) = Command::new(qemu_bin).arg("--version").output() {
        panic!("{qemu_bin} is not available ({e}): run scripts/setup-guest.sh");
    }

    let mut layout = GuestLayout::qemu_virt(RAM_MIB << 20, 2, 0x4000, 0x10_0000);
    layout.bootargs.push_str(" quiet");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("guest-smoke");
    let o = BuildOptions::new(&out, layout.clone());
    let img = build(&o).unwrap_or_else(|e| panic!("guest build: {e}"));
    let build_time = t0.elapsed();
    println!(
        "guest build {:.1} s: Image {} B, initrd {} B, dtb {} B; kernel {} {}",
        build_time.as_secs_f64(),
        size(&img.kernel),
        size(&img.initrd),
        size(&img.dtb),
        img.kernel_set.abi,
        img.kernel_set.version
    );

    // The NIC's backend: datagrams between QEMU's socket and ours, no IP ports to collide on.
    let dir = std::env::temp_dir().join(format!("guest-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (host_sock, qemu_sock) = (dir.join("host.sock"), dir.join("qemu.sock"));
    let _peer = UnixDatagram::bind(&host_sock).unwrap();

    let boot = Instant::now();
    let mut qemu = Qemu(
        Command::new(qemu_bin)
            .args([
                "-M",
                "virt",
                "-cpu",
                "cortex-a53",
                "-smp",
                "1",
                "-m",
                &format!("{RAM_MIB}M"),
            ])
            .args(["-nographic", "-nic", "none", "-no-reboot"])
            .args(["-global", "virtio-mmio.force-legacy=false"])
            .arg("-netdev")
            .arg(format!(
                "dgram,id=n0,local.type=unix,local.path={},remote.type=unix,remote.path={}",
                qemu_sock.display(),
                host_sock.display()
            ))
            .args([
                "-device",
                "virtio-net-device,netdev=n0,mac=52:54:00:12:34:56",
            ])
            .arg("-kernel")
            .arg(&img.kernel)
            .arg("-initrd")
            .arg(&img.initrd)
            .arg("-dtb")
            .arg(&img.dtb)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start qemu-system-aarch64"),
    );
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = qemu.0.stdout.take().unwrap();
    let stderr = qemu.0.stderr.take().unwrap();
    for stream in [
        Box::new(stdout) as Box<dyn std::io::Read + Send>,
        Box::new(stderr),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);

    let mut console = Vec::new();
    let mut ready = None;
    while ready.is_none() {
        let left = READY_TIMEOUT.saturating_sub(boot.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if line.contains(READY_LINE) {
                    ready = Some(boot.elapsed());
                }
                console.push(line);
            }
            Err(_) => panic!(
                "no '{READY_LINE}' within {READY_TIMEOUT:?} of QEMU start; console:\n{}",
                console.join("\n")
            ),
        }
    }
    let ready = ready.unwrap();
    let text = console.join("\n");
    let ready_line = console.iter().find(|l| l.contains(READY_LINE)).unwrap();
    assert!(ready_line.contains("iface=eth0"), "{ready_line}");
    // The capacities come from the device tree's driver config, not the 16 KiB queue maps.
    let cap = guest_image::layout::STANDALONE_QUEUE_CAPACITY;
    assert!(
        ready_line.contains(&format!("rx_capacity={cap} tx_capacity={cap}")),
        "{ready_line}"
    );

    // Every region is a UIO device named after its node, at the device tree's address and size.
    for r in &layout.uio_regions {
        let want = format!(
            "name={} map0={:#018x}+{:#018x}",
            r.name, r.reg.base, r.reg.size
        );
        assert!(
            text.contains(&want),
            "'{want}' missing from the console:\n{text}"
        );
    }
    for irq in [names::RX_IRQ, names::TX_IRQ] {
        let want = format!("name={irq} irq-only");
        assert!(
            text.contains(&want),
            "'{want}' missing from the console:\n{text}"
        );
    }
    let uio_count = 2 + layout.uio_regions.len();
    assert!(text.contains(&format!("{uio_count} UIO devices")), "{text}");

    // Clean power-off through /init.
    let stdin = qemu.0.stdin.as_mut().unwrap();
    stdin.write_all(b"netvm.poweroff\n").unwrap();
    stdin.flush().unwrap();
    let off = Instant::now();
    let status = loop {
        if let Some(s) = qemu.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            off.elapsed() < POWEROFF_TIMEOUT,
            "guest did not power off; console:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(
        status.success(),
        "qemu exit {status}; console:\n{text}\n{}",
        rest.join("\n")
    );
    assert!(
        rest.iter().any(|l| l.contains("powering off")),
        "{}",
        rest.join("\n")
    );
    println!(
        "boot to '{READY_LINE}' {:.2} s, power-off {:.2} s, whole test {:.1} s",
        ready.as_secs_f64(),
        off.elapsed().as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
