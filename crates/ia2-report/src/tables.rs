//! Tables: the long-format CSV (one row per key, N and metric, with the hp selection, D and T), Markdown
//! tables for the HTML report, and LaTeX tables per N in the paper's layout.

use crate::aggregate::{Aggregate, Aggregated, MetricStats};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// The CSV's columns.
pub const CSV_COLUMNS: [&str; 25] = [
    "model",
    "trained",
    "eval",
    "icl_source",
    "D",
    "train_T",
    "eval_T",
    "adapter_kind",
    "adapter",
    "method",
    "label_type",
    "method_settings",
    "hp_selection",
    "selected_hp",
    "uncertainty_mode",
    "variant",
    "N",
    "metric",
    "mean",
    "std",
    "n_runs",
    "ci95_low",
    "ci95_high",
    "values",
    "runs",
];

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A float with full round-trip precision.
fn num(v: f64) -> String {
    format!("{v}")
}

/// The long-format CSV of every aggregate (rows sorted by key, N, metric).
pub fn csv(agg: &Aggregated) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push('\n');
    for a in &agg.aggregates {
        let k = &a.key;
        for (metric, s) in &a.metrics {
            let fields = [
                k.model.clone(),
                k.trained.clone().unwrap_or_default(),
                k.eval.clone(),
                k.icl_source.clone(),
                k.demos.to_string(),
                k.train_t.map(|t| t.to_string()).unwrap_or_default(),
                k.eval_t.to_string(),
                k.adapter_kind.clone(),
                k.adapter.clone(),
                k.method.clone(),
                k.label_type.clone().unwrap_or_default(),
                k.method_settings.clone(),
                if k.is_base() {
                    "none".into()
                } else {
                    a.selection.as_str().to_string()
                },
                a.hp.to_string(),
                k.uncertainty.to_string(),
                k.variant.clone(),
                a.n.to_string(),
                metric.clone(),
                num(s.mean),
                num(s.std),
                s.values.len().to_string(),
                s.ci95.map(|c| num(c.0)).unwrap_or_default(),
                s.ci95.map(|c| num(c.1)).unwrap_or_default(),
                s.values
                    .iter()
                    .map(|v| num(*v))
                    .collect::<Vec<_>>()
                    .join(";"),
                s.runs
                    .iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
                    .join(";"),
            ];
            out.push_str(
                &fields
                    .iter()
                    .map(|f| csv_field(f))
                    .collect::<Vec<_>>()
                    .join(","),
            );
            out.push('\n');
        }
    }
    out
}

/// Dataset abbreviations of the paper's tables.
pub fn abbreviation(dataset: &str) -> String {
    match dataset {
        "agnews" => "AGN",
        "sst2" => "SST2",
        "sciqr" => "SciQr",
        "qascr" => "QASCr",
        "finsen" => "FinS",
        "poems" => "PoemS",
        "bbcnews" => "BBCN",
        "strategytf" => "STF",
        "gsm8k" => "GSM8K",
        "gsm8ks" => "GSM8Ks",
        "hmath_algebra" => "HMathA",
        "sciqa" => "SciQ",
        other => other,
    }
    .to_string()
}

/// The accuracy metric of a table: top-1 in uncertainty mode, else the parsed-answer accuracy.
pub fn accuracy_metric(uncertainty: bool, icl: bool) -> String {
    let mode = if icl { "with_icl" } else { "without_icl" };
    if uncertainty {
        format!("{mode}_accuracy_top1")
    } else {
        format!("{mode}_accuracy")
    }
}

/// The ECE metric of a table (uncertainty mode).
pub fn ece_metric(icl: bool) -> String {
    let mode = if icl { "with_icl" } else { "without_icl" };
    format!("{mode}_ece_top1")
}

/// The paper's method columns: (objective, header).
pub const METHOD_COLUMNS: [(&str, &str); 4] = [
    ("tok", "SFT only"),
    ("act", "IA2 only"),
    ("a2t", "IA2$\\to$SFT"),
    ("tna", "IA2+SFT"),
];

/// One cell: accuracy and (uncertainty mode) ECE statistics, runs, whether flagged.
#[derive(Debug, Clone, Default)]
pub struct Cell {
    pub acc: Option<MetricStats>,
    pub ece: Option<MetricStats>,
    pub single_run: bool,
    pub missing_runs: bool,
}

/// One row of a per-N table: trained dataset → eval dataset, with the base columns and the method columns.
#[derive(Debug, Clone)]
pub struct Row {
    pub trained: String,
    pub eval: String,
    pub out_of_domain: bool,
    pub without_icl: Cell,
    pub with_icl: Cell,
    /// Keyed by objective (`tok`, `act`, `a2t`, `tna`).
    pub methods: BTreeMap<String, Cell>,
}

/// One table: a setting (model, adapter, T, D, uncertainty) and N.
#[derive(Debug, Clone)]
pub struct Table {
    pub title: String,
    pub n: usize,
    pub uncertainty: bool,
    pub rows: Vec<Row>,
}

fn cell(a: &Aggregate, icl: bool) -> Cell {
    let u = a.key.uncertainty;
    Cell {
        acc: a.metric(&accuracy_metric(u, icl)).cloned(),
        ece: if u {
            a.metric(&ece_metric(icl)).cloned()
        } else {
            None
        },
        single_run: a.single_run,
        missing_runs: !a.missing_runs.is_empty(),
    }
}

/// Groups the aggregates into per-N tables. A table is one (model, adapter settings, label type, training
/// T, evaluation T, D, uncertainty mode, variant) and N; rows are (trained X, eval Y) with Z = Y (the
/// paper's tables use the eval dataset's own demos; other sources are in the CSV and the plots); base columns
/// come from the base model on Y. Methods without a label type (act) join the `icl_outputs` tables.
pub fn tables(agg: &Aggregated) -> Vec<Table> {
    type TableId = (
        String,
        String,
        Option<String>,
        Option<usize>,
        usize,
        usize,
        bool,
        String,
        usize,
    );
    let mut out: BTreeMap<TableId, BTreeMap<(String, String), Row>> = BTreeMap::new();
    let base: BTreeMap<_, &Aggregate> = agg
        .aggregates
        .iter()
        .filter(|a| a.key.is_base())
        .map(|a| ((a.key.setting(), a.n), a))
        .collect();
    for a in agg.aggregates.iter().filter(|a| !a.key.is_base()) {
        let k = &a.key;
        if k.icl_source != k.eval {
            continue;
        }
        let obj = k.objective();
        if !METHOD_COLUMNS.iter().any(|(o, _)| *o == obj) {
            continue;
        }
        // tok / a2t / tna have a label type, act not: tables are per label type of the label-using methods.
        let label = k.label_type.clone().or(Some("icl_outputs".into()));
        let id = (
            k.model.clone(),
            k.adapter.clone(),
            label,
            k.train_t,
            k.eval_t,
            k.demos,
            k.uncertainty,
            k.variant.clone(),
            a.n,
        );
        let trained = k.trained.clone().unwrap_or_default();
        let row = out
            .entry(id)
            .or_default()
            .entry((trained.clone(), k.eval.clone()))
            .or_insert_with(|| {
                let b = base.get(&(k.setting(), a.n));
                Row {
                    out_of_domain: trained != k.eval,
                    trained: trained.clone(),
                    eval: k.eval.clone(),
                    without_icl: b.map(|b| cell(b, false)).unwrap_or_default(),
                    with_icl: b.map(|b| cell(b, true)).unwrap_or_default(),
                    methods: BTreeMap::new(),
                }
            });
        row.methods.insert(obj, cell(a, false));
    }
    out.into_iter()
        .map(|(id, rows)| {
            let (model, adapter, label, train_t, eval_t, d, u, variant, n) = id;
            let mut title = format!(
                "{model}, {adapter}, labels {}, T={}/{eval_t}, D={d}, N={n}",
                label.unwrap_or_default(),
                train_t.map_or("-".into(), |t| t.to_string())
            );
            if u {
                title.push_str(", uncertainty mode");
            }
            if !variant.is_empty() {
                title.push_str(&format!(" [{variant}]"));
            }
            Table {
                title,
                n,
                uncertainty: u,
                rows: rows.into_values().collect(),
            }
        })
        .collect()
}

/// The trained-method column (objective) with the best mean of `pick` (max for accuracy, min for ECE).
fn best(row: &Row, pick: impl Fn(&Cell) -> Option<f64>, max: bool) -> Option<String> {
    row.methods
        .iter()
        .filter_map(|(m, c)| Some((m.clone(), pick(c)?)))
        .max_by(|a, b| {
            let o = a.1.total_cmp(&b.1);
            if max { o } else { o.reverse() }
        })
        .map(|(m, _)| m)
}

fn fmt_stats(s: &Option<MetricStats>, scale: f64) -> Option<(String, String)> {
    let s = s.as_ref()?;
    Some((
        format!("{:.1}", s.mean * scale),
        format!("{:.1}", s.std * scale),
    ))
}

fn latex_escape(s: &str) -> String {
    s.replace('\\', "\\textbackslash{}")
        .replace('_', "\\_")
        .replace('&', "\\&")
        .replace('%', "\\%")
        .replace('#', "\\#")
        .replace('$', "\\$")
}

/// One LaTeX table (booktabs, resizebox; `\usepackage{booktabs,multirow,graphicx}`): rows = trained dataset
/// (multirow) with its eval datasets (out-of-domain marked *), columns w/o ICL, ICL and the trained methods;
/// cells `mean (std)` of accuracy and, in uncertainty mode, ECE (×100); best accuracy (max) and best ECE (min)
/// among the trained methods in bold; `--` where a result is missing, `†` where a cell has one run.
pub fn latex(table: &Table) -> String {
    let mut s = String::new();
    let cols = 2 + METHOD_COLUMNS.len();
    let _ = writeln!(s, "% {}", table.title);
    let _ = writeln!(s, "\\begin{{table}}[t]\n\\centering");
    let _ = writeln!(s, "\\resizebox{{\\linewidth}}{{!}}{{%");
    let _ = writeln!(s, "\\begin{{tabular}}{{ll{}}}\n\\toprule", "c".repeat(cols));
    let _ = write!(s, "Source & Eval & w/o ICL & ICL");
    for (_, h) in METHOD_COLUMNS {
        let _ = write!(s, " & {h}");
    }
    let _ = writeln!(s, " \\\\\n\\midrule");
    let mut by_trained: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in &table.rows {
        by_trained.entry(&r.trained).or_default().push(r);
    }
    let lines = if table.uncertainty { 2 } else { 1 };
    let mut first_group = true;
    for (trained, rows) in by_trained {
        if !first_group {
            let _ = writeln!(s, "\\midrule");
        }
        first_group = false;
        for (i, r) in rows.iter().enumerate() {
            let best_acc = best(r, |c| c.acc.as_ref().map(|m| m.mean), true);
            let best_ece = best(r, |c| c.ece.as_ref().map(|m| m.mean), false);
            let source = if i == 0 {
                format!(
                    "\\multirow{{{}}}{{*}}{{{}}}",
                    rows.len() * lines,
                    latex_escape(&abbreviation(trained))
                )
            } else {
                String::new()
            };
            let eval = format!(
                "{}{}",
                latex_escape(&abbreviation(&r.eval)),
                if r.out_of_domain { "*" } else { "" }
            );
            let fmt = |c: &Cell, ece: bool, bold: bool| -> String {
                let stats = if ece { &c.ece } else { &c.acc };
                let scale = if ece { 100.0 } else { 1.0 };
                match fmt_stats(stats, scale) {
                    None => "--".into(),
                    Some((m, sd)) => {
                        let dag = if c.single_run { "$^\\dagger$" } else { "" };
                        if bold {
                            format!("\\textbf{{{m}}} ({sd}){dag}")
                        } else {
                            format!("{m} ({sd}){dag}")
                        }
                    }
                }
            };
            let mut line = format!(
                "{source} & {eval} acc & {} & {}",
                fmt(&r.without_icl, false, false),
                fmt(&r.with_icl, false, false)
            );
            for (o, _) in METHOD_COLUMNS {
                let c = r.methods.get(o).cloned().unwrap_or_default();
                line.push_str(&format!(
                    " & {}",
                    fmt(&c, false, best_acc.as_deref() == Some(o))
                ));
            }
            let _ = writeln!(s, "{line} \\\\");
            if table.uncertainty {
                let mut line = format!(
                    " & ece & {} & {}",
                    fmt(&r.without_icl, true, false),
                    fmt(&r.with_icl, true, false)
                );
                for (o, _) in METHOD_COLUMNS {
                    let c = r.methods.get(o).cloned().unwrap_or_default();
                    line.push_str(&format!(
                        " & {}",
                        fmt(&c, true, best_ece.as_deref() == Some(o))
                    ));
                }
                let _ = writeln!(s, "{line} \\\\");
            }
        }
    }
    let _ = writeln!(s, "\\bottomrule\n\\end{{tabular}}}}");
    let what = if table.uncertainty {
        "accuracy (top-1, \\%) and ECE ($\\times 100$)"
    } else {
        "accuracy (\\%)"
    };
    let _ = writeln!(
        s,
        "\\caption{{{}: {what}, mean (std) over runs. * out of domain; bold: best trained method; $^\\dagger$ one run (std 0).}}",
        latex_escape(&table.title)
    );
    let _ = writeln!(s, "\\end{{table}}");
    s
}

/// A standalone LaTeX document holding `tables` (for compile tests and quick viewing).
pub fn latex_document(tables: &[Table]) -> String {
    let mut s = String::from(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage{multirow}\n\\usepackage{graphicx}\n\\begin{document}\n",
    );
    for t in tables {
        s.push_str(&latex(t));
        s.push('\n');
    }
    s.push_str("\\end{document}\n");
    s
}

/// A Markdown table of one per-N table (same layout as LaTeX, `**best**`, `†` one run, `‡` missing runs).
pub fn markdown(table: &Table) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "**{}**\n", table.title);
    let _ = write!(s, "| source | eval | | w/o ICL | ICL |");
    for (_, h) in METHOD_COLUMNS {
        let _ = write!(s, " {} |", h.replace("$\\to$", "→"));
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "|{}", "---|".repeat(4 + METHOD_COLUMNS.len()));
    for r in &table.rows {
        let best_acc = best(r, |c| c.acc.as_ref().map(|m| m.mean), true);
        let best_ece = best(r, |c| c.ece.as_ref().map(|m| m.mean), false);
        let fmt = |c: &Cell, ece: bool, bold: bool| -> String {
            let stats = if ece { &c.ece } else { &c.acc };
            match fmt_stats(stats, if ece { 100.0 } else { 1.0 }) {
                None => "–".into(),
                Some((m, sd)) => {
                    let mut t = if bold {
                        format!("**{m}** ({sd})")
                    } else {
                        format!("{m} ({sd})")
                    };
                    if c.single_run {
                        t.push('†');
                    }
                    if c.missing_runs {
                        t.push('‡');
                    }
                    t
                }
            }
        };
        let eval = format!(
            "{}{}",
            abbreviation(&r.eval),
            if r.out_of_domain { "*" } else { "" }
        );
        let mut metrics = vec![("acc", false)];
        if table.uncertainty {
            metrics.push(("ece×100", true));
        }
        for (name, ece) in metrics {
            let _ = write!(
                s,
                "| {} | {eval} | {name} | {} | {} |",
                abbreviation(&r.trained),
                fmt(&r.without_icl, ece, false),
                fmt(&r.with_icl, ece, false)
            );
            let b = if ece { &best_ece } else { &best_acc };
            for (o, _) in METHOD_COLUMNS {
                let c = r.methods.get(o).cloned().unwrap_or_default();
                let _ = write!(s, " {} |", fmt(&c, ece, b.as_deref() == Some(o)));
            }
            let _ = writeln!(s);
        }
    }
    let _ = writeln!(
        s,
        "\n\\* out of domain; **bold** best trained method; † one run (std 0); ‡ runs missing (see Problems)."
    );
    s
}

/// Every method (objective) present, for listings.
pub fn methods(agg: &Aggregated) -> BTreeSet<String> {
    agg.aggregates
        .iter()
        .map(|a| a.key.method.clone())
        .collect()
}
