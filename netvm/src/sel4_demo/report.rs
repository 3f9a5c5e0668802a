//! The result of `netvm sel4-demo`: every machine's points, as a table and as CSV.

use std::fmt::Write as _;

use super::events::Events;
use crate::demo::{payload_size, Point};

/// One row of the table: a machine's point (or why it has none).
#[derive(Debug, Clone)]
pub struct TableRow {
    /// The machine's name.
    pub system: String,
    /// `udp` or `tcp`.
    pub proto: String,
    /// Requested rate, bit/s.
    pub requested: u64,
    /// The point, or the error of its bench.
    pub point: std::result::Result<Point, String>,
    /// The seL4 image's event counts over the point (`None` for other machines, or when they
    /// could not be read).
    pub events: Option<Events>,
}

/// The result of a run: every point of every machine, in measuring order.
#[derive(Debug, Default)]
pub struct Sel4Summary {
    /// The rows, grouped by proto and rate, machines in boot order within a rate.
    pub rows: Vec<TableRow>,
    /// The machine the "vs ref" column divides by, if measured.
    pub reference: Option<String>,
}

pub(super) fn mbps(bps: u64) -> f64 {
    bps as f64 / 1e6
}

pub(super) fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

impl Sel4Summary {
    /// The echoed rate of the reference at this proto and rate.
    fn reference_received(&self, proto: &str, requested: u64) -> Option<u64> {
        let name = self.reference.as_deref()?;
        self.rows
            .iter()
            .find(|r| r.system == name && r.proto == proto && r.requested == requested)
            .and_then(|r| r.point.as_ref().ok())
            .map(|p| p.received)
    }

    /// The table: one line per machine and point. Loss is the bench's packet count (sent and
    /// never echoed), utilisation the echo side's busy share from its ipbench daemon.
    pub fn table(&self) -> String {
        let mut out = String::new();
        // As wide as the longest system name ("Linux packet path").
        let w = self
            .rows
            .iter()
            .map(|r| r.system.len())
            .chain([14])
            .max()
            .unwrap_or(14);
        let _ = writeln!(
            out,
            "{:<w$} {:<5} {:>10} {:>12} {:>8} {:>11} {:>11} {:>6} {:>7}",
            "system",
            "proto",
            "requested",
            "echoed",
            "loss",
            "median RTT",
            "p99 RTT",
            "busy",
            "vs ref"
        );
        for r in &self.rows {
            let _ = write!(
                out,
                "{:<w$} {:<5} {:>5.0} Mb/s ",
                r.system,
                r.proto.to_uppercase(),
                mbps(r.requested)
            );
            match &r.point {
                Ok(p) => {
                    let busy = p
                        .utilisation_percent()
                        .map_or_else(|| "-".to_string(), |u| format!("{u:.0}%"));
                    let vs = self
                        .reference_received(&r.proto, r.requested)
                        .filter(|_| self.reference.as_deref() != Some(r.system.as_str()))
                        .map_or_else(
                            || "-".to_string(),
                            |k| format!("{:.2}", p.received as f64 / k.max(1) as f64),
                        );
                    let _ = writeln!(
                        out,
                        "{:>7.1} Mb/s {:>7.3}% {:>11} {:>11} {:>6} {:>7}",
                        mbps(p.received),
                        p.loss_percent(),
                        ms(p.median_rtt),
                        ms(p.p99_rtt),
                        busy,
                        vs
                    );
                }
                Err(e) => {
                    let _ = writeln!(out, "bench failed: {e}");
                }
            }
            if let Some(e) = &r.events {
                let _ = writeln!(out, "{:<w$}   {e}", "");
            }
        }
        out
    }

    /// The same rows as CSV (bit/s, percent, µs; empty fields where not measured).
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "System,Proto,Packet_Size,Requested_Throughput,Receive_Throughput,Loss_Percent,\
             Median_RTT,P99_RTT,Busy_Percent,Sent_Packets,Lost_Packets,",
        );
        out.push_str(&Events::csv_header());
        out.push_str(",Error\n");
        for r in &self.rows {
            let size = payload_size(&r.proto);
            match &r.point {
                Ok(p) => {
                    let busy = p
                        .utilisation_percent()
                        .map(|u| format!("{u:.1}"))
                        .unwrap_or_default();
                    let _ = writeln!(
                        out,
                        "{},{},{size},{},{},{:.4},{},{},{busy},{},{},{},",
                        r.system,
                        r.proto,
                        r.requested,
                        p.received,
                        p.loss_percent(),
                        p.median_rtt,
                        p.p99_rtt,
                        p.sent_packets,
                        p.lost_packets,
                        Events::csv_fields(r.events.as_ref())
                    );
                }
                Err(e) => {
                    let _ = writeln!(
                        out,
                        "{},{},{size},{},,,,,,,,{},\"{}\"",
                        r.system,
                        r.proto,
                        r.requested,
                        Events::csv_fields(r.events.as_ref()),
                        e.replace('"', "'")
                    );
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(received: u64, lost: u64, idle: u64) -> Point {
        Point {
            requested: 10_000_000,
            received,
            sent: 10_000_000,
            median_rtt: 3_210,
            bad: 0,
            sent_packets: 1000,
            lost_packets: lost,
            p99_rtt: 12_500,
            idle,
            total: 100,
            ..Point::default()
        }
    }

    fn summary() -> Sel4Summary {
        let row = |system: &str, proto: &str, point| TableRow {
            system: system.into(),
            proto: proto.into(),
            requested: 10_000_000,
            point,
            events: None,
        };
        Sel4Summary {
            rows: vec![
                row("seL4 netvm", "udp", Ok(point(5_000_000, 500, 25))),
                row("Linux alone", "udp", Ok(point(10_000_000, 0, 80))),
                row("seL4 netvm", "tcp", Err("connection refused".into())),
                row("Linux alone", "tcp", Ok(point(10_000_000, 0, 0))),
            ],
            reference: Some("Linux alone".into()),
        }
    }

    #[test]
    fn table_has_one_line_per_machine_and_point() {
        let t = summary().table();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5, "{t}");
        assert!(lines[0].starts_with("system"));
        // seL4 UDP: half the reference's echoed rate, 50% lost, 75% busy.
        assert!(
            lines[1].starts_with("seL4 netvm     UDP      10 Mb/s"),
            "{t}"
        );
        for field in ["5.0 Mb/s", "50.000%", "3.21 ms", "12.50 ms", "75%", "0.50"] {
            assert!(lines[1].contains(field), "{field} missing: {}", lines[1]);
        }
        // The reference has no ratio to itself.
        assert!(lines[2].trim_end().ends_with('-'), "{}", lines[2]);
        assert!(lines[3].contains("bench failed: connection refused"));
        // Linux TCP had a daemon reporting total 100 idle 0: 100% busy.
        assert!(lines[4].contains("100%"), "{}", lines[4]);
    }

    #[test]
    fn the_sel4_images_event_counts_follow_its_row() {
        let mut s = summary();
        s.rows[0].events = Some(Events {
            frames: 2000,
            counts: [2864, 498, 500, 1104, 604, 628],
        });
        let t = s.table();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 6, "{t}");
        assert_eq!(
            lines[2].trim(),
            "per 1000 frames: VM faults 1432, doorbells 249, NIC vIRQs 250, maintenance 552, \
             vPPI 302, WFI blocks 314 (2000 frames)",
            "{t}"
        );
        assert!(lines[3].starts_with("Linux alone"), "{t}");
        let c = s.csv();
        let row: Vec<&str> = c.lines().nth(1).unwrap().split(',').collect();
        assert_eq!(
            row[11..17],
            ["1432.0", "249.0", "250.0", "552.0", "302.0", "314.0"]
        );
    }

    #[test]
    fn a_long_system_name_widens_the_column() {
        let mut s = summary();
        s.rows[1].system = "Linux packet path".into();
        s.rows[3].system = "Linux packet path".into();
        s.reference = Some("Linux packet path".into());
        let t = s.table();
        let col = |l: &str| {
            l.find(" UDP ")
                .or_else(|| l.find(" TCP "))
                .or_else(|| l.find(" proto"))
        };
        let lines: Vec<&str> = t.lines().collect();
        let first = col(lines[0]).unwrap();
        assert_eq!(first, "Linux packet path".len(), "{t}");
        for l in &lines[1..] {
            assert_eq!(col(l), Some(first), "columns do not line up:\n{t}");
        }
    }

    #[test]
    fn summary_csv_rows() {
        let c = summary().csv();
        let lines: Vec<&str> = c.lines().collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(
            lines[1],
            "seL4 netvm,udp,1472,10000000,5000000,50.0000,3210,12500,75.0,1000,500,,,,,,,"
        );
        assert!(
            lines[0].ends_with("WFI_blocks_Per_1000_Frames,Error"),
            "{}",
            lines[0]
        );
        assert!(lines[3].ends_with(",\"connection refused\""));
        assert_eq!(lines[4].split(',').count(), lines[0].split(',').count());
    }
}
