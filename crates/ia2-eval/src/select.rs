//! Which adapters to evaluate: discovery under `outputs/{training_method}/{dataset}/{name}/`, each run's
//! `training_config.json` read (never its directory name), and the seed's hyper-parameter filters.
//!
//! A run directory counts when it holds `adapter_config.json`, `adapter_model.safetensors` and
//! `training_config.json`; hidden directories (`.name.tmp-*`, left by interrupted atomic writes) are
//! ignored. Configs written by the seed (no `"ia2"` key, possibly missing keys) are read leniently: every
//! key is optional, and a filter on a key the config lacks does not match.
//!
//! Base-model checks: an adapter whose `model_name` differs from the evaluated model's is skipped with a
//! warning (one `outputs/` tree holds runs of several base models, as the seed's); an adapter with the
//! same `model_name` whose recorded `ia2.base_model_fingerprint` differs from the evaluated model's is an
//! error (same name, different weights: its results would be wrong).

use anyhow::{Context, Result, bail};
use ia2_runs::{AdapterKind, Objective, TrainingMethod};
use serde::Serialize;
use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};

/// What `--model-types` names: the base model or one training method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelType {
    Base,
    Trained(TrainingMethod),
}

impl ModelType {
    pub fn parse(s: &str) -> Result<ModelType> {
        if s == "base" {
            Ok(ModelType::Base)
        } else {
            s.parse::<TrainingMethod>()
                .map(ModelType::Trained)
                .map_err(|e| anyhow::anyhow!("{e} or base"))
        }
    }
}

impl fmt::Display for ModelType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelType::Base => f.write_str("base"),
            ModelType::Trained(m) => m.fmt(f),
        }
    }
}

/// `training_config.json` of a run, read leniently (see [`ia2_runs::lenient`]).
pub use ia2_runs::TrainingConfig;

/// One trained run found under `outputs/`.
#[derive(Debug, Clone)]
pub struct AdapterRun {
    /// The run directory (PEFT adapter + configs).
    pub dir: PathBuf,
    /// The directory's name: an opaque, unique identifier of the run within its method and dataset.
    pub name: String,
    pub method: TrainingMethod,
    pub trained_dataset: String,
    pub config: TrainingConfig,
    /// `training_config.json` as written (recorded verbatim in results).
    pub raw_config: Value,
    /// `final_loss_statistics.json`, when present.
    pub final_stats: Option<Value>,
}

impl AdapterRun {
    /// N of the run: `num_train_examples` (LDR: falls back to `num_labelled_samples`).
    pub fn num_train_examples(&self) -> Option<usize> {
        self.config
            .num_train_examples
            .or(self.config.num_labelled_samples)
    }

    /// Reads one run directory. `Ok(None)` (with the reason) when it is not a complete run.
    pub fn read(
        dir: &Path,
        method: Option<TrainingMethod>,
        dataset: Option<&str>,
    ) -> Result<std::result::Result<AdapterRun, String>> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        for file in [
            ia2_adapters::CONFIG_FILE,
            ia2_adapters::WEIGHTS_FILE,
            TRAINING_CONFIG,
        ] {
            if !dir.join(file).is_file() {
                return Ok(Err(format!("{}: no {file}", dir.display())));
            }
        }
        let path = dir.join(TRAINING_CONFIG);
        let raw_config: Value = read_json(&path)?;
        let config = TrainingConfig::from_value(&raw_config, &path)?;
        let config_method = config
            .training_method
            .as_deref()
            .map(str::parse::<TrainingMethod>)
            .transpose()
            .with_context(|| format!("{}: training_method", path.display()))?;
        let method = match (method, config_method) {
            (Some(m), Some(c)) if m != c => {
                return Ok(Err(format!(
                    "{}: training_method {c} does not match its directory {m}",
                    dir.display()
                )));
            }
            (Some(m), _) | (None, Some(m)) => m,
            (None, None) => bail!("{}: no training_method", path.display()),
        };
        let trained_dataset = match (dataset, config.dataset.as_deref()) {
            (Some(d), Some(c)) if d != c => {
                return Ok(Err(format!(
                    "{}: dataset {c} does not match its directory {d}",
                    dir.display()
                )));
            }
            (Some(d), _) | (None, Some(d)) => d.to_string(),
            (None, None) => bail!("{}: no dataset", path.display()),
        };
        let stats_path = dir.join(FINAL_STATS);
        let final_stats = if stats_path.is_file() {
            Some(read_json(&stats_path)?)
        } else {
            None
        };
        Ok(Ok(AdapterRun {
            dir: dir.to_path_buf(),
            name,
            method,
            trained_dataset,
            config,
            raw_config,
            final_stats,
        }))
    }
}

/// `training_config.json`.
pub const TRAINING_CONFIG: &str = "training_config.json";
/// `final_loss_statistics.json`.
pub const FINAL_STATS: &str = "final_loss_statistics.json";

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn sorted_subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        if entry.path().is_dir() {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Every complete run under `outputs/{method}/{dataset}/` for the given methods and trained datasets
/// (all datasets present when `trained_datasets` is empty), with the reasons other directories were
/// passed over.
pub fn discover(
    outputs: &Path,
    methods: &[TrainingMethod],
    trained_datasets: &[String],
) -> Result<(Vec<AdapterRun>, Vec<String>)> {
    let mut runs = Vec::new();
    let mut passed_over = Vec::new();
    for method in methods {
        let method_dir = outputs.join(method.to_string());
        if !method_dir.is_dir() {
            continue;
        }
        let dataset_dirs: Vec<PathBuf> = if trained_datasets.is_empty() {
            sorted_subdirs(&method_dir)?
        } else {
            trained_datasets
                .iter()
                .map(|d| method_dir.join(d))
                .filter(|d| d.is_dir())
                .collect()
        };
        for dataset_dir in dataset_dirs {
            let dataset = dataset_dir
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            for run_dir in sorted_subdirs(&dataset_dir)? {
                match AdapterRun::read(&run_dir, Some(*method), Some(&dataset))? {
                    Ok(run) => runs.push(run),
                    Err(reason) => passed_over.push(reason),
                }
            }
        }
    }
    Ok((runs, passed_over))
}

/// The seed's selection options. An empty list selects everything.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Filters {
    /// The evaluated base model's short name (last path component of its id).
    pub model_name: String,
    pub lora_types: Vec<String>,
    pub lora_rs: Vec<usize>,
    pub lora_alphas: Vec<f64>,
    pub ia3_types: Vec<String>,
    pub num_virtual_tokens: Vec<usize>,
    /// Training T (`num_generated_tokens`).
    pub num_tokens: Vec<usize>,
    /// Training N (`num_train_examples`).
    pub num_examples: Vec<usize>,
    pub lrs: Vec<f64>,
    pub run_indices: Vec<u32>,
    pub label_types: Vec<String>,
    pub ce_loss_weights: Vec<f64>,
    pub tokl_top_k: Vec<String>,
    /// Select LDR runs (and only those) when set; non-LDR runs otherwise (as the seed).
    pub ldr_mode: bool,
    pub num_labelled_samples: Vec<usize>,
    pub num_unlabelled_samples: Vec<usize>,
    pub max_permutations: Vec<usize>,
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-300)
}

/// Whether `value` passes `allowed` (empty = everything); a missing value fails a non-empty filter.
fn pass<T: fmt::Debug>(
    key: &str,
    allowed: &[T],
    value: Option<&T>,
    eq: impl Fn(&T, &T) -> bool,
) -> std::result::Result<(), String> {
    if allowed.is_empty() {
        return Ok(());
    }
    match value {
        Some(v) if allowed.iter().any(|a| eq(a, v)) => Ok(()),
        Some(v) => Err(format!("{key} {v:?} not in {allowed:?}")),
        None => Err(format!("training_config.json has no {key}")),
    }
}

impl Filters {
    /// `Ok` when the run is selected, else why not.
    pub fn check(&self, run: &AdapterRun) -> std::result::Result<(), String> {
        let c = &run.config;
        match c.model_name.as_deref() {
            Some(m) if m == self.model_name => {}
            Some(m) => {
                return Err(format!(
                    "trained on base model {m:?}, evaluating {:?}",
                    self.model_name
                ));
            }
            None => {} // Seed configs without model_name: the fingerprint / PEFT shape checks still apply.
        }
        let eq = |a: &String, b: &String| a == b;
        let equ = |a: &usize, b: &usize| a == b;
        let eqf = |a: &f64, b: &f64| close(*a, *b);
        match run.method.adapter {
            AdapterKind::Lora => {
                pass("lora_type", &self.lora_types, c.lora_type.as_ref(), eq)?;
                pass("lora_r", &self.lora_rs, c.lora_r.as_ref(), equ)?;
                pass("lora_alpha", &self.lora_alphas, c.lora_alpha.as_ref(), eqf)?;
            }
            AdapterKind::Ia3 => pass("ia3_type", &self.ia3_types, c.ia3_type.as_ref(), eq)?,
            AdapterKind::Prompt | AdapterKind::Prefix => pass(
                "num_virtual_tokens",
                &self.num_virtual_tokens,
                c.num_virtual_tokens.as_ref(),
                equ,
            )?,
        }
        pass(
            "num_generated_tokens",
            &self.num_tokens,
            c.num_generated_tokens.as_ref(),
            equ,
        )?;
        pass(
            "num_train_examples",
            &self.num_examples,
            run.num_train_examples().as_ref(),
            equ,
        )?;
        pass("lr", &self.lrs, c.lr.as_ref(), eqf)?;
        pass("run_idx", &self.run_indices, c.run_idx.as_ref(), |a, b| {
            a == b
        })?;
        if run.method.objective.uses_label_type() {
            pass("label_type", &self.label_types, c.label_type.as_ref(), eq)?;
        }
        if run.method.objective == Objective::Tna {
            pass(
                "ce_loss_weight",
                &self.ce_loss_weights,
                c.ce_loss_weight.as_ref(),
                eqf,
            )?;
        }
        if run.method.objective == Objective::Tokl {
            pass("tokl_top_k", &self.tokl_top_k, c.tokl_top_k.as_ref(), eq)?;
        }
        if c.ldr_mode != self.ldr_mode {
            return Err(if c.ldr_mode {
                "an LDR run (pass --ldr-mode to select LDR runs)".to_string()
            } else {
                "not an LDR run (--ldr-mode selects LDR runs only)".to_string()
            });
        }
        if self.ldr_mode {
            pass(
                "num_labelled_samples",
                &self.num_labelled_samples,
                c.num_labelled_samples.as_ref(),
                equ,
            )?;
            pass(
                "num_unlabelled_samples",
                &self.num_unlabelled_samples,
                c.num_unlabelled_samples.as_ref(),
                equ,
            )?;
            pass(
                "max_permutations",
                &self.max_permutations,
                c.max_permutations.as_ref(),
                equ,
            )?;
        }
        if run.num_train_examples().is_none() || c.run_idx.is_none() {
            return Err(
                "training_config.json lacks num_train_examples or run_idx (needed to pick its demo set)"
                    .to_string(),
            );
        }
        Ok(())
    }
}

/// Checks the run's recorded base-model fingerprint (`ia2.base_model_fingerprint`, written by `ia2 train`
/// with [`crate::fingerprint::base_model_fingerprint`]) against the evaluated model's. `Ok(Some(warning))`
/// when the run records none (a seed run).
pub fn check_fingerprint(run: &AdapterRun, fingerprint: &str) -> Result<Option<String>> {
    match run.config.base_model_fingerprint.as_deref() {
        None => Ok(Some(format!(
            "{}: no ia2.base_model_fingerprint in training_config.json (a seed run?): only model_name and tensor shapes are checked",
            run.dir.display()
        ))),
        Some(recorded) if recorded != fingerprint => bail!(
            "adapter {} was trained on a different base model: its training_config.json records base_model_fingerprint {recorded}{}, the evaluated model has {fingerprint}",
            run.dir.display(),
            run.config
                .ia2_model_id
                .as_deref()
                .map(|m| format!(" (model_id {m})"))
                .unwrap_or_default()
        ),
        Some(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_types_parse() {
        assert_eq!(ModelType::parse("base").unwrap(), ModelType::Base);
        assert_eq!(ModelType::parse("ia3-act").unwrap().to_string(), "ia3-act");
        let e = ModelType::parse("foo-act").unwrap_err();
        assert!(format!("{e:#}").contains("or base"));
    }
}
