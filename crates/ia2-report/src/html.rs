//! The single self-contained HTML report: inline SVG plots, tables, the sweep configuration, problems, links
//! to the runs; no network access, no external file. A small inline script checks, once the page has
//! loaded, that every `<svg>` has drawn content, every `<img>` loaded and every `<table>` has rows, and
//! writes the result into `<div id="ia2-verification">` (read by the browser test with `--dump-dom`).

use crate::aggregate::Aggregated;
use crate::plots::Figure;
use crate::tables::Table;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Analysis outputs found under the analysis directory (written by `ia2 analyze`).
#[derive(Debug, Clone, Default)]
pub struct AnalysisOutputs {
    pub dir: Option<PathBuf>,
    /// (file name, SVG text)
    pub svgs: Vec<(String, String)>,
    /// (file name, parsed JSON)
    pub summaries: Vec<(String, Value)>,
    /// Files that could not be read.
    pub problems: Vec<String>,
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut items: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    items.sort();
    for p in items {
        if p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            continue;
        }
        // Caches (e.g. `ia2 analyze`'s per-adapter similarity entries) are inputs of the analyses, not results.
        if p.is_dir() && p.file_name().is_some_and(|n| n == "cache") {
            continue;
        }
        if p.is_dir() && depth < 4 {
            walk(&p, out, depth + 1);
        } else if p.is_file() {
            out.push(p);
        }
    }
}

/// Reads every `*.svg` and the JSON summaries (`subspace.json`, `similarity.json`, any other `*.json`)
/// under `dir`, leniently: unreadable files are listed, not fatal.
pub fn read_analysis(dir: &Path) -> AnalysisOutputs {
    let mut out = AnalysisOutputs {
        dir: Some(dir.to_path_buf()),
        ..Default::default()
    };
    if !dir.is_dir() {
        return out;
    }
    let mut files = Vec::new();
    walk(dir, &mut files, 0);
    for p in files {
        let rel = p.strip_prefix(dir).unwrap_or(&p).display().to_string();
        match p.extension().and_then(|e| e.to_str()) {
            Some("svg") => match std::fs::read_to_string(&p) {
                Ok(t) if t.contains("<svg") => out.svgs.push((rel, t)),
                Ok(_) => out.problems.push(format!("{rel}: not an SVG")),
                Err(e) => out.problems.push(format!("{rel}: {e}")),
            },
            Some("json") => match std::fs::read_to_string(&p)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str::<Value>(&t).map_err(|e| e.to_string()))
            {
                Ok(v) => out.summaries.push((rel, v)),
                Err(e) => out.problems.push(format!("{rel}: {e}")),
            },
            _ => {}
        }
    }
    out
}

/// Replaces every `jobs` list (a sweep plan's, hundreds of rows) by its size: the full JSON below the table
/// keeps them.
fn summarize_job_lists(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, x) in map.iter_mut() {
                match x {
                    Value::Array(jobs) if k == "jobs" => {
                        *x =
                            Value::String(format!("{} jobs (listed in the full JSON)", jobs.len()));
                    }
                    _ => summarize_job_lists(x),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(summarize_job_lists),
        _ => {}
    }
}

/// Strips an XML declaration / doctype so an SVG document can be inlined.
fn inline_svg(svg: &str) -> String {
    let start = svg.find("<svg").unwrap_or(0);
    let s = &svg[start..];
    // Make it scale to the page width.
    s.replacen(
        "<svg",
        "<svg class=\"plot\" preserveAspectRatio=\"xMidYMid meet\"",
        1,
    )
}

/// A small table of a JSON summary: top-level scalars, and for arrays of objects their scalar fields (at
/// most 50 rows).
fn json_table(v: &Value) -> String {
    json_table_at(v, 0)
}

fn json_table_at(v: &Value, depth: usize) -> String {
    let scalar = |v: &Value| match v {
        Value::Number(n) => n
            .as_f64()
            .map(|f| {
                if f.fract() == 0.0 && f.abs() < 1e12 {
                    format!("{f}")
                } else {
                    format!("{f:.4}")
                }
            })
            .unwrap_or_default(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        _ => String::new(),
    };
    let is_scalar = |v: &Value| !v.is_object() && !v.is_array();
    let mut s = String::new();
    let obj = match v {
        Value::Object(o) => o.clone(),
        Value::Array(a) => {
            let mut m = serde_json::Map::new();
            m.insert("items".into(), Value::Array(a.clone()));
            m
        }
        _ => return format!("<p>{}</p>", esc(&scalar(v))),
    };
    let scalars: Vec<_> = obj.iter().filter(|(_, v)| is_scalar(v)).collect();
    if !scalars.is_empty() {
        s.push_str("<table><tr><th>key</th><th>value</th></tr>");
        for (k, v) in scalars {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td></tr>",
                esc(k),
                esc(&scalar(v))
            );
        }
        s.push_str("</table>");
    }
    for (k, v) in obj.iter() {
        let Value::Array(items) = v else { continue };
        let rows: Vec<&serde_json::Map<String, Value>> =
            items.iter().filter_map(Value::as_object).collect();
        if rows.is_empty() {
            continue;
        }
        let mut cols: Vec<String> = Vec::new();
        for r in &rows {
            for (c, x) in r.iter() {
                if is_scalar(x) && !cols.contains(c) {
                    cols.push(c.clone());
                }
            }
        }
        if cols.is_empty() {
            continue;
        }
        let _ = write!(
            s,
            "<p><b>{}</b> ({} rows)</p><table><tr>",
            esc(k),
            rows.len()
        );
        for c in &cols {
            let _ = write!(s, "<th>{}</th>", esc(c));
        }
        s.push_str("</tr>");
        for r in rows.iter().take(50) {
            s.push_str("<tr>");
            for c in &cols {
                let _ = write!(
                    s,
                    "<td>{}</td>",
                    esc(&r.get(c).map(scalar).unwrap_or_default())
                );
            }
            s.push_str("</tr>");
        }
        s.push_str("</table>");
    }
    if depth < 2 {
        for (k, v) in obj.iter().filter(|(_, v)| v.is_object()) {
            let _ = write!(s, "<p><b>{}</b></p>{}", esc(k), json_table_at(v, depth + 1));
        }
    }
    if s.is_empty() {
        s = format!(
            "<pre>{}</pre>",
            esc(&serde_json::to_string_pretty(v)
                .unwrap_or_default()
                .chars()
                .take(4000)
                .collect::<String>())
        );
    }
    s
}

/// Minimal Markdown table → HTML table (only what [`crate::tables::markdown`] writes).
fn md_table_to_html(md: &str) -> String {
    let mut s = String::new();
    let mut in_table = false;
    let bold = |t: &str| {
        let mut out = String::new();
        let mut open = false;
        for (i, part) in esc(t).split("**").enumerate() {
            if i > 0 {
                out.push_str(if open { "</b>" } else { "<b>" });
                open = !open;
            }
            out.push_str(part);
        }
        out
    };
    for line in md.lines() {
        if line.starts_with('|') {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            if cells.iter().all(|c| c.chars().all(|ch| ch == '-')) {
                continue;
            }
            if !in_table {
                s.push_str("<table><tr>");
                for c in &cells {
                    let _ = write!(s, "<th>{}</th>", bold(c));
                }
                s.push_str("</tr>");
                in_table = true;
            } else {
                s.push_str("<tr>");
                for c in &cells {
                    let _ = write!(s, "<td>{}</td>", bold(c));
                }
                s.push_str("</tr>");
            }
        } else {
            if in_table {
                s.push_str("</table>");
                in_table = false;
            }
            if !line.trim().is_empty() {
                let _ = write!(s, "<p>{}</p>", bold(line).replace("\\*", "*"));
            }
        }
    }
    if in_table {
        s.push_str("</table>");
    }
    s
}

/// Everything the HTML report shows.
pub struct HtmlInputs<'a> {
    pub title: &'a str,
    pub outputs: &'a Path,
    pub agg: &'a Aggregated,
    pub tables: &'a [Table],
    pub figures: &'a [Figure],
    /// The sweep configuration (plan / summary JSON), when found.
    pub sweep: Option<(PathBuf, Value)>,
    pub analysis: &'a AnalysisOutputs,
    /// Relative links to the written files (CSV, LaTeX, summary).
    pub files: &'a [(String, String)],
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:0 1em;color:#222}\
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;margin-top:2em}h3{font-size:1.05em}\
table{border-collapse:collapse;margin:.5em 0;font-size:.85em}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}\
th{background:#f3f3f3}svg.plot{width:100%;max-width:800px;height:auto;display:block}\
figure{margin:1em 0}figcaption{font-size:.85em;color:#555}nav a{margin-right:1em}\
.warn{color:#a40}.ok{color:#070}pre{background:#f6f6f6;padding:.5em;overflow:auto;font-size:.8em}\
details{margin:.3em 0}";

const VERIFY_SCRIPT: &str = r#"
window.addEventListener('load', function () {
  var svgs = document.querySelectorAll('svg');
  var imgs = document.querySelectorAll('img');
  var tables = document.querySelectorAll('table');
  var bad = [];
  svgs.forEach(function (s, i) {
    var shapes = s.querySelectorAll('path,polyline,line,rect,circle,polygon,text');
    var box = s.getBoundingClientRect();
    if (shapes.length === 0 || box.width <= 0 || box.height <= 0) bad.push('svg#' + i);
  });
  imgs.forEach(function (im, i) {
    if (!im.complete || im.naturalWidth === 0) bad.push('img#' + i);
  });
  tables.forEach(function (t, i) {
    if (t.rows.length < 2) bad.push('table#' + i);
  });
  var v = document.getElementById('ia2-verification');
  v.setAttribute('data-svgs', svgs.length);
  v.setAttribute('data-imgs', imgs.length);
  v.setAttribute('data-tables', tables.length);
  v.setAttribute('data-failed', bad.join(' '));
  v.setAttribute('data-status', bad.length === 0 ? 'ok' : 'failed');
  v.textContent = 'verification: ' + svgs.length + ' plots, ' + tables.length + ' tables, ' + imgs.length +
    ' images; ' + (bad.length === 0 ? 'all rendered' : 'FAILED: ' + bad.join(' '));
});
"#;

/// A `file://` link to a local path.
fn file_link(p: &Path) -> String {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    format!(
        "<a href=\"file://{}\">{}</a>",
        esc(&abs.display().to_string()),
        esc(&p.display().to_string())
    )
}

/// The HTML page.
pub fn render(inp: &HtmlInputs) -> String {
    let agg = inp.agg;
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{}</title><style>{STYLE}</style></head><body>\n",
        esc(inp.title)
    );
    let _ = write!(s, "<h1>{}</h1>", esc(inp.title));
    let _ = write!(
        s,
        "<p>Results under {}: {} result files at the selected hyper-parameters, in {} (key, N) groups; {} problems. Hyper-parameters: {}.</p>",
        esc(&inp.outputs.display().to_string()),
        agg.aggregates.iter().map(|a| a.runs.len()).sum::<usize>(),
        agg.aggregates.len(),
        agg.problems.len(),
        esc(agg
            .aggregates
            .first()
            .map(|a| a.selection.label())
            .unwrap_or("-"))
    );
    s.push_str("<div id=\"ia2-verification\" data-status=\"pending\">verification: pending (needs JavaScript)</div>");
    s.push_str("<nav><a href=\"#config\">configuration</a><a href=\"#problems\">problems</a><a href=\"#tables\">tables</a><a href=\"#comparisons\">vs SFT</a><a href=\"#results\">result plots</a><a href=\"#adapters\">adapters</a><a href=\"#training\">training</a><a href=\"#analysis\">analysis</a><a href=\"#runs\">runs</a></nav>");

    // Configuration.
    s.push_str("<h2 id=\"config\">Sweep configuration</h2>");
    match &inp.sweep {
        Some((path, v)) => {
            let _ = write!(s, "<p>From {}.</p>", file_link(path));
            // A plan's job list (hundreds of rows) stays in the full JSON; the table shows its size.
            let mut shown = v.clone();
            summarize_job_lists(&mut shown);
            s.push_str(&json_table(&shown));
            let _ = write!(
                s,
                "<details><summary>full JSON</summary><pre>{}</pre></details>",
                esc(&serde_json::to_string_pretty(v).unwrap_or_default())
            );
        }
        None => s.push_str("<p>No sweep plan or summary given or found; the settings of each result are in its key below.</p>"),
    }
    if !inp.files.is_empty() {
        s.push_str("<p>Files: ");
        for (name, rel) in inp.files {
            let _ = write!(s, "<a href=\"{}\">{}</a> ", esc(rel), esc(name));
        }
        s.push_str("</p>");
    }

    // Problems.
    s.push_str("<h2 id=\"problems\">Missing, partial and excluded results</h2>");
    if agg.problems.is_empty() {
        s.push_str("<p class=\"ok\">None: every result file was complete and every group has all its runs.</p>");
    } else {
        let _ = write!(
            s,
            "<p class=\"warn\">{} problems. Incomplete files are not averaged in; groups with missing runs are averaged over the runs present (marked ‡).</p><table><tr><th>kind</th><th>where</th><th>detail</th></tr>",
            agg.problems.len()
        );
        for p in &agg.problems {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&p.kind),
                esc(&p.path),
                esc(&p.detail)
            );
        }
        s.push_str("</table>");
    }
    let single: Vec<_> = agg.aggregates.iter().filter(|a| a.single_run).collect();
    if !single.is_empty() {
        let _ = write!(
            s,
            "<p class=\"warn\">{} (key, N) groups have a single run: their std is 0 by construction (marked †).</p>",
            single.len()
        );
    }

    // Tables.
    s.push_str("<h2 id=\"tables\">Tables</h2>");
    if inp.tables.is_empty() {
        s.push_str("<p>No table: the paper's tables need tok / act / a2t / tna results evaluated with demos from the evaluation dataset.</p>");
    }
    for t in inp.tables {
        s.push_str(&md_table_to_html(&crate::tables::markdown(t)));
    }
    // All aggregates (compact).
    s.push_str("<h3>Every aggregate (headline metrics)</h3><table><tr><th>key</th><th>N</th><th>hp</th><th>runs</th><th>w/o ICL acc</th><th>ICL acc</th><th>95% CI (w/o ICL)</th></tr>");
    for a in &agg.aggregates {
        let u = a.key.uncertainty;
        let m = |icl: bool| {
            a.metric(&crate::tables::accuracy_metric(u, icl))
                .map(|s| format!("{:.1} ± {:.1}", s.mean, s.std))
                .unwrap_or_else(|| "–".into())
        };
        let ci = a
            .metric(&crate::tables::accuracy_metric(u, false))
            .and_then(|s| s.ci95)
            .map(|c| format!("[{:.1}, {:.1}]", c.0, c.1))
            .unwrap_or_else(|| "– (1 run)".into());
        let runs = format!(
            "{}{}{}",
            a.runs.len(),
            if a.single_run {
                " † std 0 (one run)"
            } else {
                ""
            },
            if a.missing_runs.is_empty() {
                String::new()
            } else {
                format!(" ‡ missing {:?}", a.missing_runs)
            }
        );
        let _ = write!(
            s,
            "<tr><td>{} {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&a.key.method),
            esc(&a.key.title()),
            a.n,
            esc(&a.hp.to_string()),
            esc(&runs),
            m(false),
            m(true),
            ci
        );
    }
    s.push_str("</table>");

    // Comparisons.
    s.push_str("<h2 id=\"comparisons\">Paired comparison with SFT (tok)</h2><p>Without-ICL accuracy, same runs and same examples: mean difference (points) with a percentile-bootstrap 95 % interval over runs, and an exact two-sided sign test (McNemar) on the examples only one of the two gets right.</p>");
    if agg.comparisons.is_empty() {
        s.push_str("<p>No comparison (no SFT results in the same setting).</p>");
    } else {
        s.push_str("<table><tr><th>method</th><th>setting</th><th>N</th><th>runs</th><th>Δ acc</th><th>95% CI</th><th>only method / only SFT</th><th>p (sign test)</th></tr>");
        for c in &agg.comparisons {
            let _ = write!(
                s,
                "<tr><td>{} vs {}</td><td>{}</td><td>{}</td><td>{:?}</td><td>{:+.1}</td><td>{}</td><td>{} / {} of {}</td><td>{:.3}</td></tr>",
                esc(&c.key.method),
                esc(&c.reference.method),
                esc(&c.key.title()),
                c.n,
                c.common_runs,
                c.mean_difference,
                c.ci95
                    .map(|x| format!("[{:+.1}, {:+.1}]", x.0, x.1))
                    .unwrap_or_else(|| "– (1 run)".into()),
                c.method_only,
                c.reference_only,
                c.paired_examples,
                c.p_value
            );
        }
        s.push_str("</table>");
    }

    // Figures.
    for (section, heading) in [
        ("results", "Result plots"),
        ("adapters", "Adapter comparison"),
        ("training", "Training curves"),
    ] {
        let _ = write!(s, "<h2 id=\"{section}\">{heading}</h2>");
        let figs: Vec<&Figure> = inp
            .figures
            .iter()
            .filter(|f| f.section == section)
            .collect();
        if figs.is_empty() {
            s.push_str("<p>None.</p>");
        }
        for f in figs {
            let _ = write!(
                s,
                "<figure>{}<figcaption>{} ({}.svg / .png / .pdf)</figcaption></figure>",
                inline_svg(&f.svg),
                esc(&f.title),
                esc(&f.name)
            );
        }
    }

    // Analysis outputs.
    s.push_str("<h2 id=\"analysis\">Analyses (ia2 analyze)</h2>");
    let an = inp.analysis;
    match &an.dir {
        Some(d) if !an.svgs.is_empty() || !an.summaries.is_empty() => {
            let _ = write!(s, "<p>From {}.</p>", file_link(d));
        }
        Some(d) => {
            let _ = write!(
                s,
                "<p>No analysis outputs under {} (run <code>ia2 analyze</code>).</p>",
                esc(&d.display().to_string())
            );
        }
        None => s.push_str("<p>No analysis directory.</p>"),
    }
    for (name, v) in &an.summaries {
        let _ = write!(s, "<h3>{}</h3>{}", esc(name), json_table(v));
    }
    for (name, svg) in &an.svgs {
        let _ = write!(
            s,
            "<section><h3>{}</h3><figure>{}</figure></section>",
            esc(name),
            inline_svg(svg)
        );
    }
    for p in &an.problems {
        let _ = write!(s, "<p class=\"warn\">unreadable: {}</p>", esc(p));
    }

    // Runs.
    s.push_str("<h2 id=\"runs\">Runs and result files</h2>");
    for a in &agg.aggregates {
        let _ = write!(
            s,
            "<details><summary>{} {} N={} {}</summary><ul>",
            esc(&a.key.method),
            esc(&a.key.title()),
            a.n,
            esc(&a.hp.to_string())
        );
        for (i, f) in a.result_files.iter().enumerate() {
            let run_dir = a.run_dirs.get(i).map(|d| file_link(d)).unwrap_or_default();
            let _ = write!(
                s,
                "<li>run {}: result {} {}</li>",
                a.runs.get(i).copied().unwrap_or_default(),
                file_link(f),
                if run_dir.is_empty() {
                    String::new()
                } else {
                    format!("run {run_dir}")
                }
            );
        }
        s.push_str("</ul></details>");
    }
    let _ = writeln!(s, "<script>{VERIFY_SCRIPT}</script></body></html>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_lists_are_summarized_at_any_depth() {
        let mut v =
            serde_json::json!({"plan": {"jobs": [1, 2, 3], "config": {"lrs": [0.1]}}, "jobs": []});
        summarize_job_lists(&mut v);
        assert_eq!(v["plan"]["jobs"], "3 jobs (listed in the full JSON)");
        assert_eq!(v["jobs"], "0 jobs (listed in the full JSON)");
        assert_eq!(v["plan"]["config"]["lrs"], serde_json::json!([0.1]));
    }

    #[test]
    fn analysis_outputs_skip_caches_and_list_unreadable_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("subspace.json"), "{\"pairs\": 6}").unwrap();
        std::fs::write(d.join("overlap.svg"), "<svg></svg>").unwrap();
        std::fs::write(d.join("broken.json"), "{").unwrap();
        std::fs::create_dir_all(d.join("cache/similarity")).unwrap();
        std::fs::write(d.join("cache/similarity/entry.json"), "{}").unwrap();
        let out = read_analysis(d);
        let names: Vec<&str> = out.summaries.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["subspace.json"]);
        assert_eq!(out.svgs.len(), 1);
        assert_eq!(out.problems.len(), 1, "{:?}", out.problems);
        assert!(out.problems[0].starts_with("broken.json"));
    }
}
