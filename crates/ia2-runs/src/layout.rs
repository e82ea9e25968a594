//! Names and places: run directories, their files, evaluation result files, teacher cache entries, lock
//! files and temporary names (one scheme, see [`crate::tmp`]).

use crate::method::TrainingMethod;
use std::path::{Path, PathBuf};

/// `training_config.json`.
pub const CONFIG_FILE: &str = "training_config.json";
/// `final_loss_statistics.json`.
pub const STATS_FILE: &str = "final_loss_statistics.json";
/// `metrics.jsonl`.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// PEFT's `adapter_config.json`.
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";
/// PEFT's `adapter_model.safetensors`.
pub const ADAPTER_WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// Evaluation results live under `{outputs}/evaluations/`.
pub const EVALUATIONS_DIR: &str = "evaluations";
/// Sidecar of a file built from another: `.{file}.ia2-source.json` (see [`crate::provenance`]).
pub const SOURCE_SUFFIX: &str = ".ia2-source.json";

/// `outputs/{method}/{dataset}/{run_name}`.
pub fn run_dir(outputs: &Path, method: TrainingMethod, dataset: &str, run_name: &str) -> PathBuf {
    outputs
        .join(method.to_string())
        .join(dataset)
        .join(run_name)
}

/// The lock file guarding `target` (a run directory, a result file, a cache entry): `.ia2-lock-{name}`
/// beside it, removed by its holder on release (see [`crate::lock`]).
pub fn lock_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    target
        .parent()
        .unwrap_or(Path::new("."))
        .join(format!(".ia2-lock-{name}"))
}

/// Teacher cache entry of a key digest: `teacher-{digest}.safetensors`.
pub fn teacher_entry(dir: &Path, key_digest: &str) -> PathBuf {
    dir.join(format!("teacher-{key_digest}.safetensors"))
}

/// Replaces characters that are unsafe in file names.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-+=".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Who an evaluation evaluates, for its file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultSubject<'a> {
    /// The base model, by its short name.
    Base { model_name: &'a str },
    /// A trained run: its method and trained dataset and its directory name.
    Adapter {
        method: TrainingMethod,
        trained_dataset: &'a str,
        run_name: &'a str,
    },
}

/// Everything a result file's name encodes.
#[derive(Debug, Clone)]
pub struct ResultName<'a> {
    pub subject: ResultSubject<'a>,
    pub eval_dataset: &'a str,
    pub icl_source: &'a str,
    /// D: demos per prompt.
    pub demos: usize,
    /// N of the demo set.
    pub n: usize,
    pub run: usize,
    /// T.
    pub gen_tokens: usize,
    /// `Some(k)` in uncertainty mode.
    pub uncertainty_top_k: Option<usize>,
    pub max_eval_examples: Option<usize>,
    /// `None` for f32 weights, else e.g. `"bf16"`.
    pub dtype_suffix: Option<&'a str>,
}

/// The result file of one evaluation. Its name encodes every setting that changes the result: the model
/// (the run directory's name, unique among its method and dataset, or the base model's name), the
/// evaluation dataset, the demo source, D, N, the run, T, k in uncertainty mode, the example limit and a
/// non-f32 weight dtype; the directory encodes the model type, uncertainty mode and trained dataset:
/// `{outputs}/evaluations/{model_type}[_uncertainty]/{trained_dataset | eval_dataset for base}/{stem}.json`.
/// (What the name cannot tell apart, e.g. two base models with the same name, the result's identity does.)
pub fn result_path(outputs: &Path, r: &ResultName<'_>) -> PathBuf {
    let suffix = if r.uncertainty_top_k.is_some() {
        "_uncertainty"
    } else {
        ""
    };
    let (model_type, group, who) = match &r.subject {
        ResultSubject::Base { model_name } => (
            "base".to_string(),
            r.eval_dataset.to_string(),
            format!("{}_base", sanitize(model_name)),
        ),
        ResultSubject::Adapter {
            method,
            trained_dataset,
            run_name,
        } => (
            method.to_string(),
            trained_dataset.to_string(),
            sanitize(run_name),
        ),
    };
    let dir = outputs
        .join(EVALUATIONS_DIR)
        .join(format!("{model_type}{suffix}"))
        .join(group);
    let mut stem = format!(
        "{who}__{}_from_{}_d{}_N{}_run{}_T{}",
        r.eval_dataset, r.icl_source, r.demos, r.n, r.run, r.gen_tokens
    );
    if let Some(k) = r.uncertainty_top_k {
        stem.push_str(&format!("_k{k}"));
    }
    if let Some(k) = r.max_eval_examples {
        stem.push_str(&format!("_first{k}"));
    }
    if let Some(d) = r.dtype_suffix {
        stem.push_str(&format!("_{d}"));
    }
    dir.join(format!("{stem}.json"))
}
