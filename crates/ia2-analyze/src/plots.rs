//! Every figure of the analyses, drawn with plotters as SVG and converted to PNG and PDF by `ia2_report::plots`.
//!
//! Method colours follow analysis.md: tok blue, tokl orange, act green, tna red, a2t purple, t2a brown, base
//! black. Heatmaps put the first axis of their matrix on y (rows) and the second on x (columns), and say which
//! is which in the axis titles.

use crate::similarity::{BASE_NO_DEMOS, SimilarityReport};
use crate::stats::MeanStd;
use crate::subspace::{PAIRS, SubspaceReport, pair_id, pair_label};
use crate::vs_performance::{CONTOUR_LEVELS, VsPerformance};
use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

const FONT: &str = "sans-serif";

/// Colour of a method, as `ia2 report` draws it (the seed's); the base model black; anything else a stable
/// palette entry.
pub fn method_color(m: &str) -> RGBColor {
    match m {
        "tok" | "tokl" | "act" | "tna" | "a2t" | "t2a" => ia2_report::plots::method_style(m).0,
        BASE_NO_DEMOS | "base" => RGBColor(0, 0, 0),
        other => palette(other.bytes().map(usize::from).sum()),
    }
}

pub use ia2_report::plots::palette;

/// Writes `<stem>.svg`, `<stem>.png` (192 dpi) and `<stem>.pdf` from one SVG text (atomically), with the
/// report's converters and its embedded font. PNG and PDF failures are logged, never fatal: the SVG is the
/// figure of record.
pub fn write_figure(dir: &Path, stem: &str, svg: &str) -> Result<()> {
    ia2_data::io::write_atomic(&dir.join(format!("{stem}.svg")), svg.as_bytes())?;
    match ia2_report::plots::svg_to_png(svg, 192.0) {
        Ok(b) => ia2_data::io::write_atomic(&dir.join(format!("{stem}.png")), &b)?,
        Err(e) => tracing::warn!("{stem}.png not written: {e:#}"),
    }
    match ia2_report::plots::svg_to_pdf(svg) {
        Ok(b) => ia2_data::io::write_atomic(&dir.join(format!("{stem}.pdf")), &b)?,
        Err(e) => tracing::warn!("{stem}.pdf not written: {e:#}"),
    }
    Ok(())
}

/// Tick labels of a categorical x axis drawn at 0, 1, 2, …: the category at an integer, nothing between.
fn category_labels(categories: &[String]) -> impl Fn(&f64) -> String + use<> {
    let cats = categories.to_vec();
    move |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < cats.len() {
            cats[i as usize].clone()
        } else {
            String::new()
        }
    }
}

fn e<E: std::fmt::Debug>(err: E) -> anyhow::Error {
    anyhow!("drawing: {err:?}")
}

fn render(
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<()>,
) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        draw(&root)?;
        root.present().map_err(e)?;
    }
    Ok(svg)
}

fn pad_range(lo: f64, hi: f64) -> (f64, f64) {
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    if (hi - lo).abs() < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    let p = (hi - lo) * 0.08;
    (lo - p, hi + p)
}

/// A line with error bars.
pub struct Series {
    pub name: String,
    pub color: RGBColor,
    /// (x, mean, std)
    pub points: Vec<(f64, f64, f64)>,
}

/// Lines with error bars; x on a log2 axis when `log2_x` (the positions are log2 x, labelled with x).
pub fn line_chart(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
    log2_x: bool,
    y_range: Option<(f64, f64)>,
) -> Result<String> {
    let tx = |x: f64| if log2_x { x.log2() } else { x };
    let xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| tx(p.0)))
        .collect();
    let (x0, x1) = pad_range(
        xs.iter().copied().fold(f64::INFINITY, f64::min),
        xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    let (y0, y1) = y_range.unwrap_or_else(|| {
        let lo = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1 - p.2))
            .fold(f64::INFINITY, f64::min);
        let hi = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1 + p.2))
            .fold(f64::NEG_INFINITY, f64::max);
        pad_range(lo, hi)
    });
    render((820, 520), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 18))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(e)?;
        let fmt = move |x: &f64| {
            if log2_x {
                format!("{}", (2f64.powf(*x) * 100.0).round() / 100.0)
            } else {
                format!("{x}")
            }
        };
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(&fmt)
            .label_style((FONT, 13))
            .draw()
            .map_err(e)?;
        for s in series {
            let c = s.color;
            let pts: Vec<(f64, f64)> = s.points.iter().map(|p| (tx(p.0), p.1)).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(e)?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled())))
                .map_err(e)?;
            chart
                .draw_series(s.points.iter().filter(|p| p.2 > 0.0).map(|p| {
                    ErrorBar::new_vertical(tx(p.0), p.1 - p.2, p.1, p.1 + p.2, c.stroke_width(1), 8)
                }))
                .map_err(e)?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 13))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(e)?;
        Ok(())
    })
}

/// Grouped bars: one group per category on x, one bar per series inside it, mean with a std whisker and,
/// when `annotate`, the value `mean ± std` above.
pub fn grouped_bars(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    categories: &[String],
    series: &[(String, RGBColor, Vec<Option<MeanStd>>)],
    y_range: Option<(f64, f64)>,
    annotate: bool,
) -> Result<String> {
    let hi = series
        .iter()
        .flat_map(|s| s.2.iter().flatten().map(|m| m.mean + m.std))
        .fold(0.0f64, f64::max);
    let lo = series
        .iter()
        .flat_map(|s| s.2.iter().flatten().map(|m| m.mean - m.std))
        .fold(0.0f64, f64::min);
    let (y0, y1) = y_range.unwrap_or((lo, if hi > 0.0 { hi * 1.15 } else { 1.0 }));
    let nc = categories.len().max(1);
    let ns = series.len().max(1);
    render((900, 540), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 18))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..(nc as f64 - 0.5), y0..y1)
            .map_err(e)?;
        let fmt = category_labels(categories);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(nc * 2 + 1)
            .x_label_formatter(&fmt)
            .x_desc(x_desc)
            .y_desc(y_desc)
            .label_style((FONT, 13))
            .draw()
            .map_err(e)?;
        let width = 0.8 / ns as f64;
        for (si, (name, color, values)) in series.iter().enumerate() {
            let c = *color;
            let bars: Vec<(f64, MeanStd)> = values
                .iter()
                .enumerate()
                .filter_map(|(ci, v)| v.map(|m| (ci as f64 - 0.4 + width * (si as f64 + 0.5), m)))
                .collect();
            chart
                .draw_series(bars.iter().map(|(x, m)| {
                    Rectangle::new(
                        [
                            (x - width * 0.45, 0.0f64.max(y0)),
                            (x + width * 0.45, m.mean),
                        ],
                        c.mix(0.85).filled(),
                    )
                }))
                .map_err(e)?
                .label(name.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], c.filled()));
            chart
                .draw_series(bars.iter().filter(|(_, m)| m.std > 0.0).map(|(x, m)| {
                    ErrorBar::new_vertical(
                        *x,
                        m.mean - m.std,
                        m.mean,
                        m.mean + m.std,
                        BLACK.stroke_width(1),
                        6,
                    )
                }))
                .map_err(e)?;
            if annotate {
                chart
                    .draw_series(bars.iter().map(|(x, m)| {
                        Text::new(
                            format!("{:.3}±{:.3}", m.mean, m.std),
                            (*x - width * 0.45, m.mean + m.std + (y1 - y0) * 0.01),
                            (FONT, 10),
                        )
                    }))
                    .map_err(e)?;
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 13))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(e)?;
        Ok(())
    })
}

/// Box plots (`violin == false`: median, quartiles, whiskers at 1.5 IQR, outliers) or violin plots (Gaussian
/// kernel density, Silverman bandwidth, mean marked) of one sample per label.
pub fn distribution_plot(
    title: &str,
    y_desc: &str,
    labels: &[String],
    samples: &[Vec<f64>],
    violin: bool,
) -> Result<String> {
    let all: Vec<f64> = samples.iter().flatten().copied().collect();
    let (y0, y1) = pad_range(
        all.iter().copied().fold(f64::INFINITY, f64::min),
        all.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    let n = labels.len().max(1);
    render((900, 540), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 18))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), y0..y1)
            .map_err(e)?;
        let fmt = category_labels(labels);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n * 2 + 1)
            .x_label_formatter(&fmt)
            .y_desc(y_desc)
            .label_style((FONT, 13))
            .draw()
            .map_err(e)?;
        for (i, s) in samples.iter().enumerate() {
            if s.is_empty() {
                continue;
            }
            let c = palette(i);
            let x = i as f64;
            let mut v = s.clone();
            v.sort_by(f64::total_cmp);
            let q = |p: f64| {
                let pos = p * (v.len() - 1) as f64;
                let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
                v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
            };
            if violin {
                let m = MeanStd::of(&v).expect("non-empty");
                let bw = (1.06 * m.std.max(1e-3) * (v.len() as f64).powf(-0.2)).max(1e-4);
                let (a, b) = (v[0] - 2.0 * bw, v[v.len() - 1] + 2.0 * bw);
                let ys: Vec<f64> = (0..=60).map(|k| a + (b - a) * k as f64 / 60.0).collect();
                let dens: Vec<f64> = ys
                    .iter()
                    .map(|y| {
                        v.iter()
                            .map(|x| (-0.5 * ((y - x) / bw).powi(2)).exp())
                            .sum::<f64>()
                    })
                    .collect();
                let dmax = dens.iter().copied().fold(0.0, f64::max).max(1e-12);
                let mut poly: Vec<(f64, f64)> = ys
                    .iter()
                    .zip(&dens)
                    .map(|(y, d)| (x + 0.4 * d / dmax, *y))
                    .collect();
                poly.extend(
                    ys.iter()
                        .zip(&dens)
                        .rev()
                        .map(|(y, d)| (x - 0.4 * d / dmax, *y)),
                );
                chart
                    .draw_series(std::iter::once(Polygon::new(poly, c.mix(0.5).filled())))
                    .map_err(e)?;
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(x - 0.15, q(0.5)), (x + 0.15, q(0.5))],
                        BLACK.stroke_width(2),
                    )))
                    .map_err(e)?;
                chart
                    .draw_series(std::iter::once(Circle::new((x, m.mean), 4, WHITE.filled())))
                    .map_err(e)?;
            } else {
                let (q1, q2, q3) = (q(0.25), q(0.5), q(0.75));
                let iqr = q3 - q1;
                let lo = v
                    .iter()
                    .copied()
                    .find(|&y| y >= q1 - 1.5 * iqr)
                    .unwrap_or(q1);
                let hi = v
                    .iter()
                    .rev()
                    .copied()
                    .find(|&y| y <= q3 + 1.5 * iqr)
                    .unwrap_or(q3);
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x - 0.25, q1), (x + 0.25, q3)],
                        c.mix(0.5).filled(),
                    )))
                    .map_err(e)?;
                let lines = [
                    vec![(x - 0.25, q2), (x + 0.25, q2)],
                    vec![(x, q3), (x, hi)],
                    vec![(x, q1), (x, lo)],
                    vec![(x - 0.1, hi), (x + 0.1, hi)],
                    vec![(x - 0.1, lo), (x + 0.1, lo)],
                ];
                // Zero-length whiskers (few points) are left out: nothing to draw.
                chart
                    .draw_series(
                        lines
                            .into_iter()
                            .filter(|l| l[0] != l[1])
                            .map(|l| PathElement::new(l, BLACK.stroke_width(1))),
                    )
                    .map_err(e)?;
                chart
                    .draw_series(
                        v.iter()
                            .filter(|&&y| y < lo || y > hi)
                            .map(|&y| Circle::new((x, y), 3, BLACK.stroke_width(1))),
                    )
                    .map_err(e)?;
            }
        }
        Ok(())
    })
}

/// Viridis-like colour of `t ∈ [0, 1]`.
fn colormap(t: f64) -> RGBColor {
    const STOPS: [(f64, [f64; 3]); 5] = [
        (0.0, [68.0, 1.0, 84.0]),
        (0.25, [59.0, 82.0, 139.0]),
        (0.5, [33.0, 145.0, 140.0]),
        (0.75, [94.0, 201.0, 98.0]),
        (1.0, [253.0, 231.0, 37.0]),
    ];
    let t = t.clamp(0.0, 1.0);
    let k = STOPS.iter().position(|s| s.0 >= t).unwrap_or(4).max(1);
    let (a, b) = (STOPS[k - 1], STOPS[k]);
    let f = (t - a.0) / (b.0 - a.0);
    let c = |i: usize| (a.1[i] + (b.1[i] - a.1[i]) * f).round() as u8;
    RGBColor(c(0), c(1), c(2))
}

/// Heatmap of `values[row][col]`: rows on y (labelled `row_labels`, first row at the top), columns on x.
/// Cells are annotated with their value when the grid is small; `None` cells stay blank (grey).
pub fn heatmap(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    col_labels: &[String],
    row_labels: &[String],
    values: &[Vec<Option<f64>>],
) -> Result<String> {
    let (nr, nc) = (row_labels.len().max(1), col_labels.len().max(1));
    let flat: Vec<f64> = values.iter().flatten().flatten().copied().collect();
    let lo = flat.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = flat.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo, hi)
    } else {
        (lo.min(0.0), lo.max(0.0) + 1.0)
    };
    let annotate = nr * nc <= 120;
    let w = (300 + 60 * nc).clamp(900, 1600) as u32;
    let h = (140 + 32 * nr).clamp(300, 1000) as u32;
    render((w, h), |root| {
        let (main, bar) = root.split_horizontally(w - 90);
        let mut chart = ChartBuilder::on(&main)
            .caption(title, (FONT, 17))
            .margin(10)
            .x_label_area_size(44)
            .y_label_area_size(140)
            .build_cartesian_2d(-0.5f64..(nc as f64 - 0.5), -0.5f64..(nr as f64 - 0.5))
            .map_err(e)?;
        let cl = col_labels.to_vec();
        let rl = row_labels.to_vec();
        let fx = move |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < cl.len() {
                cl[i as usize].clone()
            } else {
                String::new()
            }
        };
        // The first row is drawn at the top: row r sits at y = nr - 1 - r.
        let fy = move |y: &f64| {
            let i = y.round();
            if (y - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < rl.len() {
                rl[rl.len() - 1 - i as usize].clone()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(nc * 2 + 1)
            .y_labels(nr * 2 + 1)
            .x_label_formatter(&fx)
            .y_label_formatter(&fy)
            .x_desc(x_desc)
            .y_desc(y_desc)
            .label_style((FONT, 12))
            .draw()
            .map_err(e)?;
        for (r, row) in values.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                let (x, y) = (c as f64, (nr - 1 - r) as f64);
                let color = match v {
                    Some(v) => colormap((v - lo) / (hi - lo)),
                    None => RGBColor(220, 220, 220),
                };
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)],
                        color.filled(),
                    )))
                    .map_err(e)?;
                if annotate && let Some(v) = v {
                    let t = (v - lo) / (hi - lo);
                    let tc = if t > 0.6 { BLACK } else { WHITE };
                    chart
                        .draw_series(std::iter::once(Text::new(
                            format!("{v:.2}"),
                            (x - 0.3, y),
                            (FONT, 10).into_font().color(&tc),
                        )))
                        .map_err(e)?;
                }
            }
        }
        // Colour bar.
        let mut cb = ChartBuilder::on(&bar)
            .margin_top(40)
            .margin_bottom(50)
            .margin_right(10)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..1f64, lo..hi)
            .map_err(e)?;
        cb.configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_labels(5)
            .label_style((FONT, 11))
            .draw()
            .map_err(e)?;
        let steps = 50;
        cb.draw_series((0..steps).map(|k| {
            let a = lo + (hi - lo) * k as f64 / steps as f64;
            let b = lo + (hi - lo) * (k + 1) as f64 / steps as f64;
            Rectangle::new(
                [(0.0, a), (1.0, b)],
                colormap(k as f64 / steps as f64).filled(),
            )
        }))
        .map_err(e)?;
        Ok(())
    })
}

/// Scatter of (x, y) per method with its Gaussian contours (0.5 / 0.8 / 0.95 of the peak density) and mean.
pub fn scatter_contours(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    points: &BTreeMap<String, Vec<(f64, f64)>>,
    fits: &BTreeMap<String, crate::stats::Gaussian2>,
) -> Result<String> {
    let mut xs: Vec<f64> = points.values().flatten().map(|p| p.0).collect();
    let mut ys: Vec<f64> = points.values().flatten().map(|p| p.1).collect();
    for g in fits.values() {
        for p in g.contour(CONTOUR_LEVELS[0], 48) {
            xs.push(p.0);
            ys.push(p.1);
        }
    }
    let (x0, x1) = pad_range(
        xs.iter().copied().fold(f64::INFINITY, f64::min),
        xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    let (y0, y1) = pad_range(
        ys.iter().copied().fold(f64::INFINITY, f64::min),
        ys.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    render((820, 560), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 17))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .label_style((FONT, 13))
            .draw()
            .map_err(e)?;
        for (m, pts) in points {
            let c = method_color(m);
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.mix(0.8).filled())))
                .map_err(e)?
                .label(crate::subspace::method_label(m).to_string())
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, c.filled()));
            if let Some(g) = fits.get(m) {
                for level in CONTOUR_LEVELS {
                    chart
                        .draw_series(std::iter::once(PathElement::new(
                            g.contour(level, 72),
                            c.stroke_width(1),
                        )))
                        .map_err(e)?;
                }
                chart
                    .draw_series(std::iter::once(TriangleMarker::new(
                        (g.mean[0], g.mean[1]),
                        9,
                        c.filled(),
                    )))
                    .map_err(e)?;
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 13))
            .draw()
            .map_err(e)?;
        Ok(())
    })
}

fn log2_axis(ns: &[usize]) -> bool {
    let (lo, hi) = (
        ns.iter().copied().min().unwrap_or(1).max(1),
        ns.iter().copied().max().unwrap_or(1),
    );
    hi as f64 / lo as f64 > 10.0
}

// ---------------------------------------------------------------------------------------------------------
// The analyses' figures.

/// Subspace figures: per key, overlap vs N (a line per pair) and one figure per pair by projection; pooled
/// over keys, grouped bars (pairs × N), box and violin plots of the per-run overlaps.
pub fn subspace_plots(report: &SubspaceReport, dir: &Path) -> Result<()> {
    let mut keys: BTreeMap<String, Vec<&crate::subspace::GroupResult>> = BTreeMap::new();
    for g in &report.groups {
        keys.entry(g.key.tag()).or_default().push(g);
    }
    for (tag, groups) in &keys {
        let ns: Vec<usize> = groups.iter().map(|g| g.n).collect();
        let log2 = log2_axis(&ns);
        let mut series = Vec::new();
        for (i, (a, b)) in PAIRS.iter().enumerate() {
            let id = pair_id(a, b);
            let points: Vec<(f64, f64, f64)> = groups
                .iter()
                .filter_map(|g| {
                    let p = g.pairs.iter().find(|p| p.pair == id)?;
                    p.overall.map(|m| (g.n as f64, m.mean, m.std))
                })
                .collect();
            if !points.is_empty() {
                series.push(Series {
                    name: pair_label(a, b),
                    color: palette(i),
                    points,
                });
            }
            // By projection.
            let mut projs: BTreeMap<String, Vec<(f64, f64, f64)>> = BTreeMap::new();
            for g in groups {
                if let Some(p) = g.pairs.iter().find(|p| p.pair == id) {
                    for (proj, m) in &p.per_projection {
                        projs
                            .entry(proj.clone())
                            .or_default()
                            .push((g.n as f64, m.mean, m.std));
                    }
                }
            }
            if !projs.is_empty() {
                let s: Vec<Series> = projs
                    .into_iter()
                    .enumerate()
                    .map(|(k, (proj, points))| Series {
                        name: proj,
                        color: palette(k),
                        points,
                    })
                    .collect();
                let svg = line_chart(
                    &format!(
                        "{}: overlap by projection ({})",
                        pair_label(a, b),
                        groups[0].key
                    ),
                    "N (training examples)",
                    "subspace overlap",
                    &s,
                    log2,
                    Some((0.0, 1.05)),
                )?;
                write_figure(dir, &format!("subspace_by_projection_{id}_{tag}"), &svg)?;
            }
        }
        if !series.is_empty() {
            let svg = line_chart(
                &format!("LoRA subspace overlap vs N ({})", groups[0].key),
                "N (training examples)",
                "subspace overlap ‖U1ᵀU2‖²/r",
                &series,
                log2,
                Some((0.0, 1.05)),
            )?;
            write_figure(dir, &format!("subspace_overlap_vs_n_{tag}"), &svg)?;
        }
    }
    // Pooled over keys.
    let pairs: Vec<(String, String)> = PAIRS
        .iter()
        .map(|(a, b)| (pair_id(a, b), pair_label(a, b)))
        .filter(|(id, _)| report.per_run_values.contains_key(id))
        .collect();
    if pairs.is_empty() {
        return Ok(());
    }
    let all_ns: std::collections::BTreeSet<usize> = report
        .aggregate
        .values()
        .flat_map(|m| m.keys().copied())
        .collect();
    let cats: Vec<String> = pairs.iter().map(|p| p.1.clone()).collect();
    let series: Vec<(String, RGBColor, Vec<Option<MeanStd>>)> = all_ns
        .iter()
        .enumerate()
        .map(|(i, n)| {
            (
                format!("N = {n}"),
                palette(i),
                pairs
                    .iter()
                    .map(|(id, _)| report.aggregate.get(id).and_then(|m| m.get(n)).copied())
                    .collect(),
            )
        })
        .collect();
    let svg = grouped_bars(
        "LoRA subspace overlap (pooled over keys)",
        "method pair",
        "subspace overlap",
        &cats,
        &series,
        Some((0.0, 1.05)),
        true,
    )?;
    write_figure(dir, "subspace_overlap_bars", &svg)?;
    let samples: Vec<Vec<f64>> = pairs
        .iter()
        .map(|(id, _)| report.per_run_values.get(id).cloned().unwrap_or_default())
        .collect();
    let svg = distribution_plot(
        "LoRA subspace overlap per run (box plot)",
        "subspace overlap",
        &cats,
        &samples,
        false,
    )?;
    write_figure(dir, "subspace_overlap_box", &svg)?;
    let svg = distribution_plot(
        "LoRA subspace overlap per run (violin plot)",
        "subspace overlap",
        &cats,
        &samples,
        true,
    )?;
    write_figure(dir, "subspace_overlap_violin", &svg)?;
    Ok(())
}

fn method_order(m: &str) -> usize {
    [BASE_NO_DEMOS, "tok", "tokl", "act", "tna", "a2t", "t2a"]
        .iter()
        .position(|x| *x == m)
        .unwrap_or(99)
}

/// Similarity figures per key and variant: grouped bars (x = method, groups = N, labelled mean ± std), a
/// heatmap methods × layers per N, per-method heatmaps layers × tokens when T > 1; and the
/// similarity-vs-performance scatters.
pub fn similarity_plots(report: &SimilarityReport, dir: &Path) -> Result<()> {
    let mut keys: BTreeMap<String, Vec<&crate::similarity::GroupSim>> = BTreeMap::new();
    for g in &report.groups {
        keys.entry(g.key.tag()).or_default().push(g);
    }
    for (tag, groups) in &keys {
        let variants: std::collections::BTreeSet<&String> =
            groups.iter().flat_map(|g| g.variants.keys()).collect();
        for variant in variants {
            let mut methods: Vec<String> = groups
                .iter()
                .filter_map(|g| g.variants.get(variant))
                .flat_map(|m| m.keys().cloned())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            methods.sort_by_key(|m| (method_order(m), m.clone()));
            let series: Vec<(String, RGBColor, Vec<Option<MeanStd>>)> = groups
                .iter()
                .enumerate()
                .map(|(i, g)| {
                    (
                        format!("N = {}", g.n),
                        palette(i),
                        methods
                            .iter()
                            .map(|m| {
                                g.variants
                                    .get(variant)
                                    .and_then(|v| v.get(m))
                                    .and_then(|r| r.aggregate.overall)
                            })
                            .collect(),
                    )
                })
                .collect();
            let vlabel = variant.replace('_', "-");
            let labels: Vec<String> = methods
                .iter()
                .map(|m| crate::subspace::method_label(m).to_string())
                .collect();
            let svg = grouped_bars(
                &format!(
                    "Activation similarity to the base model with ICL ({vlabel}; {})",
                    groups[0].key
                ),
                "model (without demos)",
                "cosine similarity (mean over layers and steps)",
                &labels,
                &series,
                None,
                true,
            )?;
            write_figure(dir, &format!("similarity_bars_{variant}_{tag}"), &svg)?;
            for g in groups {
                let Some(v) = g.variants.get(variant) else {
                    continue;
                };
                let rows: Vec<&String> = methods.iter().filter(|m| v.contains_key(*m)).collect();
                let values: Vec<Vec<Option<f64>>> = rows
                    .iter()
                    .map(|m| v[*m].aggregate.layerwise.iter().map(|x| Some(*x)).collect())
                    .collect();
                let layers: Vec<String> = (0..g.layers).map(|l| l.to_string()).collect();
                let row_labels: Vec<String> = rows
                    .iter()
                    .map(|m| crate::subspace::method_label(m).to_string())
                    .collect();
                let svg = heatmap(
                    &format!("Similarity per layer ({vlabel}, N = {})", g.n),
                    "layer",
                    "model (without demos)",
                    &layers,
                    &row_labels,
                    &values,
                )?;
                write_figure(
                    dir,
                    &format!("similarity_layers_{variant}_{tag}_N{}", g.n),
                    &svg,
                )?;
                if g.num_generated_tokens > 1 {
                    for m in &rows {
                        let agg = &v[*m].aggregate;
                        let steps = agg.token_counts.len();
                        let cols: Vec<String> = (0..steps)
                            .map(|t| format!("{} (n={})", t + 1, agg.token_counts[t]))
                            .collect();
                        let svg = heatmap(
                            &format!(
                                "{}: similarity per layer and response token ({vlabel}, N = {})",
                                crate::subspace::method_label(m),
                                g.n,
                            ),
                            "response token t (examples reaching t)",
                            "layer",
                            &cols,
                            &layers,
                            &agg.tokenwise,
                        )?;
                        let safe = crate::select::sanitize(m);
                        write_figure(
                            dir,
                            &format!("similarity_tokens_{variant}_{safe}_{tag}_N{}", g.n),
                            &svg,
                        )?;
                    }
                }
            }
        }
    }
    if let Some(vs) = &report.vs_performance {
        vs_performance_plots(vs, dir)?;
    }
    Ok(())
}

/// Similarity vs accuracy and vs ECE, per group (single-token, multi-token, all) and variant.
pub fn vs_performance_plots(vs: &VsPerformance, dir: &Path) -> Result<()> {
    for c in &vs.correlations {
        for (metric, fits, r) in [
            ("accuracy", &c.fits_accuracy, c.r_accuracy),
            ("ece", &c.fits_ece, c.r_ece),
        ] {
            let mut points: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
            for row in vs.rows.iter().filter(|row| {
                row.variant == c.variant && (c.group == "all" || row.group == c.group)
            }) {
                let y = if metric == "accuracy" {
                    row.accuracy
                } else {
                    row.ece
                };
                if let Some(y) = y {
                    points
                        .entry(row.method.clone())
                        .or_default()
                        .push((row.similarity, y));
                }
            }
            if points.is_empty() {
                continue;
            }
            let rtext = r.map_or("n/a".to_string(), |r| format!("{r:.3}"));
            let svg = scatter_contours(
                &format!(
                    "Similarity vs {} ({}, {}; Pearson r = {rtext})",
                    if metric == "accuracy" {
                        "accuracy"
                    } else {
                        "ECE"
                    },
                    c.group,
                    c.variant.replace('_', "-")
                ),
                "activation similarity (run mean)",
                if metric == "accuracy" {
                    "without-ICL accuracy (%)"
                } else {
                    "without-ICL ECE"
                },
                &points,
                fits,
            )?;
            write_figure(
                dir,
                &format!("similarity_vs_{metric}_{}_{}", c.group, c.variant),
                &svg,
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `attr` attribute of the first `<text>` element whose (trimmed) content is `label`.
    fn text_attr(svg: &str, label: &str, attr: &str) -> f64 {
        for chunk in svg.split("<text").skip(1) {
            let (tag, rest) = chunk.split_once('>').unwrap();
            let content = rest.split("</text>").next().unwrap().trim();
            if content == label {
                let v = tag.split(&format!("{attr}=\"")).nth(1).unwrap();
                return v[..v.find('"').unwrap()].parse().unwrap();
            }
        }
        panic!("{label} not in the figure")
    }

    fn text_y(svg: &str, label: &str) -> f64 {
        text_attr(svg, label, "y")
    }

    fn text_x(svg: &str, label: &str) -> f64 {
        text_attr(svg, label, "x")
    }

    #[test]
    fn heatmap_rows_go_down_the_y_axis_and_columns_along_x() {
        // Three rows (rowA at the top), two columns; each cell's value is unique.
        let values = vec![
            vec![Some(0.11), Some(0.12)],
            vec![Some(0.21), Some(0.22)],
            vec![Some(0.31), None],
        ];
        let rows: Vec<String> = ["rowA", "rowB", "rowC"].map(String::from).to_vec();
        let cols: Vec<String> = ["colX", "colY"].map(String::from).to_vec();
        let svg = heatmap("t", "columns", "rows", &cols, &rows, &values).unwrap();
        let (ya, yb, yc) = (
            text_y(&svg, "rowA"),
            text_y(&svg, "rowB"),
            text_y(&svg, "rowC"),
        );
        assert!(ya < yb && yb < yc, "first row on top: {ya} {yb} {yc}");
        assert!(text_x(&svg, "colX") < text_x(&svg, "colY"));
        // Cell annotations sit in their row and column.
        assert!((text_y(&svg, "0.12") - ya).abs() < 20.0);
        assert!((text_y(&svg, "0.31") - yc).abs() < 20.0);
        assert!(text_x(&svg, "0.12") > text_x(&svg, "0.11"));
        assert!((text_x(&svg, "0.21") - text_x(&svg, "0.11")).abs() < 1.0);
    }
}
