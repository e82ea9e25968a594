//! `ia2 bench` flags of the suites, parsed into [`BenchConfig`] (model), [`TrainBenchConfig`],
//! [`EvalBenchConfig`] and [`ScaleBenchConfig`].

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use ia2_eval::EvalBenchConfig;
use ia2_load::WeightDtype;
use ia2_model::bench::{BenchConfig, BenchSize};
use ia2_model::synthetic::SyntheticModel;
use ia2_train::bench::TrainBenchConfig;
use ia2_train::bench_scale::ScaleBenchConfig;
use serde::Serialize;
use std::path::PathBuf;

/// `reference` / `tiny`, each with its help.
fn size_parser() -> impl TypedValueParser<Value = BenchSize> {
    PossibleValuesParser::new([
        PossibleValue::new("reference").help(
            "The step of notes/engine.md: hidden 512, 8 layers, 8/2 heads, vocab 8192, sequence 256",
        ),
        PossibleValue::new("tiny").help("A seconds-long smoke test: hidden 64, 2 layers, sequence 16"),
    ])
    .map(|s| s.parse::<BenchSize>().expect("a possible value parses"))
}

/// Model benchmark flags ([`BenchConfig`]).
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct ModelBenchCli {
    /// Timed training steps (after the warm-up steps).
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Untimed warm-up training steps.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Tokens generated greedily, with and without the KV cache.
    #[arg(long, default_value_t = 200)]
    pub decode_tokens: usize,
    /// Worker threads (default: rayon's default, one per core); with `--suite scale` alone, the scale
    /// suite's (as --scale-threads).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Model size.
    #[arg(long, value_parser = size_parser(), default_value = "reference")]
    pub size: BenchSize,
    /// Also write the report as JSON to this file; with `--suite scale` alone, the scale suite's report
    /// (as --scale-json).
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Training benchmark flags ([`TrainBenchConfig`]).
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct TrainBenchCli {
    /// ICL sequences (training examples) in the benchmark.
    #[arg(long, default_value_t = 8)]
    pub sequences: usize,
    /// Tokens of each ICL prompt (demos + query).
    #[arg(long, default_value_t = 192)]
    pub icl_tokens: usize,
    /// Tokens of each query without demos.
    #[arg(long, default_value_t = 32)]
    pub query_tokens: usize,
    /// Sequences timed the seed's way at T = 64 (slow: the prefix is recomputed for every token).
    #[arg(long, default_value_t = 2)]
    pub seed_way_sequences: usize,
}

/// Evaluation benchmark flags ([`EvalBenchConfig`]), prefixed `eval-` so they can sit beside the others.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct EvalBenchCli {
    /// Model size of the evaluation benchmark.
    #[arg(
        id = "eval-size",
        long = "eval-size",
        value_parser = size_parser(),
        default_value = "reference"
    )]
    pub size: BenchSize,
    /// Examples evaluated per mode.
    #[arg(id = "eval-examples", long = "eval-examples", default_value_t = 32)]
    pub examples: usize,
    /// ICL demos per example.
    #[arg(id = "eval-demos", long = "eval-demos", default_value_t = 8)]
    pub demos: usize,
    /// Tokens of one query (a demo is one token longer: its answer).
    #[arg(
        id = "eval-query-tokens",
        long = "eval-query-tokens",
        default_value_t = 48
    )]
    pub query_tokens: usize,
    /// Prompts per batch.
    #[arg(id = "eval-batch-size", long = "eval-batch-size", default_value_t = 8)]
    pub batch_size: usize,
    /// Generated tokens T (1: one forward pass per batch).
    #[arg(id = "eval-gen-tokens", long = "eval-gen-tokens", default_value_t = 1)]
    pub gen_tokens: usize,
}

/// `qwen3-0.6b` / `qwen3-1.7b` / `qwen3-4b`, and the hidden test shape `tiny`.
fn synthetic_parser() -> impl TypedValueParser<Value = SyntheticModel> {
    PossibleValuesParser::new(SyntheticModel::ALL.map(|m| {
        let c = m.config();
        PossibleValue::new(m.as_str())
            .help(format!(
                "{} layers, hidden {}, intermediate {}, {}/{} heads x {}, vocab {}",
                c.num_hidden_layers,
                c.hidden_size,
                c.intermediate_size,
                c.num_attention_heads,
                c.num_key_value_heads,
                c.head_dim,
                c.vocab_size
            ))
            .hide(m == SyntheticModel::Tiny)
    }))
    .map(|s| {
        s.parse::<SyntheticModel>()
            .expect("a possible value parses")
    })
}

/// `f32` / `bf16` / `f16`, with the seed's spellings as hidden aliases.
fn scale_dtype_parser() -> impl TypedValueParser<Value = WeightDtype> {
    PossibleValuesParser::new(
        WeightDtype::SPELLINGS.map(|(_, names)| PossibleValue::new(names[0]).aliases(&names[1..])),
    )
    .map(|s| s.parse::<WeightDtype>().expect("a possible value parses"))
}

/// Scale benchmark flags ([`ScaleBenchConfig`]); those that would collide with the model suite's are
/// prefixed `scale-`.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct ScaleBenchCli {
    /// Model shapes of the scale suite (synthetic checkpoints, written once under $IA2_CACHE/synthetic).
    #[arg(
        long,
        value_parser = synthetic_parser(),
        num_args = 1..,
        value_delimiter = ',',
        default_values = ["qwen3-0.6b", "qwen3-1.7b", "qwen3-4b"]
    )]
    pub sizes: Vec<SyntheticModel>,
    /// Precisions the weights are held in (scale suite).
    #[arg(
        long,
        value_parser = scale_dtype_parser(),
        num_args = 1..,
        value_delimiter = ',',
        default_values = ["f32", "bf16"]
    )]
    pub dtypes: Vec<WeightDtype>,
    /// Child processes per size and dtype (the table gives min–max ranges over them).
    #[arg(long, default_value_t = 3)]
    pub repetitions: usize,
    /// Tokens of the training sequence and of the longest evaluation prompt (scale suite).
    #[arg(long, default_value_t = 300)]
    pub seq_len: usize,
    /// Response tokens of the training sequence: the positions of the activation MSE (scale suite).
    #[arg(long, default_value_t = 1)]
    pub response_tokens: usize,
    /// Timed training steps per child process, after one warm-up step (scale suite).
    #[arg(long, default_value_t = 2)]
    pub train_steps: usize,
    /// Prompts of the evaluation batch (scale suite).
    #[arg(
        id = "scale-eval-batch",
        long = "scale-eval-batch",
        default_value_t = 8
    )]
    pub eval_batch: usize,
    /// Worker threads of each child process (default: one per core).
    #[arg(id = "scale-threads", long = "scale-threads")]
    pub threads: Option<usize>,
    /// Also write the scale suite's report as JSON to this file.
    #[arg(id = "scale-json", long = "scale-json")]
    pub json: Option<PathBuf>,
    /// Directory holding a tokenizer.json (e.g. ../shared/tokenizers/qwen3) to copy into the synthetic
    /// checkpoints, so `ia2 train --model DIR` can run on them with real text (default: a byte-level
    /// tokenizer).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Run every configuration, even where the memory estimate exceeds MemAvailable.
    #[arg(long)]
    pub ignore_memory_estimate: bool,
    /// Train with the MLP's gate / up projections recomputed in the backward pass (as
    /// `ia2 train --recompute-mlp`): less memory, more compute, the same numbers.
    #[arg(long)]
    pub recompute_mlp: bool,
}

impl ScaleBenchCli {
    pub fn config(&self) -> anyhow::Result<ScaleBenchConfig> {
        super::to_config(self)
    }
}

impl ModelBenchCli {
    pub fn config(&self) -> anyhow::Result<BenchConfig> {
        super::to_config(self)
    }
}

impl TrainBenchCli {
    pub fn config(&self) -> anyhow::Result<TrainBenchConfig> {
        super::to_config(self)
    }
}

impl EvalBenchCli {
    pub fn config(&self) -> anyhow::Result<EvalBenchConfig> {
        super::to_config(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_library_defaults() {
        super::super::assert_defaults_match::<ModelBenchCli, BenchConfig>();
        super::super::assert_defaults_match::<TrainBenchCli, TrainBenchConfig>();
        super::super::assert_defaults_match::<EvalBenchCli, EvalBenchConfig>();
        super::super::assert_defaults_match::<ScaleBenchCli, ScaleBenchConfig>();
    }

    #[test]
    fn sizes_parse() {
        let m: ModelBenchCli = super::super::parse(&["--size", "tiny", "--steps", "3"]).unwrap();
        let expected = BenchConfig {
            size: BenchSize::Tiny,
            steps: 3,
            ..BenchConfig::default()
        };
        assert_eq!(m.config().unwrap(), expected);
        let e: EvalBenchCli = super::super::parse(&["--eval-size", "tiny"]).unwrap();
        assert_eq!(e.config().unwrap().size, BenchSize::Tiny);
        assert!(super::super::parse::<EvalBenchCli>(&["--eval-size", "huge"]).is_err());
    }

    #[test]
    fn scale_flags_parse() {
        let s: ScaleBenchCli = super::super::parse(&[
            "--sizes",
            "qwen3-0.6b,tiny",
            "--dtypes",
            "bfloat16",
            "--repetitions",
            "1",
            "--scale-eval-batch",
            "2",
        ])
        .unwrap();
        let expected = ScaleBenchConfig {
            sizes: vec![SyntheticModel::Qwen3_0_6B, SyntheticModel::Tiny],
            dtypes: vec![WeightDtype::Bf16],
            repetitions: 1,
            eval_batch: 2,
            ..ScaleBenchConfig::default()
        };
        assert_eq!(s.config().unwrap(), expected);
        assert!(super::super::parse::<ScaleBenchCli>(&["--sizes", "qwen3-8b"]).is_err());
        assert!(super::super::parse::<ScaleBenchCli>(&["--dtypes", "f64"]).is_err());
    }
}
