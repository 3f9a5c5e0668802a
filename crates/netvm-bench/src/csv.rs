//! The CSV that sDDF's `benchmark.py` produces from ipbench `latency-check` plus
//! `cpu_target_lukem`: one header, one row per requested rate, in ipbench's units.
//!
//! Upstream (au-ts/ipbench e1a19ff) `latency_output` prints the first 10 fields and then a
//! newline, or, with the `with_cpu_target` test argument, a comma; `cpu_target_lukem` then prints
//! the target's `,<idle>,<total>` and a newline; `benchmark.py` removes the newlines. Without
//! `with_cpu_target` (how `benchmark.py` calls it) that is these 12 fields exactly; with it,
//! upstream's row has an empty 11th field (`...,bad,,idle,total`), which [`Row::parse`] accepts and
//! [`Row::to_line`] never writes. The RTT p99 is not a column here (it would shift Idle/Total for
//! every consumer of the sDDF layout); it is in the `--counts` file and the summaries.

use std::fmt::Write as _;

/// The exact header line (without newline).
pub const HEADER: &str = "Requested_Throughput,Receive_Throughput,Send_Throughput,Packet_Size,\
Minimum_RTT,Average_RTT,Maximum_RTT,Stdev_RTT,Median_RTT,Bad_Packets,Idle_Cycles,Total_Cycles";

/// One CSV row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Row {
    /// Requested rate, bit/s.
    pub requested_bps: u64,
    /// Echoed payload bits per second during the sampling phase.
    pub receive_bps: u64,
    /// Sent payload bits per second during the sampling phase.
    pub send_bps: u64,
    /// Payload bytes per packet.
    pub packet_size: u64,
    /// Minimum RTT, µs.
    pub min_rtt_us: u64,
    /// Average RTT, µs.
    pub avg_rtt_us: u64,
    /// Maximum RTT, µs.
    pub max_rtt_us: u64,
    /// RTT standard deviation, µs (printed `%.2f`).
    pub stdev_rtt_us: f64,
    /// Median RTT, µs.
    pub median_rtt_us: u64,
    /// Echoes that were malformed, corrupted, unknown or duplicated.
    pub bad_packets: u64,
    /// Idle units reported by the utilisation daemon between START and STOP.
    pub idle_cycles: u64,
    /// Total units reported by the utilisation daemon between START and STOP.
    pub total_cycles: u64,
}

impl Row {
    /// The row as a CSV line (without newline).
    pub fn to_line(&self) -> String {
        let mut s = String::new();
        // Writing to a String cannot fail.
        let _ = write!(
            s,
            "{},{},{},{},{},{},{},{:.2},{},{},{},{}",
            self.requested_bps,
            self.receive_bps,
            self.send_bps,
            self.packet_size,
            self.min_rtt_us,
            self.avg_rtt_us,
            self.max_rtt_us,
            self.stdev_rtt_us,
            self.median_rtt_us,
            self.bad_packets,
            self.idle_cycles,
            self.total_cycles
        );
        s
    }
}

impl Row {
    /// A row as [`Row::to_line`] writes it, or `None` if it is not one. Also accepts upstream
    /// ipbench's `with_cpu_target` layout, which has an empty field between Bad_Packets and
    /// Idle_Cycles (`...,bad,,idle,total`, 13 fields).
    pub fn parse(line: &str) -> Option<Row> {
        let mut f: Vec<&str> = line.trim().split(',').collect();
        if f.len() == 13 && f[10].is_empty() {
            f.remove(10);
        }
        if f.len() != 12 {
            return None;
        }
        let n = |i: usize| f[i].parse::<u64>().ok();
        Some(Row {
            requested_bps: n(0)?,
            receive_bps: n(1)?,
            send_bps: n(2)?,
            packet_size: n(3)?,
            min_rtt_us: n(4)?,
            avg_rtt_us: n(5)?,
            max_rtt_us: n(6)?,
            stdev_rtt_us: f[7].parse().ok()?,
            median_rtt_us: n(8)?,
            bad_packets: n(9)?,
            idle_cycles: n(10)?,
            total_cycles: n(11)?,
        })
    }
}

/// The whole CSV document: header and rows, newline-terminated.
pub fn render(rows: &[Row]) -> String {
    let mut out = String::from(HEADER);
    out.push('\n');
    for r in rows {
        out.push_str(&r.to_line());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_format() {
        let r = Row {
            requested_bps: 100_000_000,
            receive_bps: 99_999_000,
            send_bps: 100_000_001,
            packet_size: 1472,
            min_rtt_us: 10,
            avg_rtt_us: 20,
            max_rtt_us: 300,
            stdev_rtt_us: 3.14659,
            median_rtt_us: 19,
            bad_packets: 0,
            idle_cycles: 5,
            total_cycles: 9,
        };
        assert_eq!(
            r.to_line(),
            "100000000,99999000,100000001,1472,10,20,300,3.15,19,0,5,9"
        );
        assert_eq!(
            Row::parse(&r.to_line()).map(|p| p.to_line()),
            Some(r.to_line())
        );
        assert_eq!(Row::parse(HEADER), None);
        // ipbench latency-check with with_cpu_target=1, then cpu_target_lukem's ",idle,total".
        assert_eq!(
            Row::parse("100000000,99999000,100000001,1472,10,20,300,3.15,19,0,,5,9"),
            Row::parse(&r.to_line())
        );
        assert_eq!(
            Row::parse("100000000,99999000,100000001,1472,10,20,300,3.15,19,0,1,5,9"),
            None
        );
        assert!(render(&[r]).starts_with("Requested_Throughput,Receive_Throughput,"));
    }
}
