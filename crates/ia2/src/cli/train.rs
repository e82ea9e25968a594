//! `ia2 train` and `ia2 teacher`: the seed's options in kebab-case, its snake_case spellings accepted as
//! aliases, its defaults (except `--model`, which defaults to a built-in model so nothing is downloaded, and
//! `--dtype`, f32 on the CPU). Parsed into [`TrainConfig`], the library's configuration.

use super::model::ModelCli;
use ia2_train::{LabelType, TopK, TrainConfig, TrainingMethod};
use serde::Serialize;
use std::path::PathBuf;

/// `ia2 train` / `ia2 teacher` flags; each field is named like its [`TrainConfig`] field.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct TrainCli {
    /// Training method: `[ia3-|prompt-|prefix-]{tok,tokl,act,tna,a2t,t2a}` (no prefix = LoRA).
    #[arg(long, alias = "training_method", default_value = "tok")]
    pub training_method: TrainingMethod,
    /// Dataset name; training files are read from `<data-dir>/<dataset>/train/{N}_{run}.json`.
    #[arg(long, default_value = "sst2")]
    pub dataset: String,
    #[command(flatten)]
    pub model: ModelCli,
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
    #[arg(long, default_value_t = 1e-4, value_parser = crate::cli::finite_f64)]
    pub lr: f64,
    /// Examples per optimizer step (gradients accumulated over them).
    #[arg(long, alias = "batch_size", default_value_t = 4)]
    pub batch_size: usize,
    /// Rows per forward pass (left-padded); 0 = the whole step in one forward. Same mathematics either way.
    #[arg(long, alias = "micro_batch", default_value_t = 0)]
    pub micro_batch: usize,
    /// Recompute each MLP's gate and up projections in the backward pass instead of keeping them until it:
    /// the same numbers, bit for bit, with the two largest activations of every layer not held (≈ 0.8 GB
    /// less for a 4B model at 300 tokens) for about a quarter more compute per training step. For large
    /// models on little memory.
    #[arg(long, alias = "recompute_mlp")]
    pub recompute_mlp: bool,
    /// Clip the global gradient norm to this value.
    #[arg(long, alias = "gradient_clip_val", value_parser = crate::cli::finite_f64)]
    pub gradient_clip_val: Option<f64>,
    /// Dev evaluations without improvement before stopping (the best state is restored).
    #[arg(long, default_value_t = 5)]
    pub patience: usize,
    /// w in tna's `(1 − w)·MSE + w·CE`.
    #[arg(long, alias = "ce_loss_weight", default_value_t = 0.02, value_parser = crate::cli::finite_f64)]
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

impl TrainCli {
    /// The library configuration these flags stand for.
    pub fn config(&self) -> anyhow::Result<TrainConfig> {
        super::to_config(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_library_defaults() {
        super::super::assert_defaults_match::<TrainCli, TrainConfig>();
    }

    #[test]
    fn every_flag_reaches_its_field() {
        let cli: TrainCli = super::super::parse(&[
            "--training_method",
            "prefix-tna",
            "--dataset",
            "finsen",
            "--model-id",
            "Qwen/Qwen3-4B-Base",
            "--revision",
            "main",
            "--torch_dtype",
            "bfloat16",
            "--device",
            "cuda:1",
            "--output_dir",
            "o",
            "--data_dir",
            "d",
            "--lora_type",
            "qv",
            "--lora_r",
            "4",
            "--lora_alpha",
            "16",
            "--ia3_type",
            "k",
            "--num_virtual_tokens",
            "7",
            "--num_train_epochs",
            "3",
            "--num_train_examples",
            "8",
            "--num_generated_tokens",
            "2",
            "--tokl_top_k",
            "5",
            "--lr",
            "0.01",
            "--batch_size",
            "2",
            "--micro_batch",
            "1",
            "--recompute_mlp",
            "--gradient_clip_val",
            "1.5",
            "--patience",
            "9",
            "--ce_loss_weight",
            "0.5",
            "--label_type",
            "ground_truth",
            "--shuffle_demos",
            "--num_shuffles",
            "3",
            "--fixed_demos",
            "--ldr_mode",
            "--num_labelled_samples",
            "2",
            "--num_unlabelled_samples",
            "10",
            "--max_permutations",
            "6",
            "--num_runs",
            "2",
            "--run_index",
            "1",
            "--dev_eval_steps",
            "4",
            "--log_gradient_norms",
            "--log_weight_norms",
            "--log_checkpoints",
            "--checkpoint_frequency",
            "5",
            "--seed",
            "7",
            "--teacher-cache-dir",
            "tc",
            "--teacher-batch",
            "3",
            "--force",
        ])
        .unwrap();
        let expected = TrainConfig {
            training_method: "prefix-tna".parse().unwrap(),
            dataset: "finsen".into(),
            model: ia2_load::ModelOptions {
                model_id: Some("Qwen/Qwen3-4B-Base".into()),
                revision: Some("main".into()),
                dtype: ia2_load::WeightDtype::Bf16,
                device: "cuda:1".into(),
                ..Default::default()
            },
            output_dir: "o".into(),
            data_dir: "d".into(),
            lora_type: "qv".into(),
            lora_r: 4,
            lora_alpha: 16,
            ia3_type: "k".into(),
            num_virtual_tokens: 7,
            num_train_epochs: 3,
            num_train_examples: 8,
            num_generated_tokens: 2,
            tokl_top_k: TopK::K(5),
            lr: 0.01,
            batch_size: 2,
            micro_batch: 1,
            recompute_mlp: true,
            gradient_clip_val: Some(1.5),
            patience: 9,
            ce_loss_weight: 0.5,
            label_type: LabelType::GroundTruth,
            shuffle_demos: true,
            num_shuffles: 3,
            fixed_demos: true,
            ldr_mode: true,
            num_labelled_samples: 2,
            num_unlabelled_samples: 10,
            max_permutations: 6,
            num_runs: 2,
            run_index: Some(1),
            dev_eval_steps: 4,
            log_gradient_norms: true,
            log_weight_norms: true,
            log_checkpoints: true,
            checkpoint_frequency: 5,
            seed: 7,
            teacher_cache_dir: Some("tc".into()),
            teacher_batch: 3,
            force: true,
        };
        assert_eq!(cli.config().unwrap(), expected);
    }
}
