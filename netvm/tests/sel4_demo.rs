//! The main job (`netvm sel4-demo`, what `scripts/run.sh` runs) end to end: builds the seL4
//! image, boots it and the reference (the guest kernel alone) on QEMU, measures one short UDP
//! and one short TCP point against both, and checks that the summary has echoed rows for both.
//!
//! Ignored by default (the seL4 stage runs it with `--ignored`): it needs `MICROKIT_SDK`, root
//! (or an unprivileged user namespace), QEMU, and about 2 minutes once the image is built.
#![cfg(target_os = "linux")]

use std::path::Path;
use std::process::Command;

#[test]
#[ignore = "seL4 stage: boots QEMU for minutes; scripts/test.sh runs it (--ignored)"]
fn sel4_demo_echoes_on_sel4_and_on_linux_alone() {
    if testkit::microkit_sdk("sel4_demo").is_none() {
        return;
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::env::temp_dir().join(format!("netvm-sel4-demo-{}", std::process::id()));
    let run = Command::new(env!("CARGO_BIN_EXE_netvm"))
        .current_dir(&workspace)
        .args(["sel4-demo", "--udp-rates", "10M", "--tcp-rates", "10M"])
        .args(["--warmup", "1s", "--duration", "2s", "--cooldown", "0s"])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("netvm sel4-demo");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    println!("{stderr}{stdout}");
    assert!(run.status.success(), "netvm sel4-demo failed");
    let summary = std::fs::read_to_string(out.join("summary.csv")).expect("summary.csv");
    for system in ["seL4 netvm", "Linux alone"] {
        for proto in ["udp", "tcp"] {
            let row = summary
                .lines()
                .find(|l| l.starts_with(&format!("{system},{proto},")))
                .unwrap_or_else(|| panic!("no {system} {proto} row in:\n{summary}"));
            let echoed: u64 = row
                .split(',')
                .nth(4)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            assert!(echoed > 0, "{system} {proto} echoed nothing: {row}");
        }
    }
    // The table is printed once, with every row.
    assert_eq!(stdout.matches("system ").count(), 1, "{stdout}");
    let _ = std::fs::remove_dir_all(&out);
}
