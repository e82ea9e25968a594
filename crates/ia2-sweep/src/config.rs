//! The experiment: one [`SweepConfig`], from a TOML file a researcher keeps under version control and/or the
//! seed's batch options, with `--set key=value` overrides. Keys are the seed's option names in snake_case;
//! training pass-through options live under `[train]`, evaluation under `[eval]`, data preparation under
//! `[data]`, execution under `[execution]` and `[slurm]`.
//!
//! ```toml
//! model = "builtin:tiny-qwen3"
//! training_methods = ["tok", "act", "a2t", "t2a"]
//! datasets = ["toy_task"]
//! num_train_examples = [4, 8]
//! lrs = [0.01, 0.03]
//! num_runs = 2
//! [train]
//! num_train_epochs = 1
//! [eval]
//! uncertainty_analysis = true
//! [[data.toy]]
//! name = "toy_task"
//! ```
//!
//! Everything is checked before anything runs ([`SweepConfig::validate`]); an unknown key, method or dataset
//! and impossible combinations are errors that name the key.

use anyhow::{Context, Result, bail, ensure};
use ia2_train::{LabelType, TopK, TrainingMethod};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::path::{Path, PathBuf};

/// The whole experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SweepConfig {
    /// Base model: a local Hugging Face directory or `builtin:tiny-qwen3` / `builtin:tiny-llama`.
    pub model: String,
    /// Hugging Face hub id (resolved from the local cache); replaces `model` when set.
    pub model_id: Option<String>,
    pub revision: Option<String>,
    /// `f32`, `bf16` or `f16`.
    pub dtype: String,
    /// `cpu` or `cuda[:N]`.
    pub device: String,
    /// Where `data/<name>/main.json` and the training sets live.
    pub data_dir: PathBuf,
    /// Runs (`<output_dir>/<method>/<dataset>/<run>/`), teacher cache and evaluations.
    pub output_dir: PathBuf,

    // --- the grid (the seed's batch options) ---
    pub training_methods: Vec<String>,
    pub datasets: Vec<String>,
    pub num_generated_tokens: Vec<usize>,
    pub num_train_examples: Vec<usize>,
    pub lrs: Vec<f64>,
    pub lora_types: Vec<String>,
    pub lora_rs: Vec<usize>,
    pub lora_alphas: Vec<usize>,
    pub ia3_types: Vec<String>,
    pub num_virtual_tokens_list: Vec<usize>,
    /// `icl_outputs` and/or `ground_truth` (methods that use a label type).
    pub label_types: Vec<String>,
    /// tna's w.
    pub ce_loss_weights: Vec<f64>,
    /// tokl targets: `all` or k.
    pub tokl_top_k: Vec<String>,
    /// Runs 0..num_runs of every grid point.
    pub num_runs: usize,
    /// Low-data regime: N labelled demos, M unlabelled queries, K permutations.
    pub ldr_mode: bool,
    pub num_labelled_samples: Vec<usize>,
    pub num_unlabelled_samples: Vec<usize>,
    pub max_permutations: Vec<usize>,

    pub train: TrainOptions,
    pub data: DataOptions,
    pub eval: EvalOptions,
    pub report: ReportOptions,
    pub execution: ExecutionOptions,
    pub slurm: SlurmOptions,
}

impl Default for SweepConfig {
    fn default() -> Self {
        SweepConfig {
            model: "builtin:tiny-qwen3".into(),
            model_id: None,
            revision: None,
            dtype: "f32".into(),
            device: "cpu".into(),
            data_dir: "data".into(),
            output_dir: "outputs".into(),
            training_methods: vec!["tok".into(), "act".into()],
            datasets: vec!["sst2".into()],
            num_generated_tokens: vec![1],
            num_train_examples: vec![4],
            lrs: vec![1e-4],
            lora_types: vec!["qko".into()],
            lora_rs: vec![8],
            lora_alphas: vec![8],
            ia3_types: vec!["qko".into()],
            num_virtual_tokens_list: vec![20],
            label_types: vec!["icl_outputs".into()],
            ce_loss_weights: vec![0.02],
            tokl_top_k: vec!["all".into()],
            num_runs: 5,
            ldr_mode: false,
            num_labelled_samples: vec![8],
            num_unlabelled_samples: vec![1000],
            max_permutations: vec![24],
            train: TrainOptions::default(),
            data: DataOptions::default(),
            eval: EvalOptions::default(),
            report: ReportOptions::default(),
            execution: ExecutionOptions::default(),
            slurm: SlurmOptions::default(),
        }
    }
}

/// Options passed through to every training (`ia2 train`'s, with its defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainOptions {
    pub num_train_epochs: usize,
    pub batch_size: usize,
    pub micro_batch: usize,
    /// `ia2 train --recompute-mlp` (less memory, same numbers; not part of a run's identity). Written to
    /// plan files only when set, so plans of earlier versions read back unchanged.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub recompute_mlp: bool,
    pub patience: usize,
    pub dev_eval_steps: usize,
    pub gradient_clip_val: Option<f64>,
    pub seed: u64,
    pub teacher_batch: usize,
    pub shuffle_demos: bool,
    pub num_shuffles: usize,
    pub fixed_demos: bool,
    pub log_weight_norms: bool,
    pub log_checkpoints: bool,
    pub checkpoint_frequency: usize,
}

impl Default for TrainOptions {
    /// `ia2 train`'s own defaults (one source: `TrainConfig::default`).
    fn default() -> Self {
        let t = ia2_train::TrainConfig::default();
        TrainOptions {
            num_train_epochs: t.num_train_epochs,
            batch_size: t.batch_size,
            micro_batch: t.micro_batch,
            recompute_mlp: t.recompute_mlp,
            patience: t.patience,
            dev_eval_steps: t.dev_eval_steps,
            gradient_clip_val: t.gradient_clip_val,
            seed: t.seed,
            teacher_batch: t.teacher_batch,
            shuffle_demos: t.shuffle_demos,
            num_shuffles: t.num_shuffles,
            fixed_demos: t.fixed_demos,
            log_weight_norms: t.log_weight_norms,
            log_checkpoints: t.log_checkpoints,
            checkpoint_frequency: t.checkpoint_frequency,
        }
    }
}

/// A held-out toy task written as a dataset (`ia2 toy dataset`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToyDataset {
    pub name: String,
    pub task_seed: u64,
    pub num_train: usize,
    pub num_val: usize,
}

impl Default for ToyDataset {
    fn default() -> Self {
        ToyDataset {
            name: "toy_task".into(),
            task_seed: 1,
            num_train: 64,
            num_val: 32,
        }
    }
}

/// A benchmark prepared from a raw source (`ia2 data prepare`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrepareDataset {
    pub dataset: String,
    pub source: Option<PathBuf>,
    pub tokenizer: Option<PathBuf>,
    pub num_train_samples: usize,
    pub num_val_samples: usize,
}

impl Default for PrepareDataset {
    fn default() -> Self {
        PrepareDataset {
            dataset: String::new(),
            source: None,
            tokenizer: None,
            num_train_samples: 2000,
            num_val_samples: 500,
        }
    }
}

/// Data preparation: which datasets to create when `main.json` is missing, and the training sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataOptions {
    pub toy: Vec<ToyDataset>,
    pub prepare: Vec<PrepareDataset>,
    /// Build missing training sets (`ia2 data train-sets`) as jobs of the sweep.
    pub train_sets: bool,
    pub max_icl_demos: usize,
    pub num_dev_examples: usize,
}

impl Default for DataOptions {
    fn default() -> Self {
        DataOptions {
            toy: Vec::new(),
            prepare: Vec::new(),
            train_sets: true,
            max_icl_demos: 48,
            num_dev_examples: 48,
        }
    }
}

/// Evaluation of every trained run (and of the base model), `ia2 eval`'s options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalOptions {
    pub enabled: bool,
    /// Evaluate the base model (with and without ICL) on every evaluation dataset, N and run.
    pub base: bool,
    /// Evaluation datasets (empty: each run's trained dataset).
    pub eval_datasets: Vec<String>,
    /// Where demos come from (empty: the evaluation dataset).
    pub icl_source_datasets: Vec<String>,
    pub icl_max_demos: Vec<usize>,
    pub num_gen_tokens_eval: Option<usize>,
    pub uncertainty_analysis: bool,
    pub top_k: usize,
    pub max_eval_examples: Option<usize>,
    pub batch_size: usize,
    pub no_merge: bool,
}

impl Default for EvalOptions {
    /// `ia2 eval`'s own defaults (one source: `EvalConfig::default`).
    fn default() -> Self {
        let e = ia2_eval::EvalConfig::default();
        EvalOptions {
            enabled: true,
            base: true,
            eval_datasets: e.eval_datasets,
            icl_source_datasets: e.icl_source_datasets,
            icl_max_demos: e.icl_max_demos,
            num_gen_tokens_eval: e.num_gen_tokens_eval,
            uncertainty_analysis: e.uncertainty_analysis,
            top_k: e.top_k,
            max_eval_examples: e.max_eval_examples,
            batch_size: e.batch_size,
            no_merge: e.no_merge,
        }
    }
}

/// The final report (`ia2-report`), run when that component is available.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportOptions {
    pub enabled: bool,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions { enabled: true }
    }
}

/// How jobs run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutionOptions {
    /// `local` or `slurm`.
    pub executor: String,
    /// Local worker processes.
    pub max_parallel: usize,
    /// Attempts per job (a failure is retried until this many attempts failed).
    pub max_attempts: u32,
    /// A job running longer than this is killed and counted as a failed attempt.
    pub job_timeout_s: Option<f64>,
}

impl Default for ExecutionOptions {
    fn default() -> Self {
        ExecutionOptions {
            executor: "local".into(),
            max_parallel: 1,
            max_attempts: 2,
            job_timeout_s: None,
        }
    }
}

/// `sbatch` options (passed through when set).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlurmOptions {
    pub partition: Option<String>,
    pub time: Option<String>,
    pub mem: Option<String>,
    pub cpus_per_task: Option<u32>,
    pub gres: Option<String>,
    pub account: Option<String>,
    /// Further `sbatch` arguments, verbatim.
    pub extra_args: Vec<String>,
    /// The `ia2` binary the tasks run (default: this binary; it must be on a filesystem the nodes see).
    pub ia2_bin: Option<PathBuf>,
    /// Array tasks of a stage submitted as one job array at most this many at a time (`%N`), 0 = no limit.
    pub array_parallel: usize,
}

/// The schema of the keys: the default configuration as JSON (keeps `null` options, unlike TOML).
fn schema() -> Json {
    serde_json::to_value(SweepConfig::default()).expect("the default config serializes")
}

fn known_keys(table: &serde_json::Map<String, Json>) -> String {
    table.keys().cloned().collect::<Vec<_>>().join(", ")
}

/// Checks every key of `table` against the schema (naming the full dotted key of an unknown one) and wraps a
/// scalar given for a list into a one-element list.
fn check_keys(
    table: &mut toml::Table,
    schema: &serde_json::Map<String, Json>,
    at: &str,
) -> Result<()> {
    for (key, value) in table.iter_mut() {
        let full = if at.is_empty() {
            key.clone()
        } else {
            format!("{at}.{key}")
        };
        let Some(expected) = schema.get(key) else {
            bail!(
                "unknown key `{full}` (known keys{}: {})",
                if at.is_empty() {
                    String::new()
                } else {
                    format!(" of [{at}]")
                },
                known_keys(schema)
            );
        };
        match expected {
            Json::Object(sub) => match value {
                toml::Value::Table(t) => check_keys(t, sub, &full)?,
                _ => bail!("`{full}` must be a table ([{full}])"),
            },
            Json::Array(_) => {
                if let toml::Value::Array(items) = value {
                    // Arrays of tables ([[data.toy]]) are checked against their element type.
                    if full == "data.toy" || full == "data.prepare" {
                        let elem = if full == "data.toy" {
                            serde_json::to_value(ToyDataset::default())?
                        } else {
                            serde_json::to_value(PrepareDataset::default())?
                        };
                        let elem = elem.as_object().cloned().unwrap_or_default();
                        for item in items.iter_mut() {
                            match item {
                                toml::Value::Table(t) => check_keys(t, &elem, &full)?,
                                _ => bail!("`{full}` entries must be tables ([[{full}]])"),
                            }
                        }
                    }
                } else {
                    let v = std::mem::replace(value, toml::Value::Boolean(false));
                    *value = toml::Value::Array(vec![v]);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Parses a `--set` value: TOML syntax (`1`, `0.5`, `true`, `["a", "b"]`, `"x"`), else a bare string.
pub fn parse_value(raw: &str) -> toml::Value {
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

/// Sets the dotted `key` of `table` to `value` (creating tables on the way).
pub fn set_key(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<()> {
    let parts: Vec<&str> = key.split('.').collect();
    ensure!(
        parts.iter().all(|p| !p.is_empty()),
        "invalid key {key:?} (expected e.g. `lrs` or `train.num_train_epochs`)"
    );
    let mut t = table;
    for p in &parts[..parts.len() - 1] {
        let entry = t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = match entry {
            toml::Value::Table(t) => t,
            _ => bail!("`{key}`: `{p}` is not a table"),
        };
    }
    t.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

impl SweepConfig {
    /// Builds the configuration: defaults, then `file` (TOML), then `overrides` (typed values, e.g. from the
    /// command line's batch options), then `sets` (`key=value`, TOML syntax or a bare string). Keys accept
    /// kebab-case spellings (`num-train-examples`) as well.
    pub fn load(
        file: Option<&Path>,
        overrides: &[(String, toml::Value)],
        sets: &[String],
    ) -> Result<SweepConfig> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                text.parse::<toml::Table>()
                    .with_context(|| format!("{}: not valid TOML", path.display()))?
            }
            None => toml::Table::new(),
        };
        normalize_keys(&mut table);
        for (k, v) in overrides {
            set_key(&mut table, &k.replace('-', "_"), v.clone())?;
        }
        for s in sets {
            let (k, v) = s
                .split_once('=')
                .with_context(|| format!("--set {s:?}: expected key=value"))?;
            set_key(
                &mut table,
                &k.trim().replace('-', "_"),
                parse_value(v.trim()),
            )
            .with_context(|| format!("--set {s:?}"))?;
        }
        Self::from_table(table).with_context(|| {
            let source = match file {
                Some(p) => format!("experiment file {}", p.display()),
                None => "sweep options".to_string(),
            };
            if sets.is_empty() {
                source
            } else {
                format!("{source} with --set {}", sets.join(" --set "))
            }
        })
    }

    /// The configuration of a TOML table (keys checked, then deserialized).
    pub fn from_table(mut table: toml::Table) -> Result<SweepConfig> {
        let schema = schema();
        check_keys(
            &mut table,
            schema.as_object().expect("the config is a table"),
            "",
        )?;
        let config: SweepConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| anyhow::anyhow!("{}", e.to_string().trim()))?;
        Ok(config)
    }

    /// The configuration as TOML (what `ia2 sweep run --dry-run` can print and a plan file records).
    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string(self)?)
    }

    /// Relative `data_dir` / `output_dir` (and data sources) made absolute against `cwd`, so workers started
    /// elsewhere (Slurm) read the same files.
    pub fn absolutize(&mut self, cwd: &Path) {
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = cwd.join(&*p);
            }
        };
        abs(&mut self.data_dir);
        abs(&mut self.output_dir);
        for p in &mut self.data.prepare {
            if let Some(s) = &mut p.source {
                abs(s);
            }
            if let Some(t) = &mut p.tokenizer {
                abs(t);
            }
        }
        if !self.model.starts_with("builtin:") && self.model_id.is_none() {
            let p = PathBuf::from(&self.model);
            if p.is_relative() {
                self.model = cwd.join(p).display().to_string();
            }
        }
    }

    /// The parsed training methods.
    pub fn methods(&self) -> Result<Vec<TrainingMethod>> {
        let mut out = Vec::new();
        for s in &self.training_methods {
            let m: TrainingMethod = s
                .parse()
                .map_err(|e: anyhow::Error| anyhow::anyhow!("training_methods: {e}"))?;
            if !out.contains(&m) {
                out.push(m);
            }
        }
        Ok(out)
    }

    pub fn label_type_values(&self) -> Result<Vec<LabelType>> {
        self.label_types
            .iter()
            .map(|s| match s.as_str() {
                "icl_outputs" | "icl-outputs" => Ok(LabelType::IclOutputs),
                "ground_truth" | "ground-truth" => Ok(LabelType::GroundTruth),
                other => bail!(
                    "label_types: unknown label type {other:?} (expected icl_outputs or ground_truth)"
                ),
            })
            .collect()
    }

    pub fn top_k_values(&self) -> Result<Vec<TopK>> {
        self.tokl_top_k
            .iter()
            .map(|s| {
                s.parse::<TopK>()
                    .map_err(|e| anyhow::anyhow!("tokl_top_k: {e}"))
            })
            .collect()
    }

    /// Datasets the sweep creates itself (toy tasks, prepared benchmarks).
    pub fn declared_datasets(&self) -> Vec<String> {
        self.data
            .toy
            .iter()
            .map(|t| t.name.clone())
            .chain(self.data.prepare.iter().map(|p| p.dataset.clone()))
            .collect()
    }

    /// Every check that needs no model: keys were checked on load; here values and combinations.
    pub fn validate(&self) -> Result<()> {
        let nonempty = |name: &str, len: usize| -> Result<()> {
            ensure!(len > 0, "`{name}` must list at least one value");
            Ok(())
        };
        nonempty("training_methods", self.training_methods.len())?;
        nonempty("datasets", self.datasets.len())?;
        nonempty("num_generated_tokens", self.num_generated_tokens.len())?;
        nonempty("num_train_examples", self.num_train_examples.len())?;
        nonempty("lrs", self.lrs.len())?;
        let methods = self.methods()?;
        let uses = |pred: &dyn Fn(&TrainingMethod) -> bool| methods.iter().any(pred);
        use ia2_train::{AdapterKind, Objective};
        if uses(&|m| m.adapter == AdapterKind::Lora) {
            nonempty("lora_types", self.lora_types.len())?;
            nonempty("lora_rs", self.lora_rs.len())?;
            nonempty("lora_alphas", self.lora_alphas.len())?;
        }
        if uses(&|m| m.adapter == AdapterKind::Ia3) {
            nonempty("ia3_types", self.ia3_types.len())?;
        }
        if uses(&|m| matches!(m.adapter, AdapterKind::Prompt | AdapterKind::Prefix)) {
            nonempty(
                "num_virtual_tokens_list",
                self.num_virtual_tokens_list.len(),
            )?;
        }
        if uses(&|m| m.objective.uses_label_type()) {
            nonempty("label_types", self.label_types.len())?;
        }
        if uses(&|m| m.objective == Objective::Tna) {
            nonempty("ce_loss_weights", self.ce_loss_weights.len())?;
        }
        if uses(&|m| m.objective == Objective::Tokl) {
            nonempty("tokl_top_k", self.tokl_top_k.len())?;
            ensure!(
                self.label_type_values()?.contains(&LabelType::IclOutputs),
                "training_methods: tokl trains on the ICL distributions, but label_types ({}) has no icl_outputs",
                self.label_types.join(", ")
            );
        }
        self.label_type_values()?;
        self.top_k_values()?;
        for &t in &self.num_generated_tokens {
            ensure!(t > 0, "num_generated_tokens: T must be at least 1, got {t}");
        }
        for &n in &self.num_train_examples {
            ensure!(
                n >= 2,
                "num_train_examples: N must be at least 2 (each example's demos are the other N−1), got {n}"
            );
        }
        for &lr in &self.lrs {
            ensure!(
                lr > 0.0 && lr.is_finite(),
                "lrs: learning rates must be positive, got {lr}"
            );
        }
        for &w in &self.ce_loss_weights {
            ensure!(
                (0.0..=1.0).contains(&w),
                "ce_loss_weights: w must be in [0, 1], got {w}"
            );
        }
        for t in &self.lora_types {
            ia2_train::config::lora_targets(t).with_context(|| format!("lora_types: {t:?}"))?;
        }
        for t in &self.ia3_types {
            ia2_train::config::lora_targets(t).with_context(|| format!("ia3_types: {t:?}"))?;
        }
        for &r in &self.lora_rs {
            ensure!(r > 0, "lora_rs: the rank must be at least 1");
        }
        for &a in &self.lora_alphas {
            ensure!(a > 0, "lora_alphas: alpha must be at least 1");
        }
        for &v in &self.num_virtual_tokens_list {
            ensure!(v > 0, "num_virtual_tokens_list: at least 1 virtual token");
        }
        ensure!(self.num_runs >= 1, "num_runs must be at least 1");
        if self.ldr_mode {
            nonempty("num_labelled_samples", self.num_labelled_samples.len())?;
            nonempty("num_unlabelled_samples", self.num_unlabelled_samples.len())?;
            nonempty("max_permutations", self.max_permutations.len())?;
            ensure!(
                !self.train.fixed_demos,
                "ldr_mode and train.fixed_demos cannot be combined (LDR files have their own demos)"
            );
        }
        match self.dtype.as_str() {
            "f32" | "float" | "float32" | "bf16" | "bfloat16" | "f16" | "float16" | "half" => {}
            other => bail!("dtype: unknown {other:?} (expected f32, bf16 or f16)"),
        }
        let t = &self.train;
        ensure!(t.batch_size > 0, "train.batch_size must be at least 1");
        ensure!(
            t.dev_eval_steps > 0,
            "train.dev_eval_steps must be at least 1"
        );
        ensure!(
            t.teacher_batch > 0,
            "train.teacher_batch must be at least 1"
        );
        ensure!(t.num_shuffles > 0, "train.num_shuffles must be at least 1");
        // Datasets: a registry benchmark, a dataset the sweep creates, or one already prepared.
        let declared = self.declared_datasets();
        for (key, names) in [
            ("datasets", &self.datasets),
            ("eval.eval_datasets", &self.eval.eval_datasets),
            ("eval.icl_source_datasets", &self.eval.icl_source_datasets),
        ] {
            for name in names {
                check_dataset_name(key, name)?;
                let known =
                    declared.contains(name) || self.data_dir.join(name).join("main.json").is_file();
                if !known {
                    if ia2_data::registry::DatasetId::parse(name).is_ok() {
                        bail!(
                            "{key}: dataset {name:?} is not prepared ({} is missing): add a [[data.prepare]] \
                             entry with its source (or run `ia2 data prepare --dataset {name}`)",
                            self.data_dir.join(name).join("main.json").display()
                        );
                    }
                    bail!(
                        "{key}: unknown dataset {name:?}: not one of the benchmarks ({}), not declared under \
                         [[data.toy]] / [[data.prepare]], and no {} exists",
                        ia2_data::registry::DatasetId::all()
                            .iter()
                            .map(|d| d.name())
                            .collect::<Vec<_>>()
                            .join(", "),
                        self.data_dir.join(name).join("main.json").display()
                    );
                }
            }
        }
        for t in &self.data.toy {
            check_dataset_name("data.toy.name", &t.name)?;
            ensure!(
                t.num_train > 0 && t.num_val > 0,
                "data.toy {}: num_train and num_val must be at least 1",
                t.name
            );
            let biggest = self.num_train_examples.iter().max().copied().unwrap_or(0);
            ensure!(
                t.num_train >= biggest,
                "data.toy {}: num_train ({}) is smaller than the largest N in num_train_examples ({biggest})",
                t.name,
                t.num_train
            );
        }
        for p in &self.data.prepare {
            ia2_data::registry::DatasetId::parse(&p.dataset)
                .with_context(|| format!("data.prepare: unknown benchmark {:?}", p.dataset))?;
        }
        let e = &self.eval;
        if e.enabled {
            ensure!(
                !e.icl_max_demos.is_empty(),
                "eval.icl_max_demos must list at least one demo count"
            );
            ensure!(e.top_k > 0, "eval.top_k must be at least 1");
            ensure!(e.batch_size > 0, "eval.batch_size must be at least 1");
            if let Some(t) = e.num_gen_tokens_eval {
                ensure!(t > 0, "eval.num_gen_tokens_eval must be at least 1");
            }
            if let Some(k) = e.max_eval_examples {
                ensure!(k > 0, "eval.max_eval_examples must be at least 1");
            }
        }
        let x = &self.execution;
        ensure!(
            matches!(x.executor.as_str(), "local" | "slurm"),
            "execution.executor: unknown executor {:?} (expected local or slurm)",
            x.executor
        );
        ensure!(
            x.max_parallel >= 1,
            "execution.max_parallel must be at least 1"
        );
        ensure!(
            x.max_attempts >= 1,
            "execution.max_attempts must be at least 1"
        );
        if let Some(t) = x.job_timeout_s {
            ensure!(t > 0.0, "execution.job_timeout_s must be positive");
        }
        Ok(())
    }
}

fn check_dataset_name(key: &str, name: &str) -> Result<()> {
    ensure!(
        !name.is_empty() && !name.contains(['/', '\\']) && name != "." && name != "..",
        "{key}: invalid dataset name {name:?}"
    );
    Ok(())
}

/// kebab-case keys of a file are accepted as the snake_case ones.
fn normalize_keys(table: &mut toml::Table) {
    let keys: Vec<String> = table.keys().cloned().collect();
    for k in keys {
        let mut v = table.remove(&k).expect("listed key");
        if let toml::Value::Table(t) = &mut v {
            normalize_keys(t);
        }
        if let toml::Value::Array(items) = &mut v {
            for item in items {
                if let toml::Value::Table(t) = item {
                    normalize_keys(t);
                }
            }
        }
        table.insert(k.replace('-', "_"), v);
    }
}
