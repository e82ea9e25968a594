//! `ia2 train` options as a plain configuration: the seed's options and defaults (except `model`, which
//! defaults to a built-in model so nothing is downloaded, and `dtype`, f32 on the CPU).

use crate::method::TrainingMethod;
use anyhow::{Context, Result, bail, ensure};
use ia2_load::ModelOptions;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `--label-type` and `--tokl-top-k` values (defined with the on-disk contract in [`ia2_runs`]).
pub use ia2_runs::labels::{LabelType, TopK};

/// Everything `ia2 train` / `ia2 teacher` needs, as plain data: build it with a struct literal and
/// `..TrainConfig::default()` (the defaults are the command line's). The flags (kebab-case, the seed's
/// snake_case aliases, help texts) are in the binary, `crates/ia2/src/cli/train.rs`; each field there is named
/// like its field here and converted by serde.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// `[ia3-|prompt-|prefix-]{tok,tokl,act,tna,a2t,t2a}` (no prefix = LoRA).
    pub training_method: TrainingMethod,
    /// Training files are read from `<data_dir>/<dataset>/train/{N}_{run}.json`.
    pub dataset: String,
    pub model: ModelOptions,
    /// Runs are written to `<output_dir>/<method>/<dataset>/<name>/`.
    pub output_dir: PathBuf,
    pub data_dir: PathBuf,
    /// LoRA target letters (q, k, v, o).
    pub lora_type: String,
    pub lora_r: usize,
    pub lora_alpha: usize,
    /// IA3 target letters.
    pub ia3_type: String,
    /// Virtual tokens of prompt / prefix tuning.
    pub num_virtual_tokens: usize,
    pub num_train_epochs: usize,
    /// N: training examples per run.
    pub num_train_examples: usize,
    /// T: response tokens used for training.
    pub num_generated_tokens: usize,
    pub tokl_top_k: TopK,
    pub lr: f64,
    /// Examples per optimizer step.
    pub batch_size: usize,
    /// Rows per forward pass; 0 = the whole step in one forward.
    pub micro_batch: usize,
    /// Recompute each MLP's gate / up projections in the backward pass instead of keeping them
    /// (`Decoder::recompute_mlp`): less memory, more compute, the same numbers (not part of a run's identity).
    pub recompute_mlp: bool,
    pub gradient_clip_val: Option<f64>,
    pub patience: usize,
    /// w in tna's `(1 − w)·MSE + w·CE`.
    pub ce_loss_weight: f64,
    pub label_type: LabelType,
    pub shuffle_demos: bool,
    pub num_shuffles: usize,
    pub fixed_demos: bool,
    pub ldr_mode: bool,
    pub num_labelled_samples: usize,
    pub num_unlabelled_samples: usize,
    pub max_permutations: usize,
    pub num_runs: usize,
    /// Train only this run index.
    pub run_index: Option<usize>,
    pub dev_eval_steps: usize,
    pub log_gradient_norms: bool,
    pub log_weight_norms: bool,
    pub log_checkpoints: bool,
    pub checkpoint_frequency: usize,
    pub seed: u64,
    /// Default `<output_dir>/teacher_cache`.
    pub teacher_cache_dir: Option<PathBuf>,
    pub teacher_batch: usize,
    /// Retrain runs whose output directory already exists.
    pub force: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            training_method: TrainingMethod {
                adapter: crate::method::AdapterKind::Lora,
                objective: crate::method::Objective::Tok,
            },
            dataset: "sst2".into(),
            model: ModelOptions::default(),
            output_dir: "outputs".into(),
            data_dir: "data".into(),
            lora_type: "qko".into(),
            lora_r: 8,
            lora_alpha: 8,
            ia3_type: "qko".into(),
            num_virtual_tokens: 20,
            num_train_epochs: 50,
            num_train_examples: 4,
            num_generated_tokens: 1,
            tokl_top_k: TopK::All,
            lr: 1e-4,
            batch_size: 4,
            micro_batch: 0,
            recompute_mlp: false,
            gradient_clip_val: None,
            patience: 5,
            ce_loss_weight: 0.02,
            label_type: LabelType::IclOutputs,
            shuffle_demos: false,
            num_shuffles: 5,
            fixed_demos: false,
            ldr_mode: false,
            num_labelled_samples: 8,
            num_unlabelled_samples: 1000,
            max_permutations: 24,
            num_runs: 5,
            run_index: None,
            dev_eval_steps: 2,
            log_gradient_norms: false,
            log_weight_norms: false,
            log_checkpoints: false,
            checkpoint_frequency: 1,
            seed: 42,
            teacher_cache_dir: None,
            teacher_batch: 8,
            force: false,
        }
    }
}

impl TrainConfig {
    /// Checks option combinations before anything is loaded.
    pub fn validate(&self) -> Result<()> {
        let m = self.training_method;
        ensure!(
            (0.0..=1.0).contains(&self.ce_loss_weight),
            "--ce-loss-weight must be in [0, 1], got {}",
            self.ce_loss_weight
        );
        if m.objective == crate::method::Objective::Tokl && self.label_type != LabelType::IclOutputs
        {
            bail!("{m} trains on the ICL distributions: --label-type must be icl_outputs");
        }
        ensure!(self.batch_size > 0, "--batch-size must be at least 1");
        ensure!(
            self.num_generated_tokens > 0,
            "--num-generated-tokens must be at least 1"
        );
        ensure!(
            self.dev_eval_steps > 0,
            "--dev-eval-steps must be at least 1"
        );
        ensure!(
            self.checkpoint_frequency > 0,
            "--checkpoint-frequency must be at least 1"
        );
        ensure!(
            self.lr > 0.0 && self.lr.is_finite(),
            "--lr must be positive"
        );
        ensure!(self.num_shuffles > 0, "--num-shuffles must be at least 1");
        if let Some(c) = self.gradient_clip_val {
            ensure!(c > 0.0, "--gradient-clip-val must be positive");
        }
        crate::config::lora_targets(&self.lora_type).context("--lora-type")?;
        crate::config::lora_targets(&self.ia3_type).context("--ia3-type")?;
        // Sizes: positive, and bounded so that an absurd value is an error here, not an allocation abort
        // (or an hours-long teacher collection) later. Model-dependent bounds: `validate_for_model`.
        let positive = [
            ("--lora-r", self.lora_r),
            ("--lora-alpha", self.lora_alpha),
            ("--num-virtual-tokens", self.num_virtual_tokens),
            ("--num-train-examples", self.num_train_examples),
            ("--teacher-batch", self.teacher_batch),
        ];
        for (flag, v) in positive {
            ensure!(v > 0, "{flag} must be at least 1");
        }
        ensure!(
            self.run_index.is_some() || self.num_runs > 0,
            "--num-runs must be at least 1"
        );
        let bounded = [
            ("--num-runs", self.num_runs, 100_000),
            ("--num-train-epochs", self.num_train_epochs, 1_000_000),
            ("--num-shuffles", self.num_shuffles, 10_000),
            ("--num-generated-tokens", self.num_generated_tokens, 1 << 20),
            ("--batch-size", self.batch_size, 1 << 24),
            ("--teacher-batch", self.teacher_batch, 1 << 20),
            ("--num-virtual-tokens", self.num_virtual_tokens, 1 << 26),
            ("--lora-r", self.lora_r, 1 << 18),
        ];
        for (flag, v, max) in bounded {
            ensure!(v <= max, "{flag} {v} is implausibly large (at most {max})");
        }
        ensure!(
            !self.dataset.is_empty()
                && !self.dataset.contains(['/', '\\'])
                && self.dataset != "."
                && self.dataset != "..",
            "--dataset: invalid dataset name {:?}",
            self.dataset
        );
        Ok(())
    }

    /// Checks the options that depend on the base model, before any teacher collection: the virtual tokens
    /// of prompt / prefix tuning fit in `max_position_embeddings` (with room for a prompt), the LoRA rank is
    /// at most the hidden size, and T leaves room for a prompt.
    pub fn validate_for_model(&self, c: &ia2_model::ModelConfig) -> Result<()> {
        use crate::method::AdapterKind;
        let max_pos = c.max_position_embeddings;
        if matches!(
            self.training_method.adapter,
            AdapterKind::Prompt | AdapterKind::Prefix
        ) {
            ensure!(
                self.num_virtual_tokens < max_pos,
                "--num-virtual-tokens {} leaves no room for a prompt: the model's max_position_embeddings \
                 is {max_pos}",
                self.num_virtual_tokens
            );
        }
        if self.training_method.adapter == AdapterKind::Lora {
            ensure!(
                self.lora_r <= c.hidden_size,
                "--lora-r {} is larger than the model's hidden_size {}",
                self.lora_r,
                c.hidden_size
            );
        }
        ensure!(
            self.num_generated_tokens < max_pos,
            "--num-generated-tokens {} leaves no room for a prompt: the model's max_position_embeddings is \
             {max_pos}",
            self.num_generated_tokens
        );
        Ok(())
    }

    /// The run indices to train.
    pub fn runs(&self) -> Vec<usize> {
        match self.run_index {
            Some(r) => vec![r],
            None => (0..self.num_runs).collect(),
        }
    }

    /// The training file of run `run` (the seed's paths).
    pub fn data_file(&self, run: usize) -> PathBuf {
        let objective = self.training_method.objective;
        if self.ldr_mode
            && !(objective == crate::method::Objective::A2t
                && self.label_type == LabelType::GroundTruth)
        {
            return self
                .data_dir
                .join(format!("{}-ldr", self.dataset))
                .join("train")
                .join(format!(
                    "{}_{}_{}_{run}.json",
                    self.num_labelled_samples, self.num_unlabelled_samples, self.max_permutations
                ));
        }
        let n = if self.ldr_mode {
            self.num_labelled_samples
        } else {
            self.num_train_examples
        };
        let dir = if self.fixed_demos {
            "train_fixed"
        } else {
            "train"
        };
        self.data_dir
            .join(&self.dataset)
            .join(dir)
            .join(format!("{n}_{run}.json"))
    }

    pub fn teacher_cache(&self) -> PathBuf {
        self.teacher_cache_dir
            .clone()
            .unwrap_or_else(|| self.output_dir.join("teacher_cache"))
    }
}
