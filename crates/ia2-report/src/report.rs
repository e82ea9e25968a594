//! The whole report: load → select → aggregate → tables, plots, HTML, summary JSON, all written atomically
//! under the report directory.
//!
//! Layout of `<report dir>` (default `<outputs>/report/`):
//! `results.csv` (long format), `tables.md`, `tables/N{n}_{i}.tex` + `tables.tex` (a standalone document with
//! every table), `plots/{name}.svg|.png|.pdf`, `summary.json` (config, selections, aggregates, comparisons,
//! problems), `report.html`.

use crate::aggregate::{AggregateConfig, Aggregated, aggregate};
use crate::html::{AnalysisOutputs, HtmlInputs, read_analysis, render};
use crate::plots::{PlotConfig, all_figures, write_figure};
use crate::select::load_results;
use crate::tables;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use tracing::{info, warn};

/// Everything `ia2 report` takes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ReportConfig {
    /// The outputs directory (`<outputs>/evaluations/` holds the results).
    pub outputs: PathBuf,
    /// Where to write (default `<outputs>/report`).
    pub report_dir: Option<PathBuf>,
    /// Analysis outputs to embed (default `<outputs>/analysis`).
    pub analysis_dir: Option<PathBuf>,
    /// A sweep plan / summary JSON file, or a sweep directory (`ia2 sweep`'s `plan.json` and `summary.json`,
    /// else its newest `*.json`); default: the newest JSON under `<outputs>/sweep`, `sweeps` or
    /// `sweep_summaries`, if any.
    pub sweep: Option<PathBuf>,
    pub aggregate: AggregateConfig,
    pub plots: PlotConfig,
    /// Skip plot files (the HTML still inlines every SVG).
    pub no_plot_files: bool,
    pub title: String,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            outputs: PathBuf::from("outputs"),
            report_dir: None,
            analysis_dir: None,
            sweep: None,
            aggregate: AggregateConfig::default(),
            plots: PlotConfig::default(),
            no_plot_files: false,
            title: "ia2 report".into(),
        }
    }
}

/// What was written.
#[derive(Debug, Clone, Serialize)]
pub struct ReportOutcome {
    pub report_dir: PathBuf,
    pub html: PathBuf,
    pub csv: PathBuf,
    pub markdown: PathBuf,
    pub latex: Vec<PathBuf>,
    pub plots: Vec<PathBuf>,
    pub summary: PathBuf,
    pub aggregates: usize,
    pub problems: usize,
}

fn newest_json(dir: &Path) -> Option<PathBuf> {
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            if p.is_dir() && depth < 2 {
                stack.push((p, depth + 1));
            } else if p.extension().is_some_and(|x| x == "json") {
                let t = e.metadata().and_then(|m| m.modified()).ok()?;
                if best.as_ref().is_none_or(|(bt, bp)| (t, &p) > (*bt, bp)) {
                    best = Some((t, p));
                }
            }
        }
    }
    best.map(|b| b.1)
}

/// The sweep configuration shown in the report (see [`ReportConfig::sweep`]).
pub fn find_sweep(cfg: &ReportConfig) -> Option<(PathBuf, Value)> {
    // A sweep directory of `ia2 sweep`: its plan.json and summary.json together.
    if let Some(dir) = cfg.sweep.as_ref().filter(|p| p.is_dir()) {
        let read = |name: &str| -> Option<Value> {
            let text = std::fs::read_to_string(dir.join(name)).ok()?;
            serde_json::from_str(&text)
                .map_err(|e| warn!("{}: {e}", dir.join(name).display()))
                .ok()
        };
        let (plan, summary) = (read("plan.json"), read("summary.json"));
        if plan.is_some() || summary.is_some() {
            return Some((dir.clone(), json!({"summary": summary, "plan": plan})));
        }
    }
    let path = match &cfg.sweep {
        Some(p) if p.is_file() => Some(p.clone()),
        Some(p) if p.is_dir() => newest_json(p),
        Some(p) => {
            warn!("--sweep {} does not exist", p.display());
            None
        }
        None => ["sweep", "sweeps", "sweep_summaries"]
            .iter()
            .map(|d| cfg.outputs.join(d))
            .filter(|d| d.is_dir())
            .find_map(|d| newest_json(&d)),
    }?;
    let text = std::fs::read_to_string(&path).ok()?;
    match serde_json::from_str(&text) {
        Ok(v) => Some((path, v)),
        Err(e) => {
            warn!("sweep file {}: {e}", path.display());
            None
        }
    }
}

fn rel(from: &Path, to: &Path) -> String {
    to.strip_prefix(from)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| to.display().to_string())
}

/// Builds the whole report (see the module notes).
pub fn run(cfg: &ReportConfig) -> Result<ReportOutcome> {
    let loaded = load_results(&cfg.outputs)?;
    info!(
        results = loaded.entries.len(),
        problems = loaded.problems.len(),
        "loaded results"
    );
    let agg = aggregate(&loaded, &cfg.aggregate);
    let dir = cfg
        .report_dir
        .clone()
        .unwrap_or_else(|| cfg.outputs.join("report"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    write_report(cfg, &agg, &dir)
}

/// Writes every output of an aggregation into `dir`.
pub fn write_report(cfg: &ReportConfig, agg: &Aggregated, dir: &Path) -> Result<ReportOutcome> {
    let write = |p: &Path, text: &str| ia2_data::io::write_atomic(p, text.as_bytes());
    let csv = dir.join("results.csv");
    write(&csv, &tables::csv(agg))?;
    let tabs = tables::tables(agg);
    let markdown = dir.join("tables.md");
    let mut md = format!(
        "# Tables ({})\n\n",
        agg.aggregates
            .first()
            .map(|a| a.selection.label())
            .unwrap_or("no results")
    );
    for t in &tabs {
        md.push_str(&tables::markdown(t));
        md.push('\n');
    }
    write(&markdown, &md)?;
    let mut latex = Vec::new();
    for (i, t) in tabs.iter().enumerate() {
        let p = dir.join("tables").join(format!("N{}_{i}.tex", t.n));
        write(&p, &tables::latex(t))?;
        latex.push(p);
    }
    let doc = dir.join("tables.tex");
    write(&doc, &tables::latex_document(&tabs))?;
    latex.push(doc);

    let figures = all_figures(agg, &cfg.plots)?;
    let mut plots = Vec::new();
    if !cfg.no_plot_files {
        let pdir = dir.join("plots");
        for f in &figures {
            plots.extend(write_figure(f, &pdir, &cfg.plots)?);
        }
    }
    let summary = dir.join("summary.json");
    let summary_json = json!({
        "config": cfg,
        "hp_selection": cfg.aggregate.selection.label(),
        "selections": agg.selections,
        "aggregates": agg.aggregates,
        "comparisons": agg.comparisons,
        "problems": agg.problems,
        "figures": figures.iter().map(|f| json!({"name": f.name, "section": f.section, "title": f.title})).collect::<Vec<_>>(),
    });
    write(&summary, &serde_json::to_string_pretty(&summary_json)?)?;

    let analysis_dir = cfg
        .analysis_dir
        .clone()
        .unwrap_or_else(|| cfg.outputs.join("analysis"));
    let analysis: AnalysisOutputs = read_analysis(&analysis_dir);
    let mut files = vec![
        ("results.csv".to_string(), rel(dir, &csv)),
        ("tables.md".to_string(), rel(dir, &markdown)),
        ("summary.json".to_string(), rel(dir, &summary)),
    ];
    for p in &latex {
        files.push((rel(dir, p), rel(dir, p)));
    }
    let html = dir.join("report.html");
    let page = render(&HtmlInputs {
        title: &cfg.title,
        outputs: &cfg.outputs,
        agg,
        tables: &tabs,
        figures: &figures,
        sweep: find_sweep(cfg),
        analysis: &analysis,
        files: &files,
    });
    write(&html, &page)?;
    Ok(ReportOutcome {
        report_dir: dir.to_path_buf(),
        html,
        csv,
        markdown,
        latex,
        plots,
        summary,
        aggregates: agg.aggregates.len(),
        problems: agg.problems.len(),
    })
}
