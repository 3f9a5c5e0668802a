//! A small hand-written SVG chart: Receive_Throughput (left axis, Mb/s) and median RTT (right
//! axis, µs; with the p99 RTT dashed when it is known) against the requested rate (Mb/s;
//! logarithmic when the rates span 10× or more), with the ideal "received = requested" line for
//! reference.

use std::fmt::Write as _;

use super::csv::Row;

const W: f64 = 760.0;
const H: f64 = 440.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 80.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
const TICKS: usize = 5;
const THROUGHPUT_COLOUR: &str = "#1f77b4";
const RTT_COLOUR: &str = "#d62728";

/// Renders `rows` (from one run) as an SVG document titled `title`.
pub fn render(rows: &[Row], title: &str) -> String {
    render_with_p99(rows, &[], title)
}

/// Like [`render`], with the p99 RTT of each row (µs, in row order; empty for none) drawn dashed
/// beside the median.
pub fn render_with_p99(rows: &[Row], p99_us: &[u64], title: &str) -> String {
    let with_p99 = !p99_us.is_empty() && p99_us.len() == rows.len();
    let mut pts: Vec<(f64, f64, f64, f64)> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                r.requested_bps as f64 / 1e6,
                r.receive_bps as f64 / 1e6,
                r.median_rtt_us as f64,
                if with_p99 { p99_us[i] as f64 } else { 0.0 },
            )
        })
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let x_min = pts.first().map_or(1.0, |p| p.0).max(1e-6);
    let x_max = pts.last().map_or(1.0, |p| p.0).max(x_min * 1.000_001);
    let log_x = x_max / x_min >= 10.0;
    let y_max = nice_ceiling(pts.iter().map(|p| p.1.max(p.0)).fold(0.0, f64::max));
    let r_max = nice_ceiling(pts.iter().map(|p| p.2.max(p.3)).fold(0.0, f64::max));
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let x_of = |x: f64| {
        let t = if log_x {
            (x.ln() - x_min.ln()) / (x_max.ln() - x_min.ln())
        } else {
            (x - x_min) / (x_max - x_min)
        };
        LEFT + t * plot_w
    };
    let y_of = |y: f64| TOP + plot_h - y / y_max * plot_h;
    let r_of = |r: f64| TOP + plot_h - r / r_max * plot_h;

    let mut s = String::new();
    // Writing to a String cannot fail; results are ignored throughout.
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#,
        W / 2.0,
        escape(title)
    );
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>"##
    );
    for i in 0..=TICKS {
        let f = i as f64 / TICKS as f64;
        let y = TOP + plot_h - f * plot_h;
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
            LEFT + plot_w
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="{THROUGHPUT_COLOUR}">{}</text>"#,
            LEFT - 6.0,
            y + 4.0,
            fmt_num(f * y_max)
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" fill="{RTT_COLOUR}">{}</text>"#,
            LEFT + plot_w + 6.0,
            y + 4.0,
            fmt_num(f * r_max)
        );
    }
    for p in &pts {
        let x = x_of(p.0);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#333"/>"##,
            TOP + plot_h,
            TOP + plot_h + 5.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            TOP + plot_h + 18.0,
            fmt_num(p.0)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">Requested throughput (Mb/s{})</text>"#,
        LEFT + plot_w / 2.0,
        H - 18.0,
        if log_x { ", log scale" } else { "" }
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(22 {:.1}) rotate(-90)" text-anchor="middle" fill="{THROUGHPUT_COLOUR}">Receive throughput (Mb/s)</text>"#,
        TOP + plot_h / 2.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate({:.1} {:.1}) rotate(90)" text-anchor="middle" fill="{RTT_COLOUR}">{} (µs)</text>"#,
        W - 22.0,
        TOP + plot_h / 2.0,
        if with_p99 {
            "RTT, median and p99"
        } else {
            "Median RTT"
        }
    );
    let ideal: Vec<String> = pts
        .iter()
        .map(|p| format!("{:.1},{:.1}", x_of(p.0), y_of(p.0)))
        .collect();
    let _ = writeln!(
        s,
        r##"<polyline points="{}" fill="none" stroke="#999" stroke-dasharray="4 4"/>"##,
        ideal.join(" ")
    );
    series(
        &mut s,
        pts.iter().map(|p| (x_of(p.0), y_of(p.1))),
        THROUGHPUT_COLOUR,
    );
    series(
        &mut s,
        pts.iter().map(|p| (x_of(p.0), r_of(p.2))),
        RTT_COLOUR,
    );
    if with_p99 {
        let line: Vec<String> = pts
            .iter()
            .map(|p| format!("{:.1},{:.1}", x_of(p.0), r_of(p.3)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{RTT_COLOUR}" stroke-width="1.5" stroke-dasharray="6 3"/>"#,
            line.join(" ")
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" fill="{RTT_COLOUR}">- - p99 RTT</text>"#,
            LEFT + 100.0,
            TOP + 30.0
        );
    }
    let ly = TOP + 14.0;
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{ly:.1}" fill="{THROUGHPUT_COLOUR}">● received</text>"#,
        LEFT + 10.0
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{ly:.1}" fill="{RTT_COLOUR}">● median RTT</text>"#,
        LEFT + 100.0
    );
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{ly:.1}" fill="#999">- - requested</text>"##,
        LEFT + 210.0
    );
    s.push_str("</svg>\n");
    s
}

fn series(s: &mut String, pts: impl Iterator<Item = (f64, f64)>, colour: &str) {
    let pts: Vec<(f64, f64)> = pts.collect();
    let line: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let _ = writeln!(
        s,
        r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
        line.join(" ")
    );
    for (x, y) in pts {
        let _ = writeln!(
            s,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{colour}"/>"#
        );
    }
}

/// Rounds `v` up to 1, 2 or 5 × a power of ten (at least 1), so tick labels are round.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 1.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|&c| c >= v)
        .unwrap_or(10.0 * mag)
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_points_and_labels() {
        let rows: Vec<Row> = [
            (10_000_000, 10_000_000, 20),
            (100_000_000, 95_000_000, 40),
            (1_000_000_000, 500_000_000, 900),
        ]
        .iter()
        .map(|&(req, rx, med)| Row {
            requested_bps: req,
            receive_bps: rx,
            median_rtt_us: med,
            ..Row::default()
        })
        .collect();
        let svg = render(&rows, "UDP <1472>");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<circle").count(), 6);
        assert!(svg.contains("log scale") && svg.contains("UDP &lt;1472&gt;"));
        assert!(!svg.contains("p99"));
        let svg = render_with_p99(&rows, &[30, 80, 5000], "t");
        assert!(svg.contains("- - p99 RTT") && svg.contains("median and p99"));
        // The right axis reaches the largest p99.
        assert!(svg.contains(">5000<"), "{svg}");
        assert_eq!(nice_ceiling(730.0), 1000.0);
        assert_eq!(nice_ceiling(101.0), 200.0);
    }
}
