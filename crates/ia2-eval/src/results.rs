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
//! `evaluation_config.num_eval_examples` records each; anything else (a truncated file, a stray temporary)
//! is evaluated again. It is reused only when its identity matches ([`existing_result`]).

use crate::metrics::{self, Agreement, DistStats, ECE_BINS};
use serde_json::{Map, Value};
use std::path::Path;

/// The records and the result file, defined with the on-disk contract in [`ia2_runs::results`].
pub use ia2_runs::results::{
    COMPLETE, ExistingResult, ModeResults, NextTokenInfo, ProbInfo, Record, ResultFile, StepsInfo,
    existing_result, read_result,
};

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

/// Whether `path` holds a finished evaluation (see the module notes): it parses, is complete and holds
/// `evaluation_config.num_eval_examples` records in both modes.
pub fn is_finished(path: &Path) -> bool {
    read_result(path).is_ok_and(|f| f.incomplete_reason().is_none())
}

pub use ia2_runs::results::{headline, write_result};
pub use ia2_runs::write_atomic;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
            evaluation_config: json!({"num_eval_examples": 1}),
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
