//! `netvm stats`: its arguments and handler (host-mode run directory or QEMU over QMP).

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub(crate) struct StatsArgs {
    /// The run directory (default: the newest running system's under --shm-dir).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Where run directories are looked for.
    #[arg(long, default_value = "/dev/shm")]
    shm_dir: PathBuf,
    /// Print again every this many seconds until interrupted or the system stops.
    #[arg(long)]
    watch: Option<f64>,
    /// Read the counters of a seL4 system from the QEMU whose QMP socket this is
    /// (`-qmp unix:PATH,server,nowait`; `make qemu` makes build/qmp.sock).
    #[arg(long, alias = "qemu-monitor", value_name = "SOCKET", conflicts_with_all = ["run_dir"])]
    qmp: Option<PathBuf>,
    /// Guest RAM size to scan with --qmp (QEMU's -m; K, M, G suffixes).
    #[arg(long, value_parser = parse_size, default_value = "2G", requires = "qmp")]
    ram_size: u64,
    /// Guest-physical start of RAM with --qmp (QEMU virt: 0x40000000).
    #[arg(long, value_parser = parse_size, default_value = "0x40000000", requires = "qmp")]
    ram_base: u64,
    /// With --qmp: the Microkit tool's report of the image QEMU runs (`microkit ... -r`,
    /// build/sel4/<config>/report.txt), which places the buffer pools' queues in its RAM.
    #[arg(long, value_name = "FILE", requires_all = ["qmp", "system"])]
    report: Option<PathBuf>,
    /// With --report: the system description the image was built from.
    #[arg(long, value_name = "FILE", requires = "report")]
    system: Option<PathBuf>,
    /// With --report: the pools only, not the counters.
    #[arg(long, requires = "report")]
    pools: bool,
}

/// `2G`, `512M`, `64K`, `4096` or `0x40000000`.
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, shift) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 10),
        Some((i, 'M' | 'm')) => (&s[..i], 20),
        Some((i, 'G' | 'g')) => (&s[..i], 30),
        _ => (s, 0),
    };
    let n = match digits.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => digits.parse(),
    }
    .map_err(|e| format!("'{s}': {e}"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("'{s}' is too large"))
}

pub(crate) fn show_stats(a: StatsArgs) -> ExitCode {
    use netvm::observe::{render_pools, render_stats, RunView};
    if let Some(socket) = &a.qmp {
        return show_qemu_stats(&a, socket);
    }
    let open = || match &a.run_dir {
        Some(dir) => RunView::open(dir),
        None => RunView::newest(&a.shm_dir),
    };
    let view = match open() {
        Ok(v) => v,
        Err(e) => {
            tracing::error!("netvm stats: {e}");
            return ExitCode::from(2);
        }
    };
    loop {
        println!("system in {}", view.dir().display());
        print!("{}", render_stats(&view.stats()));
        match view.pools() {
            Ok(pools) => print!("{}", render_pools(&pools)),
            Err(e) => println!("buffer pools: {e}"),
        }
        let Some(secs) = a.watch.filter(|s| s.is_finite() && *s > 0.0) else {
            return ExitCode::SUCCESS;
        };
        std::thread::sleep(std::time::Duration::from_secs_f64(secs));
        if !view.dir().exists() {
            println!("the system has stopped");
            return ExitCode::SUCCESS;
        }
        println!();
    }
}

fn show_qemu_stats(a: &StatsArgs, socket: &std::path::Path) -> ExitCode {
    use netvm::observe::{render_pools, render_stats, PoolReport};
    use netvm::qemu_pools::PoolLayout;
    use netvm::qemu_stats::{components, refresh, QmpMem};
    let layout = match (&a.report, &a.system) {
        (Some(report), Some(system)) => match PoolLayout::load(report, system) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::error!("netvm stats: {e}");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    let mut mem = match QmpMem::connect(socket) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!("netvm stats: {e}");
            return ExitCode::from(2);
        }
    };
    let mut pages = Vec::new();
    loop {
        // The stats pages also place the queues (qemu_pools::PoolLayout::shift).
        if let Err(e) = refresh(&mut mem, &mut pages, a.ram_base, a.ram_size) {
            tracing::error!("netvm stats: {e}");
            return ExitCode::from(2);
        }
        if !a.pools {
            println!(
                "seL4 system in QEMU ({}): {} stats pages in RAM {:#x}+{:#x}",
                socket.display(),
                pages.len(),
                a.ram_base,
                a.ram_size
            );
            if pages.is_empty() {
                println!("  (none yet: has the system booted? is --ram-size QEMU's -m?)");
            }
            print!("{}", render_stats(&components(&pages)));
        }
        let mut status = ExitCode::SUCCESS;
        if let Some(layout) = &layout {
            let shift = layout.shift(&pages);
            let pools = match layout.read(&mut mem, &shift) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!("netvm stats: {e}");
                    return ExitCode::from(2);
                }
            };
            if a.pools {
                println!("seL4 system in QEMU ({}):", socket.display());
            }
            if let Some(shift) = shift.as_ref().ok().filter(|s| s.delta != 0) {
                println!("queues placed by the report, shifted {shift}");
            }
            print!("{}", render_pools(&pools));
            if !pools.iter().all(PoolReport::balanced) {
                status = ExitCode::FAILURE;
            }
        }
        let Some(secs) = a.watch.filter(|s| s.is_finite() && *s > 0.0) else {
            return status;
        };
        std::thread::sleep(std::time::Duration::from_secs_f64(secs));
        println!();
    }
}
