//! The N×N table of a `netvm lan` run: rows are where traffic came from, columns the node it
//! went to. The host side's row is measured with `netvm bench`; the node-to-node rows come from
//! the nodes' own stats ([`node_to_node`]): the per-peer counters of their originating clients.

use std::net::Ipv4Addr;

use crate::demo::Point;
use crate::observe::ComponentStats;

/// One measured path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell {
    /// Median (host row) or mean (node rows, as the client reports it) round trip, µs.
    pub rtt_us: u64,
    /// Echoed throughput, Mb/s (host row: UDP at the offered rate; node rows: the latest TCP
    /// echo stream).
    pub mbps: f64,
    /// UDP requests without an echo, percent.
    pub loss_pct: f64,
}

impl Cell {
    /// The cell of a `netvm bench` point, if anything was echoed.
    pub fn of_point(p: &Point) -> Option<Cell> {
        (p.received > 0).then(|| Cell {
            rtt_us: p.median_rtt,
            mbps: p.received as f64 / 1e6,
            loss_pct: p.loss_percent(),
        })
    }
}

/// One originating client's results for one peer over the measured window (counters are the
/// difference between two reads of its stats page; RTT and throughput as the client reports
/// them: mean over every good echo, the latest complete TCP stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// The originating node.
    pub from: u8,
    /// Its originating client (the stats page's component).
    pub client: String,
    /// The peer's node.
    pub to: u8,
    /// The peer's address.
    pub peer: Ipv4Addr,
    /// Rounds of the originating client in the window.
    pub rounds: u64,
    /// UDP: good echoes, requests without an echo, wrong echoes, duplicates, late ones.
    pub echoed: u64,
    /// See `echoed`.
    pub lost: u64,
    /// See `echoed`.
    pub bad: u64,
    /// See `echoed`.
    pub dup: u64,
    /// See `echoed`.
    pub late: u64,
    /// Least, mean and greatest RTT of the good echoes, µs.
    pub rtt_us: (u64, u64, u64),
    /// TCP: bytes echoed back as sent, wrong bytes, streams not echoed in full.
    pub tcp_bytes: u64,
    /// See `tcp_bytes`.
    pub tcp_bad: u64,
    /// See `tcp_bytes`.
    pub tcp_failed: u64,
    /// Echo throughput of the latest complete TCP stream, kbit/s.
    pub kbps: u64,
}

impl Pair {
    /// The pair reached each other: good echoes, none wrong.
    pub fn reached(&self) -> bool {
        self.echoed > 0 && self.bad == 0 && self.tcp_bad == 0
    }

    /// Its table cell.
    pub fn cell(&self) -> Cell {
        let done = self.echoed + self.bad + self.lost;
        Cell {
            rtt_us: self.rtt_us.1,
            mbps: self.kbps as f64 / 1000.0,
            loss_pct: if done == 0 {
                100.0
            } else {
                self.lost as f64 * 100.0 / done as f64
            },
        }
    }

    /// One line: the pair and every counter.
    pub fn render(&self) -> String {
        format!(
            "node {} -> node {} ({}, from {}): {} rounds, UDP {} echoed {} lost {} bad {} dup {} \
             late, RTT min/avg/max {}/{}/{} us; TCP {} bytes echoed {} bad {} failed, {:.1} Mb/s",
            self.from,
            self.to,
            self.peer,
            self.client,
            self.rounds,
            self.echoed,
            self.lost,
            self.bad,
            self.dup,
            self.late,
            self.rtt_us.0,
            self.rtt_us.1,
            self.rtt_us.2,
            self.tcp_bytes,
            self.tcp_bad,
            self.tcp_failed,
            self.kbps as f64 / 1000.0
        )
    }
}

/// What the run measured between whom.
#[derive(Debug, Clone, Default)]
pub struct Matrix {
    /// Host side → node n.
    pub host: Vec<Option<Cell>>,
    /// Node `from` → node `to` (`[from][to]`).
    pub nodes: Vec<Vec<Option<Cell>>>,
    /// Every originating client's results per peer.
    pub pairs: Vec<Pair>,
    /// Why cells are `-`, one line each.
    pub why: Vec<String>,
}

/// Node id and its components' stats, as `netvm stats` shows them.
pub type NodeStats = (u8, Vec<ComponentStats>);

/// The node rows (`[from][to]` cells), every pair's results, and why cells are `-`.
pub type NodeRows = (Vec<Vec<Option<Cell>>>, Vec<Pair>, Vec<String>);

/// Peer `k` of component `client` of node `from` in `snap`, its counters less those of `base`
/// (the same component's earlier read, if any).
fn pair_of(
    from: u8,
    client: &str,
    snap: &netvm_api::stats::Snapshot,
    base: Option<&netvm_api::stats::Snapshot>,
    k: usize,
) -> Option<Result<Pair, String>> {
    let now = |what: &str| snap.get(&format!("peer{k}.{what}"));
    let was = |what: &str| base.and_then(|b| b.get(&format!("peer{k}.{what}")));
    let delta = |what: &str| {
        now(what)
            .unwrap_or(0)
            .saturating_sub(was(what).unwrap_or(0))
    };
    let addr = now("addr")?;
    let peer = match u32::try_from(addr) {
        Ok(a) => Ipv4Addr::from(a),
        Err(_) => return Some(Err(format!("node {from} {client}: peer{k}.addr {addr:#x}"))),
    };
    let Some((to, _)) = netvm_api::lan::node_of_ip(peer) else {
        return Some(Err(format!(
            "node {from} {client}: peer {peer} is no node's address on the LAN"
        )));
    };
    let rounds = snap.get("origin.rounds").unwrap_or(0);
    let rounds = rounds.saturating_sub(base.and_then(|b| b.get("origin.rounds")).unwrap_or(0));
    Some(Ok(Pair {
        from,
        client: client.to_string(),
        to,
        peer,
        rounds,
        echoed: delta("udp_echoed"),
        lost: delta("udp_lost"),
        bad: delta("udp_bad"),
        dup: delta("udp_dup"),
        late: delta("udp_late"),
        rtt_us: (
            now("rtt_us_min").unwrap_or(0),
            now("rtt_us_avg").unwrap_or(0),
            now("rtt_us_max").unwrap_or(0),
        ),
        tcp_bytes: delta("tcp_bytes_echoed"),
        tcp_bad: delta("tcp_bad"),
        tcp_failed: delta("tcp_failed"),
        kbps: now("throughput_kbps").unwrap_or(0),
    }))
}

/// **The hook for the node-to-node matrix.** Reads each node's per-peer results from its stats
/// (`after`; counters less those of the same node's earlier read in `before`, so that the rounds
/// before every node was up do not count) into `[from][to]` cells of an `n`×`n` matrix, with
/// every pair's counters, and a line for each node that reports none.
///
/// The keys read are those of the echo server's originating role (per peer `k` of a client:
/// `peer<k>.addr`, the IPv4 address as a number; `peer<k>.udp_echoed`, `udp_lost`, `udp_bad`,
/// ...; `peer<k>.rtt_us_avg`; `peer<k>.throughput_kbps`; `origin.rounds`); the peer's node
/// follows from its address ([`netvm_api::lan::node_of_ip`]). A cell is filled when the pair
/// [`Pair::reached`] each other.
pub fn node_to_node(n: usize, before: &[NodeStats], after: &[NodeStats]) -> NodeRows {
    let mut cells = vec![vec![None; n]; n];
    let mut pairs = Vec::new();
    let mut why = Vec::new();
    for (from, components) in after {
        let earlier = before.iter().find(|(id, _)| id == from).map(|(_, c)| c);
        let mut found = 0;
        for c in components {
            let Ok(snap) = c.snapshot.as_ref() else {
                continue;
            };
            let base = earlier
                .and_then(|e| e.iter().find(|b| b.pd == c.pd))
                .and_then(|b| b.snapshot.as_ref().ok());
            for k in 0.. {
                let Some(pair) = pair_of(*from, &c.pd, snap, base, k) else {
                    break;
                };
                found += 1;
                let pair = match pair {
                    Ok(p) => p,
                    Err(e) => {
                        why.push(e);
                        continue;
                    }
                };
                let row = cells.get_mut(usize::from(*from));
                if let Some(cell) = row.and_then(|r| r.get_mut(usize::from(pair.to))) {
                    if pair.reached() && cell.is_none() {
                        *cell = Some(pair.cell());
                    }
                }
                pairs.push(pair);
            }
        }
        if found == 0 {
            why.push(format!(
                "node {from} -> other nodes: not measured: no client of node {from} reports \
                 per-peer results (no originating client role in this system)"
            ));
        }
    }
    (cells, pairs, why)
}

impl Matrix {
    /// Explains every node-to-node cell left `-`: `planned(from, to)` says whether the run
    /// configured that pair (the diagonal, a node's clients to each other, only when planned). Returns how many planned pairs did not reach each other
    /// (the run then fails).
    pub fn explain(&mut self, planned: impl Fn(u8, u8) -> bool) -> usize {
        let mut failed = 0;
        let n = self.nodes.len();
        for from in 0..n {
            for to in 0..n {
                if self.nodes[from][to].is_some() {
                    continue;
                }
                let (Ok(f), Ok(t)) = (u8::try_from(from), u8::try_from(to)) else {
                    continue;
                };
                if from == to && !planned(f, t) {
                    continue;
                }
                if !planned(f, t) {
                    self.why.push(format!(
                        "node {from} -> node {to}: not measured: not one of node {from}'s peers \
                         (a stats page holds 4 peers; see --help)"
                    ));
                    continue;
                }
                failed += 1;
                let seen: Vec<String> = self
                    .pairs
                    .iter()
                    .filter(|p| p.from == f && p.to == t)
                    .map(|p| {
                        format!(
                            "{} echoed, {} lost, {} bad in {} rounds ({})",
                            p.echoed, p.lost, p.bad, p.rounds, p.client
                        )
                    })
                    .collect();
                self.why.push(if seen.is_empty() {
                    format!("node {from} -> node {to}: NOT REACHED: node {from} reported no results for it")
                } else {
                    format!("node {from} -> node {to}: NOT REACHED: {}", seen.join("; "))
                });
            }
        }
        failed
    }
}

fn render_cell(cell: Option<&Cell>) -> String {
    match cell {
        Some(c) => format!("{} us {:.1} Mb/s {:.0}%", c.rtt_us, c.mbps, c.loss_pct),
        None => "-".to_string(),
    }
}

impl Matrix {
    /// The table, then why cells are `-`.
    pub fn table(&self) -> String {
        let n = self.host.len();
        let width = 26;
        let mut out = format!("{:<10}", "from \\ to");
        for to in 0..n {
            out.push_str(&format!("{:>width$}", format!("node {to}")));
        }
        out.push('\n');
        out.push_str(&format!("{:<10}", "host"));
        for cell in &self.host {
            out.push_str(&format!("{:>width$}", render_cell(cell.as_ref())));
        }
        out.push('\n');
        for (from, row) in self.nodes.iter().enumerate() {
            out.push_str(&format!("{:<10}", format!("node {from}")));
            for cell in row {
                out.push_str(&format!("{:>width$}", render_cell(cell.as_ref())));
            }
            out.push('\n');
        }
        for pair in &self.pairs {
            out.push_str(&format!("  {}\n", pair.render()));
        }
        for line in &self.why {
            out.push_str(&format!("- {line}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netvm_api::stats::Snapshot;

    fn node_stats(entries: &[(&str, u64)]) -> Vec<ComponentStats> {
        vec![ComponentStats {
            pd: "client0".into(),
            snapshot: Ok(Snapshot {
                component: "client0".into(),
                entries: entries.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            }),
        }]
    }

    #[test]
    fn peer_results_fill_their_cells_and_silent_nodes_are_explained() {
        let peer = u32::from(Ipv4Addr::new(10, 0, 1, 10)) as u64;
        let lost = u32::from(Ipv4Addr::new(10, 0, 2, 11)) as u64;
        let before = [(
            0,
            node_stats(&[
                ("origin.rounds", 2),
                ("peer0.addr", peer),
                ("peer0.udp_echoed", 5),
                ("peer0.udp_lost", 27),
                ("peer1.addr", lost),
                ("peer1.udp_lost", 64),
            ]),
        )];
        let after = [
            (
                0,
                node_stats(&[
                    ("origin.rounds", 5),
                    ("peer0.addr", peer),
                    ("peer0.udp_echoed", 95),
                    ("peer0.udp_lost", 37),
                    ("peer0.rtt_us_avg", 350),
                    ("peer0.throughput_kbps", 12_500),
                    ("peer1.addr", lost),
                    ("peer1.udp_echoed", 0),
                    ("peer1.udp_lost", 160),
                ]),
            ),
            (1, node_stats(&[("rx", 3)])),
        ];
        let (cells, pairs, why) = node_to_node(3, &before, &after);
        // The window's counters: 90 echoed, 10 lost over 3 rounds.
        assert_eq!(
            cells[0][1],
            Some(Cell {
                rtt_us: 350,
                mbps: 12.5,
                loss_pct: 10.0
            })
        );
        assert_eq!(
            (pairs[0].echoed, pairs[0].lost, pairs[0].rounds),
            (90, 10, 3)
        );
        assert_eq!(cells[0][2], None, "nothing echoed: not a measurement");
        assert_eq!((pairs[1].to, pairs[1].lost), (2, 96));
        assert!(cells[1].iter().all(Option::is_none));
        assert_eq!(why.len(), 1);
        assert!(why[0].starts_with("node 1 -> other nodes: not measured"));

        // Node 0 -> 2 was planned and failed; node 1 -> 0 and 2 -> * were planned with no
        // report; 2 -> 1 was not planned.
        let mut m = Matrix {
            host: vec![None; 3],
            nodes: cells,
            pairs,
            why: Vec::new(),
        };
        assert_eq!(
            m.explain(|from, to| from != to && !(from == 2 && to == 1)),
            4
        );
        let why = m.why.join("\n");
        assert!(
            why.contains(
                "node 0 -> node 2: NOT REACHED: 0 echoed, 96 lost, 0 bad in 3 rounds (client0)"
            ),
            "{why}"
        );
        assert!(
            why.contains("node 1 -> node 0: NOT REACHED: node 1 reported no results"),
            "{why}"
        );
        assert!(
            why.contains("node 2 -> node 1: not measured: not one of node 2's peers"),
            "{why}"
        );
        assert!(!why.contains("node 0 -> node 1"), "{why}");
    }

    #[test]
    fn a_wrong_echo_is_no_reach_and_a_foreign_peer_is_named() {
        let peer = u32::from(Ipv4Addr::new(10, 0, 1, 10)) as u64;
        let foreign = u32::from(Ipv4Addr::new(192, 168, 1, 1)) as u64;
        let after = [(
            0,
            node_stats(&[
                ("peer0.addr", peer),
                ("peer0.udp_echoed", 30),
                ("peer0.udp_bad", 1),
                ("peer1.addr", foreign),
                ("peer2.addr", 1 << 40),
            ]),
        )];
        let (cells, pairs, why) = node_to_node(2, &[], &after);
        assert_eq!(cells[0][1], None, "a bad echo: not reached");
        assert_eq!(pairs.len(), 1);
        assert!(!pairs[0].reached());
        assert_eq!(why.len(), 2, "{why:?}");
        assert!(
            why[0].contains("192.168.1.1 is no node's address"),
            "{why:?}"
        );
    }

    #[test]
    fn the_table_has_a_row_per_source_and_dashes_where_nothing_was_measured() {
        let m = Matrix {
            host: vec![
                Some(Cell {
                    rtt_us: 120,
                    mbps: 99.5,
                    loss_pct: 0.0,
                }),
                None,
            ],
            nodes: vec![vec![None; 2]; 2],
            pairs: Vec::new(),
            why: vec!["because".into()],
        };
        let t = m.table();
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].contains("node 0") && lines[0].contains("node 1"),
            "{t}"
        );
        assert!(
            lines[1].starts_with("host") && lines[1].contains("120 us 99.5 Mb/s 0%"),
            "{t}"
        );
        assert!(lines[1].trim_end().ends_with('-'), "{t}");
        assert!(
            lines[2].starts_with("node 0") && lines[3].starts_with("node 1"),
            "{t}"
        );
        assert_eq!(lines[4], "- because");
    }
}
