//! The virtual LAN: its network namespaces, veth pairs and the processes started in them.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::lan;
use super::process::{err, ip, run_cmd, Result};

/// The virtual LAN and every process on it; dropping it tears everything down.
pub struct Lan {
    /// Namespace of the system (its driver's veth end).
    pub sys: String,
    /// Namespace of the load generator.
    pub peer: String,
    /// Namespace of the kernel reference echo.
    pub reference: String,
    children: Vec<(String, Child)>,
}

impl Lan {
    /// Creates the three namespaces and two veth pairs, offloads off.
    pub fn create(prefix: &str) -> Result<Lan> {
        let lan = Lan {
            sys: format!("{prefix}-sys"),
            peer: format!("{prefix}-peer"),
            reference: format!("{prefix}-ref"),
            children: Vec::new(),
        };
        for ns in [&lan.sys, &lan.peer, &lan.reference] {
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        ip(&[
            "link", "add", "sys0", "netns", &lan.sys, "type", "veth", "peer", "name", "peer0",
            "netns", &lan.peer,
        ])?;
        ip(&[
            "link",
            "add",
            "ref0",
            "netns",
            &lan.reference,
            "type",
            "veth",
            "peer",
            "name",
            "peer1",
            "netns",
            &lan.peer,
        ])?;
        ip(&["-n", &lan.peer, "addr", "add", lan::PEER, "dev", "peer0"])?;
        ip(&[
            "-n",
            &lan.peer,
            "addr",
            "add",
            lan::PEER_REF,
            "dev",
            "peer1",
        ])?;
        let ref_addr = format!("{}/{}", lan::KERNEL_ECHO, lan::PREFIX);
        ip(&[
            "-n",
            &lan.reference,
            "addr",
            "add",
            &ref_addr,
            "dev",
            "ref0",
        ])?;
        for (ns, dev) in [
            (&lan.sys, "sys0"),
            (&lan.peer, "peer0"),
            (&lan.peer, "peer1"),
            (&lan.reference, "ref0"),
        ] {
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            run_cmd(
                Command::new("ip")
                    .args(["netns", "exec", ns, "ethtool", "-K", dev])
                    .args([
                        "tx", "off", "rx", "off", "tso", "off", "gso", "off", "gro", "off",
                    ]),
            )?;
        }
        Ok(lan)
    }

    /// A command run inside namespace `ns`.
    pub fn exec(ns: &str, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).arg(program);
        c
    }

    /// Starts `cmd` and keeps it for the tear-down.
    pub fn spawn(&mut self, name: &str, mut cmd: Command) -> Result<&mut Child> {
        let child = cmd
            .spawn()
            .map_err(|e| err(format!("starting {name}: {e}")))?;
        self.children.push((name.to_owned(), child));
        Ok(&mut self.children.last_mut().expect("just pushed").1)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for (_, child) in self.children.iter_mut().rev() {
            // SIGTERM first: the runner then stops its PDs and removes its shm files.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for (_, child) in self.children.iter_mut() {
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in [&self.sys, &self.peer, &self.reference] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
