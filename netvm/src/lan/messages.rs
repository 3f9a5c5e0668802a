//! Node messages in a `netvm lan`: a node-msg master on the host side
//! ([`netvm_api::lan::HOST_IP`], port [`node_msg::PORT`]: `netvm node master` in the host-side
//! namespace), every node's client1 joining it and messaging the nodes it measures
//! (`/msg=` of `--echo-peers`). After the rounds each node's `msg.*` counters (its stats page:
//! its id, and the totals) and its console's last `msg round` line (the per-peer numbers,
//! which the stats page has no room for) fill the messages table; a pair that did not
//! exchange verified messages both ways is named and fails the run.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netvm_api::lan::HOST_IP;

use super::switch::terminate;
use super::NodeStats;
use crate::demo::{err, Lan, Result};
use crate::sel4_demo::copy_output;

/// The master, `netvm node master` in the host-side namespace; dropping it stops it.
pub(super) struct Master {
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
}

impl Master {
    /// Starts the master on [`HOST_IP`] in `host_ns`.
    pub(super) fn start(host_ns: &str, netvm: &Path) -> Result<Master> {
        let mut cmd = Lan::exec(host_ns, netvm);
        cmd.args(["node", "master", "--listen"])
            .arg(format!("{HOST_IP}:{}", node_msg::PORT))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| err(format!("netvm node master: {e}")))?;
        let out = Arc::new(Mutex::new(Vec::new()));
        copy_output(&mut child, &out);
        tracing::info!(
            "node messaging: master (pid {}) on {HOST_IP}:{}",
            child.id(),
            node_msg::PORT
        );
        Ok(Master { child, out })
    }

    /// Fails if the master has stopped.
    pub(super) fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(err(format!(
                "node messaging: the master stopped ({status}): {}",
                self.output()
            ))),
            _ => Ok(()),
        }
    }

    fn output(&self) -> String {
        self.out
            .lock()
            .map(|o| String::from_utf8_lossy(&o).into_owned())
            .unwrap_or_default()
    }

    /// The ids the master gave out (its `joined: node <id> at ...` lines), in order.
    pub(super) fn joined(&self) -> Vec<u8> {
        self.output()
            .lines()
            .filter_map(|l| l.strip_prefix("joined: node "))
            .filter_map(|l| l.split(' ').next()?.parse().ok())
            .collect()
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        if !terminate(&mut self.child, Duration::from_secs(2)) {
            tracing::warn!("node messaging: the master did not stop on SIGTERM: killed");
        }
    }
}

/// One node's numbers for one peer, from its console's `msg round` lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerMsgs {
    /// Messages sent to the peer.
    pub sent: u64,
    /// Of those, acknowledged by the peer.
    pub delivered: u64,
    /// Of those, given up.
    pub lost: u64,
    /// Messages from the peer with the content its id, this node's and the sequence call for.
    pub received: u64,
}

impl PeerMsgs {
    fn less(self, base: PeerMsgs) -> PeerMsgs {
        PeerMsgs {
            sent: self.sent.saturating_sub(base.sent),
            delivered: self.delivered.saturating_sub(base.delivered),
            lost: self.lost.saturating_sub(base.lost),
            received: self.received.saturating_sub(base.received),
        }
    }
}

/// A `msg round <n>: sent .. bad ..; node <id>: <s> sent <d> delivered <l> lost <r> received`
/// line (the echo server's messaging role; anything before `msg round` is ignored): the
/// round and each peer's numbers.
pub fn parse_round(line: &str) -> Option<(u32, Vec<(u8, PeerMsgs)>)> {
    let rest = &line[line.find("msg round ")? + "msg round ".len()..];
    let mut parts = rest.split("; ");
    let round = parts.next()?.split(':').next()?.parse().ok()?;
    let mut peers = Vec::new();
    for part in parts {
        let (id, counts) = part.strip_prefix("node ")?.split_once(": ")?;
        let words: Vec<&str> = counts.split(' ').collect();
        let [s, "sent", d, "delivered", l, "lost", r, "received"] = words.as_slice() else {
            return None;
        };
        let peer = PeerMsgs {
            sent: s.parse().ok()?,
            delivered: d.parse().ok()?,
            lost: l.parse().ok()?,
            received: r.trim_end().parse().ok()?,
        };
        peers.push((id.parse().ok()?, peer));
    }
    Some((round, peers))
}

/// The last `msg round` line of a console.
pub fn last_round(console: &str) -> Option<(u32, Vec<(u8, PeerMsgs)>)> {
    console.lines().rev().find_map(parse_round)
}

/// One node's messaging over the measured window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeMsgs {
    /// The node.
    pub node: u8,
    /// Its `msg.*` counters (`msg.id`, `msg.sent`, ...), as read at the end; empty if its
    /// stats hold none.
    pub counters: Vec<(String, u64)>,
    /// The rounds its console reported over the window.
    pub rounds: u32,
    /// Each peer's numbers over the window (the last round line less the one before it).
    pub peers: Vec<(u8, PeerMsgs)>,
    /// The `msg.*` totals over the window (both reads had them).
    pub window: Option<PeerMsgs>,
}

/// The `msg.*` entries of a node's stats.
fn msg_counters(stats: Option<&NodeStats>) -> Vec<(String, u64)> {
    stats
        .into_iter()
        .flat_map(|(_, components)| components)
        .filter_map(|c| c.snapshot.as_ref().ok())
        .flat_map(|s| s.entries.iter())
        .filter(|(name, _)| name.starts_with("msg."))
        .map(|(name, v)| (name.clone(), *v))
        .collect()
}

impl NodeMsgs {
    /// From node `node`'s stats at the end and its console's text at the start of the window
    /// and at the end.
    pub fn read(node: u8, stats: Option<&NodeStats>, console_before: &str, console: &str) -> Self {
        let counters = msg_counters(stats);
        let (r0, base) = last_round(console_before).unwrap_or_default();
        let (r1, now) = last_round(console).unwrap_or_default();
        let peers = now
            .iter()
            .map(|&(id, p)| {
                let b = base.iter().find(|(i, _)| *i == id).map(|x| x.1);
                (id, p.less(b.unwrap_or_default()))
            })
            .collect();
        NodeMsgs {
            node,
            counters,
            rounds: r1.saturating_sub(r0),
            peers,
            window: None,
        }
    }

    /// Also keeps the `msg.*` totals over the window (those at its end less `before`'s), for
    /// [`MsgTable::attribute_totals`].
    pub fn with_window(mut self, before: Option<&NodeStats>) -> Self {
        let base = msg_counters(before);
        let diff = |name: &str| {
            let name = format!("msg.{name}");
            let at = |c: &[(String, u64)]| c.iter().find(|(n, _)| *n == name).map(|x| x.1);
            Some(at(&self.counters)?.saturating_sub(at(&base)?))
        };
        self.window = (|| {
            Some(PeerMsgs {
                sent: diff("sent")?,
                delivered: diff("delivered")?,
                lost: diff("lost")?,
                received: diff("received")?,
            })
        })();
        self
    }

    /// Counter `msg.<name>`.
    pub fn get(&self, name: &str) -> Option<u64> {
        let name = format!("msg.{name}");
        self.counters.iter().find(|(n, _)| *n == name).map(|x| x.1)
    }

    fn peer(&self, id: u8) -> Option<PeerMsgs> {
        self.peers.iter().find(|(i, _)| *i == id).map(|x| x.1)
    }
}

/// Every node's messaging, and the ids the master gave out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MsgTable {
    /// One per node, in id order.
    pub nodes: Vec<NodeMsgs>,
    /// The master's `joined` ids, in order.
    pub joined: Vec<u8>,
    /// Where the per-peer numbers came from, where not from the consoles.
    pub notes: Vec<String>,
}

/// A cell: `<delivered>/<lost> <received>` of messages from the row's node to the column's.
fn cell(from: &NodeMsgs, to: &NodeMsgs) -> String {
    if from.node == to.node {
        return "-".into();
    }
    let sent = from.peer(to.node);
    let got = to.peer(from.node).map(|p| p.received);
    match (sent, got) {
        (None, None) => "-".into(),
        (s, g) => {
            let s = s.unwrap_or_default();
            let g = g.map_or("-".to_string(), |g| g.to_string());
            format!("{}/{} {g}", s.delivered, s.lost)
        }
    }
}

impl MsgTable {
    /// For a node whose console printed no `msg round` line (a release seL4 image prints
    /// nothing), the per-peer numbers from its `msg.*` totals over the window where they can
    /// only be one peer's: what it sent, if it messages one node only; what it received, if
    /// one node only messages it. Returns a note for each node left without per-peer numbers.
    pub fn attribute_totals(&mut self, messaged: impl Fn(u8, u8) -> bool) -> Vec<String> {
        let ids: Vec<u8> = self.nodes.iter().map(|n| n.node).collect();
        let mut notes = Vec::new();
        for n in self.nodes.iter_mut().filter(|n| n.peers.is_empty()) {
            let Some(w) = n.window else {
                continue;
            };
            let to: Vec<u8> = ids
                .iter()
                .copied()
                .filter(|&t| messaged(n.node, t))
                .collect();
            let from: Vec<u8> = ids
                .iter()
                .copied()
                .filter(|&f| messaged(f, n.node))
                .collect();
            if let [to] = to[..] {
                n.peers.push((to, PeerMsgs { received: 0, ..w }));
            }
            if let [from] = from[..] {
                match n.peers.iter_mut().find(|(id, _)| *id == from) {
                    Some((_, p)) => p.received = w.received,
                    None => n.peers.push((
                        from,
                        PeerMsgs {
                            received: w.received,
                            ..PeerMsgs::default()
                        },
                    )),
                }
            }
            notes.push(if to.len() > 1 || from.len() > 1 {
                format!(
                    "node {}: no `msg round` lines on its console (a release seL4 image prints \
                     none; --microkit-config debug does) and its msg.* totals are more than \
                     one peer's",
                    n.node
                )
            } else {
                format!(
                    "node {}: per-peer numbers from its msg.* totals over the window (no `msg \
                     round` lines on its console; one peer each way)",
                    n.node
                )
            });
        }
        notes
    }

    /// The table (rows: from, columns: to) and each node's `msg.*` line.
    pub fn table(&self) -> String {
        let w = 14;
        let mut s = format!("{:<8}", "");
        for n in &self.nodes {
            let _ = write!(s, "{:<w$}", format!("node {}", n.node));
        }
        for from in &self.nodes {
            let _ = write!(s, "\n{:<8}", format!("node {}", from.node));
            for to in &self.nodes {
                let _ = write!(s, "{:<w$}", cell(from, to));
            }
        }
        let mut s: String = s.lines().map(|l| format!("{}\n", l.trim_end())).collect();
        s.pop();
        for n in &self.nodes {
            let counters: Vec<String> = ["id", "sent", "delivered", "lost", "received", "bad"]
                .iter()
                .map(|c| format!("{c} {}", n.get(c).map_or("-".into(), |v| v.to_string())))
                .collect();
            let _ = write!(
                s,
                "\nnode {} msg.*: {} ({})",
                n.node,
                counters.join(", "),
                if n.rounds > 0 {
                    format!("{} rounds measured", n.rounds)
                } else {
                    "no msg round line in the window".to_string()
                }
            );
        }
        let mut ids = self.joined.clone();
        ids.sort_unstable();
        ids.dedup();
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let _ = write!(s, "\nmaster gave out ids: {}", ids.join(", "));
        for note in &self.notes {
            let _ = write!(s, "\n{note}");
        }
        s
    }

    /// What is wrong: a node whose id is not its node id (the master's and its own), or with bad
    /// messages, and every pair `messaged` says exchange messages that did not, both ways,
    /// with verified content and nothing lost. Empty: all good.
    pub fn failures(&self, messaged: impl Fn(u8, u8) -> bool) -> Vec<String> {
        let mut why = Vec::new();
        for n in &self.nodes {
            if !self.joined.contains(&n.node) {
                why.push(format!("node {}: the master never gave out its id", n.node));
            }
            if n.get("id") != Some(u64::from(n.node)) {
                why.push(format!(
                    "node {}: msg.id is {:?}, not its node id",
                    n.node,
                    n.get("id")
                ));
            }
            if n.get("bad") != Some(0) {
                why.push(format!("node {}: msg.bad is {:?}", n.node, n.get("bad")));
            }
        }
        for from in &self.nodes {
            for to in self.nodes.iter().filter(|t| messaged(from.node, t.node)) {
                let s = from.peer(to.node).unwrap_or_default();
                let got = to.peer(from.node).map_or(0, |p| p.received);
                if s.delivered == 0 || s.lost > 0 || got == 0 {
                    why.push(format!(
                        "node {} -> node {}: MESSAGES FAILED: {} delivered, {} lost, {got} \
                         received and verified by node {}",
                        from.node, to.node, s.delivered, s.lost, to.node
                    ));
                }
            }
        }
        why
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::ComponentStats;
    use netvm_api::stats::Snapshot;

    const LINE: &str = "client1: msg round 5: sent 4 delivered 3 lost 1 received 2 bad 0; \
                        node 2: 4 sent 3 delivered 1 lost 2 received; node 0: 0 sent 0 delivered 0 lost 0 received";

    #[test]
    fn round_lines_parse_and_junk_does_not() {
        let (round, peers) = parse_round(LINE).unwrap();
        assert_eq!(round, 5);
        let p = PeerMsgs {
            sent: 4,
            delivered: 3,
            lost: 1,
            received: 2,
        };
        assert_eq!(peers, vec![(2, p), (0, PeerMsgs::default())]);
        for bad in [
            "msg round x: sent 1",
            "msg round 3: sent 1; node 2: 4 sent 3 delivered",
            "msg round 3: sent 1; node q: 4 sent 3 delivered 1 lost 2 received",
            "no round here",
        ] {
            assert_eq!(parse_round(bad), None, "{bad}");
        }
        let console = format!(
            "{LINE}\nclient1: msg round 6: sent 9 delivered 9 lost 0 received 9 bad 0\nother"
        );
        assert_eq!(last_round(&console).unwrap().0, 6);
    }

    fn node(id: u8, peer: u8, before: (u64, u64), after: (u64, u64), bad: u64) -> NodeMsgs {
        let line = |round: u32, (d, r): (u64, u64)| {
            format!("client1: msg round {round}: sent 0 delivered 0 lost 0 received 0 bad 0; node {peer}: {d} sent {d} delivered 0 lost {r} received")
        };
        let stats = ComponentStats {
            pd: "client1".into(),
            snapshot: Ok(Snapshot {
                component: "client1".into(),
                entries: vec![("msg.id".into(), u64::from(id)), ("msg.bad".into(), bad)],
            }),
        };
        NodeMsgs::read(
            id,
            Some(&(id, vec![stats])),
            &line(2, before),
            &line(7, after),
        )
    }

    #[test]
    fn without_console_lines_the_totals_stand_for_a_single_peer_only() {
        let stats = |id: u8, sent: u64, received: u64| {
            let entries = [
                ("id", u64::from(id)),
                ("sent", sent),
                ("delivered", sent),
                ("lost", 0),
                ("received", received),
                ("bad", 0),
            ];
            let snap = Snapshot {
                component: "client1".into(),
                entries: entries
                    .iter()
                    .map(|(k, v)| (format!("msg.{k}"), *v))
                    .collect(),
            };
            (
                id,
                vec![ComponentStats {
                    pd: "client1".into(),
                    snapshot: Ok(snap),
                }],
            )
        };
        let node = |id: u8| {
            NodeMsgs::read(id, Some(&stats(id, 9, 8)), "", "").with_window(Some(&stats(id, 4, 4)))
        };
        let mut t = MsgTable {
            nodes: vec![node(0), node(1)],
            joined: vec![0, 1],
            notes: Vec::new(),
        };
        let notes = t.attribute_totals(|a, b| a != b);
        assert_eq!(notes.len(), 2);
        assert!(t.failures(|a, b| a != b).is_empty());
        assert!(
            t.table().contains("node 0  -             5/0 4"),
            "{}",
            t.table()
        );
        // Three nodes: the totals are two peers' each, so nothing is attributed: the pairs fail.
        let mut t = MsgTable {
            nodes: vec![node(0), node(1), node(2)],
            joined: vec![0, 1, 2],
            notes: Vec::new(),
        };
        let notes = t.attribute_totals(|a, b| a != b);
        assert!(notes[0].contains("more than one peer's"), "{notes:?}");
        assert_eq!(t.failures(|a, b| a != b).len(), 6);
    }

    #[test]
    fn the_window_fills_the_table_and_a_silent_pair_fails() {
        let t = MsgTable {
            nodes: vec![node(0, 1, (2, 2), (7, 6), 0), node(1, 0, (2, 2), (8, 7), 0)],
            joined: vec![0, 1],
            notes: Vec::new(),
        };
        assert_eq!(t.nodes[0].rounds, 5);
        assert!(
            t.failures(|a, b| a != b).is_empty(),
            "{:?}",
            t.failures(|a, b| a != b)
        );
        let table = t.table();
        assert!(table.contains("node 0  -             5/0 5"), "{table}");
        assert!(table.contains("node 1  6/0 4         -\n"), "{table}");
        // Nothing in the window from node 1, a bad message, an id the master never gave out.
        let t = MsgTable {
            nodes: vec![node(0, 1, (2, 2), (7, 2), 0), node(1, 0, (2, 2), (2, 7), 1)],
            joined: vec![0],
            notes: Vec::new(),
        };
        let why = t.failures(|a, b| a != b);
        assert_eq!(why.len(), 3, "{why:?}");
        assert!(why
            .iter()
            .any(|w| w.starts_with("node 1: the master never gave out its id")));
        assert!(why
            .iter()
            .any(|w| w.starts_with("node 1: msg.bad is Some(1)")));
        assert!(why.iter().any(
            |w| w.starts_with("node 1 -> node 0: MESSAGES FAILED: 0 delivered, 0 lost, 0 received")
        ));
        // Silence is no success: a node with no counters and no lines.
        let t = MsgTable {
            nodes: vec![
                node(0, 1, (2, 2), (7, 6), 0),
                NodeMsgs::read(1, None, "", ""),
            ],
            joined: vec![0],
            notes: Vec::new(),
        };
        let why = t.failures(|a, b| a != b);
        assert!(
            why.iter().any(|w| w.contains("node 1: msg.id is None")),
            "{why:?}"
        );
        assert_eq!(
            why.iter().filter(|w| w.contains("MESSAGES FAILED")).count(),
            2
        );
    }
}
