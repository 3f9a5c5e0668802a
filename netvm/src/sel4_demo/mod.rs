//! `netvm sel4-demo`: the main job. Builds the seL4 image of `system.xml` (`make
//! MICROKIT_CONFIG=release`), boots it on QEMU, and measures it against Linux alone on the same
//! emulated machine, in the same run:
//!
//! ```text
//!  ns <p>-0: tap0 10.0.0.1/24 ── QEMU: seL4 image (driver VM + PDs), client0 10.0.0.10, client1 .11
//!  ns <p>-1: tap0 10.0.0.1/24 ── QEMU: the guest's kernel alone, /bin/kernel-echo on 10.0.0.20
//!                                (--reference reflect: the uio-driver's reflector on .20)
//!  ns <p>-2: tap0 10.0.0.1/24 ── QEMU: --peer-image (any Microkit echo image), DHCP from dnsmasq
//! ```
//!
//! Every machine is booted by the Makefile (`make qemu`, `make qemu-reference`: one QEMU command
//! line, so the reference has the seL4 image's machine and NIC options), on a tap in a private
//! network namespace of its own (never slirp), one after the other; once it answers ping and UDP
//! echo it is paused over QMP (`stop`), so an idle machine costs no host CPU while another is
//! measured. The sweeps then alternate per point: for each rate, each machine in turn is
//! resumed, measured with `netvm bench` from its namespace, and paused again. One table of every
//! point comes out at the end (and `summary.csv`, per-machine CSV, counts and SVG files).
//!
//! Everything (QEMU process groups, dnsmasq, namespaces) is torn down at the end, on error and
//! on Ctrl-C / SIGTERM.

mod events;
mod machines;
mod report;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::bench::{csv, svg};
use crate::demo::{
    bench_points, check_interrupt, err, payload_size, run_cmd, wait_child, Result, Sweep,
};
pub use events::Events;
use machines::{boot, Kind, Machine, REFERENCE_IP};
pub(crate) use machines::{copy_output, udp_echoes};
use report::{mbps, ms};
pub use report::{Sel4Summary, TableRow};

/// What `netvm sel4-demo` does.
#[derive(Debug, Clone)]
pub struct Sel4DemoOptions {
    /// The workspace whose Makefile builds and boots the image.
    pub workspace: PathBuf,
    /// Where CSV, SVG, console and summary files go.
    pub out_dir: PathBuf,
    /// The rates and how each point is measured.
    pub sweep: Sweep,
    /// Build the image first (`make MICROKIT_CONFIG=release`).
    pub build: bool,
    /// Which reference (the guest kernel alone) to measure too, if any.
    pub reference: Option<ReferenceMode>,
    /// Other Microkit echo images (plain or gzip'd) measured in the same run.
    pub peer_images: Vec<PathBuf>,
}

/// What the reference machine (the guest's kernel booted without seL4) runs
/// (`--reference echo|reflect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReferenceMode {
    /// Linux alone: the kernel echo on an addressed NIC (`make qemu-reference`).
    Echo,
    /// The driver's packet path alone: the NIC as in the driver VM and the uio-driver's
    /// reflector answering UDP (`make qemu-reference REF_MODE=reflect`, with the driver VM's
    /// kernel tuning). UDP only. Booted alone this path measured slower than inside seL4's VM
    /// (BENCHMARKS.md), so it is a reference for Linux, not a bound for the driver VM.
    Reflect,
}

impl ReferenceMode {
    /// Its label in the tables.
    pub fn label(self) -> &'static str {
        match self {
            ReferenceMode::Echo => "Linux alone",
            ReferenceMode::Reflect => "Linux packet path",
        }
    }
}

/// Checks up front that `dir` can be written (rather than after minutes of booting), and
/// returns it canonical.
fn check_writable(dir: &Path) -> Result<PathBuf> {
    crate::demo::check_writable(dir).map_err(err)?;
    std::fs::canonicalize(dir).map_err(|e| err(format!("{}: {e}", dir.display())))
}

/// `make -C <workspace> <args>` with output into `log`; on failure, the log's tail.
pub(crate) fn make(workspace: &Path, args: &[&str], log: &Path) -> Result<()> {
    let file = std::fs::File::create(log).map_err(|e| err(format!("{}: {e}", log.display())))?;
    let file2 = file
        .try_clone()
        .map_err(|e| err(format!("{}: {e}", log.display())))?;
    let mut child = Command::new("make")
        .arg("-C")
        .arg(workspace)
        .args(args)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(file2)
        .spawn()
        .map_err(|e| err(format!("make: {e}")))?;
    let status = wait_child(&mut child, "make", Duration::from_secs(3600))?;
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        return Err(err(format!(
            "make {} failed ({status}); the end of {}:\n{}",
            args.join(" "),
            log.display(),
            lines[lines.len().saturating_sub(25)..].join("\n")
        )));
    }
    Ok(())
}

/// `FILE` itself, or for `FILE.gz` its decompressed copy in `out_dir`.
fn peer_image(file: &Path, out_dir: &Path, index: usize) -> Result<PathBuf> {
    let file = std::fs::canonicalize(file)
        .map_err(|e| err(format!("--peer-image {}: {e}", file.display())))?;
    if file.extension().is_none_or(|e| e != "gz") {
        return Ok(file);
    }
    let plain = out_dir.join(format!("peer{index}.img"));
    let out =
        std::fs::File::create(&plain).map_err(|e| err(format!("{}: {e}", plain.display())))?;
    run_cmd(Command::new("gzip").arg("-dc").arg(&file).stdout(out))?;
    Ok(plain)
}

/// Merges the per-point files of one machine and proto into `<machine>-<proto>.csv`,
/// `-counts.csv` and `.svg`.
fn merge_files(out_dir: &Path, m: &Machine, proto: &str, rates: &[u64]) -> Result<()> {
    let points_dir = out_dir.join("points");
    let mut csv_text = format!("{}\n", csv::HEADER);
    let mut counts_text = format!("{}\n", crate::bench::COUNTS_HEADER);
    let mut rows = Vec::new();
    for rate in rates {
        let stem = points_dir.join(format!("{}-{rate}-{proto}", m.file_label));
        let read = |suffix: &str| {
            std::fs::read_to_string(format!("{}{suffix}", stem.display())).unwrap_or_default()
        };
        for line in read(".csv").lines().skip(1) {
            csv_text.push_str(line);
            csv_text.push('\n');
            rows.extend(csv::Row::parse(line));
        }
        for line in read("-counts.csv").lines().skip(1) {
            counts_text.push_str(line);
            counts_text.push('\n');
        }
    }
    let stem = out_dir.join(format!("{}-{proto}", m.file_label));
    let title = format!(
        "{} {} echo, {} B payload, {}",
        m.label,
        proto.to_uppercase(),
        payload_size(proto),
        m.targets[0]
    );
    for (suffix, text) in [
        (".csv", csv_text),
        ("-counts.csv", counts_text),
        (
            ".svg",
            svg::render(&rows, &title).map_err(|e| err(e.to_string()))?,
        ),
    ] {
        let path = format!("{}{suffix}", stem.display());
        std::fs::write(&path, text).map_err(|e| err(format!("{path}: {e}")))?;
    }
    Ok(())
}

/// Builds the image: `make MICROKIT_CONFIG=release`, logged into `build.log` in `out_dir`.
fn build(opts: &Sel4DemoOptions, out_dir: &Path) -> Result<()> {
    if std::env::var_os("MICROKIT_SDK").is_none_or(|s| s.is_empty()) {
        return Err(err(
            "MICROKIT_SDK is not set: export the Microkit 2.3.0 SDK's path (scripts/run.sh \
             reads it from .cache/sdk.env), or pass --no-build to boot what was built",
        ));
    }
    let log = out_dir.join("build.log");
    tracing::info!(
        "build: make MICROKIT_CONFIG=release (log: {})",
        log.display()
    );
    let t0 = Instant::now();
    make(&opts.workspace, &["MICROKIT_CONFIG=release"], &log)?;
    tracing::info!("build: done in {:.0} s", t0.elapsed().as_secs_f64());
    Ok(())
}

/// Boots every machine of `opts` in turn (seL4, then the reference, then the peers), each left
/// paused.
fn boot_all(opts: &Sel4DemoOptions, out_dir: &Path, netvm: &Path) -> Result<Vec<Machine>> {
    let mut kinds = vec![Kind::Sel4];
    if let Some(mode) = opts.reference {
        kinds.push(Kind::Reference(mode));
    }
    for (i, image) in opts.peer_images.iter().enumerate() {
        kinds.push(Kind::Peer(peer_image(image, out_dir, i + 1)?));
    }
    let prefix = format!("nvs{}", std::process::id());
    let mut machines = Vec::new();
    let mut peers = 0;
    for (i, kind) in kinds.into_iter().enumerate() {
        tracing::info!(
            "boot {}",
            match &kind {
                Kind::Sel4 => "seL4 netvm: make qemu (build/loader.img)".to_string(),
                Kind::Reference(ReferenceMode::Echo) => format!(
                    "Linux alone: make qemu-reference (the guest kernel, kernel echo on {REFERENCE_IP})"
                ),
                Kind::Reference(ReferenceMode::Reflect) => format!(
                    "Linux packet path: make qemu-reference REF_MODE=reflect (the guest kernel, \
                     the uio-driver's reflector on {REFERENCE_IP})"
                ),
                Kind::Peer(p) => format!("peer {}: make qemu BOOT_IMAGE={}", peers + 1, p.display()),
            }
        );
        if matches!(kind, Kind::Peer(_)) {
            peers += 1;
        }
        machines.push(boot(opts, out_dir, netvm, kind, i, peers, &prefix)?);
    }
    Ok(machines)
}

/// Measures one point of machine `m` (paused before and after): resumes it, runs the bench at
/// `rate` and, for the seL4 image, reads its event counters before and after.
fn measure(
    m: &mut Machine,
    netvm: &Path,
    settings: &crate::demo::BenchSettings<'_>,
    proto: &str,
    rate: u64,
) -> Result<TableRow> {
    check_interrupt()?;
    let before = m.events();
    m.resume()?;
    let label = format!("{}-{rate}", m.file_label);
    let result = bench_points(
        &m.ns,
        netvm,
        settings,
        &m.targets[0],
        proto,
        &[rate],
        &label,
    );
    check_interrupt()?;
    m.check_alive()?;
    m.pause()?;
    let events = before.zip(m.events()).and_then(|(b, a)| a.since(&b));
    let point = match result {
        Ok((points, _)) => points
            .into_iter()
            .next()
            .ok_or_else(|| "no CSV row".to_string()),
        Err(e) => Err(e.0),
    };
    match &point {
        Ok(p) => tracing::info!(
            "{proto} {:.0} Mb/s {}: echoed {:.1} Mb/s, loss {:.3}%, median RTT {}{}",
            mbps(rate),
            m.label,
            mbps(p.received),
            p.loss_percent(),
            ms(p.median_rtt),
            events.map(|e| format!("; {e}")).unwrap_or_default()
        ),
        Err(e) => tracing::warn!("{proto} {:.0} Mb/s {}: {e}", mbps(rate), m.label),
    }
    Ok(TableRow {
        system: m.label.clone(),
        proto: proto.to_string(),
        requested: rate,
        point,
        events,
    })
}

/// Runs the whole job; see the module docs.
pub fn run(opts: &Sel4DemoOptions) -> Result<Sel4Summary> {
    if opts.reference == Some(ReferenceMode::Reflect)
        && opts
            .sweep
            .protocols()
            .iter()
            .any(|(proto, rates)| *proto == "tcp" && !rates.is_empty())
    {
        return Err(err(
            "--reference reflect measures UDP only (the reflector has no TCP): give --tcp-rates ''",
        ));
    }
    crate::demo::catch_signals()?;
    if !crate::demo::is_root() {
        return Err(err(
            "needs root (network namespaces and taps), or an unprivileged user namespace, \
             which this kernel does not allow here; run it with sudo",
        ));
    }
    let out_dir = check_writable(&opts.out_dir)?;
    let points_dir = out_dir.join("points");
    std::fs::create_dir_all(&points_dir)
        .map_err(|e| err(format!("{}: {e}", points_dir.display())))?;
    let netvm = std::env::current_exe().map_err(|e| err(format!("current_exe: {e}")))?;
    if !opts.workspace.join("Makefile").is_file() {
        return Err(err(format!(
            "no Makefile in {} (--workspace is the netvm checkout)",
            opts.workspace.display()
        )));
    }

    if opts.build {
        build(opts, &out_dir)?;
    }
    let mut machines = boot_all(opts, &out_dir, &netvm)?;

    // Not calibrated: under TCG the machines echo at most ~100 Mb/s, far below the generator's
    // ceiling (Gb/s); calibrating floods the loopback for ~1.5 s per point while a guest runs.
    let settings = |util: bool| opts.sweep.settings(&points_dir, util, None, false);
    let mut summary = Sel4Summary {
        reference: opts.reference.map(|m| m.label().to_string()),
        ..Sel4Summary::default()
    };
    for (proto, rates) in opts.sweep.protocols() {
        for &rate in rates.iter() {
            for m in machines.iter_mut() {
                let settings = settings(m.util);
                summary
                    .rows
                    .push(measure(m, &netvm, &settings, proto, rate)?);
            }
        }
    }
    for m in &machines {
        for (proto, rates) in opts.sweep.protocols() {
            if !rates.is_empty() {
                merge_files(&out_dir, m, proto, rates)?;
            }
        }
    }
    for (name, text) in [
        ("summary.txt", summary.table()),
        ("summary.csv", summary.csv()),
    ] {
        let path = out_dir.join(name);
        std::fs::write(&path, text).map_err(|e| err(format!("{}: {e}", path.display())))?;
    }
    drop(machines);
    Ok(summary)
}
