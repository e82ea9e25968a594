//! `ia2 train` options: the seed's options in kebab-case, its snake_case spellings accepted as aliases, its
//! defaults (except `--model`, which defaults to a built-in model so nothing is downloaded, and `--dtype`,
//! f32 on the CPU).

use crate::method::TrainingMethod;
use anyhow::{Result, bail, ensure};
use ia2_load::ModelArgs;
use std::path::PathBuf;

/// Labels the token objectives train on.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum LabelType {
    /// The base model's greedy response with ICL demos (the paper's setting).
    #[value(name = "icl_outputs", alias = "icl-outputs")]
    IclOutputs,
    /// The dataset's answer.
    #[value(name = "ground_truth", alias = "ground-truth")]
    GroundTruth,
}

impl LabelType {
    pub fn as_str(self) -> &'static str {
        match self {
            LabelType::IclOutputs => "icl_outputs",
            LabelType::GroundTruth => "ground_truth",
        }
    }
}

/// `tokl` targets: the full ICL distribution or its top-k with the remaining mass spread uniformly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TopK {
    All,
    K(usize),
}

impl std::str::FromStr for TopK {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s == "all" {
            return Ok(TopK::All);
        }
        match s.parse::<usize>() {
            Ok(k) if k > 0 => Ok(TopK::K(k)),
            _ => Err(format!("expected `all` or a positive integer, got {s:?}")),
        }
    }
}

impl std::fmt::Display for TopK {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TopK::All => write!(f, "all"),
            TopK::K(k) => write!(f, "{k}"),
        }
    }
}

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
    /// Targets of tok / a2t / t2a / tna's CE: the base model's ICL response or the dataset answer.
    #[arg(long, alias = "label_type", value_enum, default_value_t = LabelType::IclOutputs)]
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

impl TrainArgs {
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
        crate::config::lora_targets(&self.lora_type)?;
        crate::config::lora_targets(&self.ia3_type)?;
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
