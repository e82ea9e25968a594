//! Options of `ia2 eval` as a plain configuration: the seed's options, with empty selection lists meaning
//! "everything".

use crate::select::{Filters, ModelType};
use anyhow::{Result, bail, ensure};
use ia2_load::ModelOptions;
use ia2_runs::TrainingMethod;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::PathBuf;

/// Everything `ia2 eval` needs, as plain data: build it with a struct literal and
/// `..EvalConfig::default()` (the defaults are the command line's; empty lists select everything). The flags
/// are in the binary, `crates/ia2/src/cli/eval.rs`, each named like its field here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// The base model; `model.adapter`: evaluate exactly this run directory instead of discovering runs.
    pub model: ModelOptions,

    // --- what to evaluate ---
    /// Model types: `base` and/or training methods ([ia3-|prompt-|prefix-]{tok,tokl,act,tna,a2t,t2a}).
    /// Default: every training method (not the base model).
    pub model_types: Vec<String>,
    /// Datasets the adapters were trained on (default: all found under --outputs-dir).
    pub trained_datasets: Vec<String>,
    /// Directory holding `{training_method}/{dataset}/{run}/` (results go to its `evaluations/`).
    pub outputs_dir: PathBuf,
    /// Root data directory (`<data-dir>/<name>/main.json`, `train/`, `val/`).
    pub data_dir: PathBuf,

    // --- filters on the runs' training_config.json (empty = all) ---
    /// LoRA types (`lora_type`, e.g. qko).
    pub lora_types: Vec<String>,
    /// LoRA ranks.
    pub lora_rs: Vec<usize>,
    /// LoRA alphas.
    pub lora_alphas: Vec<f64>,
    /// IA3 types (`ia3_type`).
    pub ia3_types: Vec<String>,
    /// Virtual-token counts of prompt/prefix tuning.
    pub num_virtual_tokens_list: Vec<usize>,
    /// Training T (`num_generated_tokens`).
    pub num_tokens: Vec<usize>,
    /// Training-set sizes N. Also the N of the base model's demo sets.
    pub num_examples: Vec<usize>,
    /// Learning rates.
    pub lrs: Vec<f64>,
    /// Run indices. Also the runs of the base model's demo sets.
    pub run_indices: Vec<u32>,
    /// Label types of tok/tokl/a2t/t2a runs (ground_truth, icl_outputs).
    pub label_types: Vec<String>,
    /// CE loss weights of tna runs.
    pub ce_loss_weights: Vec<f64>,
    /// Top-k of tokl runs (`all` or a number).
    pub tokl_top_k: Vec<String>,
    /// Select low-data-regime (LDR) runs, and only those.
    pub ldr_mode: bool,
    /// LDR: labelled samples N.
    pub num_labelled_samples: Vec<usize>,
    /// LDR: unlabelled samples M.
    pub num_unlabelled_samples: Vec<usize>,
    /// LDR: maximum demo permutations K.
    pub max_permutations: Vec<usize>,

    // --- evaluation ---
    /// Evaluation datasets (their val_examples). Default: each run's trained dataset; required for `base`.
    pub eval_datasets: Vec<String>,
    /// Datasets the ICL demos come from (held-out pool of `<source>/train/{N}_{run}.json`). Default: the
    /// evaluation dataset itself.
    pub icl_source_datasets: Vec<String>,
    /// Requested demo counts; each is capped at N-1 and at the pool size.
    pub icl_max_demos: Vec<usize>,
    /// Generated tokens T per example. Default: 1 for classification datasets, 200 otherwise.
    pub num_gen_tokens_eval: Option<usize>,
    /// Uncertainty analysis: T = 1, next-token distributions (top-k, label set, ECE); T > 1, per-step
    /// top-k distributions.
    pub uncertainty_analysis: bool,
    /// k of the top-k distributions.
    pub top_k: usize,
    /// Evaluate only the first K val_examples (part of the result file name).
    pub max_eval_examples: Option<usize>,
    /// Prompts per forward batch (left-padded; prompts are sorted by length first).
    pub batch_size: usize,
    /// Pass LoRA/IA3 adapters to the forward pass instead of merging them into a copy of the weights.
    pub no_merge: bool,
    /// Re-evaluate even when a finished result file exists.
    pub overwrite: bool,
    /// Continue with the next evaluation after one fails (the failures are listed and the command fails
    /// at the end).
    pub keep_going: bool,
    /// List the evaluations (and which are already done) without running them.
    pub dry_run: bool,
    /// Accepted for the seed's scripts: both modes are always evaluated.
    pub eval_with_icl: bool,
    /// Accepted for the seed's scripts: LoRA/IA3 are merged unless --no-merge.
    pub merge_lora: bool,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            model: ModelOptions::default(),
            model_types: Vec::new(),
            trained_datasets: Vec::new(),
            outputs_dir: "outputs".into(),
            data_dir: "data".into(),
            lora_types: Vec::new(),
            lora_rs: Vec::new(),
            lora_alphas: Vec::new(),
            ia3_types: Vec::new(),
            num_virtual_tokens_list: Vec::new(),
            num_tokens: Vec::new(),
            num_examples: Vec::new(),
            lrs: Vec::new(),
            run_indices: Vec::new(),
            label_types: Vec::new(),
            ce_loss_weights: Vec::new(),
            tokl_top_k: Vec::new(),
            ldr_mode: false,
            num_labelled_samples: Vec::new(),
            num_unlabelled_samples: Vec::new(),
            max_permutations: Vec::new(),
            eval_datasets: Vec::new(),
            icl_source_datasets: Vec::new(),
            icl_max_demos: vec![256],
            num_gen_tokens_eval: None,
            uncertainty_analysis: false,
            top_k: 10,
            max_eval_examples: None,
            batch_size: 8,
            no_merge: false,
            overwrite: false,
            keep_going: false,
            dry_run: false,
            eval_with_icl: false,
            merge_lora: false,
        }
    }
}

impl EvalConfig {
    /// The model types asked for (every training method when none is given).
    pub fn model_types(&self) -> Result<Vec<ModelType>> {
        if self.model_types.is_empty() {
            return Ok(TrainingMethod::all()
                .into_iter()
                .map(ModelType::Trained)
                .collect());
        }
        let mut out = Vec::new();
        for s in &self.model_types {
            let t = ModelType::parse(s)?;
            if !out.contains(&t) {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// Checks option values and combinations before anything is loaded.
    pub fn validate(&self) -> Result<()> {
        ensure!(self.batch_size > 0, "--batch-size must be at least 1");
        ensure!(self.top_k > 0, "--top-k must be at least 1");
        if let Some(t) = self.num_gen_tokens_eval {
            ensure!(t > 0, "--num-gen-tokens-eval must be at least 1");
        }
        if let Some(k) = self.max_eval_examples {
            ensure!(k > 0, "--max-eval-examples must be at least 1");
        }
        ensure!(
            !self.icl_max_demos.is_empty(),
            "--icl-max-demos needs at least one value"
        );
        if !self.ldr_mode
            && (!self.num_labelled_samples.is_empty()
                || !self.num_unlabelled_samples.is_empty()
                || !self.max_permutations.is_empty())
        {
            bail!(
                "--num-labelled-samples / --num-unlabelled-samples / --max-permutations filter LDR runs: add --ldr-mode"
            );
        }
        for name in self
            .trained_datasets
            .iter()
            .chain(&self.eval_datasets)
            .chain(&self.icl_source_datasets)
        {
            ensure!(
                !name.is_empty() && !name.contains(['/', '\\']) && name != "." && name != "..",
                "invalid dataset name {name:?}"
            );
        }
        self.model_types()?;
        // Bounded so that an absurd value is an error here, not an allocation abort later.
        for (flag, v, max) in [
            ("--batch-size", self.batch_size, 1usize << 20),
            ("--top-k", self.top_k, 1 << 20),
            (
                "--num-gen-tokens-eval",
                self.num_gen_tokens_eval.unwrap_or(1),
                1 << 20,
            ),
        ] {
            ensure!(v <= max, "{flag} {v} is implausibly large (at most {max})");
        }
        for &lr in &self.lrs {
            ensure!(
                lr.is_finite() && lr > 0.0,
                "--lrs: {lr} is not a positive learning rate"
            );
        }
        for &w in &self.ce_loss_weights {
            ensure!(
                (0.0..=1.0).contains(&w),
                "--ce-loss-weights: {w} is not in [0, 1]"
            );
        }
        for &a in &self.lora_alphas {
            ensure!(
                a.is_finite() && a > 0.0,
                "--lora-alphas: {a} is not a positive number"
            );
        }
        for (flag, values) in [
            ("--lora-rs", &self.lora_rs),
            ("--num-virtual-tokens-list", &self.num_virtual_tokens_list),
            ("--num-tokens", &self.num_tokens),
        ] {
            ensure!(
                values.iter().all(|&v| v > 0),
                "{flag}: values must be at least 1"
            );
        }
        for k in &self.tokl_top_k {
            ensure!(
                k == "all" || k.parse::<usize>().is_ok_and(|k| k > 0),
                "--tokl-top-k: expected `all` or a positive integer, got {k:?}"
            );
        }
        Ok(())
    }

    /// The filters of the runs' training configs, for base model `model_name`.
    pub fn filters(&self, model_name: &str) -> Filters {
        Filters {
            model_name: model_name.to_string(),
            lora_types: self.lora_types.clone(),
            lora_rs: self.lora_rs.clone(),
            lora_alphas: self.lora_alphas.clone(),
            ia3_types: self.ia3_types.clone(),
            num_virtual_tokens: self.num_virtual_tokens_list.clone(),
            num_tokens: self.num_tokens.clone(),
            num_examples: self.num_examples.clone(),
            lrs: self.lrs.clone(),
            run_indices: self.run_indices.clone(),
            label_types: self.label_types.clone(),
            ce_loss_weights: self.ce_loss_weights.clone(),
            tokl_top_k: self.tokl_top_k.clone(),
            ldr_mode: self.ldr_mode,
            num_labelled_samples: self.num_labelled_samples.clone(),
            num_unlabelled_samples: self.num_unlabelled_samples.clone(),
            max_permutations: self.max_permutations.clone(),
        }
    }

    /// Every option as JSON (recorded in each result and in the summary).
    pub fn to_json(&self) -> Value {
        let m = &self.model;
        json!({
            "model": m.model,
            "model_id": m.model_id,
            "revision": m.revision,
            "dtype": format!("{:?}", m.dtype).to_lowercase(),
            "adapter": m.adapter.as_ref().map(|p| p.display().to_string()),
            "device": m.device,
            "model_types": self.model_types,
            "trained_datasets": self.trained_datasets,
            "outputs_dir": self.outputs_dir.display().to_string(),
            "data_dir": self.data_dir.display().to_string(),
            "lora_types": self.lora_types,
            "lora_rs": self.lora_rs,
            "lora_alphas": self.lora_alphas,
            "ia3_types": self.ia3_types,
            "num_virtual_tokens_list": self.num_virtual_tokens_list,
            "num_tokens": self.num_tokens,
            "num_examples": self.num_examples,
            "lrs": self.lrs,
            "run_indices": self.run_indices,
            "label_types": self.label_types,
            "ce_loss_weights": self.ce_loss_weights,
            "tokl_top_k": self.tokl_top_k,
            "ldr_mode": self.ldr_mode,
            "num_labelled_samples": self.num_labelled_samples,
            "num_unlabelled_samples": self.num_unlabelled_samples,
            "max_permutations": self.max_permutations,
            "eval_datasets": self.eval_datasets,
            "icl_source_datasets": self.icl_source_datasets,
            "icl_max_demos": self.icl_max_demos,
            "num_gen_tokens_eval": self.num_gen_tokens_eval,
            "uncertainty_analysis": self.uncertainty_analysis,
            "top_k": self.top_k,
            "max_eval_examples": self.max_eval_examples,
            "batch_size": self.batch_size,
            "no_merge": self.no_merge,
            "overwrite": self.overwrite,
            "keep_going": self.keep_going,
            "dry_run": self.dry_run,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_types_default_to_every_method_and_validate_checks_values() {
        let a = EvalConfig {
            model_types: vec!["base".into(), "ia3-act".into(), "base".into()],
            eval_datasets: vec!["sst2".into()],
            ..EvalConfig::default()
        };
        assert_eq!(
            a.model_types().unwrap(),
            vec![
                ModelType::Base,
                ModelType::Trained("ia3-act".parse().unwrap())
            ]
        );
        a.validate().unwrap();
        let d = EvalConfig::default();
        assert_eq!(d.model_types().unwrap().len(), 24);
        assert_eq!(d.icl_max_demos, vec![256]);
        let bad = EvalConfig {
            model_types: vec!["nope".into()],
            ..EvalConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = EvalConfig {
            batch_size: 0,
            ..EvalConfig::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn serde_round_trip_and_missing_keys_take_defaults() {
        let a = EvalConfig {
            lrs: vec![1e-3],
            top_k: 3,
            ..EvalConfig::default()
        };
        let back: EvalConfig = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(back, a);
        let partial: EvalConfig = serde_json::from_str(r#"{"top_k": 3, "lrs": [0.001]}"#).unwrap();
        assert_eq!(partial, a);
        let err = serde_json::from_str::<EvalConfig>(r#"{"top-k": 3}"#).unwrap_err();
        assert!(err.to_string().contains("top-k"), "{err}");
    }
}
