//! The N×N table of a `netvm lan` run: rows are where traffic came from, columns the node it
//! went to. The host side's row is measured with `netvm bench`; the node-to-node rows come from
//! the nodes' own stats ([`node_to_node`]), when their clients originate traffic.

use std::net::Ipv4Addr;

use crate::demo::Point;
use crate::observe::ComponentStats;

/// One measured path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell {
    /// Median (host row) or mean (node rows, as the client reports it) round trip, µs.
    pub rtt_us: u64,
    /// Echoed throughput, Mb/s.
    pub mbps: f64,
}

impl Cell {
    /// The cell of a `netvm bench` point, if anything was echoed.
    pub fn of_point(p: &Point) -> Option<Cell> {
        (p.received > 0).then(|| Cell {
            rtt_us: p.median_rtt,
            mbps: p.received as f64 / 1e6,
        })
    }
}

/// What the run measured between whom.
#[derive(Debug, Clone, Default)]
pub struct Matrix {
    /// Host side → node n.
    pub host: Vec<Option<Cell>>,
    /// Node `from` → node `to` (`[from][to]`).
    pub nodes: Vec<Vec<Option<Cell>>>,
    /// Why cells are `-`, one line each.
    pub why: Vec<String>,
}

/// **The hook for the node-to-node matrix.** Reads each node's per-peer results from its stats
/// (`(node id, its components' stats)`, as `netvm stats` shows them) into `[from][to]` cells
/// of an `n`×`n` matrix, with a line for each node that reports none.
///
/// The keys read are those of the echo server's originating role (per peer `k` of a client:
/// `peer<k>.addr`, the IPv4 address as a number; `peer<k>.udp_echoed`;
/// `peer<k>.rtt_us_avg`; `peer<k>.throughput_kbps`); the peer's node follows from its address
/// ([`netvm_api::lan::node_of_ip`]). Until clients originate traffic, no node has such keys and
/// every node-to-node cell stays `-`, with the reason.
pub fn node_to_node(
    n: usize,
    stats: &[(u8, Vec<ComponentStats>)],
) -> (Vec<Vec<Option<Cell>>>, Vec<String>) {
    let mut cells = vec![vec![None; n]; n];
    let mut why = Vec::new();
    for (from, components) in stats {
        let mut found = 0;
        for snap in components.iter().filter_map(|c| c.snapshot.as_ref().ok()) {
            for k in 0.. {
                let key = |what: &str| snap.get(&format!("peer{k}.{what}"));
                let Some(addr) = key("addr") else { break };
                found += 1;
                let to = u32::try_from(addr)
                    .ok()
                    .and_then(|a| netvm_api::lan::node_of_ip(Ipv4Addr::from(a)));
                let (Some((to, _)), Some(echoed)) = (to, key("udp_echoed")) else {
                    continue;
                };
                let row = cells.get_mut(usize::from(*from));
                if let Some(cell) = row.and_then(|r| r.get_mut(usize::from(to))) {
                    if echoed > 0 && cell.is_none() {
                        *cell = Some(Cell {
                            rtt_us: key("rtt_us_avg").unwrap_or(0),
                            mbps: key("throughput_kbps").unwrap_or(0) as f64 / 1000.0,
                        });
                    }
                }
            }
        }
        if found == 0 {
            why.push(format!(
                "node {from} -> other nodes: not measured: no client of node {from} reports \
                 per-peer results (no originating client role in this system)"
            ));
        }
    }
    (cells, why)
}

fn render_cell(cell: Option<&Cell>) -> String {
    match cell {
        Some(c) => format!("{} us {:.1} Mb/s", c.rtt_us, c.mbps),
        None => "-".to_string(),
    }
}

impl Matrix {
    /// The table, then why cells are `-`.
    pub fn table(&self) -> String {
        let n = self.host.len();
        let width = 22;
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
        let stats = [
            (
                0,
                node_stats(&[
                    ("peer0.addr", peer),
                    ("peer0.udp_echoed", 20),
                    ("peer0.rtt_us_avg", 350),
                    ("peer0.throughput_kbps", 12_500),
                    ("peer1.addr", lost),
                    ("peer1.udp_echoed", 0),
                ]),
            ),
            (1, node_stats(&[("rx", 3)])),
        ];
        let (cells, why) = node_to_node(3, &stats);
        assert_eq!(
            cells[0][1],
            Some(Cell {
                rtt_us: 350,
                mbps: 12.5
            })
        );
        assert_eq!(cells[0][2], None, "nothing echoed: not a measurement");
        assert!(cells[1].iter().all(Option::is_none));
        assert_eq!(why.len(), 1);
        assert!(why[0].starts_with("node 1 -> other nodes: not measured"));
    }

    #[test]
    fn the_table_has_a_row_per_source_and_dashes_where_nothing_was_measured() {
        let m = Matrix {
            host: vec![
                Some(Cell {
                    rtt_us: 120,
                    mbps: 99.5,
                }),
                None,
            ],
            nodes: vec![vec![None; 2]; 2],
            why: vec!["because".into()],
        };
        let t = m.table();
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].contains("node 0") && lines[0].contains("node 1"),
            "{t}"
        );
        assert!(
            lines[1].starts_with("host") && lines[1].contains("120 us 99.5 Mb/s"),
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
