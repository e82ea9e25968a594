//! `ia2 report reparse`: re-applies the evaluation dataset's answer parser (`ia2_eval::parse`) to every
//! stored generation (`full_generated_text`) and gold answer, recomputes the metrics with
//! `ia2_eval::results::compute_metrics`, and records what was re-parsed, by which parser and when, in the
//! file's `evaluation_config.reparse` list (`{at, parser, dataset, records, changed_records,
//! metrics_before, metrics_after, ia2_version}`).
//!
//! Files are edited as JSON values, so fields this version does not know are kept. Each file is written
//! atomically, in place (default) or to the same relative path under an output directory.

use anyhow::{Context, Result, bail};
use ia2_eval::parse::DatasetInfo;
use ia2_eval::results::{MetricsKind, ModeResults};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

/// Re-parse settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ReparseConfig {
    /// `outputs` directory: every result under `<outputs>/evaluations/` is re-parsed (unless `files`).
    pub outputs: PathBuf,
    /// Only these result files.
    pub files: Vec<PathBuf>,
    /// The data directory (`data/<name>/main.json` gives the label set); optional: without it the
    /// parser still comes from the dataset registry (classification for unknown datasets).
    pub data_dir: Option<PathBuf>,
    /// Write re-parsed files here (same relative path as under `outputs`) instead of in place.
    pub output_dir: Option<PathBuf>,
    /// Report what would change without writing.
    pub dry_run: bool,
}

/// What happened to one file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reparsed {
    pub path: PathBuf,
    pub written_to: Option<PathBuf>,
    pub parser: String,
    pub records: usize,
    pub changed_records: usize,
    /// Metrics whose value changed: (name, before, after).
    pub changed_metrics: Vec<(String, Option<f64>, Option<f64>)>,
}

fn dataset_info(name: &str, data_dir: Option<&Path>) -> Result<DatasetInfo> {
    let metadata = match data_dir.map(|d| d.join(name).join("main.json")) {
        Some(p) if p.is_file() => {
            let text =
                std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            let v: Value =
                serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))?;
            v.get("metadata").cloned().unwrap_or(json!({}))
        }
        _ => json!({}),
    };
    DatasetInfo::new(name, &metadata)
}

/// Re-parses one record object in place; returns whether anything changed.
fn reparse_record(r: &mut Value, info: &DatasetInfo, path: &Path, i: usize) -> Result<bool> {
    let obj = r
        .as_object_mut()
        .with_context(|| format!("{}: record {i} is not an object", path.display()))?;
    let raw = obj
        .get("full_answer_text")
        .and_then(Value::as_str)
        .with_context(|| format!("{}: record {i} has no full_answer_text", path.display()))?
        .to_string();
    let generated = obj
        .get("full_generated_text")
        .and_then(Value::as_str)
        .with_context(|| format!("{}: record {i} has no full_generated_text", path.display()))?
        .to_string();
    let gold = info.gold(&raw);
    let answer = info.parse(&generated);
    let correct = answer.as_deref() == Some(gold.as_str());
    let before = (
        obj.get("parsed_answer").cloned(),
        obj.get("generated_answer").cloned(),
        obj.get("correct").cloned(),
    );
    obj.insert("parsed_answer".into(), json!(gold));
    obj.insert("generated_answer".into(), json!(answer));
    obj.insert("correct".into(), json!(correct));
    // In uncertainty mode (T = 1) the top-1 token is the generation: its correctness is `correct`.
    if let Some(pi) = obj.get_mut("prob_info").and_then(Value::as_object_mut)
        && pi.contains_key("correct_top1")
    {
        pi.insert("correct_top1".into(), json!(correct));
    }
    Ok(before != (Some(json!(gold)), Some(json!(answer)), Some(json!(correct))))
}

fn metrics_kind(results: &ModeResults) -> MetricsKind {
    use ia2_eval::results::ProbInfo;
    let first = results
        .with_icl
        .iter()
        .chain(&results.without_icl)
        .find_map(|r| r.prob_info.as_ref());
    match first {
        None => MetricsKind::Standard,
        Some(ProbInfo::NextToken(_)) => MetricsKind::NextToken {
            has_labels: results
                .with_icl
                .iter()
                .chain(&results.without_icl)
                .any(|r| {
                    matches!(&r.prob_info, Some(ProbInfo::NextToken(i)) if i.correct_label_set.is_some())
                }),
        },
        Some(ProbInfo::Steps(s)) => MetricsKind::Steps {
            top_k: s.prob_matrix.first().map_or(0, Vec::len),
        },
    }
}

/// Re-parses one result file (see the module notes).
pub fn reparse_file(path: &Path, cfg: &ReparseConfig) -> Result<Reparsed> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut v: Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not valid JSON", path.display()))?;
    if v.get("status").and_then(Value::as_str) != Some(ia2_eval::results::COMPLETE) {
        bail!(
            "{}: not a complete result file (no \"status\": \"complete\")",
            path.display()
        );
    }
    let dataset = v
        .pointer("/evaluation_config/eval_dataset_name")
        .and_then(Value::as_str)
        .with_context(|| {
            format!(
                "{}: evaluation_config.eval_dataset_name is missing",
                path.display()
            )
        })?
        .to_string();
    let info = dataset_info(&dataset, cfg.data_dir.as_deref())?;
    let (mut records, mut changed) = (0, 0);
    for mode in ["with_icl", "without_icl"] {
        let list = v
            .pointer_mut(&format!("/results/{mode}"))
            .and_then(Value::as_array_mut)
            .with_context(|| format!("{}: results.{mode} is missing", path.display()))?;
        for (i, r) in list.iter_mut().enumerate() {
            records += 1;
            if reparse_record(r, &info, path, i)? {
                changed += 1;
            }
        }
    }
    let results: ModeResults = serde_json::from_value(v["results"].clone())
        .with_context(|| format!("{}: results do not parse", path.display()))?;
    let metrics = ia2_eval::results::compute_metrics(&results, metrics_kind(&results));
    let before: Map<String, Value> = v
        .get("metrics")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut names: Vec<&String> = before.keys().chain(metrics.keys()).collect();
    names.sort();
    names.dedup();
    let changed_metrics: Vec<(String, Option<f64>, Option<f64>)> = names
        .into_iter()
        .filter_map(|k| {
            let (a, b) = (before.get(k), metrics.get(k));
            // Numbers equal up to a JSON float round trip (serde_json parses to within 1 ulp) are unchanged.
            let same = match (a.and_then(Value::as_f64), b.and_then(Value::as_f64)) {
                (Some(x), Some(y)) => (x - y).abs() <= 1e-12 * x.abs().max(y.abs()).max(1.0),
                _ => a == b,
            };
            (!same).then(|| {
                (
                    k.clone(),
                    a.and_then(Value::as_f64),
                    b.and_then(Value::as_f64),
                )
            })
        })
        .collect();
    let parser = info.parser.name().to_string();
    let record = json!({
        "at": ia2_runs::time::now_iso(),
        "parser": parser,
        "dataset": dataset,
        "registered_dataset": info.registered,
        "records": records,
        "changed_records": changed,
        "metrics_before": before,
        "changed_metrics": changed_metrics.iter().map(|(k, a, b)| json!({"metric": k, "before": a, "after": b})).collect::<Vec<_>>(),
        "ia2_version": env!("CARGO_PKG_VERSION"),
    });
    v["metrics"] = Value::Object(metrics);
    if let Some(ec) = v
        .get_mut("evaluation_config")
        .and_then(Value::as_object_mut)
    {
        ec.insert("parser".into(), json!(parser));
        let log = ec.entry("reparse").or_insert_with(|| json!([]));
        if !log.is_array() {
            *log = json!([]);
        }
        log.as_array_mut().expect("array").push(record);
    }
    let target = match &cfg.output_dir {
        None => path.to_path_buf(),
        Some(out) => {
            let rel = path.strip_prefix(&cfg.outputs).unwrap_or(path);
            let rel = if rel.is_absolute() {
                Path::new(rel.file_name().unwrap_or_default())
            } else {
                rel
            };
            out.join(rel)
        }
    };
    let written_to = if cfg.dry_run {
        None
    } else {
        let mut text = serde_json::to_string_pretty(&v)?;
        text.push('\n');
        ia2_data::io::write_atomic(&target, text.as_bytes())?;
        Some(target)
    };
    Ok(Reparsed {
        path: path.to_path_buf(),
        written_to,
        parser,
        records,
        changed_records: changed,
        changed_metrics,
    })
}

/// Files that could not be re-parsed, with the error.
pub type Failures = Vec<(PathBuf, String)>;

/// Re-parses every result file (see [`ReparseConfig`]); one failing file does not stop the others: its
/// error is returned beside the successes.
pub fn reparse(cfg: &ReparseConfig) -> Result<(Vec<Reparsed>, Failures)> {
    let files = if cfg.files.is_empty() {
        let dir = cfg.outputs.join("evaluations");
        anyhow::ensure!(dir.is_dir(), "{} does not exist", dir.display());
        let mut all = Vec::new();
        collect(&dir, &mut all)?;
        all
    } else {
        cfg.files.clone()
    };
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for f in files {
        match reparse_file(&f, cfg) {
            Ok(r) => done.push(r),
            Err(e) => failed.push((f, format!("{e:#}"))),
        }
    }
    Ok((done, failed))
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut items: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .collect();
    items.sort();
    for p in items {
        let hidden = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if p.is_dir() {
            collect(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "json") {
            out.push(p);
        }
    }
    Ok(())
}
