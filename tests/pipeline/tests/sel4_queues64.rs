//! A system with 64-entry queues in page-sized queue regions, on seL4 under QEMU: the same
//! system.xml with every net queue region shrunk to 4 KiB (which would hold 255 entries) and the
//! buffer counts `rx=64,client_rx=64,client_tx=32` given to the image build (Makefile
//! `BUFFERS`, so the PDs' sDDF configs and the guest's device tree get them alike). The guest's
//! uio-driver must report 64-entry queues (it is told, not inferring from the 4 KiB maps), and
//! UDP and TCP echo must work through every client for long enough to wrap each ring many
//! times: a driver and virtualisers that disagreed on a capacity would index the rings
//! differently and lose or corrupt frames. Host mode runs the same system in
//! `netvm/tests/host_e2e.rs`.
//!
//! Needs what `sel4_system` needs (`MICROKIT_SDK`, root, QEMU, `make`); otherwise it says what is
//! missing (`testkit::skip`). `#[ignore]`d: `scripts/test.sh`'s seL4 stage runs it.
#![cfg(target_os = "linux")]

mod sel4;

use sel4::{bench, run, Netns, Qemu, BOOT_TIMEOUT, ECHO};

#[test]
#[ignore = "seL4 on QEMU: scripts/test.sh's seL4 stage"]
fn a_system_with_64_entry_queues_echoes_on_sel4() {
    let Some(sdk) = sel4::prerequisites("sel4_queues64", &[("ping", "-V")]) else {
        return;
    };
    let root = sel4::workspace();
    let build = root.join("build/q64");
    std::fs::create_dir_all(&build).expect("build/q64");
    let system = build.join("system64.xml");
    let text = std::fs::read_to_string(root.join("system.xml")).expect("system.xml");
    std::fs::write(&system, testkit::system::with_64_entry_queue_regions(&text))
        .expect("write system64.xml");
    let image = build.join("loader.img");
    let netvm = sel4::build_with(
        &sdk,
        "release",
        &[
            format!("SYSTEM={}", system.display()),
            format!("BUFFERS={}", testkit::system::QUEUES_64_BUFFERS),
            format!("OUT={}", build.join("sel4").display()),
            format!("IMAGE={}", image.display()),
        ],
    );
    let ns = Netns::create("q64");
    let mut qemu = Qemu::boot_with(&ns, &[format!("BOOT_IMAGE={}", image.display())]);
    let deadline = qemu.console.started + BOOT_TIMEOUT;
    let Some(t) = qemu.wait_for("uio-driver: ready", deadline) else {
        panic!(
            "no 'uio-driver: ready' within {BOOT_TIMEOUT:?}; console:\n{}",
            qemu.console()
        );
    };
    println!(
        "uio-driver ready {:.2} s after `make qemu`",
        t.as_secs_f64()
    );
    // The rest of the ready line may still be on its way.
    let rest = std::time::Instant::now() + std::time::Duration::from_secs(10);
    if qemu.wait_for(" tx_regions=", rest).is_none()
        || qemu
            .wait_for("rx_capacity=64 tx_capacity=64", rest)
            .is_none()
    {
        let console = qemu.console();
        let ready = console.lines().find(|l| l.contains("uio-driver: ready"));
        panic!("the guest's driver does not use the configured 64-entry queues: {ready:?}");
    }
    for (client, ip) in ECHO {
        run(
            ns.exec("ping").args(["-c", "3", "-w", "30", "-W", "5", ip]),
            &format!("ping {client} ({ip})"),
        );
        // ~4,000 frames each way: each 64-entry ring wraps about sixty times.
        for args in [
            &["--proto", "udp", "--rates", "10M", "--duration", "4s"][..],
            &[
                "--proto",
                "tcp",
                "--flows",
                "1",
                "--rates",
                "5M",
                "--duration",
                "4s",
            ][..],
        ] {
            for line in bench(&netvm, &ns, ip, args) {
                println!("{client} {}: {line}", args[1]);
                // Rings indexed differently lose most frames; a healthy system at this rate
                // loses none (BENCHMARKS.md), so 5% leaves room for a loaded CI machine.
                let loss: f64 = line
                    .split(", ")
                    .find_map(|f| f.strip_prefix("loss "))
                    .and_then(|f| f.split('%').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("no loss in {line}"));
                assert!(loss < 5.0, "{client} {}: {loss}% lost: {line}", args[1]);
            }
        }
    }
    qemu.assert_console_clean(&["Kernel panic", "unexpected guest fault", "refused request"]);
    println!("PASS sel4_queues64");
}
