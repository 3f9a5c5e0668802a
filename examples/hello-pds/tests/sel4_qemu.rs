//! Boots the hello-pds system on seL4 in QEMU, with the Microkit SDK named by `MICROKIT_SDK`
//! (Microkit 2.3.0, board qemu_virt_aarch64), once per kernel config:
//!
//! - `debug`: the console must show every step of the exchange, in order, exactly as the host run
//!   prints it (`tests/host_run.rs`), and the crasher's two panics must arrive at the same SP
//!   (a restarted child starts on a fresh stack);
//! - `release` and `benchmark`: the kernel has no debug console, so the PDs print nothing; the test reads guest
//!   RAM through the QEMU monitor (`pmemsave`) instead and finds the region `shared` holding
//!   [`hello_pds::SHARED_WORDS`], which the client writes only after the notify round trip, the
//!   PPC and the crasher's fourth run (i.e. after two restarts that followed faults).
//!
//! Without `MICROKIT_SDK` (or without `qemu-system-aarch64`) the tests say so (`testkit::skip`:
//! a failure where skipping is forbidden, as in CI). They are `#[ignore]`d: `scripts/test.sh`
//! runs them in its seL4 stage.
//! The commands they run are the ones in README.md.
#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::console::Console;

const BOARD: &str = "qemu_virt_aarch64";
const QEMU: &str = "qemu-system-aarch64";
/// How long the system may take from QEMU's start to its last step (it needs about a second).
const BOOT_TIMEOUT: Duration = Duration::from_secs(20);
/// Guest RAM that `pmemsave` dumps: the start of RAM on QEMU virt, where the kernel image, the
/// initialiser and (right after them) every object the system description creates are placed.
const RAM_BASE: u64 = 0x6000_0000;
const DUMP_SIZE: u64 = 64 << 20;
const PAGE: usize = 0x1000;
/// What the test writes into the server's `.hello_config` section, as a build tool such as
/// sdfgen + objcopy would (the host run gets the same bytes from its manifest): the whole
/// 16-byte section, as the image tool's patcher (`pd_elf::patch_section`) writes it.
const CONFIG_BYTES: [u8; 16] = [1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// The console lines of a debug boot, in the order they must appear (substrings).
const EXPECTED_DEBUG: &[&str] = &[
    "MON|INFO: Microkit Monitor started!",
    "server: init passive=true config[0..4]=[01, 02, 03, 04]",
    "MON|INFO: PD 'server' is now passive!",
    "client: init, notifying server",
    "server: notified on 3, shared[0]=0x12345678",
    "client: notified by server, shared[1]=0x12345679",
    "server: protected on 3 label=42 mr0=7",
    "client: ppcall reply label=0 mr0=42",
    "crasher: run 1",
    "client: fault from child 1 label=6 mr0=0x2",
    "mr1=0xdead000",
    "client: restarted child 1",
    "crasher: run 2",
    "deliberate panic on run 2",
    "client: fault from child 1 label=3",
    "client: restarted child 1",
    "crasher: run 3",
    "deliberate panic on run 3",
    "client: fault from child 1 label=3",
    "client: restarted child 1",
    "crasher: run 4",
    "client: done",
];

/// The SDK, or None after saying why the test is skipped.
fn sdk() -> Option<PathBuf> {
    let sdk = testkit::microkit_sdk("sel4_qemu")?;
    testkit::have_tools("sel4_qemu", &[(QEMU, "--version")]).then_some(sdk)
}

/// A fresh directory for one test's images and console log, removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(config: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("hello-pds-sel4-{config}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Builds the three PDs for `config` and returns the directory holding the ELFs.
fn build_pds(sdk: &Path, config: &str) -> PathBuf {
    // One target dir per config: the generated labels and cfgs differ, and the two tests run
    // at the same time.
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("sel4-qemu-{config}"));
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let sdk = sdk.to_str().expect("the SDK path is UTF-8");
    let env = [
        ("MICROKIT_SDK", sdk),
        ("MICROKIT_BOARD", BOARD),
        ("MICROKIT_CONFIG", config),
    ];
    pd_elf::cargo_build_sel4(env!("CARGO"), &manifest, &["--bins"], &target_dir, &env)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Writes `bytes` over ELF section `section` of the file at `path`, with the image tool's
/// patcher.
fn patch_section(path: &Path, section: &str, bytes: &[u8]) {
    let mut data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    pd_elf::patch_section(&mut data, section, bytes)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::fs::write(path, data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Copies the ELFs into `dir` and runs the Microkit tool; returns the loader image.
fn make_image(sdk: &Path, config: &str, elf_dir: &Path, dir: &Path) -> PathBuf {
    for pd in ["client", "server", "crasher"] {
        let to = dir.join(format!("{pd}.elf"));
        std::fs::copy(elf_dir.join(pd), &to)
            .unwrap_or_else(|e| panic!("copy {pd} to {}: {e}", to.display()));
    }
    patch_section(&dir.join("server.elf"), ".hello_config", &CONFIG_BYTES);
    let image = dir.join("loader.img");
    let system = Path::new(env!("CARGO_MANIFEST_DIR")).join("system.xml");
    let out = Command::new(sdk.join("bin/microkit"))
        .arg(&system)
        .arg("--search-path")
        .arg(dir)
        .args(["--board", BOARD, "--config", config])
        .arg("-o")
        .arg(&image)
        .arg("-r")
        .arg(dir.join("report.txt"))
        .output()
        .expect("run the microkit tool");
    assert!(
        out.status.success(),
        "microkit tool ({config}) failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    image
}

/// A running QEMU, killed (and reaped) when dropped, whatever happened.
struct Qemu {
    console: Console,
    /// Whether stdin goes to the monitor (Ctrl-A c toggles between it and the serial port).
    in_monitor: bool,
}

impl Qemu {
    /// Boots `image` with the command line of README.md (no network device).
    fn boot(image: &Path) -> Self {
        let mut cmd = Command::new(QEMU);
        cmd.args(["-machine", "virt,virtualization=on", "-cpu", "cortex-a53"])
            .args([
                "-m",
                "size=2G",
                "-nographic",
                "-serial",
                "mon:stdio",
                "-nic",
                "none",
            ])
            .arg("-device")
            .arg(format!(
                "loader,file={},addr=0x70000000,cpu-num=0",
                image.display()
            ));
        Self {
            console: Console::spawn(cmd, QEMU, false),
            in_monitor: false,
        }
    }

    fn console(&self) -> String {
        self.console.text()
    }

    /// Collects output until `done(console)` holds or `deadline` passes; returns whether it held.
    fn wait_for(&mut self, deadline: Instant, done: impl Fn(&str) -> bool) -> bool {
        self.console.wait_until(deadline, done)
    }

    /// Sends a line to the QEMU monitor (`-serial mon:stdio`: Ctrl-A c switches to it).
    fn monitor(&mut self, command: &str) {
        if !self.in_monitor {
            self.console.write(b"\x01c");
            self.in_monitor = true;
        }
        self.console.write(format!("{command}\n").as_bytes());
    }

    /// Guest RAM from `RAM_BASE`, `DUMP_SIZE` bytes, through the monitor's `pmemsave`.
    fn dump_ram(&mut self, path: &Path) -> Vec<u8> {
        let _ = std::fs::remove_file(path);
        self.monitor(&format!(
            "pmemsave {RAM_BASE:#x} {DUMP_SIZE:#x} \"{}\"",
            path.display()
        ));
        let deadline = Instant::now() + Duration::from_secs(10);
        // QEMU writes the file in small chunks; it is complete once it has its full size.
        while std::fs::metadata(path).map_or(true, |m| m.len() < DUMP_SIZE) {
            assert!(
                Instant::now() < deadline,
                "pmemsave did not finish; console:\n{}",
                self.console()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }
}

/// The physical address of a page whose first words are `words`, if the dump has one.
fn find_page(ram: &[u8], words: &[u64]) -> Option<u64> {
    let pattern: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    ram.chunks(PAGE)
        .position(|page| page.starts_with(&pattern))
        .map(|i| RAM_BASE + (i * PAGE) as u64)
}

/// Checks that every `expected` substring occurs in `console`, each after the previous one.
fn assert_in_order(console: &str, expected: &[&str]) {
    let mut rest = console;
    for want in expected {
        match rest.find(want) {
            Some(at) => rest = &rest[at + want.len()..],
            None => panic!("missing {want:?} (in this order) in the console:\n{console}"),
        }
    }
}

/// The `mr1` (SP) of every user-exception fault the client reported.
fn user_exception_sps(console: &str) -> Vec<String> {
    console
        .lines()
        .filter(|l| l.contains("client: fault from child 1 label=3 "))
        .filter_map(|l| l.split("mr1=").nth(1))
        .map(|sp| sp.trim().to_owned())
        .collect()
}

#[test]
#[ignore = "seL4 stage: boots QEMU for minutes; scripts/test.sh runs it (--ignored)"]
fn debug_system_prints_every_step_on_sel4() {
    let Some(sdk) = sdk() else { return };
    let started = Instant::now();
    let elf_dir = build_pds(&sdk, "debug");
    let dir = TempDir::new("debug");
    let image = make_image(&sdk, "debug", &elf_dir, &dir.0);
    let built = started.elapsed();

    let mut qemu = Qemu::boot(&image);
    let finished = qemu.wait_for(Instant::now() + BOOT_TIMEOUT, |c| {
        c.contains("client: done")
    });
    let console = qemu.console();
    std::fs::write(dir.0.join("console.txt"), &console).unwrap();
    assert!(
        finished,
        "no 'client: done' within {BOOT_TIMEOUT:?}; console:\n{console}"
    );
    let ran = started.elapsed() - built;

    assert_in_order(&console, EXPECTED_DEBUG);
    assert!(
        !console.contains("MON|ERROR") && !console.contains("unexecuted reply"),
        "the monitor or kernel reported an error:\n{console}"
    );
    let sps = user_exception_sps(&console);
    assert_eq!(sps.len(), 2, "two panics expected:\n{console}");
    assert_eq!(
        sps[0], sps[1],
        "the restarted crasher panicked at different SPs: a restart leaked stack"
    );

    // The same state the release test looks for is also in RAM.
    let ram = qemu.dump_ram(&dir.0.join("ram.bin"));
    assert!(
        find_page(&ram, &hello_pds::SHARED_WORDS).is_some(),
        "no page holds {:x?}",
        hello_pds::SHARED_WORDS
    );
    qemu.monitor("quit");
    println!("sel4_qemu debug: build+image {built:?}, boot to 'client: done' {ran:?}");
}

#[test]
#[ignore = "seL4 stage: boots QEMU for minutes; scripts/test.sh runs it (--ignored)"]
fn release_system_runs_silently_on_sel4() {
    silent_system_runs_to_the_end("release");
}

#[test]
#[ignore = "seL4 stage: boots QEMU for minutes; scripts/test.sh runs it (--ignored)"]
fn benchmark_system_runs_silently_on_sel4() {
    silent_system_runs_to_the_end("benchmark");
}

/// Boots a config whose kernel cannot print and checks the system's end state in guest RAM.
fn silent_system_runs_to_the_end(config: &str) {
    let Some(sdk) = sdk() else { return };
    if !sdk.join("board").join(BOARD).join(config).is_dir() {
        testkit::skip(
            &format!("sel4_qemu {config}"),
            format_args!("the SDK has no {BOARD}/{config}"),
        );
        return;
    }
    let started = Instant::now();
    let elf_dir = build_pds(&sdk, config);
    let dir = TempDir::new(config);
    let image = make_image(&sdk, config, &elf_dir, &dir.0);
    let built = started.elapsed();

    let mut qemu = Qemu::boot(&image);
    let deadline = Instant::now() + BOOT_TIMEOUT;
    let dump = dir.0.join("ram.bin");
    let found = loop {
        // Let the system run a little between dumps (it needs about a second in all).
        qemu.wait_for(Instant::now() + Duration::from_millis(300), |_| false);
        let ram = qemu.dump_ram(&dump);
        if let Some(addr) = find_page(&ram, &hello_pds::SHARED_WORDS) {
            break Some(addr);
        }
        if Instant::now() > deadline {
            break None;
        }
    };
    let console = qemu.console();
    let Some(addr) = found else {
        panic!(
            "{config}: no page holds {:x?} after {BOOT_TIMEOUT:?}: the system did not run to \
             the end; console:\n{console}",
            hello_pds::SHARED_WORDS
        );
    };
    // Printing is compiled out against a kernel without CONFIG_PRINTING (seL4_DebugPutChar does
    // not exist there and would fault).
    for line in ["client:", "server:", "crasher:"] {
        assert!(
            !console.contains(line),
            "{config} PD printed {line:?}:\n{console}"
        );
    }
    qemu.monitor("quit");
    println!(
        "sel4_qemu {config}: build+image {built:?}, shared region at {addr:#x} after {:?}",
        started.elapsed() - built
    );
}
