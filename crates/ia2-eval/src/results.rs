//! Result files: per-example records of both modes, the metrics computed from them, the file layout and
//! names, atomic writing and the "finished" check that makes evaluation resumable.
//!
//! One evaluation = one JSON file
//! `{outputs}/evaluations/{model_type}[_uncertainty]/{trained_dataset | eval_dataset for base}/{stem}.json`:
//! ```json
//! {"trained_model_params": {training_config.json verbatim | the base model's N and run},
//!  "evaluation_config": {datasets, D, N, run, T, top_k, parser, labels, model, adapter, data file
//!                        checksums, the full invocation, timings, ...},
//!  "metrics": {...},
//!  "results": {"with_icl": [record, ...], "without_icl": [record, ...]},
//!  "status": "complete"}
//! ```
//! A file counts as finished only when it parses, says `"status": "complete"` and holds both modes with
//! equally many records; anything else (a truncated file, a stray temporary) is evaluated again.

use crate::metrics::{self, Agreement, DistStats, ECE_BINS};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::Path;

/// One example evaluated in one mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// `idx` of the example in its dataset.
    pub idx: usize,
    pub query: String,
    /// The raw gold answer.
    pub full_answer_text: String,
    /// The gold answer compared with predictions (the raw answer parsed with the dataset's parser).
    pub parsed_answer: String,
    /// The generated text (special tokens skipped); in uncertainty mode with T = 1, the top-1 token.
    pub full_generated_text: String,
    /// The parsed prediction; `null` when the parser finds no answer (counted as incorrect).
    pub generated_answer: Option<String>,
    pub correct: bool,
    /// Prompt length in tokens.
    pub prompt_tokens: usize,
    /// `eos`, `stop_string` or `max_new_tokens` (generation only).
    pub stop_reason: Option<String>,
    pub prob_info: Option<ProbInfo>,
}

/// Uncertainty-mode details of one record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ProbInfo {
    NextToken(NextTokenInfo),
    Steps(StepsInfo),
}

/// T = 1: the next-token distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NextTokenInfo {
    /// The top-k tokens (decoded one by one, special tokens kept), most probable first.
    pub top_k_tokens: Vec<String>,
    pub top_k_ids: Vec<u32>,
    /// Their full-softmax probabilities.
    pub top_k_probs: Vec<f64>,
    /// Full-softmax probability of each label's first sub-token.
    pub label_probs: BTreeMap<String, f64>,
    /// Top-k renormalised: confidence (top-1), entropy, uncertainty.
    pub top1: DistStats,
    /// Label set renormalised (no second softmax).
    pub label: Option<DistStats>,
    pub correct_top1: bool,
    /// The gold label has the highest label probability (ties count as correct).
    pub correct_label_set: Option<bool>,
}

/// T > 1: the top-k distribution of every generated token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepsInfo {
    pub generated_text: String,
    /// `[steps][k]` decoded tokens.
    pub token_matrix: Vec<Vec<String>>,
    /// `[steps][k]` full-softmax probabilities.
    pub prob_matrix: Vec<Vec<f64>>,
    /// Entropy of each step's renormalised top-k.
    pub step_entropies: Vec<f64>,
}

/// The two modes' records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModeResults {
    pub with_icl: Vec<Record>,
    pub without_icl: Vec<Record>,
}

/// Which metrics an evaluation computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsKind {
    /// Greedy generation: accuracy of the parsed answer.
    Standard,
    /// Uncertainty, T = 1: top-1 and label-set accuracy, confidence, entropy, uncertainty, ECE.
    NextToken { has_labels: bool },
    /// Uncertainty, T > 1: accuracy and per-step top-k entropies.
    Steps { top_k: usize },
}

fn put(m: &mut Map<String, Value>, key: impl Into<String>, v: impl Into<Value>) {
    m.insert(key.into(), v.into());
}

fn put_mean_std(m: &mut Map<String, Value>, key: &str, values: &[f64]) {
    if let Some((mean, std)) = metrics::mean_std(values) {
        put(m, format!("{key}_mean"), mean);
        put(m, format!("{key}_std"), std);
    }
}

fn next_infos(records: &[Record]) -> Vec<&NextTokenInfo> {
    records
        .iter()
        .filter_map(|r| match &r.prob_info {
            Some(ProbInfo::NextToken(i)) => Some(i),
            _ => None,
        })
        .collect()
}

/// The metrics of one mode, keys prefixed `with_icl_` / `without_icl_`.
fn mode_metrics(m: &mut Map<String, Value>, mode: &str, records: &[Record], kind: MetricsKind) {
    let total = records.len();
    let valid = records
        .iter()
        .filter(|r| r.generated_answer.is_some())
        .count();
    let correct = records.iter().filter(|r| r.correct).count();
    // One denominator for every accuracy: all examples of the mode (*fix*: the seed mixed total and valid).
    put(
        m,
        format!("{mode}_accuracy"),
        metrics::percent(correct, total),
    );
    put(m, format!("{mode}_valid_predictions"), valid);
    put(m, format!("{mode}_total_examples"), total);
    match kind {
        MetricsKind::Standard => {}
        MetricsKind::NextToken { has_labels } => {
            let infos = next_infos(records);
            let top1_hits = infos.iter().filter(|i| i.correct_top1).count();
            put(
                m,
                format!("{mode}_accuracy_top1"),
                metrics::percent(top1_hits, total),
            );
            let conf: Vec<f64> = infos.iter().map(|i| i.top1.confidence).collect();
            let hits: Vec<bool> = infos.iter().map(|i| i.correct_top1).collect();
            put_mean_std(
                m,
                &format!("{mode}_entropy_top1"),
                &infos.iter().map(|i| i.top1.entropy).collect::<Vec<_>>(),
            );
            put_mean_std(
                m,
                &format!("{mode}_uncertainty_top1"),
                &infos.iter().map(|i| i.top1.uncertainty).collect::<Vec<_>>(),
            );
            put(
                m,
                format!("{mode}_ece_top1"),
                metrics::ece(&conf, &hits, ECE_BINS),
            );
            if has_labels {
                let labelled: Vec<(&DistStats, bool)> = infos
                    .iter()
                    .filter_map(|i| Some((i.label.as_ref()?, i.correct_label_set?)))
                    .collect();
                let label_hits = labelled.iter().filter(|(_, c)| *c).count();
                put(
                    m,
                    format!("{mode}_accuracy_label_set"),
                    metrics::percent(label_hits, total),
                );
                put_mean_std(
                    m,
                    &format!("{mode}_entropy_label"),
                    &labelled.iter().map(|(s, _)| s.entropy).collect::<Vec<_>>(),
                );
                put_mean_std(
                    m,
                    &format!("{mode}_uncertainty_label"),
                    &labelled
                        .iter()
                        .map(|(s, _)| s.uncertainty)
                        .collect::<Vec<_>>(),
                );
                let conf: Vec<f64> = labelled.iter().map(|(s, _)| s.confidence).collect();
                let hits: Vec<bool> = labelled.iter().map(|(_, c)| *c).collect();
                put(
                    m,
                    format!("{mode}_ece_label"),
                    metrics::ece(&conf, &hits, ECE_BINS),
                );
            }
        }
        MetricsKind::Steps { top_k } => {
            let entropies: Vec<f64> = records
                .iter()
                .filter_map(|r| match &r.prob_info {
                    Some(ProbInfo::Steps(s)) => Some(s.step_entropies.iter().copied()),
                    _ => None,
                })
                .flatten()
                .collect();
            put_mean_std(m, &format!("{mode}_entropy_topk"), &entropies);
            put(m, format!("{mode}_topk_value"), top_k);
        }
    }
}

fn delta(m: &mut Map<String, Value>, out: &str, key: &str) {
    let get = |mode: &str| m.get(&format!("{mode}_{key}")).and_then(Value::as_f64);
    if let (Some(w), Some(o)) = (get("with_icl"), get("without_icl")) {
        put(m, out, w - o);
    }
}

/// Every metric of an evaluation: per mode, deltas (with − without) and agreement between the modes.
pub fn compute_metrics(results: &ModeResults, kind: MetricsKind) -> Map<String, Value> {
    let mut m = Map::new();
    mode_metrics(&mut m, "with_icl", &results.with_icl, kind);
    mode_metrics(&mut m, "without_icl", &results.without_icl, kind);
    delta(&mut m, "accuracy_delta", "accuracy");
    match kind {
        MetricsKind::Standard => {}
        MetricsKind::NextToken { has_labels } => {
            delta(&mut m, "accuracy_delta_top1", "accuracy_top1");
            delta(&mut m, "entropy_delta_top1", "entropy_top1_mean");
            delta(&mut m, "uncertainty_delta_top1", "uncertainty_top1_mean");
            delta(&mut m, "ece_delta_top1", "ece_top1");
            if has_labels {
                delta(&mut m, "accuracy_delta_label_set", "accuracy_label_set");
                delta(&mut m, "entropy_delta_label", "entropy_label_mean");
                delta(&mut m, "uncertainty_delta_label", "uncertainty_label_mean");
                delta(&mut m, "ece_delta_label", "ece_label");
            }
        }
        MetricsKind::Steps { .. } => delta(&mut m, "entropy_delta_topk", "entropy_topk_mean"),
    }
    fn pairs(rs: &[Record]) -> Vec<(Option<&str>, bool)> {
        rs.iter()
            .map(|r| (r.generated_answer.as_deref(), r.correct))
            .collect()
    }
    if results.with_icl.len() == results.without_icl.len() {
        let a = metrics::agreement(&pairs(&results.with_icl), &pairs(&results.without_icl));
        put_agreement(&mut m, &a);
    }
    m
}

fn put_agreement(m: &mut Map<String, Value>, a: &Agreement) {
    let n = a.comparable_examples;
    put(m, "agreement_rate", a.agreement_rate());
    put(m, "both_correct", a.both_correct);
    put(m, "both_incorrect", a.both_incorrect);
    put(m, "only_icl_correct", a.only_icl_correct);
    put(m, "only_without_icl_correct", a.only_without_icl_correct);
    put(m, "comparable_examples", n);
    put(m, "both_correct_pct", metrics::percent(a.both_correct, n));
    put(
        m,
        "both_incorrect_pct",
        metrics::percent(a.both_incorrect, n),
    );
    put(
        m,
        "only_icl_correct_pct",
        metrics::percent(a.only_icl_correct, n),
    );
    put(
        m,
        "only_without_icl_correct_pct",
        metrics::percent(a.only_without_icl_correct, n),
    );
}

/// A finished evaluation as written to disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultFile {
    pub trained_model_params: Value,
    pub evaluation_config: Value,
    pub metrics: Map<String, Value>,
    pub results: ModeResults,
    /// Always `"complete"`: files are written only once the evaluation has finished.
    pub status: String,
}

/// `"complete"`.
pub const COMPLETE: &str = "complete";

/// What is at a result path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Existing {
    /// Nothing.
    Missing,
    /// A finished evaluation of the current input files.
    Finished,
    /// A finished evaluation of other input files (the reason names the file that changed).
    Stale(String),
    /// An unreadable or incomplete file.
    Incomplete,
}

/// Whether `path` holds a finished evaluation (see the module notes).
pub fn is_finished(path: &Path) -> bool {
    existing(path, &[]) == Existing::Finished
}

/// What `path` holds; a finished result whose recorded checksum of one of `inputs` (matched by role)
/// differs from the current one is stale.
pub fn existing(path: &Path, inputs: &[crate::prompts::DataFile]) -> Existing {
    if !path.exists() {
        return Existing::Missing;
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return Existing::Incomplete;
    };
    let Ok(v) = serde_json::from_str::<Value>(&text) else {
        return Existing::Incomplete;
    };
    let complete = v.get("status").and_then(Value::as_str) == Some(COMPLETE)
        && v.get("metrics").is_some_and(Value::is_object)
        && match (
            v.pointer("/results/with_icl").and_then(Value::as_array),
            v.pointer("/results/without_icl").and_then(Value::as_array),
        ) {
            (Some(w), Some(o)) => !w.is_empty() && w.len() == o.len(),
            _ => false,
        };
    if !complete {
        return Existing::Incomplete;
    }
    let recorded = v
        .pointer("/evaluation_config/data_files")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for input in inputs {
        let old = recorded
            .iter()
            .find(|d| d.get("role").and_then(Value::as_str) == Some(input.role.as_str()))
            .and_then(|d| d.get("sha256").and_then(Value::as_str));
        if old != Some(input.sha256.as_str()) {
            return Existing::Stale(format!("{} ({}) changed", input.path, input.role));
        }
    }
    Existing::Finished
}

pub use ia2_data::io::write_atomic;

/// Writes a result file atomically.
pub fn write_result(path: &Path, file: &ResultFile) -> Result<()> {
    let mut text = serde_json::to_string_pretty(file).context("serializing the result")?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// The headline metrics shown in summaries.
pub fn headline(metrics: &Map<String, Value>) -> Value {
    let keys = [
        "with_icl_accuracy",
        "without_icl_accuracy",
        "accuracy_delta",
        "with_icl_accuracy_label_set",
        "without_icl_accuracy_label_set",
        "agreement_rate",
        "with_icl_ece_top1",
        "without_icl_ece_top1",
    ];
    let mut m = Map::new();
    for k in keys {
        if let Some(v) = metrics.get(k) {
            m.insert(k.to_string(), v.clone());
        }
    }
    json!(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(answer: Option<&str>, gold: &str) -> Record {
        Record {
            idx: 0,
            query: "q".into(),
            full_answer_text: gold.into(),
            parsed_answer: gold.into(),
            full_generated_text: answer.unwrap_or("").into(),
            generated_answer: answer.map(String::from),
            correct: answer == Some(gold),
            prompt_tokens: 1,
            stop_reason: None,
            prob_info: None,
        }
    }

    #[test]
    fn standard_metrics_use_all_examples_as_denominator() {
        let results = ModeResults {
            with_icl: vec![rec(Some("1"), "1"), rec(Some("0"), "1"), rec(None, "0")],
            without_icl: vec![
                rec(Some("0"), "1"),
                rec(Some("0"), "1"),
                rec(Some("0"), "0"),
            ],
        };
        let m = compute_metrics(&results, MetricsKind::Standard);
        let f = |k: &str| m[k].as_f64().unwrap();
        assert!((f("with_icl_accuracy") - 100.0 / 3.0).abs() < 1e-9);
        assert!((f("without_icl_accuracy") - 100.0 / 3.0).abs() < 1e-9);
        assert_eq!(f("accuracy_delta"), 0.0);
        assert_eq!(m["with_icl_valid_predictions"], 2);
        assert_eq!(m["both_correct"], 0);
        assert_eq!(m["only_icl_correct"], 1);
        assert_eq!(m["only_without_icl_correct"], 1);
        assert_eq!(m["both_incorrect"], 1);
        // "0" vs "0" agrees; "1" vs "0" and None vs "0" do not.
        assert!((f("agreement_rate") - 100.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn finished_check_rejects_partial_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        assert!(!is_finished(&p));
        std::fs::write(
            &p,
            "{\"status\": \"complete\", \"metrics\": {}, \"results\": {\"with_i",
        )
        .unwrap();
        assert!(!is_finished(&p));
        let file = ResultFile {
            trained_model_params: json!({}),
            evaluation_config: json!({}),
            metrics: Map::new(),
            results: ModeResults {
                with_icl: vec![rec(Some("1"), "1")],
                without_icl: vec![rec(Some("1"), "1")],
            },
            status: COMPLETE.into(),
        };
        write_result(&p, &file).unwrap();
        assert!(is_finished(&p));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }
}
