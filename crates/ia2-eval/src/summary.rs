//! The summary of an invocation: what happened to each planned evaluation ([`Status`]), printed as a table
//! and written as `{outputs}/evaluation_summaries/eval_{UTC time}_{pid}.json`.

use crate::plan::{Subject, Task};
use crate::results;
use serde::Serialize;
use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};

/// What happened to one planned evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Evaluated in this invocation.
    Evaluated,
    /// A finished result of the same identity exists.
    Skipped,
    /// Would be evaluated (dry run).
    Planned,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Evaluated => "evaluated",
            Status::Skipped => "skipped",
            Status::Planned => "planned",
            Status::Failed => "failed",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl PartialEq<&str> for Status {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// What happened to one planned evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct SummaryEntry {
    /// `evaluated`, `skipped` (a finished result exists), `planned` (dry run) or `failed`.
    pub status: Status,
    pub result_path: PathBuf,
    pub model_type: String,
    pub adapter: Option<PathBuf>,
    pub trained_dataset: Option<String>,
    pub eval_dataset: String,
    pub icl_source: String,
    pub icl_max_demos: usize,
    pub num_train_examples: usize,
    pub run_idx: u32,
    pub num_generated_tokens_eval: usize,
    /// Headline metrics (evaluated or skipped results).
    pub metrics: Option<Value>,
    pub error: Option<String>,
}

/// The outcome of one invocation.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The summary file (`None` for a dry run).
    pub path: Option<PathBuf>,
    pub evaluated: usize,
    pub skipped: usize,
    pub failed: usize,
    pub elapsed_s: f64,
    pub entries: Vec<SummaryEntry>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |m: &Option<Value>, k: &str| {
            m.as_ref()
                .and_then(|m| m.get(k))
                .and_then(Value::as_f64)
                .map_or("-".to_string(), |v| format!("{v:.1}"))
        };
        writeln!(
            f,
            "{:<9} {:<10} {:<14} {:<12} {:<12} {:>4} {:>4} {:>3} {:>4} {:>7} {:>7} {:>7}  result",
            "status",
            "model",
            "trained",
            "eval",
            "demos from",
            "D",
            "N",
            "run",
            "T",
            "icl%",
            "no-icl%",
            "delta"
        )?;
        for e in &self.entries {
            writeln!(
                f,
                "{:<9} {:<10} {:<14} {:<12} {:<12} {:>4} {:>4} {:>3} {:>4} {:>7} {:>7} {:>7}  {}",
                e.status,
                e.model_type,
                e.trained_dataset.as_deref().unwrap_or("-"),
                e.eval_dataset,
                e.icl_source,
                e.icl_max_demos,
                e.num_train_examples,
                e.run_idx,
                e.num_generated_tokens_eval,
                pct(&e.metrics, "with_icl_accuracy"),
                pct(&e.metrics, "without_icl_accuracy"),
                pct(&e.metrics, "accuracy_delta"),
                e.result_path.display()
            )?;
            if let Some(err) = &e.error {
                writeln!(f, "          error: {err}")?;
            }
        }
        write!(
            f,
            "{} evaluated, {} skipped (already finished), {} failed in {:.1} s",
            self.evaluated, self.skipped, self.failed, self.elapsed_s
        )?;
        if let Some(p) = &self.path {
            write!(f, "; summary: {}", p.display())?;
        }
        Ok(())
    }
}

pub(crate) use ia2_runs::time::{now_secs, utc};

pub(crate) fn entry(
    task: &Task,
    status: Status,
    metrics: Option<Value>,
    error: Option<String>,
) -> SummaryEntry {
    let (adapter, trained) = match &task.subject {
        Subject::Base => (None, None),
        Subject::Adapter(a) => (Some(a.dir.clone()), Some(a.trained_dataset.clone())),
    };
    SummaryEntry {
        status,
        result_path: task.path.clone(),
        model_type: task.subject.model_type(),
        adapter,
        trained_dataset: trained,
        eval_dataset: task.demo.eval_dataset.clone(),
        icl_source: task.demo.icl_source.clone(),
        icl_max_demos: task.demo.demos,
        num_train_examples: task.demo.n,
        run_idx: task.demo.run,
        num_generated_tokens_eval: task.gen_tokens,
        metrics,
        error,
    }
}

pub(crate) fn headline_of(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    Some(results::headline(v.get("metrics")?.as_object()?))
}
