//! Per-run evaluation results (`outputs/evaluations/**.json`, written by `ia2 eval`, read by `ia2 report`'s
//! loader) for the join of similarity with accuracy and ECE (analysis.md, "Similarity versus performance").
//!
//! A result belongs to a run through the run directory it evaluated, so per-run similarity is paired with
//! that run's own accuracy, never a run average.

use crate::select::RunInfo;
use serde::{Deserialize, Serialize};
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

impl EvalIndex {
    /// Every adapter evaluation under `outputs/evaluations/`, read with `ia2_report::select::load_results`
    /// (the reader `ia2 report` uses; missing directory: empty index).
    pub fn load(outputs: &Path) -> EvalIndex {
        let mut idx = EvalIndex::default();
        if !outputs.join("evaluations").is_dir() {
            return idx;
        }
        let loaded = match ia2_report::select::load_results(outputs) {
            Ok(l) => l,
            Err(e) => {
                idx.unreadable.push(format!("{e:#}"));
                return idx;
            }
        };
        for p in &loaded.problems {
            idx.unreadable
                .push(format!("{} ({}): {}", p.path, p.kind, p.detail));
        }
        for e in loaded.entries {
            let Some(dir) = &e.run_dir else {
                continue;
            };
            let m = |k: &str| e.metrics.get(k).copied();
            let em = EvalMetrics {
                path: e.path.clone(),
                eval_dataset: e.key.eval.clone(),
                icl_source: Some(e.key.icl_source.clone()),
                num_generated_tokens: Some(e.key.eval_t),
                uncertainty: e.key.uncertainty,
                accuracy: m("without_icl_accuracy_top1").or_else(|| m("without_icl_accuracy")),
                accuracy_label_set: m("without_icl_accuracy_label_set"),
                ece: m("without_icl_ece_top1"),
                ece_label: m("without_icl_ece_label"),
            };
            idx.by_adapter.entry(canonical(dir)).or_default().push(em);
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
