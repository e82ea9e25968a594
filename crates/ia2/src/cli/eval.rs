//! `ia2 eval`: the seed's options (kebab-case, with the seed's snake_case spellings as aliases), with empty
//! selection lists meaning "everything". Parsed into [`EvalConfig`], the library's configuration.

use super::model::ModelCli;
use ia2_eval::EvalConfig;
use serde::Serialize;
use std::path::PathBuf;

/// `ia2 eval` flags; each field is named like its [`EvalConfig`] field.
#[derive(Debug, Clone, clap::Args, Serialize)]
#[command(
    mut_arg("adapter", |a| a.help(
        "Evaluate exactly this run directory (PEFT adapter + training_config.json) instead of \
         discovering runs under --outputs-dir"
    )),
    mut_arg("merge_adapter", |a| a.hide(true)),
    mut_arg("model_id", |a| a.alias("model_id"))
)]
pub struct EvalCli {
    /// The base model (`--adapter DIR`: see its help).
    #[command(flatten)]
    pub model: ModelCli,

    // --- what to evaluate ---
    /// Model types: `base` and/or training methods ([ia3-|prompt-|prefix-]{tok,tokl,act,tna,a2t,t2a}).
    /// Default: every training method (not the base model).
    #[arg(long, alias = "model_types", num_args = 1..)]
    pub model_types: Vec<String>,
    /// Datasets the adapters were trained on (default: all found under --outputs-dir).
    #[arg(long, alias = "trained_datasets", num_args = 1..)]
    pub trained_datasets: Vec<String>,
    /// Directory holding `{training_method}/{dataset}/{run}/` (results go to its `evaluations/`).
    #[arg(
        long,
        alias = "outputs_dir",
        alias = "base-output-dir",
        alias = "base_output_dir",
        default_value = "outputs"
    )]
    pub outputs_dir: PathBuf,
    /// Root data directory (`<data-dir>/<name>/main.json`, `train/`, `val/`).
    #[arg(long, alias = "data_dir", default_value = "data")]
    pub data_dir: PathBuf,

    // --- filters on the runs' training_config.json (empty = all) ---
    /// LoRA types (`lora_type`, e.g. qko).
    #[arg(long, alias = "lora_types", num_args = 1..)]
    pub lora_types: Vec<String>,
    /// LoRA ranks.
    #[arg(long, alias = "lora_rs", num_args = 1..)]
    pub lora_rs: Vec<usize>,
    /// LoRA alphas.
    #[arg(long, alias = "lora_alphas", num_args = 1.., value_parser = crate::cli::finite_f64)]
    pub lora_alphas: Vec<f64>,
    /// IA3 types (`ia3_type`).
    #[arg(long, alias = "ia3_types", num_args = 1..)]
    pub ia3_types: Vec<String>,
    /// Virtual-token counts of prompt/prefix tuning.
    #[arg(
        long,
        alias = "num_virtual_tokens_list",
        alias = "num-virtual-tokens",
        alias = "num_virtual_tokens",
        num_args = 1..
    )]
    pub num_virtual_tokens_list: Vec<usize>,
    /// Training T (`num_generated_tokens`).
    #[arg(long, alias = "num_tokens", num_args = 1..)]
    pub num_tokens: Vec<usize>,
    /// Training-set sizes N. Also the N of the base model's demo sets.
    #[arg(long, alias = "num_examples", num_args = 1..)]
    pub num_examples: Vec<usize>,
    /// Learning rates.
    #[arg(long, num_args = 1.., value_parser = crate::cli::finite_f64)]
    pub lrs: Vec<f64>,
    /// Run indices. Also the runs of the base model's demo sets.
    #[arg(long, alias = "run_indices", num_args = 1..)]
    pub run_indices: Vec<u32>,
    /// Label types of tok/tokl/a2t/t2a runs (ground_truth, icl_outputs).
    #[arg(long, alias = "label_types", num_args = 1..)]
    pub label_types: Vec<String>,
    /// CE loss weights of tna runs.
    #[arg(long, alias = "ce_loss_weights", num_args = 1.., value_parser = crate::cli::finite_f64)]
    pub ce_loss_weights: Vec<f64>,
    /// Top-k of tokl runs (`all` or a number).
    #[arg(long, alias = "tokl_top_k", num_args = 1..)]
    pub tokl_top_k: Vec<String>,
    /// Select low-data-regime (LDR) runs, and only those.
    #[arg(long, alias = "ldr_mode")]
    pub ldr_mode: bool,
    /// LDR: labelled samples N.
    #[arg(long, alias = "num_labelled_samples", num_args = 1..)]
    pub num_labelled_samples: Vec<usize>,
    /// LDR: unlabelled samples M.
    #[arg(long, alias = "num_unlabelled_samples", num_args = 1..)]
    pub num_unlabelled_samples: Vec<usize>,
    /// LDR: maximum demo permutations K.
    #[arg(long, alias = "max_permutations", num_args = 1..)]
    pub max_permutations: Vec<usize>,

    // --- evaluation ---
    /// Evaluation datasets (their val_examples). Default: each run's trained dataset; required for `base`.
    #[arg(long, alias = "eval_datasets", num_args = 1..)]
    pub eval_datasets: Vec<String>,
    /// Datasets the ICL demos come from (held-out pool of `<source>/train/{N}_{run}.json`). Default: the
    /// evaluation dataset itself.
    #[arg(long, alias = "icl_source_datasets", num_args = 1..)]
    pub icl_source_datasets: Vec<String>,
    /// Requested demo counts; each is capped at N-1 and at the pool size.
    #[arg(long, alias = "icl_max_demos", num_args = 1.., default_values_t = [256])]
    pub icl_max_demos: Vec<usize>,
    /// Generated tokens T per example. Default: 1 for classification datasets, 200 otherwise.
    #[arg(long, alias = "num_gen_tokens_eval")]
    pub num_gen_tokens_eval: Option<usize>,
    /// Uncertainty analysis: T = 1, next-token distributions (top-k, label set, ECE); T > 1, per-step
    /// top-k distributions.
    #[arg(long, alias = "uncertainty_analysis")]
    pub uncertainty_analysis: bool,
    /// k of the top-k distributions.
    #[arg(long, alias = "top_k", default_value_t = 10)]
    pub top_k: usize,
    /// Evaluate only the first K val_examples (part of the result file name).
    #[arg(long, alias = "max_eval_examples")]
    pub max_eval_examples: Option<usize>,
    /// Prompts per forward batch (left-padded; prompts are sorted by length first).
    #[arg(long, alias = "batch_size", default_value_t = 8)]
    pub batch_size: usize,
    /// Pass LoRA/IA3 adapters to the forward pass instead of merging them into a copy of the weights.
    #[arg(long, alias = "no_merge")]
    pub no_merge: bool,
    /// Re-evaluate even when a finished result file exists.
    #[arg(long)]
    pub overwrite: bool,
    /// Continue with the next evaluation after one fails (the failures are listed and the command fails
    /// at the end).
    #[arg(long, alias = "keep_going")]
    pub keep_going: bool,
    /// List the evaluations (and which are already done) without running them.
    #[arg(long, alias = "dry_run")]
    pub dry_run: bool,
    /// Accepted for the seed's scripts: both modes are always evaluated.
    #[arg(long, alias = "eval_with_icl", hide = true)]
    pub eval_with_icl: bool,
    /// Accepted for the seed's scripts: LoRA/IA3 are merged unless --no-merge.
    #[arg(long, alias = "merge_lora", hide = true)]
    pub merge_lora: bool,
}

impl EvalCli {
    /// The library configuration these flags stand for.
    pub fn config(&self) -> anyhow::Result<EvalConfig> {
        super::to_config(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_library_defaults() {
        super::super::assert_defaults_match::<EvalCli, EvalConfig>();
    }

    #[test]
    fn snake_case_aliases_parse() {
        let a = super::super::parse::<EvalCli>(&[
            "--model_types",
            "base",
            "ia3-act",
            "--num_examples",
            "4",
            "8",
            "--eval-datasets",
            "sst2",
            "--icl_max_demos",
            "3",
            "--base_output_dir",
            "out",
            "--num_gen_tokens_eval",
            "1",
            "--model_id",
            "org/m",
            "--lrs",
            "0.1",
            "--run_indices",
            "0",
            "2",
        ])
        .unwrap()
        .config()
        .unwrap();
        let expected = EvalConfig {
            model: ia2_load::ModelOptions {
                model_id: Some("org/m".into()),
                ..Default::default()
            },
            model_types: vec!["base".into(), "ia3-act".into()],
            num_examples: vec![4, 8],
            eval_datasets: vec!["sst2".into()],
            icl_max_demos: vec![3],
            outputs_dir: "out".into(),
            num_gen_tokens_eval: Some(1),
            lrs: vec![0.1],
            run_indices: vec![0, 2],
            ..EvalConfig::default()
        };
        assert_eq!(a, expected);
        a.validate().unwrap();
    }
}
