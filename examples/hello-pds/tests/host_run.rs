//! Runs the three PD executables as host processes with manifests that mirror `system.xml`
//! (written by hand in `testkit::hello`; the netvm runner derives them from the SDF) and checks
//! the console.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use microkit::host::control::ControlRegion;
use microkit::host::manifest::MANIFEST_ENV;
use testkit::hello::PAGE;

struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn hello_system_runs_on_the_host() {
    let dir = std::env::temp_dir().join(format!("hello-pds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let control_path = dir.join("control");
    let control = ControlRegion::create(&control_path, 3).unwrap();
    let shared = dir.join("shared");
    let count = dir.join("crash_count");
    for file in [&shared, &count] {
        std::fs::File::create(file)
            .and_then(|f| f.set_len(PAGE))
            .unwrap();
    }

    let [client, server, crasher] =
        testkit::hello::manifests(&control_path, &shared, &count, vec![1, 2, 3, 4]);

    let (tx, rx) = mpsc::channel();
    let mut processes = Processes(Vec::new());
    for (manifest, exe) in [
        (&server, env!("CARGO_BIN_EXE_server")),
        (&client, env!("CARGO_BIN_EXE_client")),
        (&crasher, env!("CARGO_BIN_EXE_crasher")),
    ] {
        let path = dir.join(format!("{}.manifest", manifest.name));
        manifest.write(&path).unwrap();
        let mut child = Command::new(exe)
            .env(MANIFEST_ENV, &path)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        processes.0.push(child);
    }

    let mut output = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    // Each PD writes through its own pipe, so the crasher's last line can arrive after the
    // client's: wait for both.
    for last in ["client: done", "crasher: run 4"] {
        while !output.iter().any(|l: &String| l.contains(last)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => output.push(line),
                Err(_) => panic!("no '{last}'; output:\n{}", output.join("\n")),
            }
        }
    }
    drop(processes);
    let _ = std::fs::remove_dir_all(&dir);
    drop(control);

    for expected in [
        "server: init passive=true config[0..4]=[01, 02, 03, 04]",
        "server: notified on 3, shared[0]=0x12345678",
        "client: notified by server, shared[1]=0x12345679",
        "server: protected on 3 label=42 mr0=7",
        "client: ppcall reply label=0 mr0=42",
        "client: fault from child 1 label=6 mr0=",
        "mr1=0xdead000",
        "client: fault from child 1 label=3",
        "client: restarted child 1",
        "crasher: run 4",
    ] {
        assert!(
            output.iter().any(|l| l.contains(expected)),
            "missing {expected:?} in:\n{}",
            output.join("\n")
        );
    }
}
