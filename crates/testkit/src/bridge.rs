//! A LAN of network namespaces on a Linux bridge, for tests of several nodes: a host namespace
//! `<prefix>-m` holding the bridge `br0` (address `10.0.255.1/16`, netvm_api::lan's host side)
//! and one namespace `<prefix>-n<n>` per node with `eth0` at `10.0.n.10/16` (client 0 of node
//! `n`), its veth peer on the bridge. Dropping it deletes the namespaces and with them every
//! link. Needs root and iproute2.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;

/// The namespaces; see the module docs.
pub struct BridgeLan {
    prefix: String,
    nodes: Vec<u8>,
}

/// Runs `ip args`, its stderr in the error.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl BridgeLan {
    /// Creates the host namespace and one per node id in `nodes` (each 0..=254); `prefix`
    /// (a few letters) is made unique with the process id.
    pub fn create(prefix: &str, nodes: &[u8]) -> Result<BridgeLan, String> {
        let lan = BridgeLan {
            prefix: format!("{prefix}{}", std::process::id()),
            nodes: Vec::new(),
        };
        let m = lan.host();
        ip(&["netns", "add", &m])?;
        let mut lan = lan;
        ip(&["-n", &m, "link", "set", "lo", "up"])?;
        ip(&["-n", &m, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &m, "addr", "add", "10.0.255.1/16", "dev", "br0"])?;
        ip(&["-n", &m, "link", "set", "br0", "up"])?;
        for &n in nodes {
            let ns = lan.node(n);
            ip(&["netns", "add", &ns])?;
            lan.nodes.push(n);
            let port = format!("p{n}");
            ip(&[
                "-n", &m, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&["-n", &m, "link", "set", &port, "master", "br0", "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.0.{n}.10/16"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(lan)
    }

    /// The host namespace's name.
    pub fn host(&self) -> String {
        format!("{}-m", self.prefix)
    }

    /// Node `n`'s namespace's name.
    pub fn node(&self, n: u8) -> String {
        format!("{}-n{n}", self.prefix)
    }

    /// Moves the calling thread into namespace `ns` (setns is per thread).
    pub fn enter(ns: &str) -> Result<(), String> {
        let f = File::open(format!("/run/netns/{ns}")).map_err(|e| format!("netns {ns}: {e}"))?;
        // SAFETY: setns on a namespace fd this function owns for the call; it changes only the
        // calling thread's network namespace and touches no memory of ours.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc == 0 {
            Ok(())
        } else {
            Err(format!("setns {ns}: {}", std::io::Error::last_os_error()))
        }
    }

    /// A command that runs `program` in namespace `ns`.
    pub fn exec(ns: &str, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).arg(program);
        c
    }
}

impl Drop for BridgeLan {
    fn drop(&mut self) {
        for n in self.nodes.clone() {
            let _ = ip(&["netns", "del", &self.node(n)]);
        }
        let _ = ip(&["netns", "del", &self.host()]);
    }
}
