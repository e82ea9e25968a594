//! Evaluation result files: one JSON file per evaluation (path: [`crate::layout::result_path`]).
//!
//! ```json
//! {"trained_model_params": {training_config.json verbatim | the base model's N and run},
//!  "evaluation_config": {datasets, D, N, run, T, top_k, parser, labels, model, adapter, data file
//!                        checksums, the full invocation, timings, identity, identity_inputs, ...},
//!  "metrics": {...},
//!  "results": {"with_icl": [record, ...], "without_icl": [record, ...]},
//!  "status": "complete"}
//! ```
//! A file counts as finished only when it parses, says `"status": "complete"` and holds both modes with
//! `evaluation_config.num_eval_examples` records each; it is reused only when its recorded identity
//! (`evaluation_config.identity`) matches ([`existing_result`]).

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Confidence, entropy and uncertainty of a renormalised distribution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DistStats {
    pub confidence: f64,
    pub entropy: f64,
    pub uncertainty: f64,
}

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

/// A finished evaluation as written to disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

impl ResultFile {
    /// `evaluation_config.identity`.
    pub fn identity(&self) -> Option<&str> {
        self.evaluation_config
            .get("identity")
            .and_then(Value::as_str)
    }

    /// `evaluation_config.identity_inputs`.
    pub fn identity_inputs(&self) -> Option<&Value> {
        self.evaluation_config.get("identity_inputs")
    }

    /// Why this is not a finished evaluation, or `None` when it is: status complete, both modes with
    /// `evaluation_config.num_eval_examples` records each (at least one).
    pub fn incomplete_reason(&self) -> Option<String> {
        if self.status != COMPLETE {
            return Some(format!("status {:?}", self.status));
        }
        let (w, o) = (self.results.with_icl.len(), self.results.without_icl.len());
        let expected = self
            .evaluation_config
            .get("num_eval_examples")
            .and_then(Value::as_u64);
        match expected {
            None => Some("no evaluation_config.num_eval_examples".into()),
            Some(n) if n == 0 || w as u64 != n || o as u64 != n => Some(format!(
                "{w} with-ICL and {o} without-ICL records of {n} examples"
            )),
            Some(_) => None,
        }
    }
}

/// What is at a result path, compared with the evaluation about to run.
#[derive(Debug, Clone, PartialEq)]
pub enum ExistingResult {
    Missing,
    /// Unreadable, truncated or holding fewer records than examples (the reason).
    Incomplete(String),
    /// A finished evaluation of the same identity.
    Same,
    /// A finished evaluation of another identity: the differing fields (`field: old → new`).
    Different(Vec<String>),
}

/// What `path` holds compared with an evaluation of `identity_inputs` (see [`crate::identity`]).
pub fn existing_result(path: &Path, identity_inputs: &Value) -> ExistingResult {
    if std::fs::symlink_metadata(path).is_err() {
        return ExistingResult::Missing;
    }
    let file: ResultFile = match crate::tmp::read_json(path) {
        Ok(f) => f,
        Err(e) => return ExistingResult::Incomplete(format!("{e:#}")),
    };
    if let Some(why) = file.incomplete_reason() {
        return ExistingResult::Incomplete(why);
    }
    let want = crate::identity::identity_of(identity_inputs);
    if file.identity() == Some(want.as_str()) {
        return ExistingResult::Same;
    }
    let mut d = crate::identity::diff(
        file.identity_inputs().unwrap_or(&Value::Null),
        identity_inputs,
    );
    if d.is_empty() {
        d.push("evaluation_config.identity: recorded one does not match".into());
    }
    ExistingResult::Different(d)
}

/// Writes a result file atomically (pretty JSON).
pub fn write_result(path: &Path, file: &ResultFile) -> Result<()> {
    crate::tmp::write_json_atomic(path, file).with_context(|| format!("writing {}", path.display()))
}

/// Reads a result file.
pub fn read_result(path: &Path) -> Result<ResultFile> {
    crate::tmp::read_json(path)
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
    Value::Object(m)
}

/// Every `*.json` under `{outputs}/evaluations/` (hidden names skipped), sorted.
pub fn result_paths(outputs: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let root = outputs.join(crate::layout::EVALUATIONS_DIR);
    if !root.is_dir() {
        return Ok(out);
    }
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let e = e.with_context(|| format!("listing {}", dir.display()))?;
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with('.') {
                continue;
            }
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if name.ends_with(".json") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}
