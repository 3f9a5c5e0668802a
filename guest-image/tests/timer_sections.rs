//! `.timer_client_config` as `guest-image sel4-pds` derives it, against sdfgen 0.35's own
//! `timer_client_<pd>.data` for the same system, and for the workspace's system.xml.
//!
//! The sdfgen comparison needs the workspace's Python venv with sdfgen (`.venv`, made by
//! `scripts/test.sh`); without it that test says it was skipped and passes.
use std::path::{Path, PathBuf};
use std::process::Command;

use system_plan::timer_client_sections;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Three timer clients whose channel ids to the timer differ (2, 0, 1), so that a derivation
/// that confused the two ends or the clients would show.
const SDFGEN_SCRIPT: &str = r#"
import os, sys, tempfile
from sdfgen import SystemDescription, Sddf
PD = SystemDescription.ProtectionDomain
out = sys.argv[1]
sdf = SystemDescription(SystemDescription.Arch.AARCH64, 0x90000000)
sddf = Sddf(tempfile.mkdtemp())
timer = PD("timer", "timer.elf", priority=110, passive=True)
a, b, c = (PD(n, n + ".elf", priority=97) for n in "abc")
for pd in [timer, a, b, c]:
    sdf.add_pd(pd)
# Channels of a and b that come first push their timer channel ids up.
for other in [PD("x", "x.elf", priority=1), PD("y", "y.elf", priority=1)]:
    sdf.add_pd(other)
    sdf.add_channel(SystemDescription.Channel(a, other))
t = Sddf.Timer(sdf, None, timer)
for pd in [a, b, c]:
    t.add_client(pd)
assert t.connect()
assert t.serialise_config(out)
with open(os.path.join(out, "system.xml"), "w") as f:
    f.write(sdf.render())
"#;

#[test]
fn timer_client_config_is_byte_identical_to_sdfgens() {
    let python = workspace().join(".venv/bin/python");
    let probe = Command::new(&python).args(["-c", "import sdfgen"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        testkit::skip(
            "timer_client_config_is_byte_identical_to_sdfgens",
            format_args!(
                "no sdfgen in {} (scripts/setup.sh installs it)",
                python.display()
            ),
        );
        return;
    }
    let dir = std::env::temp_dir().join(format!("guest-timer-sections-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(&python)
        .arg("-c")
        .arg(SDFGEN_SCRIPT)
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sdfgen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let xml = dir.join("system.xml");
    let sys = sdf::parse(&xml, sdf::Arch::Aarch64).unwrap();
    let derived = timer_client_sections(&sys, &xml, &["a", "b", "c"]).unwrap();
    let mut ids = Vec::new();
    for s in &derived {
        assert_eq!(s.name, ".timer_client_config");
        let theirs = std::fs::read(dir.join(format!("timer_client_{}.data", s.pd))).unwrap();
        assert_eq!(s.bytes, theirs, "PD {}", s.pd);
        ids.push(s.bytes[5]);
    }
    assert_eq!(
        ids,
        [2, 0, 0],
        "a's timer channel comes after its two others"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_echo_clients_of_system_xml_get_their_timer_channel() {
    let xml = workspace().join("system.xml");
    let sys = sdf::parse(&xml, sdf::Arch::Aarch64).unwrap();
    let derived = timer_client_sections(&sys, &xml, &["client0", "client1"]).unwrap();
    for s in &derived {
        let timer_end = sys
            .channels_of(&s.pd)
            .into_iter()
            .find(|c| c.peer_pd == "timer")
            .expect("a channel to the timer");
        assert_eq!(s.bytes, [b's', b'D', b'D', b'F', 6, timer_end.local_id]);
    }
    // The timer itself has no pp channel to anyone: refused, naming it.
    let err = timer_client_sections(&sys, &xml, &["timer"]).unwrap_err();
    assert!(err.to_string().contains("'timer'"), "{err}");
}
