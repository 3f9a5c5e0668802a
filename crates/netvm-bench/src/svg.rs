//! The benchmark's chart, drawn with `plotters` (SVG backend): Receive_Throughput (left axis,
//! Mb/s) and median RTT (right axis, µs; with the p99 RTT dashed when it is known) against the
//! requested rate (Mb/s; logarithmic when the rates span 10× or more), with the ideal
//! "received = requested" line dashed for reference.

use plotters::coord::combinators::LogCoord;
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::csv::Row;

const W: u32 = 760;
const H: u32 = 440;
const TICKS: usize = 5;
const THROUGHPUT_COLOUR: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const RTT_COLOUR: RGBColor = RGBColor(0xd6, 0x27, 0x28);
const IDEAL_COLOUR: RGBColor = RGBColor(0x99, 0x99, 0x99);

/// The chart could not be drawn (plotters reported an error; drawing into a string has no I/O,
/// so this is a bug or a font problem, never bad data).
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the benchmark chart: {0}")]
pub struct PlotError(String);

/// Renders `rows` (from one run) as an SVG document titled `title`.
pub fn render(rows: &[Row], title: &str) -> Result<String, PlotError> {
    render_with_p99(rows, &[], title)
}

/// One point: requested, received (Mb/s), median and p99 RTT (µs; p99 0 when unknown).
type Point = (f64, f64, f64, f64);

/// What is drawn, with its scales.
struct Plot<'a> {
    pts: Vec<Point>,
    with_p99: bool,
    log_x: bool,
    y_max: f64,
    r_max: f64,
    title: &'a str,
}

/// Like [`render`], with the p99 RTT of each row (µs, in row order; empty for none) drawn dashed
/// beside the median.
pub fn render_with_p99(rows: &[Row], p99_us: &[u64], title: &str) -> Result<String, PlotError> {
    let with_p99 = !p99_us.is_empty() && p99_us.len() == rows.len();
    let mut pts: Vec<Point> = rows
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
    let plot = Plot {
        log_x: x_max / x_min >= 10.0,
        y_max: nice_ceiling(pts.iter().map(|p| p.1.max(p.0)).fold(0.0, f64::max)),
        r_max: nice_ceiling(pts.iter().map(|p| p.2.max(p.3)).fold(0.0, f64::max)),
        pts,
        with_p99,
        title,
    };
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (W, H)).into_drawing_area();
        let drawn = if plot.log_x {
            plot.draw(&root, || LogCoord::from((x_min..x_max).log_scale()))
        } else {
            plot.draw(&root, || RangedCoordf64::from(x_min..x_max))
        };
        drawn
            .and_then(|()| root.present())
            .map_err(|e| PlotError(e.to_string()))?;
    }
    Ok(out)
}

impl Plot<'_> {
    /// Draws the chart on `root` with `x()` as the (shared) horizontal axis.
    fn draw<X>(
        &self,
        root: &DrawingArea<SVGBackend<'_>, Shift>,
        x: impl Fn() -> X,
    ) -> Result<(), DrawingAreaErrorKind<std::io::Error>>
    where
        X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(root)
            .caption(self.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .right_y_label_area_size(70)
            .build_cartesian_2d(x(), 0.0..self.y_max)?
            .set_secondary_coord(x(), 0.0..self.r_max);
        let label = |v: &f64| fmt_num(*v);
        let x_desc = format!(
            "Requested throughput (Mb/s{})",
            if self.log_x { ", log scale" } else { "" }
        );
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc("Receive throughput (Mb/s)")
            .x_label_formatter(&label)
            .y_label_formatter(&label)
            .y_labels(TICKS + 1)
            .axis_desc_style(("sans-serif", 14).into_font().color(&THROUGHPUT_COLOUR))
            .draw()?;
        let rtt_desc = if self.with_p99 {
            "RTT, median and p99 (µs)"
        } else {
            "Median RTT (µs)"
        };
        chart
            .configure_secondary_axes()
            .y_desc(rtt_desc)
            .y_label_formatter(&label)
            .y_labels(TICKS + 1)
            .axis_desc_style(("sans-serif", 14).into_font().color(&RTT_COLOUR))
            .draw()?;
        let pts = &self.pts;
        chart
            .draw_series(DashedLineSeries::new(
                pts.iter().map(|p| (p.0, p.0)),
                4,
                4,
                IDEAL_COLOUR.into(),
            ))?
            .label("requested")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], IDEAL_COLOUR));
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|p| (p.0, p.1)),
                THROUGHPUT_COLOUR.stroke_width(2),
            ))?
            .label("received")
            .legend(|(x, y)| Circle::new((x + 8, y), 4, THROUGHPUT_COLOUR.filled()));
        chart.draw_series(
            pts.iter()
                .map(|p| Circle::new((p.0, p.1), 4, THROUGHPUT_COLOUR.filled())),
        )?;
        chart
            .draw_secondary_series(LineSeries::new(
                pts.iter().map(|p| (p.0, p.2)),
                RTT_COLOUR.stroke_width(2),
            ))?
            .label("median RTT")
            .legend(|(x, y)| Circle::new((x + 8, y), 4, RTT_COLOUR.filled()));
        chart.draw_secondary_series(
            pts.iter()
                .map(|p| Circle::new((p.0, p.2), 4, RTT_COLOUR.filled())),
        )?;
        if self.with_p99 {
            chart
                .draw_secondary_series(DashedLineSeries::new(
                    pts.iter().map(|p| (p.0, p.3)),
                    6,
                    3,
                    RTT_COLOUR.stroke_width(1),
                ))?
                .label("p99 RTT")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RTT_COLOUR));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The text of every `<text>` element, in document order.
    fn texts(svg: &str) -> Vec<&str> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                let body = &t[t.find('>')? + 1..];
                Some(body[..body.find("</text>")?].trim())
            })
            .collect()
    }

    /// How many `tag` elements are drawn in `colour`.
    fn count(svg: &str, tag: &str, colour: RGBColor) -> usize {
        let colour = format!("\"#{:02X}{:02X}{:02X}\"", colour.0, colour.1, colour.2);
        svg.lines()
            .filter(|l| l.starts_with(tag) && l.contains(&colour))
            .count()
    }

    fn rows() -> Vec<Row> {
        [
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
        .collect()
    }

    #[test]
    fn renders_every_series_with_its_axes_and_labels() {
        let svg = render(&rows(), "UDP <1472>").unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // Each measured series: its line, and a dot per point plus one in the legend.
        assert_eq!(count(&svg, "<polyline", THROUGHPUT_COLOUR), 1, "{svg}");
        assert_eq!(count(&svg, "<circle", THROUGHPUT_COLOUR), 4, "{svg}");
        assert_eq!(count(&svg, "<polyline", RTT_COLOUR), 1, "{svg}");
        assert_eq!(count(&svg, "<circle", RTT_COLOUR), 4, "{svg}");
        // The ideal line, dashed, and its legend mark.
        assert!(count(&svg, "<polyline", IDEAL_COLOUR) >= 3, "{svg}");
        let texts = texts(&svg);
        for label in [
            "UDP &lt;1472&gt;",
            "Requested throughput (Mb/s, log scale)",
            "Receive throughput (Mb/s)",
            "Median RTT (µs)",
            "received",
            "median RTT",
            "requested",
            // The top of each vertical axis.
            "1000",
        ] {
            assert!(texts.contains(&label), "{label:?} not in {texts:?}");
        }
        assert!(!svg.contains("p99"));
    }

    #[test]
    fn the_p99_series_is_dashed_and_reaches_the_right_axis() {
        let svg = render_with_p99(&rows(), &[30, 80, 5000], "t").unwrap();
        let labels = texts(&svg);
        for label in ["p99 RTT", "RTT, median and p99 (µs)", "5000"] {
            assert!(labels.contains(&label), "{label:?} not in {labels:?}");
        }
        // The median's line, the p99's dashes and its legend mark.
        assert!(count(&svg, "<polyline", RTT_COLOUR) >= 4, "{svg}");
        // A p99 list that does not match the rows is not drawn.
        let svg = render_with_p99(&rows(), &[30], "t").unwrap();
        assert!(!svg.contains("p99"));
        // Linear when the rates span less than 10×.
        let svg = render(&rows()[1..2], "t").unwrap();
        assert!(texts(&svg).contains(&"Requested throughput (Mb/s)"));
        assert_eq!(nice_ceiling(730.0), 1000.0);
        assert_eq!(nice_ceiling(101.0), 200.0);
    }

    #[test]
    fn no_rows_is_an_empty_chart_not_a_panic() {
        let svg = render(&[], "nothing").unwrap();
        assert!(texts(&svg).contains(&"nothing"));
    }
}
