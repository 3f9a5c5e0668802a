//! Host-backend system test: a minimal runner that starts PD processes of this same binary
//! through `microkit::host::manifest` and `microkit::host::control`, as the netvm runner will.
//!
//! Run as a test (no `NETVM_PD_MANIFEST`) it is the runner; started with a manifest it is the PD
//! the manifest names. It proves, with real processes: notifications both ways (one of them
//! deferred), a PPC to a passive server with message registers both ways, a shared region at
//! different vaddrs in two PDs found through `setvar_vaddr`-style setvars, a config section, a
//! child that faults (VM fault, then a panic) and is restarted by its parent each time, a
//! top-level fault reported to the runner, and start-up errors naming the culprit.
#![allow(missing_docs)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use microkit::host::control::ControlRegion;
use microkit::host::manifest::{ChannelEnd, Manifest, Perms, Region, SetVarValue, MANIFEST_ENV};
use microkit::{debug_println, Channel, ChannelSet, Child, Handler, MessageInfo};
use testkit::hello::{map_page, COUNT_VADDR, PAGE, SHARED_CLIENT_VADDR};

microkit::setvar!(shared_vaddr);
microkit::setvar!(crash_count_vaddr);
microkit::config_section!(".hello_config", HELLO_CONFIG: [u8; 16]);

const FAULT_ADDR: u64 = 0xdead000;

/// Word `index` of the region whose address the setvar holds.
fn word(vaddr: u64, index: usize) -> &'static AtomicU64 {
    assert!(vaddr != 0, "setvar not patched");
    // SAFETY: the runtime mapped a shared, page-sized RW region at `vaddr` before `init` (the
    // manifest lists it); AtomicU64 is valid for any contents, and index < 512 stays in the page.
    unsafe { &*(vaddr as *const AtomicU64).add(index) }
}

// ---- PDs -------------------------------------------------------------------------------------

const CLIENT_TO_SERVER: Channel = Channel::new(0);
const CLIENT_FROM_CRASHER: Channel = Channel::new(2);
const SERVER_TO_CLIENT: Channel = Channel::new(3);
const CRASHER_TO_PARENT: Channel = Channel::new(0);

struct Client;

impl Handler for Client {
    fn init() -> Self {
        word(shared_vaddr.get(), 0).store(0x1234_5678, Ordering::SeqCst);
        debug_println!(
            "client: init name={} notify={} pp={} passive={}",
            microkit::pd_name(),
            CLIENT_TO_SERVER.can_notify(),
            CLIENT_TO_SERVER.can_pp_call(),
            microkit::pd_is_passive()
        );
        // Deferred, from `init`: it must go out with the first receive (a host runtime once
        // dropped it, and the server would never hear from the client).
        CLIENT_TO_SERVER.deferred_notify();
        Client
    }

    fn notified(&mut self, channels: ChannelSet) {
        for ch in channels {
            if ch == CLIENT_TO_SERVER {
                let seen = word(shared_vaddr.get(), 1).load(Ordering::SeqCst);
                debug_println!("client: notified by server shared[1]={seen:#x}");
                microkit::mr_set(0, 7);
                microkit::mr_set(1, 0xabc);
                let reply = CLIENT_TO_SERVER.pp_call(MessageInfo::new(42, 2));
                debug_println!(
                    "client: ppcall reply label={} count={} mr0={}",
                    reply.label(),
                    reply.count(),
                    microkit::mr_get(0)
                );
            } else if ch == CLIENT_FROM_CRASHER {
                debug_println!("client: crasher alive after restarts");
                debug_println!("client: done");
            } else {
                debug_println!("client: unexpected channel {}", ch.id());
            }
        }
    }

    fn fault(&mut self, child: Child, msg: MessageInfo) -> Option<MessageInfo> {
        debug_println!(
            "client: fault child={} label={} mr0={:#x} mr1={:#x} mr3={}",
            child.id(),
            msg.label(),
            microkit::mr_get(0),
            microkit::mr_get(1),
            microkit::mr_get(3)
        );
        if let Err(e) = child.restart(0) {
            debug_println!("client: restart failed: {e}");
        }
        None
    }
}

struct Server;

impl Handler for Server {
    fn init() -> Self {
        debug_println!(
            "server: init passive={} config={:02x?}",
            microkit::pd_is_passive(),
            &HELLO_CONFIG.bytes()[..4]
        );
        Server
    }

    fn notified(&mut self, channels: ChannelSet) {
        for ch in channels {
            let value = word(shared_vaddr.get(), 0).load(Ordering::SeqCst);
            debug_println!("server: notified ch={} shared[0]={value:#x}", ch.id());
            word(shared_vaddr.get(), 1).store(value + 1, Ordering::SeqCst);
            SERVER_TO_CLIENT.deferred_notify();
        }
    }

    fn protected(&mut self, ch: Channel, msg: MessageInfo) -> MessageInfo {
        debug_println!(
            "server: protected ch={} label={} count={} mr0={} mr1={:#x}",
            ch.id(),
            msg.label(),
            msg.count(),
            microkit::mr_get(0),
            microkit::mr_get(1)
        );
        microkit::mr_set(0, microkit::mr_get(0) * 6);
        MessageInfo::new(0, 1)
    }
}

/// Faults on its first run (VM fault), panics on its second, notifies its parent on its third;
/// the run count lives in a shared region so it survives restarts.
struct Crasher;

impl Handler for Crasher {
    fn init() -> Self {
        let run = word(crash_count_vaddr.get(), 0).fetch_add(1, Ordering::SeqCst) + 1;
        debug_println!("crasher: run {run}");
        match run {
            1 => {
                // SAFETY: none — this write is the point of the test: FAULT_ADDR is unmapped, so
                // the volatile store raises SIGSEGV and the runtime reports a VM fault.
                unsafe { std::ptr::write_volatile(FAULT_ADDR as *mut u64, 1) };
            }
            2 => panic!("deliberate panic"),
            _ => CRASHER_TO_PARENT.notify(),
        }
        Crasher
    }

    fn notified(&mut self, _channels: ChannelSet) {}
}

// ---- stress: ping-pong through every wake-up path ----------------------------------------

const STRESS_PEER: Channel = Channel::new(0);
const STRESS_EXTRA: Channel = Channel::new(1);
const STRESS_ROUNDS: u64 = 50_000;
/// Every this many rounds, pong also signals ping's second channel (before the first).
const STRESS_DOUBLE_EVERY: u64 = 50;

/// Answers round `round` after a delay that varies so the waiting peer takes every path of
/// the event loop: an immediate answer (caught while spinning); a busy delay swept over
/// 0–12 µs, so that answers also land just as the peer's few-microsecond spin ends and it
/// goes to sleep (the window where a wake-up could be lost); a 300 µs sleep (the peer's spin
/// backs off and it sleeps at once); and a deferred notify instead of a direct one.
fn stress_answer(round: u64, channels: &[Channel]) {
    if round.is_multiple_of(97) {
        std::thread::sleep(Duration::from_micros(300));
    } else if round.is_multiple_of(3) {
        let delay = Duration::from_nanos(round * 7919 % 12_000);
        let start = Instant::now();
        while start.elapsed() < delay {
            std::hint::spin_loop();
        }
    }
    let (last, first) = channels.split_last().expect("at least one channel");
    for ch in first {
        ch.notify();
    }
    if round.is_multiple_of(13) {
        last.deferred_notify();
    } else {
        last.notify();
    }
}

/// Pins this PD to CPU `cpu` if the machine has more than one: the two stress PDs then run
/// truly in parallel, so a post can land inside the event loop's race windows (spin ending,
/// `sleeping` being set), which never happens while both share one CPU.
fn pin_to_cpu(cpu: usize) {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return;
    }
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET writes inside it; sched_setaffinity
    // reads it for the calling thread (pid 0). Failure (e.g. a restricted cpuset) only leaves
    // the PD unpinned.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Starts the rounds; checks that every round brings exactly the bits pong sent (channel 1
/// at most once and never after channel 0, channel 0 exactly once).
struct StressPing {
    round: u64,
    seen_extra: bool,
    doubles: u64,
}

impl Handler for StressPing {
    fn init() -> Self {
        pin_to_cpu(0);
        STRESS_PEER.notify();
        StressPing {
            round: 1,
            seen_extra: false,
            doubles: 0,
        }
    }

    fn notified(&mut self, channels: ChannelSet) {
        let expect_double = self.round.is_multiple_of(STRESS_DOUBLE_EVERY);
        if channels.contains(STRESS_EXTRA) {
            if !expect_double || self.seen_extra {
                debug_println!("stress: error: unexpected ch 1 in round {}", self.round);
                std::process::exit(1);
            }
            self.seen_extra = true;
            self.doubles += 1;
        }
        if !channels.contains(STRESS_PEER) {
            return;
        }
        if expect_double != self.seen_extra {
            debug_println!("stress: error: round {} ended without ch 1", self.round);
            std::process::exit(1);
        }
        if self.round == STRESS_ROUNDS {
            debug_println!(
                "stress: done rounds={} doubles={}",
                self.round,
                self.doubles
            );
            return;
        }
        self.round += 1;
        self.seen_extra = false;
        stress_answer(self.round, &[STRESS_PEER]);
    }
}

/// Answers every notification, on both channels every `STRESS_DOUBLE_EVERY` rounds.
struct StressPong {
    round: u64,
}

impl Handler for StressPong {
    fn init() -> Self {
        pin_to_cpu(1);
        StressPong { round: 0 }
    }

    fn notified(&mut self, channels: ChannelSet) {
        self.round += 1;
        if channels != ChannelSet::from_bits(1 << STRESS_PEER.id()) {
            debug_println!("stress: error: pong round {} got {channels:?}", self.round);
            std::process::exit(1);
        }
        if self.round.is_multiple_of(STRESS_DOUBLE_EVERY) {
            stress_answer(self.round, &[STRESS_EXTRA, STRESS_PEER]);
        } else {
            stress_answer(self.round, &[STRESS_PEER]);
        }
    }
}

fn run_pd() -> ! {
    let manifest = Manifest::from_env().expect("manifest");
    match manifest.name.as_str() {
        "client" => microkit::run::<Client>(),
        "server" => microkit::run::<Server>(),
        "stress_ping" => microkit::run::<StressPing>(),
        "stress_pong" => microkit::run::<StressPong>(),
        _ => microkit::run::<Crasher>(),
    }
}

// ---- the runner ------------------------------------------------------------------------------

struct Pd {
    name: &'static str,
    child: std::process::Child,
}

struct System {
    dir: PathBuf,
    control: ControlRegion,
    pds: Vec<Pd>,
    lines: mpsc::Receiver<String>,
    sender: mpsc::Sender<String>,
    output: Vec<String>,
}

impl System {
    fn new(test: &str, pd_count: usize) -> System {
        let dir = std::env::temp_dir().join(format!("microkit-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let control = ControlRegion::create(&dir.join("control"), pd_count).expect("control");
        let (sender, lines) = mpsc::channel();
        System {
            dir,
            control,
            pds: Vec::new(),
            lines,
            sender,
            output: Vec::new(),
        }
    }

    fn region_file(&self, name: &str, size: u64) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::File::create(&path)
            .and_then(|f| f.set_len(size))
            .expect("region file");
        path
    }

    fn manifest(&self, name: &str, index: usize) -> Manifest {
        Manifest::new(name, index, self.dir.join("control"))
    }

    fn spawn(&mut self, name: &'static str, manifest: &Manifest) {
        let path = self.dir.join(format!("{name}.manifest"));
        manifest.write(&path).expect("write manifest");
        let mut child = Command::new(std::env::current_exe().expect("exe"))
            .env(MANIFEST_ENV, &path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn PD");
        let stderr = child.stderr.take().expect("piped");
        let sender = self.sender.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        self.pds.push(Pd { name, child });
    }

    /// Collects output until a line contains `needle`; Err with all output on timeout.
    fn wait_for(&mut self, needle: &str) -> Result<(), String> {
        self.wait_for_within(needle, Duration::from_secs(20))
    }

    /// [`Self::wait_for`] with a given timeout.
    fn wait_for_within(&mut self, needle: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        if self.output.iter().any(|l| l.contains(needle)) {
            return Ok(());
        }
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.output.push(line);
                    if found {
                        return Ok(());
                    }
                }
                Err(_) => break,
            }
        }
        Err(format!(
            "no line containing {needle:?}; output:\n{}",
            self.output.join("\n")
        ))
    }

    fn expect_lines(&mut self, expected: &[&str]) -> Result<(), String> {
        for needle in expected {
            self.wait_for(needle)?;
        }
        Ok(())
    }

    fn wait_exit(&mut self, name: &str) -> Result<ExitStatus, String> {
        let pd = self
            .pds
            .iter_mut()
            .find(|p| p.name == name)
            .ok_or("no such PD")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = pd.child.try_wait().map_err(|e| e.to_string())? {
                // Let the reader thread drain the last lines.
                std::thread::sleep(Duration::from_millis(50));
                while let Ok(line) = self.lines.try_recv() {
                    self.output.push(line);
                }
                return Ok(status);
            }
            if Instant::now() > deadline {
                return Err(format!("PD {name} did not exit"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for System {
    fn drop(&mut self) {
        for pd in &mut self.pds {
            let _ = pd.child.kill();
            let _ = pd.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The hello system (`testkit::hello`): client (0) <-> server (1, passive) on client ch 0 /
/// server ch 3; crasher (2) is child 1 of the client, notifying it on crasher ch 0 / client ch 2.
fn hello_system() -> Result<(), String> {
    let mut sys = System::new("hello", 3);
    let shared = sys.region_file("shared", PAGE);
    let count = sys.region_file("crash_count", PAGE);

    let [client, server, crasher] = testkit::hello::manifests(
        &sys.dir.join("control"),
        &shared,
        &count,
        vec![0xc0, 0xff, 0xee, 1],
    );

    // Server first: the client notifies it during init; a notification posted before the server
    // runs simply waits in its word, as on seL4.
    sys.spawn("server", &server);
    sys.spawn("client", &client);
    sys.spawn("crasher", &crasher);
    let crasher_pid = sys.pds[2].child.id();

    sys.expect_lines(&[
        "server: init passive=true config=[c0, ff, ee, 01]",
        "client: init name=client notify=true pp=true passive=false",
        "server: notified ch=3 shared[0]=0x12345678",
        "client: notified by server shared[1]=0x12345679",
        "server: protected ch=3 label=42 count=2 mr0=7 mr1=0xabc",
        "client: ppcall reply label=0 count=1 mr0=42",
        "crasher: run 1",
        "client: fault child=1 label=6 mr0=",
        &format!("mr1={FAULT_ADDR:#x}"),
        "crasher: run 2",
        "deliberate panic",
        "client: fault child=1 label=3 mr0=0x0 mr1=0x0 mr3=6",
        "crasher: run 3",
        "client: crasher alive after restarts",
        "client: done",
    ])?;
    // A restart re-executes the image in the same process, as a TCB keeps its identity on seL4.
    let record = sys.control.record(2).ok_or("no record")?;
    if record.pid() != Some(crasher_pid) {
        return Err(format!(
            "crasher pid changed: {:?} vs {crasher_pid}",
            record.pid()
        ));
    }
    Ok(())
}

/// A top-level PD's fault is reported like the monitor does, recorded, and ends the process.
fn top_level_fault() -> Result<(), String> {
    let mut sys = System::new("toplevel", 1);
    let count = sys.region_file("crash_count", PAGE);
    let mut lonely = sys.manifest("lonely", 0);
    map_page(
        &mut lonely,
        "crash_count",
        COUNT_VADDR,
        &count,
        "crash_count_vaddr",
    );
    sys.spawn("lonely", &lonely);
    let status = sys.wait_exit("lonely")?;
    if status.code() != Some(128 + 11) {
        return Err(format!("exit status {status}, expected 139 (SIGSEGV)"));
    }
    sys.expect_lines(&[
        "MON|ERROR: PD 'lonely' faulted: label=6",
        &format!("addr={FAULT_ADDR:#x}"),
    ])?;
    let fault = sys
        .control
        .record(0)
        .and_then(|r| r.fault())
        .ok_or("no fault recorded")?;
    if fault.label != 6 || fault.mrs[1] != FAULT_ADDR {
        return Err(format!("recorded fault {fault:?}"));
    }
    Ok(())
}

/// stress_ping (0) <-> stress_pong (1): 50,000 strictly alternating rounds, so a single lost
/// wake-up stalls the test into its timeout (90 s: a few seconds suffice, but on a loaded VM
/// every cross-CPU wake-up can cost tens of microseconds); every round also checks the delivered bits.
fn notify_stress() -> Result<(), String> {
    let mut sys = System::new("stress", 2);
    for (name, index, peer) in [("stress_ping", 0, 1), ("stress_pong", 1, 0)] {
        let mut m = sys.manifest(name, index);
        for id in [STRESS_PEER.id(), STRESS_EXTRA.id()] {
            m.channels.push(ChannelEnd {
                id,
                peer,
                peer_id: id,
                notify: true,
                pp: false,
            });
        }
        sys.spawn(name, &m);
    }
    sys.wait_for_within(
        &format!(
            "stress: done rounds={STRESS_ROUNDS} doubles={}",
            STRESS_ROUNDS / STRESS_DOUBLE_EVERY
        ),
        Duration::from_secs(90),
    )?;
    if let Some(error) = sys.output.iter().find(|l| l.contains("stress: error")) {
        return Err(error.clone());
    }
    Ok(())
}

/// Start-up failures name the PD and the symbol or region, and exit with status 2.
fn startup_errors() -> Result<(), String> {
    let mut sys = System::new("startup", 2);
    let mut bad_symbol = sys.manifest("server", 0);
    bad_symbol.setvars.push(SetVarValue {
        symbol: "no_such_symbol".into(),
        value: 1,
    });
    let file = sys.region_file("r", PAGE);
    let mut overlap = sys.manifest("server", 1);
    for name in ["first", "second"] {
        overlap.regions.push(Region {
            name: name.into(),
            vaddr: SHARED_CLIENT_VADDR,
            size: PAGE,
            perms: Perms {
                read: true,
                write: false,
                execute: false,
            },
            path: file.clone(),
        });
    }
    sys.spawn("bad_symbol", &bad_symbol);
    sys.spawn("overlap", &overlap);
    for name in ["bad_symbol", "overlap"] {
        let status = sys.wait_exit(name)?;
        if status.code() != Some(microkit::host::EXIT_STARTUP_FAILED) {
            return Err(format!("{name}: exit status {status}, expected 2"));
        }
    }
    sys.expect_lines(&[
        "microkit: PD 'server': could not patch symbol 'no_such_symbol'",
        &format!("microkit: PD 'server': cannot map region 'second' at {SHARED_CLIENT_VADDR:#x}"),
    ])
}

type TestFn = fn() -> Result<(), String>;

fn main() {
    if std::env::var_os(MANIFEST_ENV).is_some() {
        run_pd();
    }
    let tests: [(&str, TestFn); 4] = [
        ("hello_system", hello_system),
        ("notify_stress", notify_stress),
        ("top_level_fault", top_level_fault),
        ("startup_errors", startup_errors),
    ];
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        match test() {
            Ok(()) => {
                println!("test {name} ... ok");
                passed += 1;
            }
            Err(e) => {
                println!("test {name} ... FAILED\n{e}");
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    std::process::exit(i32::from(failed > 0));
}
