//! `netvm run` when things go wrong: bad SDF, missing executable, PDs that exit, are killed or
//! scribble over their control record, Ctrl-C, SIGTERM, timeout, a runner killed outright. The
//! PDs here are shell scripts (the runner only needs executables), so every case is exact.

mod common;

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use netvm::run::{
    FailureKind, OnFault, Outcome, OutputMode, PdFailure, RunError, RunOptions, StopReason, System,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const NETVM: &str = env!("CARGO_BIN_EXE_netvm");
const WAIT: Duration = Duration::from_secs(10);

/// A script PD that records its pid (and that of a background child, to check that tear-down
/// reaches what PDs fork) in `dir`, says it is ready and waits.
fn sleeper(dir: &Path, name: &str) {
    let d = dir.display();
    common::script(
        dir,
        name,
        &format!(
            "sleep 1000 &\necho $! > {d}/{name}.child\necho $$ > {d}/{name}.pid\n\
             echo \"{name}: ready\" >&2\nwait"
        ),
    );
}

/// The pids a [`sleeper`] recorded: its own and its child's.
fn sleeper_pids(dir: &Path, name: &str) -> [u32; 2] {
    let read = |ext: &str| {
        common::wait_file(&dir.join(format!("{name}.{ext}")))
            .parse::<u32>()
            .expect("pid")
    };
    [read("pid"), read("child")]
}

fn netvm_run(args: &[&str], system: &Path) -> Child {
    Command::new(NETVM)
        .arg("run")
        .args(args)
        .arg(system)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn netvm run")
}

fn finish(mut child: Child) -> (Option<i32>, String) {
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    let status = child.wait().expect("wait");
    (status.code(), stderr)
}

fn options(system: PathBuf, bins: &Path) -> RunOptions {
    let mut opts = RunOptions::new(system);
    opts.bin_dir = bins.to_path_buf();
    opts.output = OutputMode::Quiet;
    opts
}

#[test]
fn sdf_error_is_printed_as_file_line_col_with_status_2() {
    let dir = common::temp_dir("err-sdf");
    let system = dir.join("bad.xml");
    fs::write(
        &system,
        "<system>\n  <protection_domain name=\"a\" priority=\"300\">\n    \
         <program_image path=\"a.elf\"/>\n  </protection_domain>\n</system>\n",
    )
    .expect("write");
    let child = netvm_run(&[], &system);
    let runner = child.id();
    let (code, stderr) = finish(child);
    assert_eq!(code, Some(2), "{stderr}");
    let expected = format!("{}:2:", system.display());
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert!(stderr.contains("priority"), "{stderr}");
    assert!(common::shm_dirs_of(runner).is_empty());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn missing_executable_names_the_pd_and_the_path_tried() {
    let dir = common::temp_dir("err-missing");
    sleeper(&dir, "present");
    let system = common::script_system(&dir, &["present", "absent"]);
    let bin_dir = dir.display().to_string();
    let child = netvm_run(&["--bin-dir", &bin_dir], &system);
    let runner = child.id();
    let (code, stderr) = finish(child);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("PD 'absent'"), "{stderr}");
    assert!(
        stderr.contains(&dir.join("absent").display().to_string()),
        "{stderr}"
    );
    // Nothing started: checked before any PD runs.
    assert!(!dir.join("present.pid").exists());
    assert!(common::shm_dirs_of(runner).is_empty());

    // Present and executable, but exec fails (its interpreter does not exist): what started
    // is torn down.
    fs::write(dir.join("absent"), "#!/nonexistent/interpreter\n").expect("write");
    fs::set_permissions(dir.join("absent"), fs::Permissions::from_mode(0o755)).expect("chmod");
    let child = netvm_run(&["--bin-dir", &bin_dir], &system);
    let runner = child.id();
    let (code, stderr) = finish(child);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("netvm run: PD 'absent': cannot start"),
        "{stderr}"
    );
    assert!(common::shm_dirs_of(runner).is_empty());
    // 'present' was started first; if it got as far as recording its pid, it is gone now.
    if let Ok(pid) = fs::read_to_string(dir.join("present.pid")) {
        let pid: u32 = pid.trim().parse().expect("pid");
        assert!(common::gone(pid), "PD {pid} survived a failed start");
    }
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_pd_that_exits_is_reported_by_name_and_the_rest_torn_down() {
    let dir = common::temp_dir("err-exit");
    sleeper(&dir, "sleeper");
    let d = dir.display();
    common::script(
        &dir,
        "quitter",
        &format!("while [ ! -s {d}/sleeper.pid ]; do sleep 0.02; done\nexit 3"),
    );
    let system = common::script_system(&dir, &["sleeper", "quitter"]);
    let bin_dir = dir.display().to_string();
    let child = netvm_run(&["--bin-dir", &bin_dir], &system);
    let runner = child.id();
    let pids = sleeper_pids(&dir, "sleeper");
    let (code, stderr) = finish(child);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("MON|ERROR: PD 'quitter' exited unexpectedly with status 3"),
        "{stderr}"
    );
    for pid in pids {
        assert!(common::gone(pid), "process {pid} survived: {stderr}");
    }
    assert!(common::shm_dirs_of(runner).is_empty());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn killing_a_pd_is_reported_and_tear_down_leaves_nothing() {
    let dir = common::temp_dir("err-kill");
    sleeper(&dir, "victim");
    sleeper(&dir, "bystander");
    let system = common::script_system(&dir, &["victim", "bystander"]);
    let system = System::start(options(system, &dir)).expect("start");
    let run_dir = system.run_dir().to_path_buf();
    let mut pids = sleeper_pids(&dir, "victim").to_vec();
    pids.extend(sleeper_pids(&dir, "bystander"));
    assert_eq!(system.pd_pid("victim"), Some(pids[0]));
    // The region file exists, sized to the region, while the system runs.
    assert_eq!(
        fs::metadata(run_dir.join("mr0")).expect("mr0").len(),
        0x1000
    );

    system.kill("victim", Signal::SIGKILL).expect("kill");
    let outcome = system.wait(Some(WAIT)).expect("the death ends the run");
    assert_eq!(
        outcome,
        Outcome::Failed(vec![PdFailure {
            pd: "victim".into(),
            kind: FailureKind::Killed(9),
        }])
    );
    assert_eq!(outcome.exit_code(), 1);
    assert!(system
        .console_lines()
        .iter()
        .any(|l| l.text == "MON|ERROR: PD 'victim' was killed by signal 9 (SIGKILL)"));
    for pid in pids {
        assert!(common::gone(pid), "process {pid} survived the tear-down");
    }
    assert!(!run_dir.exists(), "{} left behind", run_dir.display());
    assert!(matches!(
        system.kill("bystander", Signal::SIGTERM),
        Err(RunError::NotRunning(_))
    ));
    assert!(matches!(
        system.kill("nobody", Signal::SIGTERM),
        Err(RunError::UnknownPd(_))
    ));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn ctrl_c_and_sigterm_are_clean_stops() {
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        let dir = common::temp_dir(&format!("err-{}", signal.as_str()));
        sleeper(&dir, "a");
        sleeper(&dir, "b");
        let system = common::script_system(&dir, &["a", "b"]);
        let bin_dir = dir.display().to_string();
        let child = netvm_run(&["--bin-dir", &bin_dir], &system);
        let runner = child.id();
        let mut pids = sleeper_pids(&dir, "a").to_vec();
        pids.extend(sleeper_pids(&dir, "b"));
        assert_eq!(common::shm_dirs_of(runner).len(), 1);
        kill(Pid::from_raw(runner as i32), signal).expect("signal");
        let (code, stderr) = finish(child);
        assert_eq!(code, Some(0), "{signal}: {stderr}");
        assert!(
            stderr.contains(&format!("netvm run: {}, stopping", signal.as_str())),
            "{stderr}"
        );
        for pid in pids {
            assert!(common::gone(pid), "{signal}: process {pid} survived");
        }
        assert!(common::shm_dirs_of(runner).is_empty(), "{signal}: shm left");
        let _ = fs::remove_dir_all(&dir);
    }
}

#[test]
fn timeout_is_a_clean_stop() {
    let dir = common::temp_dir("err-timeout");
    sleeper(&dir, "a");
    let system = common::script_system(&dir, &["a"]);
    let bin_dir = dir.display().to_string();
    let child = netvm_run(&["--bin-dir", &bin_dir, "--timeout", "500ms"], &system);
    let pids = sleeper_pids(&dir, "a");
    let (code, stderr) = finish(child);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("[a] a: ready"), "prefixed output: {stderr}");
    assert!(stderr.contains("netvm run: timeout, stopped"), "{stderr}");
    for pid in pids {
        assert!(common::gone(pid));
    }
    // Raw output: the PD's bytes unchanged.
    let child = netvm_run(
        &[
            "--bin-dir",
            &bin_dir,
            "--timeout",
            "500ms",
            "--output",
            "raw",
        ],
        &system,
    );
    let (code, stderr) = finish(child);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.lines().any(|l| l == "a: ready"), "{stderr}");
    assert!(!stderr.contains("[a]"), "{stderr}");
    let _ = fs::remove_dir_all(&dir);
}

/// A PD that claims a fault in its control record that its exit status contradicts, sets its
/// recorded pid to 1, wrecks the region header, writes a 100 kB line and exits 139.
#[test]
fn a_hostile_pd_is_reported_by_name_and_cannot_mislead_the_runner() {
    let dir = common::temp_dir("err-hostile");
    sleeper(&dir, "bystander");
    let d = dir.display();
    common::script(
        &dir,
        "vandal",
        &format!(
            r#"while [ ! -s {d}/bystander.pid ]; do sleep 0.02; done
ctl=$(sed -n 's/^control //p' "$NETVM_PD_MANIFEST")
idx=$(sed -n 's/^index //p' "$NETVM_PD_MANIFEST")
rec=$(( 2048 * (1 + idx) ))
put() {{ printf "$2" | dd of="$ctl" bs=1 seek=$(( $1 )) conv=notrunc 2>/dev/null; }}
put 0 '\377\377\377\377\377\377\377\377'
put "$rec + 24" '\001\000\000\000'
put "$rec + 36" '\001\000\000\000'
put "$rec + 57" '\060'
put "$rec + 88" '\006'
head -c 100000 /dev/zero | tr '\0' x >&2
exit 139"#
        ),
    );
    let system = common::script_system(&dir, &["bystander", "vandal"]);
    let system = System::start(options(system, &dir)).expect("start");
    let pids = sleeper_pids(&dir, "bystander");
    let outcome = system.wait(Some(WAIT)).expect("the exit ends the run");
    // The record says "UserException, signal 6"; status 139 says SIGSEGV: not believed.
    assert_eq!(
        outcome,
        Outcome::Failed(vec![PdFailure {
            pd: "vandal".into(),
            kind: FailureKind::Exited(139),
        }])
    );
    let lines = system.console_lines();
    let long = lines
        .iter()
        .filter(|l| l.source == "vandal")
        .map(|l| l.text.len())
        .sum::<usize>();
    assert_eq!(long, 100_000, "the whole unterminated line is recorded");
    for pid in pids {
        assert!(common::gone(pid));
    }
    assert!(!system.run_dir().exists());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn on_fault_continue_keeps_the_other_pds_running() {
    let dir = common::temp_dir("err-continue");
    sleeper(&dir, "stayer");
    common::script(&dir, "quitter", "exit 4");
    let system = common::script_system(&dir, &["stayer", "quitter"]);
    let mut opts = options(system, &dir);
    opts.on_fault = OnFault::Continue;
    let system = System::start(opts).expect("start");
    let pids = sleeper_pids(&dir, "stayer");
    system
        .wait_line(
            |l| l.text == "MON|ERROR: PD 'quitter' exited unexpectedly with status 4",
            WAIT,
        )
        .expect("report");
    assert_eq!(system.wait(Some(Duration::from_millis(300))), None);
    assert!(common::alive(pids[0]) && system.pd_pid("stayer") == Some(pids[0]));
    assert_eq!(system.pd_pid("quitter"), None);
    let outcome = system.stop();
    assert!(
        matches!(&outcome, Outcome::Failed(f) if f.len() == 1 && f[0].pd == "quitter"),
        "{outcome:?}"
    );
    for pid in pids {
        assert!(common::gone(pid));
    }
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn post_irq_sets_the_irq_bit_in_the_pd_notification_word() {
    let dir = common::temp_dir("err-irq");
    common::script(
        &dir,
        "dev",
        r#"ctl=$(sed -n 's/^control //p' "$NETVM_PD_MANIFEST")
idx=$(sed -n 's/^index //p' "$NETVM_PD_MANIFEST")
echo listening >&2
while :; do
  bits=$(od -An -t x8 -j $(( 2048 * (1 + idx) + 8 )) -N 8 "$ctl" | tr -d ' ')
  if [ "$bits" != 0000000000000000 ]; then echo "notify_bits=$bits" >&2; exec sleep 1000; fi
  sleep 0.01
done"#,
    );
    let system = dir.join("system.xml");
    fs::write(
        &system,
        r#"<system>
    <protection_domain name="other"><program_image path="other.elf"/></protection_domain>
    <protection_domain name="dev">
        <program_image path="dev.elf"/>
        <irq irq="33" id="5"/>
    </protection_domain>
</system>"#,
    )
    .expect("write");
    sleeper(&dir, "other");
    let system = System::start(options(system, &dir)).expect("start");
    system
        .wait_line(|l| l.source == "dev" && l.text == "listening", WAIT)
        .expect("listening");
    assert!(matches!(
        system.post_irq("dev", 4),
        Err(RunError::UnknownIrq { id: 4, .. })
    ));
    assert!(matches!(
        system.post_irq("other", 5),
        Err(RunError::UnknownIrq { .. })
    ));
    system.post_irq("dev", 5).expect("post");
    let line = system
        .wait_line(|l| l.text.starts_with("notify_bits="), WAIT)
        .expect("the PD saw its bit");
    assert_eq!(line.text, "notify_bits=0000000000000020");
    assert_eq!(system.stop(), Outcome::Stopped(StopReason::Requested));
    let _ = fs::remove_dir_all(&dir);
}

/// SIGKILL gives the runner no chance to clean up: its PDs die with it (PR_SET_PDEATHSIG), and
/// the next run removes the run directory it left.
#[test]
fn a_runner_killed_outright_takes_its_pds_and_the_next_run_cleans_up() {
    let dir = common::temp_dir("err-sigkill");
    let d = dir.display();
    for name in ["a", "b"] {
        common::script(
            &dir,
            name,
            &format!("echo $$ > {d}/{name}.pid\nexec sleep 1000"),
        );
    }
    let system = common::script_system(&dir, &["a", "b"]);
    let bin_dir = dir.display().to_string();
    // A base of its own: runs of parallel tests in /dev/shm would remove the stale directory too.
    let shm = dir.join("shm");
    fs::create_dir_all(&shm).expect("mkdir");
    let shm_arg = shm.display().to_string();
    let mut child = netvm_run(&["--bin-dir", &bin_dir, "--shm-dir", &shm_arg], &system);
    let pids: Vec<u32> = ["a", "b"]
        .iter()
        .map(|n| {
            common::wait_file(&dir.join(format!("{n}.pid")))
                .parse()
                .expect("pid")
        })
        .collect();
    let left: Vec<PathBuf> = fs::read_dir(&shm)
        .expect("shm")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    for pid in pids {
        assert!(common::gone(pid), "PD {pid} outlived its runner");
    }
    assert!(left[0].exists(), "nothing could remove it yet");
    let mut opts = options(system, &dir);
    opts.shm_dir = shm;
    let next = System::start(opts).expect("start");
    assert!(!left[0].exists(), "stale run directory not removed");
    next.stop();
    let _ = fs::remove_dir_all(&dir);
}

/// The first thing a new user tries: `netvm run system.xml`. Without system.macs beside it and
/// without any config option, the runner names every missing config section and the options
/// that give them, and starts nothing (it used to start six PDs that panicked on "bad magic").
/// With system.macs beside it, the net configs are derived from it and only the echo servers'
/// addresses are asked for.
#[test]
fn run_without_config_options_names_what_is_missing() {
    let bins = common::system::system_bins();
    let dir = common::temp_dir("no-config");
    let system = dir.join("system.xml");
    fs::copy(common::workspace().join("system.xml"), &system).unwrap();
    let run = |dir: &Path| {
        Command::new(NETVM)
            .arg("run")
            .arg(dir.join("system.xml"))
            .arg("--bin-dir")
            .arg(&bins)
            .arg("--dry-run")
            .output()
            .expect("netvm run")
    };
    let out = run(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for needle in [
        "no config for",
        "PD 'net_virt_rx' section '.net_virt_rx_config'",
        "PD 'client0' section '.net_client_config'",
        "PD 'client0' section '.echo_config'",
        "--net-macs @system.macs",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in:\n{stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");

    fs::copy(
        common::workspace().join("system.macs"),
        dir.join("system.macs"),
    )
    .unwrap();
    let out = run(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("derived with the client MACs of"),
        "{stderr}"
    );
    assert!(
        stderr.contains("PD 'client0' section '.echo_config'"),
        "{stderr}"
    );
    assert!(!stderr.contains(".net_client_config"), "{stderr}");
    fs::remove_dir_all(&dir).ok();
}
