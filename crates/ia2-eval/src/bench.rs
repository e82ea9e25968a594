//! Evaluation throughput (examples/s) with and without ICL demos on the synthetic bench model of
//! `ia2_model::bench` (seeded random weights, no tokenizer: prompts are seeded random token ids shaped
//! like the evaluation's: a query of `query_tokens` tokens, and with ICL `D` demos of `query_tokens + 1`
//! tokens joined by a 2-token separator before it).
//!
//! It runs the evaluation's own model path ([`crate::engine`]): T = 1 is one forward pass per batch with
//! the next-token distribution (top-k and label probabilities, as uncertainty mode and as greedy decoding
//! of one token); T > 1 is batched greedy decoding with the KV cache. Prompts are sorted by length and
//! batched as `ia2 eval` does.

use crate::engine;
use anyhow::{Context, Result, ensure};
use burn::tensor::{DType, Device};
use ia2_model::bench::{BenchShape, BenchSize, SyntheticWeights};
use ia2_model::{Decoder, GenerateOptions};
use serde::Serialize;
use std::fmt;
use std::time::Instant;

/// Options of the evaluation benchmark (flags, prefixed `eval-`: `crates/ia2/src/cli/bench.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalBenchConfig {
    /// Model size of the evaluation benchmark.
    pub size: BenchSize,
    /// Examples evaluated per mode.
    pub examples: usize,
    /// ICL demos per example.
    pub demos: usize,
    /// Tokens of one query (a demo is one token longer: its answer).
    pub query_tokens: usize,
    /// Prompts per batch.
    pub batch_size: usize,
    /// Generated tokens T (1: one forward pass per batch).
    pub gen_tokens: usize,
}

impl Default for EvalBenchConfig {
    fn default() -> Self {
        EvalBenchConfig {
            size: BenchSize::Reference,
            examples: 32,
            demos: 8,
            query_tokens: 48,
            batch_size: 8,
            gen_tokens: 1,
        }
    }
}

/// Throughput of one mode.
#[derive(Debug, Clone, Serialize)]
pub struct ModeThroughput {
    pub examples: usize,
    pub mean_prompt_tokens: f64,
    pub seconds: f64,
    pub examples_per_s: f64,
    /// Prompt tokens processed per second (prefill).
    pub prompt_tokens_per_s: f64,
}

/// What the evaluation benchmark measured.
#[derive(Debug, Clone, Serialize)]
pub struct EvalBenchReport {
    pub shape: BenchShape,
    pub threads: usize,
    pub demos: usize,
    pub batch_size: usize,
    pub gen_tokens: usize,
    pub top_k: usize,
    pub without_icl: ModeThroughput,
    pub with_icl: ModeThroughput,
    /// `without_icl.examples_per_s / with_icl.examples_per_s`: what the demos cost.
    pub icl_slowdown: f64,
}

impl fmt::Display for EvalBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shape;
        writeln!(
            f,
            "evaluation throughput: {:?} model (hidden {}, {} layers, vocab {}), {} threads, batch {}, T = {}{}",
            s.size,
            s.hidden,
            s.layers,
            s.vocab,
            self.threads,
            self.batch_size,
            self.gen_tokens,
            if self.gen_tokens == 1 {
                " (one forward pass per batch, top-k + label probabilities)"
            } else {
                " (greedy decoding, KV cache)"
            }
        )?;
        for (name, m) in [
            ("without ICL", &self.without_icl),
            ("with ICL", &self.with_icl),
        ] {
            writeln!(
                f,
                "  {name:<12} {:>4} examples, {:>7.1} prompt tokens: {:>8.2} examples/s ({:>9.0} prompt tokens/s, {:.2} s)",
                m.examples,
                m.mean_prompt_tokens,
                m.examples_per_s,
                m.prompt_tokens_per_s,
                m.seconds
            )?;
        }
        write!(
            f,
            "  {} demos make evaluation {:.1}x slower per example",
            self.demos, self.icl_slowdown
        )
    }
}

/// splitmix64 token ids, reproducible.
fn ids(seed: u64, n: usize, vocab: usize) -> Vec<u32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) % vocab as u64) as u32
        })
        .collect()
}

/// The synthetic prompts of one mode.
fn prompts(args: &EvalBenchConfig, vocab: usize, with_icl: bool) -> Vec<Vec<u32>> {
    (0..args.examples)
        .map(|e| {
            let e = e as u64;
            // Queries vary in length by up to 25% so batches need left padding, as real data does.
            let len = args.query_tokens - (e as usize % (args.query_tokens / 4 + 1));
            let mut p = Vec::new();
            if with_icl {
                for d in 0..args.demos as u64 {
                    p.extend(ids(1000 * e + d + 1, args.query_tokens + 1, vocab));
                    p.extend([10, 10]);
                }
            }
            p.extend(ids(1000 * e + 999, len, vocab));
            p
        })
        .collect()
}

fn measure(
    decoder: &Decoder,
    args: &EvalBenchConfig,
    prompts: &[Vec<u32>],
    top_k: usize,
) -> Result<ModeThroughput> {
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    order.sort_by_key(|&i| prompts[i].len());
    let options = GenerateOptions {
        max_new_tokens: args.gen_tokens,
        eos_token_ids: Vec::new(),
        pad_token_id: 0,
        use_cache: true,
    };
    let t = Instant::now();
    for chunk in order.chunks(args.batch_size) {
        let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| prompts[i].clone()).collect();
        if args.gen_tokens == 1 {
            let d = engine::next_token(decoder, None, &batch, 0, top_k, &[1, 2])?;
            ensure!(d.len() == batch.len(), "one distribution per prompt");
        } else {
            let g = engine::generate(decoder, None, &batch, &options, |_, _| false, None)?;
            ensure!(
                g.iter().all(|g| g.tokens.len() == args.gen_tokens),
                "every row generates T tokens"
            );
        }
    }
    let seconds = t.elapsed().as_secs_f64();
    let tokens: usize = prompts.iter().map(Vec::len).sum();
    Ok(ModeThroughput {
        examples: prompts.len(),
        mean_prompt_tokens: tokens as f64 / prompts.len() as f64,
        seconds,
        examples_per_s: prompts.len() as f64 / seconds,
        prompt_tokens_per_s: tokens as f64 / seconds,
    })
}

/// Measures evaluation throughput with and without ICL demos on the bench model (on the calling thread's
/// rayon pool).
impl EvalBenchConfig {
    /// Checks the options before anything runs.
    pub fn validate(&self) -> Result<()> {
        for (flag, v) in [
            ("--eval-examples", self.examples),
            ("--eval-batch-size", self.batch_size),
            ("--eval-gen-tokens", self.gen_tokens),
            ("--eval-query-tokens", self.query_tokens),
        ] {
            ensure!(v > 0, "{flag} must be at least 1");
            ensure!(v <= 1 << 16, "{flag} {v} is too large (at most 65536)");
        }
        ensure!(
            self.demos <= 4096,
            "--eval-demos {} is too large (at most 4096)",
            self.demos
        );
        Ok(())
    }
}

pub fn run_bench(args: &EvalBenchConfig) -> Result<EvalBenchReport> {
    args.validate()?;
    let shape = BenchShape::new(args.size);
    let device = Device::flex();
    let weights = SyntheticWeights {
        config: shape.config(),
        seed: 0x1a2_e7a1,
    };
    let decoder = Decoder::load(shape.config(), &weights, DType::F32, &device)
        .context("building the bench model")?;
    let top_k = 10;
    let plain = prompts(args, shape.vocab, false);
    let icl = prompts(args, shape.vocab, true);
    // Warm-up (lazy initialisation of the backend), untimed.
    let warm = EvalBenchConfig {
        gen_tokens: args.gen_tokens.min(2),
        ..args.clone()
    };
    measure(&decoder, &warm, &plain[..1], top_k)?;
    let without_icl = measure(&decoder, args, &plain, top_k)?;
    let with_icl = measure(&decoder, args, &icl, top_k)?;
    Ok(EvalBenchReport {
        threads: rayon_threads(),
        demos: args.demos,
        batch_size: args.batch_size,
        gen_tokens: args.gen_tokens,
        top_k,
        icl_slowdown: without_icl.examples_per_s / with_icl.examples_per_s,
        without_icl,
        with_icl,
        shape,
    })
}

fn rayon_threads() -> usize {
    rayon::current_num_threads()
}
