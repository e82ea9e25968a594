//! `ia2 train` options: the seed's options in kebab-case, its snake_case spellings accepted as aliases, its
//! defaults (except `--model`, which defaults to a built-in model so nothing is downloaded, and `--dtype`,
//! f32 on the CPU).

use crate::method::TrainingMethod;
use anyhow::{Context, Result, bail, ensure};
use ia2_load::ModelArgs;
use std::path::PathBuf;

/// `--label-type` and `--tokl-top-k` values (defined with the on-disk contract in [`ia2_runs`]); clap parses
/// them with their `FromStr`.
pub use ia2_runs::labels::{LabelType, TopK};

#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// Training method: `[ia3-|prompt-|prefix-]{tok,tokl,act,tna,a2t,t2a}` (no prefix = LoRA).
    #[arg(long, alias = "training_method", default_value = "tok")]
    pub training_method: TrainingMethod,
    /// Dataset name; training files are read from `<data-dir>/<dataset>/train/{N}_{run}.json`.
    #[arg(long, default_value = "sst2")]
    pub dataset: String,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Runs are written to `<output-dir>/<method>/<dataset>/<name>/`.
    #[arg(long, alias = "output_dir", default_value = "outputs")]
    pub output_dir: PathBuf,
    /// Where `ia2 data` wrote the datasets.
    #[arg(long, alias = "data_dir", default_value = "data")]
    pub data_dir: PathBuf,

    /// LoRA target letters: q, k, v, o → q_proj, k_proj, v_proj, o_proj.
    #[arg(long, alias = "lora_type", default_value = "qko")]
    pub lora_type: String,
    #[arg(long, alias = "lora_r", default_value_t = 8)]
    pub lora_r: usize,
    #[arg(long, alias = "lora_alpha", default_value_t = 8)]
    pub lora_alpha: usize,
    /// IA3 target letters (each vector scales its module's input, as the seed configures PEFT).
    #[arg(long, alias = "ia3_type", default_value = "qko")]
    pub ia3_type: String,
    /// Virtual tokens of prompt / prefix tuning.
    #[arg(long, alias = "num_virtual_tokens", default_value_t = 20)]
    pub num_virtual_tokens: usize,

    /// Maximum epochs (early stopping usually ends training sooner).
    #[arg(long, alias = "num_train_epochs", default_value_t = 50)]
    pub num_train_epochs: usize,
    /// N: training examples per run (selects the training file `{N}_{run}.json`).
    #[arg(long, alias = "num_train_examples", default_value_t = 4)]
    pub num_train_examples: usize,
    /// T: response tokens used for training (1 for classification; EOS is appended to ground truth when > 1).
    #[arg(long, alias = "num_generated_tokens", default_value_t = 1)]
    pub num_generated_tokens: usize,
    /// tokl targets: `all` (full distribution) or k (top-k probabilities, the rest spread uniformly).
    #[arg(long, alias = "tokl_top_k", default_value = "all")]
    pub tokl_top_k: TopK,
    /// Adam learning rate (constant).
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// Examples per optimizer step (gradients accumulated over them).
    #[arg(long, alias = "batch_size", default_value_t = 4)]
    pub batch_size: usize,
    /// Rows per forward pass (left-padded); 0 = the whole step in one forward. Same mathematics either way.
    #[arg(long, alias = "micro_batch", default_value_t = 0)]
    pub micro_batch: usize,
    /// Clip the global gradient norm to this value.
    #[arg(long, alias = "gradient_clip_val")]
    pub gradient_clip_val: Option<f64>,
    /// Dev evaluations without improvement before stopping (the best state is restored).
    #[arg(long, default_value_t = 5)]
    pub patience: usize,
    /// w in tna's `(1 − w)·MSE + w·CE`.
    #[arg(long, alias = "ce_loss_weight", default_value_t = 0.02)]
    pub ce_loss_weight: f64,
    /// Targets of tok / a2t / t2a / tna's CE: the base model's ICL response (`icl_outputs`) or the dataset
    /// answer (`ground_truth`).
    #[arg(long, alias = "label_type", default_value_t = LabelType::IclOutputs)]
    pub label_type: LabelType,

    /// Train on K orderings of each example's demos (re-shuffled with RandomState(run)).
    #[arg(long, alias = "shuffle_demos")]
    pub shuffle_demos: bool,
    #[arg(long, alias = "num_shuffles", default_value_t = 5)]
    pub num_shuffles: usize,
    /// Use one fixed demo list for every example (files under `train_fixed/`).
    #[arg(long, alias = "fixed_demos")]
    pub fixed_demos: bool,
    /// Low-data regime: N labelled demos, M unlabelled queries, K permutations
    /// (`<data-dir>/<dataset>-ldr/train/{N}_{M}_{K}_{run}.json`).
    #[arg(long, alias = "ldr_mode")]
    pub ldr_mode: bool,
    #[arg(long, alias = "num_labelled_samples", default_value_t = 8)]
    pub num_labelled_samples: usize,
    #[arg(long, alias = "num_unlabelled_samples", default_value_t = 1000)]
    pub num_unlabelled_samples: usize,
    #[arg(long, alias = "max_permutations", default_value_t = 24)]
    pub max_permutations: usize,

    /// Runs 0..num_runs (each reads its own training file).
    #[arg(long, alias = "num_runs", default_value_t = 5)]
    pub num_runs: usize,
    /// Train only this run index.
    #[arg(long, alias = "run_index")]
    pub run_index: Option<usize>,
    /// Evaluate the dev loss every this many optimizer steps (and at the end of each epoch).
    #[arg(long, alias = "dev_eval_steps", default_value_t = 2)]
    pub dev_eval_steps: usize,
    /// Record the global gradient norm of every step in metrics.jsonl (always computed; kept for the seed's flag).
    #[arg(long, alias = "log_gradient_norms")]
    pub log_gradient_norms: bool,
    /// Record the adapter's weight norm of every step in metrics.jsonl.
    #[arg(long, alias = "log_weight_norms")]
    pub log_weight_norms: bool,
    /// Save the adapter every `--checkpoint-frequency` optimizer steps under `checkpoints/step_{k}/`.
    #[arg(long, alias = "log_checkpoints")]
    pub log_checkpoints: bool,
    #[arg(long, alias = "checkpoint_frequency", default_value_t = 1)]
    pub checkpoint_frequency: usize,
    /// Seed of adapter initialisation and epoch shuffling (run r uses seed + r).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Teacher targets cache (default `<output-dir>/teacher_cache`).
    #[arg(long)]
    pub teacher_cache_dir: Option<PathBuf>,
    /// Examples per teacher-collection batch (left-padded, KV cache).
    #[arg(long, default_value_t = 8)]
    pub teacher_batch: usize,
    /// Retrain runs whose output directory already exists (otherwise they are skipped).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, clap::Parser)]
#[command(name = "ia2 train", no_binary_name = true)]
struct Wrapper {
    #[command(flatten)]
    args: TrainArgs,
}

impl TrainArgs {
    /// Parses `ia2 train` options (without the program name), for programmatic callers: every option not
    /// given takes its command-line default. `TrainArgs::from_cli(["--training-method", "act"])`.
    pub fn from_cli<I, S>(args: I) -> Result<TrainArgs>
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString> + Clone,
    {
        use clap::Parser;
        Ok(Wrapper::try_parse_from(args)?.args)
    }

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
