//! `netvm run` on the hello-pds example (examples/hello-pds/system.xml) with the real PD
//! executables: notifications both ways, a PPC to the passive server, a region found through
//! `setvar_vaddr` at different vaddrs, a config section, a child fault and restarts, a
//! top-level fault reported by the monitor, and a PD whose start-up fails.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use netvm::run::{
    FailureKind, Outcome, OutputMode, RunOptions, SectionDir, StopReason, System, WaitError,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const NETVM: &str = env!("CARGO_BIN_EXE_netvm");
const WAIT: Duration = Duration::from_secs(20);

fn hello_system() -> PathBuf {
    common::workspace().join("examples/hello-pds/system.xml")
}

fn options(system: PathBuf) -> RunOptions {
    let mut opts = RunOptions::new(system);
    opts.bin_dir = common::hello_bins();
    opts.output = OutputMode::Quiet;
    opts
}

#[test]
fn hello_pds_runs_with_microkit_semantics() {
    let sections = common::temp_dir("hello-sections");
    fs::create_dir_all(sections.join("server")).expect("mkdir");
    fs::write(sections.join("server/.hello_config.bin"), [1, 2, 3, 4]).expect("write");
    let mut opts = options(hello_system());
    opts.sections.push(Box::new(SectionDir(sections.clone())));
    let system = System::start(opts).expect("start");
    let run_dir = system.run_dir().to_path_buf();
    assert!(run_dir.join("control").exists());

    let done = system.wait_line(|l| l.text == "client: done", WAIT);
    let texts: Vec<String> = system
        .console_lines()
        .iter()
        .map(|l| format!("[{}] {}", l.source, l.text))
        .collect();
    assert!(done.is_ok(), "no 'client: done':\n{}", texts.join("\n"));
    for expected in [
        // The config section reached the server's ELF section; `passive` from the SDF.
        "[server] server: init passive=true config[0..4]=[01, 02, 03, 04]",
        // Notify client -> server; both see the one region at their own setvar_vaddr.
        "[server] server: notified on 3, shared[0]=0x12345678",
        // Deferred notify server -> client.
        "[client] client: notified by server, shared[1]=0x12345679",
        // PPC client -> server on the pp end.
        "[server] server: protected on 3 label=42 mr0=7",
        "[client] client: ppcall reply label=0 mr0=42",
        // Child 1 (crasher) faults at 0xdead000: a VMFault to its parent, which restarts it.
        "[client] client: fault from child 1 label=6",
        "mr1=0xdead000",
        "[client] client: restarted child 1",
        // Second run panics: a UserException; third run notifies the parent (id 0 -> 2).
        "[client] client: fault from child 1 label=3",
        "[crasher] crasher: run 3",
    ] {
        assert!(
            texts.iter().any(|l| l.contains(expected)),
            "missing {expected:?} in:\n{}",
            texts.join("\n")
        );
    }
    // The server blocks for good once it has answered: the monitor reports it passive.
    system
        .wait_line(|l| l.text == "MON|INFO: PD 'server' is now passive!", WAIT)
        .expect("passive report");
    // Microkit order: client 0, crasher 1 (its child), server 2.
    let names: Vec<&str> = system.plan().pds.iter().map(|p| p.name()).collect();
    assert_eq!(names, ["client", "crasher", "server"]);

    let pids: Vec<u32> = names
        .iter()
        .map(|n| system.pd_pid(n).expect("running"))
        .collect();
    assert_eq!(system.stop(), Outcome::Stopped(StopReason::Requested));
    for pid in pids {
        assert!(!common::alive(pid), "PD process {pid} survived the stop");
    }
    assert!(!run_dir.exists(), "{} left behind", run_dir.display());
    assert!(system.pd_pid("client").is_none());
    let _ = fs::remove_dir_all(&sections);
}

/// A fresh directory for test `tag` and in it a system of the crasher as a top-level PD,
/// its run count in a region.
fn crasher_system(tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = common::temp_dir(tag);
    let path = dir.join("system.xml");
    fs::write(
        &path,
        r#"<system>
    <memory_region name="crash_count" size="0x1000" />
    <protection_domain name="crasher" priority="90">
        <program_image path="crasher.elf" />
        <map mr="crash_count" vaddr="0x6000000" perms="rw" setvar_vaddr="crash_count_vaddr" />
    </protection_domain>
</system>
"#,
    )
    .expect("write");
    (dir, path)
}

/// The crasher as a top-level PD: its fault goes to the monitor, which the runner plays.
#[test]
fn top_level_fault_is_reported_like_the_monitor() {
    let (dir, path) = crasher_system("hello-toplevel");

    let system = System::start(options(path)).expect("start");
    let outcome = system.wait(Some(WAIT)).expect("the fault ends the run");
    let Outcome::Failed(failures) = &outcome else {
        panic!("expected a failure, got {outcome:?}");
    };
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].pd, "crasher");
    let FailureKind::Faulted { label, mrs, status } = failures[0].kind else {
        panic!("expected a fault: {failures:?}");
    };
    assert_eq!((label, mrs[1], status), (6, 0xdead000, 128 + 11));
    let report = failures[0].to_string();
    assert!(
        report.starts_with("MON|ERROR: PD 'crasher' faulted: VMFault ip=0x")
            && report.contains("fault_addr=0xdead000"),
        "{report}"
    );
    assert!(
        system.console_lines().iter().any(|l| l.text == report),
        "the report is on the console"
    );
    assert!(!system.run_dir().exists());
    let _ = fs::remove_dir_all(&dir);
}

/// The crasher as a top-level PD under `OnFault::Restart`: it faults on run 1 and panics on
/// runs 2 and 3 (its run count survives in a region, as a restarted PD finds its regions).
fn top_level_crasher_restarted(max_restarts: u32) -> (System, std::path::PathBuf) {
    let (dir, path) = crasher_system("hello-restart");
    let mut opts = options(path);
    opts.on_fault = netvm::run::OnFault::Restart { max_restarts };
    (System::start(opts).expect("start"), dir)
}

#[test]
fn a_top_level_pd_is_restarted_with_its_regions_until_it_runs() {
    let (system, dir) = top_level_crasher_restarted(3);
    system
        .wait_line(|l| l.text == "crasher: run 4", WAIT)
        .expect("the fourth run");
    let texts: Vec<String> = system.console_lines().into_iter().map(|l| l.text).collect();
    for k in 1..=3 {
        let line = format!("MON|INFO: PD 'crasher' restarted ({k} of 3)");
        assert!(
            texts.contains(&line),
            "no {line:?} in:
{}",
            texts.join("\n")
        );
    }
    assert!(texts
        .iter()
        .any(|l| l.starts_with("MON|ERROR: PD 'crasher' faulted: VMFault")));
    assert!(system.pd_pid("crasher").is_some(), "the fourth run lives");
    // Recovered failures do not fail the run.
    assert_eq!(system.stop(), Outcome::Stopped(StopReason::Requested));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_pd_that_keeps_failing_stops_the_system_after_its_restarts() {
    let (system, dir) = top_level_crasher_restarted(2);
    let outcome = system
        .wait(Some(WAIT))
        .expect("the third failure ends the run");
    let Outcome::Failed(failures) = &outcome else {
        panic!("expected a failure, got {outcome:?}");
    };
    assert_eq!(failures.len(), 1, "only the last one stands: {failures:?}");
    assert!(
        matches!(failures[0].kind, FailureKind::Faulted { label: 3, .. }),
        "the third run panics: {failures:?}"
    );
    let texts: Vec<String> = system.console_lines().into_iter().map(|l| l.text).collect();
    assert!(
        texts.contains(
            &"MON|ERROR: PD 'crasher' failed after 2 restarts: not restarted again".into()
        ),
        "{}",
        texts.join("\n")
    );
    assert!(!texts.iter().any(|l| l == "crasher: run 4"));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_pd_that_cannot_start_is_reported() {
    let sections = common::temp_dir("hello-badsection");
    fs::create_dir_all(sections.join("server")).expect("mkdir");
    fs::write(sections.join("server/.no_such_section.bin"), [1]).expect("write");
    let mut opts = options(hello_system());
    opts.sections.push(Box::new(SectionDir(sections.clone())));
    let system = System::start(opts).expect("start");
    match system.wait(Some(WAIT)) {
        Some(Outcome::Failed(f)) => {
            assert_eq!(f[0].pd, "server");
            assert_eq!(f[0].kind, FailureKind::StartupFailed);
        }
        other => panic!("expected the server to fail, got {other:?}"),
    }
    let lines = system.console_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.source == "server" && l.text.contains(".no_such_section")),
        "the PD's own message names the section: {lines:?}"
    );
    assert_eq!(
        system.wait_line(|l| l.text == "never", Duration::from_secs(5)),
        Err(WaitError::Finished)
    );
    let _ = fs::remove_dir_all(&sections);
}

#[test]
fn dry_run_prints_the_manifests() {
    let child = Command::new(NETVM)
        .args(["run", "--dry-run", "--bin-dir"])
        .arg(common::hello_bins())
        .arg(hello_system())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let runner = child.id();
    let out = child.wait_with_output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "# PD 'client' (index 0)",
        "name client\nindex 0\n",
        // client channel 0 -> server (index 2) id 3, may notify and PP-call.
        "channel 0 2 3 1 1\n",
        // client channel 2 -> crasher (index 1) id 0, notify="false".
        "channel 2 1 0 0 0\n",
        "child 1 1\n",
        "setvar shared_vaddr 0x4000000\n",
        "parent 0 1\n",
        "setvar crash_count_vaddr 0x6000000\n",
        "passive 1\n",
        "setvar shared_vaddr 0x5000000\n",
        "region shared 0x5000000 0x1000 rw /dev/shm/netvm-run.",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    assert!(
        common::shm_dirs_of(runner).is_empty(),
        "a dry run creates no run directory"
    );
}

/// The CLI end to end: output prefixed by PD, Ctrl-C stops with status 0 and leaves nothing.
#[test]
fn cli_runs_hello_and_ctrl_c_is_a_clean_stop() {
    let mut child = Command::new(NETVM)
        .args(["run", "--bin-dir"])
        .arg(common::hello_bins())
        .arg(hello_system())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn netvm run");
    let runner = child.id();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + WAIT;
    while !lines.iter().any(|l: &String| l == "[client] client: done") {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => lines.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("no '[client] client: done':\n{}", lines.join("\n"));
            }
        }
    }
    let pds = common::children_of(runner);
    assert_eq!(pds.len(), 3, "three PD processes: {pds:?}");
    assert_eq!(common::shm_dirs_of(runner).len(), 1);

    kill(Pid::from_raw(runner as i32), Signal::SIGINT).expect("SIGINT");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "{}", lines.join("\n"));
    for pid in pds {
        assert!(!common::alive(pid), "PD {pid} survived Ctrl-C");
    }
    assert!(common::shm_dirs_of(runner).is_empty(), "run directory left");
}
