//! Plots (plotters, SVG backend): every result plot of analysis.md (each metric vs N with std error bars, one
//! line per method in the seed's colours and markers, the base model black dashed and its other ICL mode as
//! a grey dotted reference line, uncertainty-mode metrics), the adapter-kind comparison (colour = adapter
//! kind, marker = method) and training curves (train / dev loss vs step from `metrics.jsonl`, one colour per
//! run).
//!
//! Every figure is drawn once as SVG; PNG (print resolution, 300 dpi by default) is rasterised from it with
//! resvg and PDF converted with svg2pdf, both with the embedded DejaVu Sans (no system font needed).
//!
//! To add a plot: build a [`Figure`] (name, section, title, SVG) in a function like [`result_figures`] and
//! add it to [`all_figures`]; files and the HTML report pick it up.

use crate::aggregate::{Aggregate, Aggregated};
use crate::select::EvalKey;
use anyhow::{Context, Result};
use plotters::prelude::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The font every PNG / PDF is rendered with (DejaVu Sans, see assets/FONT-LICENSE.md).
pub static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Plot settings.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PlotConfig {
    pub width: u32,
    pub height: u32,
    /// PNG resolution in dots per inch (the SVG is 96 dpi).
    pub png_dpi: f32,
    pub png: bool,
    pub pdf: bool,
}

impl Default for PlotConfig {
    fn default() -> Self {
        PlotConfig {
            width: 800,
            height: 520,
            png_dpi: 300.0,
            png: true,
            pdf: true,
        }
    }
}

/// One figure.
#[derive(Debug, Clone)]
pub struct Figure {
    /// File stem (unique, filesystem-safe).
    pub name: String,
    /// Section of the HTML report (`results`, `adapters`, `training`).
    pub section: String,
    pub title: String,
    pub svg: String,
}

/// Colour and marker of a method (by objective), as the seed draws them.
pub fn method_style(objective: &str) -> (RGBColor, Marker) {
    match objective {
        "tok" => (RGBColor(0x1f, 0x77, 0xb4), Marker::Square),
        "tokl" => (RGBColor(0xff, 0x7f, 0x0e), Marker::X),
        "act" => (RGBColor(0x2c, 0xa0, 0x2c), Marker::Triangle),
        "tna" => (RGBColor(0xd6, 0x27, 0x28), Marker::Diamond),
        "a2t" => (RGBColor(0x94, 0x67, 0xbd), Marker::DownTriangle),
        "t2a" => (RGBColor(0x8c, 0x56, 0x4b), Marker::Circle),
        _ => (BLACK, Marker::Circle),
    }
}

/// Colour of an adapter kind in the adapter comparison.
pub fn adapter_colour(kind: &str) -> RGBColor {
    match kind {
        "lora" => RGBColor(0x1f, 0x77, 0xb4),
        "ia3" => RGBColor(0xff, 0x7f, 0x0e),
        "prompt" => RGBColor(0x2c, 0xa0, 0x2c),
        "prefix" => RGBColor(0xd6, 0x27, 0x28),
        _ => BLACK,
    }
}

/// The i-th colour of the qualitative palette (matplotlib's tab10), for runs, pairs and other series.
pub fn palette(i: usize) -> RGBColor {
    RUN_COLOURS[i % RUN_COLOURS.len()]
}

/// Distinct colours for runs (training curves).
const RUN_COLOURS: [RGBColor; 10] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    Square,
    X,
    Triangle,
    DownTriangle,
    Diamond,
    Circle,
}

impl Marker {
    /// The marker's outline in pixels around its centre.
    fn points(self) -> Vec<(i32, i32)> {
        let r = 5;
        match self {
            Marker::Square => vec![
                (-r + 1, -r + 1),
                (r - 1, -r + 1),
                (r - 1, r - 1),
                (-r + 1, r - 1),
            ],
            Marker::Triangle => vec![(0, -r - 1), (r, r - 1), (-r, r - 1)],
            Marker::DownTriangle => vec![(0, r + 1), (r, -r + 1), (-r, -r + 1)],
            Marker::Diamond => vec![(0, -r - 1), (r, 0), (0, r + 1), (-r, 0)],
            Marker::Circle => (0..12)
                .map(|i| {
                    let a = i as f64 * std::f64::consts::PI / 6.0;
                    (
                        (a.cos() * r as f64).round() as i32,
                        (a.sin() * r as f64).round() as i32,
                    )
                })
                .collect(),
            Marker::X => {
                let (a, b) = (r, 2);
                vec![
                    (-a, -a + b),
                    (-a + b, -a),
                    (0, -b),
                    (a - b, -a),
                    (a, -a + b),
                    (b, 0),
                    (a, a - b),
                    (a - b, a),
                    (0, b),
                    (-a + b, a),
                    (-a, a - b),
                    (-b, 0),
                ]
            }
        }
    }
}

/// One line of a plot.
struct Line {
    label: String,
    colour: RGBColor,
    marker: Option<Marker>,
    /// (x, mean, std)
    points: Vec<(f64, f64, f64)>,
    dashed: bool,
    /// Thin grey dotted reference line.
    reference: bool,
}

/// A figure's y-range for a metric (analysis.md: accuracy 0–105, entropy 0–2, others 0–1), widened when the
/// data exceed it.
fn y_range(metric: &str, lines: &[Line]) -> (f64, f64) {
    let (lo, hi) = if metric.contains("accuracy") {
        (0.0, 105.0)
    } else if metric.contains("entropy") {
        (0.0, 2.0)
    } else if metric.contains("loss") {
        (0.0, 0.0)
    } else {
        (0.0, 1.0)
    };
    let data_hi = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1 + p.2))
        .fold(f64::NEG_INFINITY, f64::max);
    let data_lo = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1 - p.2))
        .fold(f64::INFINITY, f64::min);
    let hi = if data_hi.is_finite() && data_hi > hi {
        data_hi * 1.05
    } else {
        hi
    };
    let lo = if data_lo.is_finite() && data_lo < lo {
        data_lo - 0.05 * (hi - data_lo).abs()
    } else {
        lo
    };
    if hi <= lo { (lo, lo + 1.0) } else { (lo, hi) }
}

fn plot_err(e: impl std::fmt::Debug) -> anyhow::Error {
    anyhow::anyhow!("drawing a plot: {e:?}")
}

/// Draws lines against N (log2 axis when max/min > 10) into an SVG string.
fn draw_vs_n(
    title: &str,
    y_desc: &str,
    metric: &str,
    lines: &[Line],
    cfg: &PlotConfig,
) -> Result<String> {
    let ns: Vec<f64> = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .collect();
    let (min_n, max_n) = ns
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    let log = min_n > 0.0 && max_n / min_n > 10.0;
    let tx = |n: f64| if log { n.log2() } else { n };
    let (x0, x1) = if ns.is_empty() {
        (0.0, 1.0)
    } else {
        let (a, b) = (tx(min_n), tx(max_n));
        let pad = ((b - a) * 0.08).max(0.5);
        (a - pad, b + pad)
    };
    let (y0, y1) = y_range(metric, lines);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (cfg.width, cfg.height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(plot_err)?;
        let fmt_x = move |x: &f64| {
            let n = if log { 2f64.powf(*x) } else { *x };
            if (n - n.round()).abs() < 1e-6 && n > 0.0 {
                format!("{}", n.round() as i64)
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .x_desc(if log { "N (log2 scale)" } else { "N" })
            .y_desc(y_desc)
            .x_label_formatter(&fmt_x)
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(plot_err)?;
        for line in lines {
            let mut pts: Vec<(f64, f64)> = line.points.iter().map(|p| (tx(p.0), p.1)).collect();
            // A base line with a single N is drawn across the plot, so that it is visible.
            if (line.dashed || line.reference) && pts.len() == 1 {
                let y = pts[0].1;
                pts = vec![(x0, y), (x1, y)];
            }
            let colour = line.colour;
            let style = if line.reference {
                RGBColor(0x80, 0x80, 0x80).stroke_width(1)
            } else {
                colour.stroke_width(2)
            };
            if line.dashed || line.reference {
                let (size, gap) = if line.reference { (2, 4) } else { (8, 5) };
                chart
                    .draw_series(DashedLineSeries::new(pts.clone(), size, gap, style))
                    .map_err(plot_err)?
                    .label(line.label.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 10, y)], style));
            } else {
                let marker = line.marker;
                // A single point is drawn by its marker (a one-point polyline is not valid SVG).
                let path = if pts.len() > 1 {
                    pts.clone()
                } else {
                    Vec::new()
                };
                chart
                    .draw_series(LineSeries::new(path, style))
                    .map_err(plot_err)?
                    .label(line.label.clone())
                    .legend(move |(x, y)| {
                        EmptyElement::at((x + 8, y))
                            + PathElement::new(vec![(-8, 0), (8, 0)], style)
                            + Polygon::new(
                                marker.unwrap_or(Marker::Circle).points(),
                                colour.filled(),
                            )
                    });
            }
            if !line.reference {
                chart
                    .draw_series(line.points.iter().filter(|p| p.2 > 0.0).map(|p| {
                        ErrorBar::new_vertical(
                            tx(p.0),
                            p.1 - p.2,
                            p.1,
                            p.1 + p.2,
                            colour.stroke_width(1),
                            8,
                        )
                    }))
                    .map_err(plot_err)?;
            }
            if let Some(m) = line.marker {
                chart
                    .draw_series(
                        pts.iter().map(|&c| {
                            EmptyElement::at(c) + Polygon::new(m.points(), colour.filled())
                        }),
                    )
                    .map_err(plot_err)?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .border_style(BLACK.mix(0.5))
            .background_style(WHITE.mix(0.85))
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// The metrics drawn against N: standard mode, uncertainty mode (T = 1), and T > 1 uncertainty.
pub fn plotted_metrics(uncertainty: bool) -> Vec<String> {
    let mut out = Vec::new();
    for mode in ["without_icl", "with_icl"] {
        if uncertainty {
            for m in [
                "accuracy_top1",
                "accuracy_label_set",
                "uncertainty_top1_mean",
                "uncertainty_label_mean",
                "entropy_top1_mean",
                "entropy_label_mean",
                "ece_top1",
                "ece_label",
                "accuracy",
                "entropy_topk_mean",
            ] {
                out.push(format!("{mode}_{m}"));
            }
        } else {
            out.push(format!("{mode}_accuracy"));
        }
    }
    out
}

/// A filesystem-safe figure name.
pub fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}

fn figure_key(k: &EvalKey) -> EvalKey {
    // The plot key: everything but the method (lines) and its label type / settings (folded into labels).
    let mut p = k.clone();
    p.method = String::new();
    p.label_type = None;
    p.method_settings = String::new();
    p
}

fn method_label(k: &EvalKey) -> String {
    let mut s = k.method.clone();
    if let Some(l) = &k.label_type {
        s.push_str(&format!(" ({l})"));
    }
    if !k.method_settings.is_empty() {
        s.push_str(&format!(" [{}]", k.method_settings));
    }
    s
}

fn series(aggs: &[&Aggregate], metric: &str) -> Vec<(f64, f64, f64)> {
    let mut pts: Vec<(f64, f64, f64)> = aggs
        .iter()
        .filter_map(|a| {
            let m = a.metric(metric)?;
            Some((a.n as f64, m.mean, m.std))
        })
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    pts
}

fn other_mode(metric: &str) -> String {
    if let Some(rest) = metric.strip_prefix("without_icl_") {
        format!("with_icl_{rest}")
    } else if let Some(rest) = metric.strip_prefix("with_icl_") {
        format!("without_icl_{rest}")
    } else {
        metric.to_string()
    }
}

/// Every result plot: per plot key (the aggregation key without N and method) and metric, one line per
/// method, the base model and its other mode as reference.
pub fn result_figures(agg: &Aggregated, cfg: &PlotConfig) -> Result<Vec<Figure>> {
    let mut groups: BTreeMap<EvalKey, BTreeMap<String, Vec<&Aggregate>>> = BTreeMap::new();
    let mut base: BTreeMap<_, Vec<&Aggregate>> = BTreeMap::new();
    for a in &agg.aggregates {
        if a.key.is_base() {
            base.entry(a.key.setting()).or_default().push(a);
        } else {
            groups
                .entry(figure_key(&a.key))
                .or_default()
                .entry(method_label(&a.key))
                .or_default()
                .push(a);
        }
    }
    let mut figures = Vec::new();
    for (pk, methods) in &groups {
        let bases = base.get(&pk.setting()).cloned().unwrap_or_default();
        for metric in plotted_metrics(pk.uncertainty) {
            let mut lines = Vec::new();
            for (label, aggs) in methods {
                let pts = series(aggs, &metric);
                if pts.is_empty() {
                    continue;
                }
                let (colour, marker) = method_style(&aggs[0].key.objective());
                lines.push(Line {
                    label: label.clone(),
                    colour,
                    marker: Some(marker),
                    points: pts,
                    dashed: false,
                    reference: false,
                });
            }
            if lines.is_empty() {
                continue;
            }
            let b = series(&bases, &metric);
            if !b.is_empty() {
                lines.push(Line {
                    label: format!(
                        "base ({})",
                        if metric.starts_with("with_icl") {
                            "with ICL"
                        } else {
                            "no demos"
                        }
                    ),
                    colour: BLACK,
                    marker: None,
                    points: b,
                    dashed: true,
                    reference: false,
                });
            }
            let other = other_mode(&metric);
            let r = series(&bases, &other);
            if !r.is_empty() {
                lines.push(Line {
                    label: format!(
                        "base ({}, reference)",
                        if other.starts_with("with_icl") {
                            "with ICL"
                        } else {
                            "no demos"
                        }
                    ),
                    colour: BLACK,
                    marker: None,
                    points: r,
                    dashed: false,
                    reference: true,
                });
            }
            let sel = methods
                .values()
                .next()
                .map(|a| a[0].selection.label())
                .unwrap_or_default();
            let title = format!("{metric} | {}", pk.title());
            let svg = draw_vs_n(&format!("{metric} ({sel})"), &metric, &metric, &lines, cfg)
                .with_context(|| title.clone())?;
            figures.push(Figure {
                name: slug(&format!("result_{}_{metric}", pk.title())),
                section: "results".into(),
                title,
                svg,
            });
        }
    }
    Ok(figures)
}

/// The adapter comparison: per setting (model, X, Y, Z, D, T, uncertainty), without-ICL accuracy vs N,
/// colour = adapter kind, marker = method.
pub fn adapter_figures(agg: &Aggregated, cfg: &PlotConfig) -> Result<Vec<Figure>> {
    type Group<'a> = (String, bool, BTreeMap<String, Vec<&'a Aggregate>>);
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for a in agg.aggregates.iter().filter(|a| !a.key.is_base()) {
        let k = &a.key;
        let mut g = figure_key(k);
        g.adapter = String::new();
        g.adapter_kind = String::new();
        let title = format!(
            "{} {}→{} (demos {}, D={}) T={}/{}{}",
            k.model,
            k.trained.as_deref().unwrap_or("-"),
            k.eval,
            k.icl_source,
            k.demos,
            k.train_t.map_or("-".into(), |t| t.to_string()),
            k.eval_t,
            if k.uncertainty { " uncertainty" } else { "" }
        );
        groups
            .entry(format!("{g:?}"))
            .or_insert_with(|| (title, k.uncertainty, BTreeMap::new()))
            .2
            .entry(format!("{} | {}", k.adapter, method_label(k)))
            .or_default()
            .push(a);
    }
    let mut figures = Vec::new();
    for (title, uncertainty, lines_by) in groups.into_values() {
        let metric = crate::tables::accuracy_metric(uncertainty, false);
        let lines: Vec<Line> = lines_by
            .iter()
            .filter_map(|(label, aggs)| {
                let pts = series(aggs, &metric);
                (!pts.is_empty()).then(|| Line {
                    label: label.clone(),
                    colour: adapter_colour(&aggs[0].key.adapter_kind),
                    marker: Some(method_style(&aggs[0].key.objective()).1),
                    points: pts,
                    dashed: false,
                    reference: false,
                })
            })
            .collect();
        if lines.is_empty() {
            continue;
        }
        let svg = draw_vs_n(
            &format!("adapters: {metric}"),
            &metric,
            &metric,
            &lines,
            cfg,
        )
        .with_context(|| title.clone())?;
        figures.push(Figure {
            name: slug(&format!("adapters_{title}_{metric}")),
            section: "adapters".into(),
            title: format!("adapter comparison, {metric} | {title}"),
            svg,
        });
    }
    Ok(figures)
}

/// (step, loss) points.
pub type Points = Vec<(f64, f64)>;

/// (train total, dev total, unparsable lines) of one run's metrics.jsonl, as (step, loss) points;
/// unparsable lines are skipped and counted.
pub fn read_curve(run_dir: &Path) -> Result<(Points, Points, usize)> {
    let path = run_dir.join(ia2_train::output::METRICS_FILE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let (mut train, mut dev, mut bad) = (Vec::new(), Vec::new(), 0);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            bad += 1;
            continue;
        };
        let Some(step) = v.get("step").and_then(Value::as_f64) else {
            bad += 1;
            continue;
        };
        if let Some(t) = v.pointer("/train/total").and_then(Value::as_f64) {
            train.push((step, t));
        }
        if let Some(d) = v.pointer("/dev/total").and_then(Value::as_f64) {
            dev.push((step, d));
        }
    }
    Ok((train, dev, bad))
}

/// Training curves of the selected runs of every trained (key, N): train loss solid, dev loss dashed,
/// one colour per run. Runs whose metrics.jsonl cannot be read are named in the title.
pub fn training_figures(agg: &Aggregated, cfg: &PlotConfig) -> Result<Vec<Figure>> {
    let mut figures = Vec::new();
    let mut done = std::collections::BTreeSet::new();
    for a in agg.aggregates.iter().filter(|a| !a.key.is_base()) {
        // Evaluations on several datasets share the training runs: one figure per set of run directories.
        if a.run_dirs.is_empty() || !done.insert(a.run_dirs.clone()) {
            continue;
        }
        let mut series_list: Vec<(String, RGBColor, Points, bool)> = Vec::new();
        let mut missing = Vec::new();
        for (i, (dir, run)) in a.run_dirs.iter().zip(&a.runs).enumerate() {
            let colour = RUN_COLOURS[i % RUN_COLOURS.len()];
            match read_curve(dir) {
                Ok((train, dev, _)) => {
                    if !train.is_empty() {
                        series_list.push((format!("run {run} train"), colour, train, false));
                    }
                    if !dev.is_empty() {
                        series_list.push((format!("run {run} dev"), colour, dev, true));
                    }
                }
                Err(_) => missing.push(*run),
            }
        }
        if series_list.is_empty() {
            continue;
        }
        let k = &a.key;
        let title = format!(
            "training: {} {} N={} {} {}",
            k.model,
            method_label(k),
            a.n,
            k.trained.as_deref().unwrap_or("-"),
            a.hp
        );
        let caption = if missing.is_empty() {
            title.clone()
        } else {
            format!("{title} (no metrics.jsonl: runs {missing:?})")
        };
        let (mut x1, mut y1) = (1.0f64, 0.0f64);
        let mut y0 = f64::INFINITY;
        for (_, _, pts, _) in &series_list {
            for &(x, y) in pts {
                x1 = x1.max(x);
                y1 = y1.max(y);
                y0 = y0.min(y);
            }
        }
        let y0 = y0.min(0.0);
        let y1 = if y1 <= y0 { y0 + 1.0 } else { y1 * 1.05 };
        let mut svg = String::new();
        {
            let root =
                SVGBackend::with_string(&mut svg, (cfg.width, cfg.height)).into_drawing_area();
            root.fill(&WHITE).map_err(plot_err)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(&caption, ("sans-serif", 15))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(56)
                .build_cartesian_2d(0f64..x1 * 1.02, y0..y1)
                .map_err(plot_err)?;
            chart
                .configure_mesh()
                .x_desc("optimizer step")
                .y_desc("loss (total)")
                .light_line_style(WHITE.mix(0.0))
                .draw()
                .map_err(plot_err)?;
            for (label, colour, pts, dashed) in &series_list {
                let style = colour.stroke_width(2);
                if *dashed {
                    chart
                        .draw_series(DashedLineSeries::new(pts.clone(), 6, 4, style))
                        .map_err(plot_err)?
                        .label(label.clone())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 4, y)], style));
                } else {
                    chart
                        .draw_series(LineSeries::new(
                            if pts.len() > 1 {
                                pts.clone()
                            } else {
                                Vec::new()
                            },
                            style,
                        ))
                        .map_err(plot_err)?
                        .label(label.clone())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
                }
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .border_style(BLACK.mix(0.5))
                .background_style(WHITE.mix(0.85))
                .label_font(("sans-serif", 12))
                .draw()
                .map_err(plot_err)?;
            root.present().map_err(plot_err)?;
        }
        figures.push(Figure {
            name: slug(&format!(
                "training_{}_N{}_{}",
                k.title(),
                a.n,
                method_label(k)
            )),
            section: "training".into(),
            title: caption,
            svg,
        });
    }
    Ok(figures)
}

/// Every figure of the report.
pub fn all_figures(agg: &Aggregated, cfg: &PlotConfig) -> Result<Vec<Figure>> {
    let mut figs = result_figures(agg, cfg)?;
    figs.extend(adapter_figures(agg, cfg)?);
    figs.extend(training_figures(agg, cfg)?);
    // Names must be unique: suffix repeats.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for f in &mut figs {
        let c = seen.entry(f.name.clone()).or_default();
        *c += 1;
        if *c > 1 {
            f.name = format!("{}_{}", f.name, c);
        }
    }
    Ok(figs)
}

fn usvg_options() -> resvg::usvg::Options<'static> {
    let mut opt = resvg::usvg::Options::default();
    let db = opt.fontdb_mut();
    db.load_font_data(FONT.to_vec());
    db.set_sans_serif_family("DejaVu Sans");
    db.set_serif_family("DejaVu Sans");
    db.set_monospace_family("DejaVu Sans");
    opt.font_family = "DejaVu Sans".into();
    opt
}

/// Rasterises an SVG to PNG at `dpi` (the SVG's user unit is 1/96 inch).
pub fn svg_to_png(svg: &str, dpi: f32) -> Result<Vec<u8>> {
    let opt = usvg_options();
    let tree = resvg::usvg::Tree::from_str(svg, &opt).context("parsing the SVG")?;
    let scale = dpi / 96.0;
    let size = tree
        .size()
        .to_int_size()
        .scale_by(scale)
        .context("PNG size")?;
    let mut pixmap =
        resvg::tiny_skia::Pixmap::new(size.width(), size.height()).context("allocating the PNG")?;
    pixmap.fill(resvg::tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    pixmap.encode_png().context("encoding the PNG")
}

/// Converts an SVG to a one-page PDF (text embedded with the DejaVu Sans font).
pub fn svg_to_pdf(svg: &str) -> Result<Vec<u8>> {
    let opt = usvg_options();
    let tree = svg2pdf::usvg::Tree::from_str(svg, &opt).context("parsing the SVG")?;
    svg2pdf::to_pdf(
        &tree,
        svg2pdf::ConversionOptions::default(),
        svg2pdf::PageOptions::default(),
    )
    .map_err(|e| anyhow::anyhow!("converting to PDF: {e}"))
}

/// Writes `fig` as `dir/{name}.svg` (+ `.png`, `.pdf` when enabled), atomically; returns the paths.
pub fn write_figure(fig: &Figure, dir: &Path, cfg: &PlotConfig) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let svg_path = dir.join(format!("{}.svg", fig.name));
    ia2_data::io::write_atomic(&svg_path, fig.svg.as_bytes())?;
    out.push(svg_path);
    if cfg.png {
        let p = dir.join(format!("{}.png", fig.name));
        let png = svg_to_png(&fig.svg, cfg.png_dpi).with_context(|| format!("{}", p.display()))?;
        ia2_data::io::write_atomic(&p, &png)?;
        out.push(p);
    }
    if cfg.pdf {
        let p = dir.join(format!("{}.pdf", fig.name));
        let pdf = svg_to_pdf(&fig.svg).with_context(|| format!("{}", p.display()))?;
        ia2_data::io::write_atomic(&p, &pdf)?;
        out.push(p);
    }
    Ok(out)
}
