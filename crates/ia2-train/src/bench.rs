//! Training benchmarks on the bench model of `ia2_model::bench` (seeded random weights, no download):
//! teacher collection at T = 1 and T = 64 (ours: batched with the KV cache; the seed's way: the whole
//! prefix recomputed for every token, one sequence at a time), and one epoch of `act` and of `tok`.

use crate::examples::Sequence;
use crate::loss::Item;
use crate::method::Loss;
use crate::teacher::{self, DecodeOptions, Target};
use crate::trainer::{self, LoopConfig};
use anyhow::{Result, ensure};
use burn::tensor::{DType, Device};
use ia2_model::bench::{BenchShape, BenchSize, SyntheticWeights, proc_status_mb};
use ia2_model::{Decoder, GenerateOptions, greedy_observed};
use ia2_rng::Generator;
use serde::Serialize;
use std::fmt;
use std::time::Instant;

/// Options of the training benchmark (flags: `crates/ia2/src/cli/bench.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainBenchConfig {
    /// ICL sequences (training examples) in the benchmark.
    pub sequences: usize,
    /// Tokens of each ICL prompt (demos + query).
    pub icl_tokens: usize,
    /// Tokens of each query without demos.
    pub query_tokens: usize,
    /// Sequences timed the seed's way at T = 64 (slow: the prefix is recomputed for every token).
    pub seed_way_sequences: usize,
}

impl Default for TrainBenchConfig {
    fn default() -> Self {
        TrainBenchConfig {
            sequences: 8,
            icl_tokens: 192,
            query_tokens: 32,
            seed_way_sequences: 2,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TeacherTiming {
    pub num_generated_tokens: usize,
    /// Ours: batched (all sequences in one left-padded batch), KV cache.
    pub ours_ms_per_sequence: f64,
    /// The seed's way: batch 1, full prefix recomputed per token.
    pub seed_way_ms_per_sequence: f64,
    pub speedup: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EpochTiming {
    pub method: &'static str,
    pub sequences: usize,
    pub steps: usize,
    pub seconds: f64,
    pub ms_per_sequence: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrainBenchReport {
    pub shape: BenchShape,
    pub sequences: usize,
    pub icl_tokens: usize,
    pub query_tokens: usize,
    pub teacher: Vec<TeacherTiming>,
    pub epochs: Vec<EpochTiming>,
    pub peak_rss_mb: f64,
    /// Target: collecting T = 64 at least 10× faster than the seed's way.
    pub target_speedup_t64: f64,
    pub pass: bool,
}

fn random_ids(g: &mut Generator, n: usize, vocab: usize) -> Vec<u32> {
    (0..n)
        .map(|_| (g.random() * vocab as f64) as u32 % vocab as u32)
        .collect()
}

/// The seed's teacher: for every token, a forward pass over the whole prefix (no cache), batch 1, reading the
/// attention outputs of the predicting position.
fn seed_way(decoder: &Decoder, seq: &Sequence, steps: usize) -> Result<Vec<u32>> {
    let options = GenerateOptions {
        max_new_tokens: steps,
        eos_token_ids: Vec::new(),
        pad_token_id: 0,
        use_cache: false,
    };
    let prompts = std::slice::from_ref(&seq.icl_ids);
    let out = greedy_observed(decoder, None, prompts, &options, true, |_, _| false, |_| {})?;
    Ok(out.into_iter().next().map(|g| g.tokens).unwrap_or_default())
}

/// Runs the training benchmark.
impl TrainBenchConfig {
    /// Checks the options before anything runs.
    pub fn validate(&self) -> Result<()> {
        for (flag, v, max) in [
            ("--sequences", self.sequences, 4096),
            ("--seed-way-sequences", self.seed_way_sequences, 4096),
            ("--icl-tokens", self.icl_tokens, 2048),
            ("--query-tokens", self.query_tokens, 2048),
        ] {
            ensure!(v > 0, "{flag} must be at least 1");
            ensure!(v <= max, "{flag} {v} is too large (at most {max})");
        }
        Ok(())
    }
}

pub fn run(args: &TrainBenchConfig) -> Result<TrainBenchReport> {
    args.validate()?;
    let shape = BenchShape::new(BenchSize::Reference);
    let device = Device::flex();
    let weights = SyntheticWeights {
        config: shape.config(),
        seed: 0x1a2_5eed,
    };
    let decoder = Decoder::load(shape.config(), &weights, DType::F32, &device)?;
    let mut g = Generator::new(5);
    let seqs: Vec<Sequence> = (0..args.sequences)
        .map(|i| Sequence {
            example: i,
            query_ids: random_ids(&mut g, args.query_tokens, shape.vocab),
            icl_ids: random_ids(&mut g, args.icl_tokens, shape.vocab),
            ground_truth: random_ids(&mut g, 1, shape.vocab),
        })
        .collect();
    // No EOS: every response runs to T tokens, so both ways do the same work.
    let opts = DecodeOptions {
        eos: Vec::new(),
        pad: 0,
        batch: args.sequences,
    };
    let hidden = indicatif::ProgressBar::hidden();
    let mut teacher_timings = Vec::new();
    let mut targets_t1: Vec<Target> = Vec::new();
    // Warm-up (thread pool, allocator, first-touch of the buffers), so neither way pays it when timed.
    teacher::collect(&decoder, &seqs, 1, None, &opts, &hidden)?;
    for t in [1usize, 64] {
        let start = Instant::now();
        let targets = teacher::collect(&decoder, &seqs, t, None, &opts, &hidden)?;
        let ours = start.elapsed().as_secs_f64() * 1e3 / seqs.len() as f64;
        let n_seed = args.seed_way_sequences.min(seqs.len());
        let start = Instant::now();
        for (s, target) in seqs.iter().zip(&targets).take(n_seed) {
            let tokens = seed_way(&decoder, s, t)?;
            ensure!(
                tokens == target.tokens,
                "the seed's way decoded other tokens"
            );
        }
        let seed_ms = start.elapsed().as_secs_f64() * 1e3 / n_seed as f64;
        teacher_timings.push(TeacherTiming {
            num_generated_tokens: t,
            ours_ms_per_sequence: ours,
            seed_way_ms_per_sequence: seed_ms,
            speedup: seed_ms / ours,
        });
        if t == 1 {
            targets_t1 = targets;
        }
    }

    let mut epochs = Vec::new();
    for (method, loss) in [("act", Loss::Mse), ("tok", Loss::Ce)] {
        let items: Vec<Item<'_>> = seqs
            .iter()
            .zip(&targets_t1)
            .map(|(s, t)| Item {
                query: &s.query_ids,
                response: &t.tokens,
                activations: Some(&t.activations),
                dist: None,
            })
            .collect();
        let mut adapter = ia2_model::bench::synthetic_lora(&shape, 7, &device);
        let cfg = LoopConfig {
            loss,
            ce_weight: 0.0,
            epochs: 1,
            batch_size: 4,
            micro_batch: 0,
            lr: 1e-4,
            gradient_clip: None,
            patience: 5,
            dev_eval_steps: 1000,
            seed: 0,
            pad: 0,
        };
        let start = Instant::now();
        let outcome = trainer::train(&decoder, &mut adapter, &items, &[], &cfg, |_, _| Ok(()))?;
        let seconds = start.elapsed().as_secs_f64();
        epochs.push(EpochTiming {
            method,
            sequences: items.len(),
            steps: outcome.total_steps,
            seconds,
            ms_per_sequence: seconds * 1e3 / items.len() as f64,
        });
    }
    let t64 = teacher_timings
        .iter()
        .find(|t| t.num_generated_tokens == 64)
        .map_or(0.0, |t| t.speedup);
    Ok(TrainBenchReport {
        shape,
        sequences: args.sequences,
        icl_tokens: args.icl_tokens,
        query_tokens: args.query_tokens,
        teacher: teacher_timings,
        epochs,
        peak_rss_mb: proc_status_mb("VmHWM:").unwrap_or(f64::NAN),
        target_speedup_t64: 10.0,
        pass: t64 >= 10.0,
    })
}

impl fmt::Display for TrainBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "training benchmark: bench model (hidden {}, {} layers, vocab {}), {} ICL sequences of {} tokens \
             (queries {} tokens)",
            self.shape.hidden,
            self.shape.layers,
            self.shape.vocab,
            self.sequences,
            self.icl_tokens,
            self.query_tokens
        )?;
        for t in &self.teacher {
            writeln!(
                f,
                "  teacher T={:<3} ours {:>8.1} ms/seq (batched, KV cache)   seed's way {:>9.1} ms/seq   {:>5.1}x",
                t.num_generated_tokens,
                t.ours_ms_per_sequence,
                t.seed_way_ms_per_sequence,
                t.speedup
            )?;
        }
        for e in &self.epochs {
            writeln!(
                f,
                "  one epoch of {:<4} {} sequences, {} steps: {:.2} s ({:.1} ms/sequence)",
                e.method, e.sequences, e.steps, e.seconds, e.ms_per_sequence
            )?;
        }
        writeln!(f, "  peak RSS {:.0} MB", self.peak_rss_mb)?;
        write!(
            f,
            "  target: teacher at T=64 ≥ {:.0}x faster than the seed's way: {}",
            self.target_speedup_t64,
            if self.pass { "PASS" } else { "MISS" }
        )
    }
}
