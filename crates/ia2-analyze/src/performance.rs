//! Per-run evaluation results (`outputs/evaluations/**.json`, written by `ia2 eval`), read leniently, and the
//! join of similarity with accuracy and ECE (analysis.md, "Similarity versus performance").
//!
//! A result belongs to a run through `evaluation_config.adapter.dir` (the run directory it evaluated), so
//! per-run similarity is paired with that run's own accuracy, never a run average.

use crate::select::RunInfo;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Without-ICL metrics of one evaluation of one adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    pub path: PathBuf,
    pub eval_dataset: String,
    pub icl_source: Option<String>,
    /// T of the evaluation.
    pub num_generated_tokens: Option<usize>,
    pub uncertainty: bool,
    /// `without_icl_accuracy_top1` in uncertainty mode, else `without_icl_accuracy` (percent).
    pub accuracy: Option<f64>,
    /// `without_icl_accuracy_label_set` (uncertainty mode).
    pub accuracy_label_set: Option<f64>,
    /// `without_icl_ece_top1` (uncertainty mode).
    pub ece: Option<f64>,
    /// `without_icl_ece_label`.
    pub ece_label: Option<f64>,
}

/// Every adapter evaluation found, by canonical adapter directory.
#[derive(Debug, Default, Clone)]
pub struct EvalIndex {
    pub by_adapter: HashMap<PathBuf, Vec<EvalMetrics>>,
    /// Files that could not be read (path: reason).
    pub unreadable: Vec<String>,
}

fn canonical(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            continue;
        }
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|e| e == "json") {
            out.push(p);
        }
    }
}

fn num(m: &Value, k: &str) -> Option<f64> {
    m.get(k).and_then(Value::as_f64)
}

impl EvalIndex {
    /// Reads `outputs/evaluations/**.json` (missing directory: empty index).
    pub fn load(outputs: &Path) -> EvalIndex {
        let mut files = Vec::new();
        walk(&outputs.join("evaluations"), &mut files);
        let mut idx = EvalIndex::default();
        for f in files {
            let v: Value = match std::fs::read(&f)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(v) => v,
                Err(e) => {
                    idx.unreadable.push(format!("{}: {e}", f.display()));
                    continue;
                }
            };
            if v.get("status").and_then(Value::as_str) != Some("complete") {
                continue;
            }
            let ec = &v["evaluation_config"];
            let Some(dir) = ec["adapter"]["dir"].as_str() else {
                continue;
            };
            let m = &v["metrics"];
            let uncertainty = ec["uncertainty_analysis"].as_bool().unwrap_or(false);
            let em = EvalMetrics {
                path: f.clone(),
                eval_dataset: ec["eval_dataset_name"].as_str().unwrap_or("").to_string(),
                icl_source: ec["icl_source_dataset"].as_str().map(String::from),
                num_generated_tokens: ec["num_generated_tokens_eval"].as_u64().map(|x| x as usize),
                uncertainty,
                accuracy: num(m, "without_icl_accuracy_top1")
                    .or_else(|| num(m, "without_icl_accuracy")),
                accuracy_label_set: num(m, "without_icl_accuracy_label_set"),
                ece: num(m, "without_icl_ece_top1"),
                ece_label: num(m, "without_icl_ece_label"),
            };
            idx.by_adapter
                .entry(canonical(Path::new(dir)))
                .or_default()
                .push(em);
        }
        idx
    }

    /// The evaluation of `run` on `eval_dataset` (an uncertainty-mode one preferred: it has ECE).
    pub fn of(&self, run_dir: &Path, eval_dataset: &str) -> Option<&EvalMetrics> {
        let list = self.by_adapter.get(&canonical(run_dir))?;
        list.iter()
            .filter(|e| e.eval_dataset == eval_dataset)
            .max_by_key(|e| (e.uncertainty, e.accuracy.is_some()))
    }
}

/// `run → without-ICL accuracy on its trained dataset`, for performance-based selection.
pub fn accuracy_lookup(outputs: &Path) -> impl Fn(&RunInfo) -> Option<f64> + use<> {
    let idx = EvalIndex::load(outputs);
    move |r: &RunInfo| {
        idx.of(&r.dir, &r.key.trained_dataset)
            .and_then(|e| e.accuracy)
    }
}
