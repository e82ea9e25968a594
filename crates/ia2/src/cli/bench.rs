//! `ia2 bench` flags of the three suites, parsed into [`BenchConfig`] (model), [`TrainBenchConfig`] and
//! [`EvalBenchConfig`].

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use ia2_eval::EvalBenchConfig;
use ia2_model::bench::{BenchConfig, BenchSize};
use ia2_train::bench::TrainBenchConfig;
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
    /// Worker threads (default: rayon's default, one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Model size.
    #[arg(long, value_parser = size_parser(), default_value = "reference")]
    pub size: BenchSize,
    /// Also write the report as JSON to this file.
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
}
