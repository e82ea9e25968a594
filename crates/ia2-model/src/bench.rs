//! `ia2 bench`: the reference training step of `notes/engine.md` and greedy decoding with and without
//! the KV cache, on a synthetic Qwen3-style model with seeded random weights built in memory.
//!
//! The training step is a rank-8 LoRA on q/k/v, loss = cross-entropy of the last token + MSE of every
//! layer's attention output at 4 positions, backward, and an Adam update of the adapter tensors. The
//! report gives ms per step against the analytic FLOP count and a matmul peak measured in the same run,
//! the peak RSS, and greedy decoding tokens/s with and without the cache.

use crate::adapter::{Adapter, LoraPair, slot};
use crate::batch::{Batch, Capture, Positions};
use crate::config::{Arch, ModelConfig, Proj, RopeScaling};
use crate::decoder::{Decoder, WeightSource};
use crate::optim::{Adam, AdamConfig, GradAccumulator};
use anyhow::{Context, Result, bail, ensure};
use burn::tensor::activation::log_softmax;
use burn::tensor::{DType, Device, Tensor, TensorData};
use serde::Serialize;
use std::fmt;
use std::path::PathBuf;
use std::time::Instant;

/// Model size of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchSize {
    /// The step of notes/engine.md: hidden 512, 8 layers, 8/2 heads, vocab 8192, sequence 256.
    #[default]
    Reference,
    /// A seconds-long smoke test: hidden 64, 2 layers, sequence 16.
    Tiny,
}

impl BenchSize {
    pub const ALL: [BenchSize; 2] = [BenchSize::Reference, BenchSize::Tiny];

    pub fn as_str(self) -> &'static str {
        match self {
            BenchSize::Reference => "reference",
            BenchSize::Tiny => "tiny",
        }
    }
}

impl fmt::Display for BenchSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for BenchSize {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        BenchSize::ALL
            .into_iter()
            .find(|b| b.as_str() == s)
            .ok_or_else(|| anyhow::anyhow!("unknown bench size {s:?}: expected reference or tiny"))
    }
}

/// Options of the model benchmark (flags: `crates/ia2/src/cli/bench.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BenchConfig {
    /// Timed training steps (after the warm-up steps).
    pub steps: usize,
    /// Untimed warm-up training steps.
    pub warmup: usize,
    /// Tokens generated greedily, with and without the KV cache.
    pub decode_tokens: usize,
    /// Worker threads (default: rayon's default, one per core).
    pub threads: Option<usize>,
    /// Model size.
    pub size: BenchSize,
    /// Also write the report as JSON to this file.
    pub json: Option<PathBuf>,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            steps: 10,
            warmup: 2,
            decode_tokens: 200,
            threads: None,
            size: BenchSize::Reference,
            json: None,
        }
    }
}

/// Sizes of the benchmark model and workload.
#[derive(Debug, Clone, Serialize)]
pub struct BenchShape {
    pub size: BenchSize,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub intermediate: usize,
    pub vocab: usize,
    pub seq: usize,
    pub batch: usize,
    pub lora_rank: usize,
    pub lora_targets: Vec<&'static str>,
    /// Positions of the attention-output MSE.
    pub mse_positions: Vec<usize>,
    pub prompt_tokens: usize,
    /// Side of the square matmul used for the peak.
    pub matmul_n: usize,
    pub dtype: &'static str,
    pub params: usize,
}

impl BenchShape {
    /// The sizes of `size`.
    pub fn new(size: BenchSize) -> BenchShape {
        let (hidden, layers, heads, kv_heads, head_dim, intermediate, vocab, seq, prompt, n) =
            match size {
                BenchSize::Reference => (512, 8, 8, 2, 64, 1536, 8192, 256, 16, 1024),
                BenchSize::Tiny => (64, 2, 4, 2, 16, 128, 256, 16, 4, 128),
            };
        let mut shape = BenchShape {
            size,
            hidden,
            layers,
            heads,
            kv_heads,
            head_dim,
            intermediate,
            vocab,
            seq,
            batch: 1,
            lora_rank: 8,
            lora_targets: vec!["q_proj", "k_proj", "v_proj"],
            mse_positions: (1..=4).map(|i| i * seq / 4 - 1).collect(),
            prompt_tokens: prompt,
            matmul_n: n,
            dtype: "f32",
            params: 0,
        };
        let c = shape.config();
        shape.params = 2 * vocab * hidden
            + layers
                * Proj::ALL
                    .iter()
                    .map(|p| {
                        let (i, o) = p.shape(&c);
                        i * o
                    })
                    .sum::<usize>();
        shape
    }

    /// The Qwen3 configuration of the synthetic model (untied LM head, no biases).
    pub fn config(&self) -> ModelConfig {
        ModelConfig {
            arch: Arch::Qwen3,
            vocab_size: self.vocab,
            hidden_size: self.hidden,
            intermediate_size: self.intermediate,
            num_hidden_layers: self.layers,
            num_attention_heads: self.heads,
            num_key_value_heads: self.kv_heads,
            head_dim: self.head_dim,
            rms_norm_eps: 1e-6,
            max_position_embeddings: 4096,
            tie_word_embeddings: false,
            rope_theta: 1_000_000.0,
            rope_scaling: RopeScaling::Default,
            attention_bias: false,
            mlp_bias: false,
            bos_token_id: None,
            eos_token_ids: Vec::new(),
            pad_token_id: None,
            torch_dtype: Some("float32".into()),
        }
    }

    /// Bytes of the weights a decoding step reads: every projection and the LM head, f32.
    pub fn weight_bytes(&self) -> f64 {
        let c = self.config();
        let per_layer: usize = Proj::ALL
            .iter()
            .map(|p| {
                let (i, o) = p.shape(&c);
                i * o
            })
            .sum();
        4.0 * (self.layers * per_layer + self.vocab * self.hidden) as f64
    }

    /// Matmul FLOPs of one forward pass over `s` new tokens attending to `past + s` keys, with the LM
    /// head at `logit_positions` positions and the LoRA delta on q/k/v.
    pub fn forward_flops(&self, s: usize, past: usize, logit_positions: usize) -> f64 {
        let (s, past, p) = (s as f64, past as f64, logit_positions as f64);
        let h = self.hidden as f64;
        let q = (self.heads * self.head_dim) as f64;
        let kv = (self.kv_heads * self.head_dim) as f64;
        let i = self.intermediate as f64;
        let r = self.lora_rank as f64;
        let proj = 2.0 * s * (h * (q + 2.0 * kv) + q * h + 3.0 * h * i);
        let attn = 4.0 * s * (past + s) * q;
        let lora = 2.0 * s * r * ((h + q) + 2.0 * (h + kv));
        let head = 2.0 * p * h * self.vocab as f64;
        self.layers as f64 * (proj + attn + lora) + head
    }
}

/// FLOP formula printed with the report.
pub const FLOP_FORMULA: &str = "forward F = L * [2*S*(H*(q+2kv) + q*H + 3*H*I) + 4*S*S*q + 2*S*r*((H+q) + 2*(H+kv))] \
+ 2*P*H*V  (q = heads*head_dim, kv = kv_heads*head_dim, S = sequence, P = 1 logit position, full S*S \
attention scores as computed); step = 2F (activation-gradient backward ~ forward; frozen weights get no \
weight gradient)";

/// One training-step measurement series.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub steps: usize,
    pub warmup: usize,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    /// Medians of the phases: forward + loss, backward, Adam update (with the gradient checks).
    pub forward_ms: f64,
    pub backward_ms: f64,
    pub optimizer_ms: f64,
    pub forward_gflop: f64,
    pub step_gflop: f64,
    pub gflops_median: f64,
    pub gflops_best: f64,
    pub trainable_tensors: usize,
    /// Every trainable tensor had a finite, nonzero gradient at every step (checked, else an error).
    pub all_grads_present: bool,
    pub first_loss: f32,
    pub last_loss: f32,
    pub first_grad_norm: f64,
    /// CPU time over wall time during the timed steps (≈ cores actually used).
    pub cpu_utilisation: f64,
}

/// The matmul peak measured in the same run.
#[derive(Debug, Clone, Serialize)]
pub struct MatmulReport {
    pub n: usize,
    pub reps: usize,
    pub best_ms: f64,
    pub median_ms: f64,
    pub gflops_peak: f64,
}

/// Greedy decoding with and without the KV cache.
#[derive(Debug, Clone, Serialize)]
pub struct DecodeReport {
    pub prompt_tokens: usize,
    pub new_tokens: usize,
    pub cached_s: f64,
    pub recompute_s: f64,
    pub cached_tokens_per_s: f64,
    pub recompute_tokens_per_s: f64,
    pub speedup: f64,
    /// `speedup` with both ways at their hardware floors: the recomputation at the matmul peak over
    /// the cached decoding at the memory bandwidth (every weight read once per token). Not a bound:
    /// a recomputation further from its floor than the cached step gives a larger measured speed-up.
    pub speedup_at_floors: f64,
    /// Both runs produced the same tokens (checked, else an error).
    pub tokens_equal: bool,
    pub first_tokens: Vec<u32>,
}

/// One decoding step at a given prefix length: appending a token to a KV cache that holds the
/// prefix, against recomputing the whole prefix plus the token.
#[derive(Debug, Clone, Serialize)]
pub struct StepAtReport {
    pub prefix_tokens: usize,
    /// Medians over the timed steps.
    pub cached_ms: f64,
    pub recompute_ms: f64,
    pub speedup: f64,
    /// Weight bytes over the memory bandwidth: the floor of a cached step.
    pub cached_floor_ms: f64,
    /// Prefix FLOPs over the matmul peak: the floor of a recomputed step.
    pub recompute_floor_ms: f64,
    /// Both ways predicted the same next token at every timed step (checked, else an error).
    pub tokens_equal: bool,
}

/// Read bandwidth of main memory measured in the same run.
#[derive(Debug, Clone, Serialize)]
pub struct BandwidthReport {
    pub buffer_mb: f64,
    pub reps: usize,
    pub gb_per_s: f64,
}

/// A target next to its measured value.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub name: &'static str,
    pub measured: f64,
    pub target: f64,
    pub unit: &'static str,
    /// `true` when the target is a lower bound (`≥`), else an upper bound (`≤`).
    pub at_least: bool,
    pub pass: bool,
    pub reference: &'static str,
}

/// Everything `ia2 bench` measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub shape: BenchShape,
    pub threads: usize,
    /// /proc/loadavg (1, 5, 15 min) before and after the run.
    pub load_before: Option<[f64; 3]>,
    pub load_after: Option<[f64; 3]>,
    pub build_s: f64,
    pub step: StepReport,
    pub matmul: MatmulReport,
    /// Achieved step GFLOP/s (median) over the matmul peak.
    pub efficiency: f64,
    /// Step FLOPs at the matmul peak, in ms.
    pub floor_ms: f64,
    /// VmRSS after building the model, MB.
    pub rss_model_mb: f64,
    /// VmHWM after the training steps (process peak so far), MB.
    pub peak_rss_train_mb: f64,
    /// VmHWM at the end of the run, MB.
    pub peak_rss_mb: f64,
    pub decode: DecodeReport,
    pub step_at: StepAtReport,
    pub bandwidth: BandwidthReport,
    /// Bytes of every weight read per decoded token (projections and LM head), MB.
    pub weight_mb: f64,
    pub flop_formula: &'static str,
    /// Only for the reference size.
    pub targets: Vec<Target>,
}

/// Runs the benchmark (on the calling thread's rayon pool, or a pool of `args.threads`).
impl BenchConfig {
    /// Checks the options before anything runs (`ia2 bench` checks every suite's options first).
    pub fn validate(&self) -> Result<()> {
        ensure!(self.steps > 0, "--steps must be at least 1");
        ensure!(self.decode_tokens > 0, "--decode-tokens must be at least 1");
        ensure!(
            self.decode_tokens <= 2048,
            "--decode-tokens {} is past the benchmark model's position limit (at most 2048)",
            self.decode_tokens
        );
        if let Some(n) = self.threads {
            ensure!(n > 0, "--threads must be at least 1");
            ensure!(
                n <= 4096,
                "--threads {n} is implausibly large (at most 4096)"
            );
        }
        if let Some(path) = &self.json
            && path.is_dir()
        {
            anyhow::bail!("--json {} is a directory", path.display());
        }
        Ok(())
    }
}

pub fn run(args: &BenchConfig) -> Result<BenchReport> {
    args.validate()?;
    let report = match args.threads {
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .context("building the thread pool")?
            .install(|| run_inner(args))?,
        None => run_inner(args)?,
    };
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("--json: writing {}", path.display()))?;
    }
    Ok(report)
}

fn run_inner(args: &BenchConfig) -> Result<BenchReport> {
    let load_before = loadavg();
    let shape = BenchShape::new(args.size);
    let device = Device::flex();
    let seed = 0x1a2_5eed;

    let t = Instant::now();
    let weights = SyntheticWeights {
        config: shape.config(),
        seed,
    };
    let decoder = Decoder::load(shape.config(), &weights, DType::F32, &device)?;
    let mut adapter = synthetic_lora(&shape, seed, &device);
    adapter.require_grad();
    let build_s = t.elapsed().as_secs_f64();
    let rss_model_mb = proc_status_mb("VmRSS:").unwrap_or(f64::NAN);

    let step = train(&shape, args, &decoder, &mut adapter, seed, &device)?;
    let peak_rss_train_mb = proc_status_mb("VmHWM:").unwrap_or(f64::NAN);

    let matmul = matmul_peak(shape.matmul_n, &device);

    // Measured before the bandwidth probe, whose buffer would raise the high-water mark.
    let peak_rss_mb = proc_status_mb("VmHWM:").unwrap_or(f64::NAN);
    let bandwidth = memory_bandwidth();
    let weight_mb = shape.weight_bytes() / 1e6;
    let floors = Floors {
        shape: &shape,
        gflops: matmul.gflops_peak,
        bandwidth_gb_s: bandwidth.gb_per_s,
    };
    let decode = decode(&shape, args.decode_tokens, &decoder, seed, &floors)?;
    let step_at = step_at(&shape, STEP_AT_PREFIX, &decoder, seed, &floors)?;

    let step_flop = step.step_gflop * 1e9;
    let floor_ms = step_flop / (matmul.gflops_peak * 1e9) * 1e3;
    let targets = if shape.size == BenchSize::Reference {
        vec![
            Target {
                name: "training step (median)",
                measured: step.median_ms,
                target: 230.0,
                unit: "ms",
                at_least: false,
                pass: step.median_ms <= 230.0,
                reference: "PyTorch + PEFT ~460 ms; FLOP floor ~200 ms",
            },
            Target {
                name: "peak RSS (training)",
                measured: peak_rss_train_mb,
                target: 400.0,
                unit: "MB",
                at_least: false,
                pass: peak_rss_train_mb <= 400.0,
                reference: "PyTorch + PEFT ~1070 MB",
            },
            // The "10× faster than recomputing the prefix at 200 tokens" is judged on a step at a
            // 200-token prefix. The whole 16 + 200-token generation above averages over prefixes of 16 to
            // 215 tokens; its ratio is printed with what the hardware floors allow (≈ 10× here).
            Target {
                name: "KV cache, step at 200",
                measured: step_at.speedup,
                target: 10.0,
                unit: "x",
                at_least: true,
                pass: step_at.speedup >= 10.0,
                reference: "one decoding step at a 200-token prefix, batch 1",
            },
        ]
    } else {
        Vec::new()
    };
    Ok(BenchReport {
        threads: rayon::current_num_threads(),
        load_before,
        load_after: loadavg(),
        build_s,
        efficiency: step.gflops_median / matmul.gflops_peak,
        floor_ms,
        step,
        matmul,
        rss_model_mb,
        peak_rss_train_mb,
        peak_rss_mb,
        decode,
        step_at,
        bandwidth,
        weight_mb,
        flop_formula: FLOP_FORMULA,
        targets,
        shape,
    })
}

/// Seeded random weights for a [`ModelConfig`], generated on demand per tensor name.
///
/// Linear weights are uniform with standard deviation `1/sqrt(in)`, embeddings with standard deviation
/// 1, every RMSNorm weight is 1, so logits have unit scale and greedy decoding has clear argmax margins.
pub struct SyntheticWeights {
    pub config: ModelConfig,
    pub seed: u64,
}

impl SyntheticWeights {
    /// Shape and standard deviation (0 for "all ones") of a checkpoint tensor.
    fn spec(&self, name: &str) -> Option<(Vec<usize>, f64)> {
        let c = &self.config;
        let linear = |out: usize, inp: usize| Some((vec![out, inp], 1.0 / (inp as f64).sqrt()));
        match name {
            "model.embed_tokens.weight" => return Some((vec![c.vocab_size, c.hidden_size], 1.0)),
            "lm_head.weight" => return linear(c.vocab_size, c.hidden_size),
            "model.norm.weight" => return Some((vec![c.hidden_size], 0.0)),
            _ => {}
        }
        let rest = name.strip_prefix("model.layers.")?;
        let (layer, rest) = rest.split_once('.')?;
        if layer.parse::<usize>().ok()? >= c.num_hidden_layers {
            return None;
        }
        match rest {
            "input_layernorm.weight" | "post_attention_layernorm.weight" => {
                Some((vec![c.hidden_size], 0.0))
            }
            "self_attn.q_norm.weight" | "self_attn.k_norm.weight" if c.qk_norm() => {
                Some((vec![c.head_dim], 0.0))
            }
            _ => {
                let (block, rest) = rest.split_once('.')?;
                let (module, kind) = rest.split_once('.')?;
                let proj = Proj::from_name(module).filter(|p| p.block() == block)?;
                let (inp, out) = proj.shape(c);
                match kind {
                    "weight" => linear(out, inp),
                    "bias" if proj.has_bias(c) => Some((vec![out], 0.02)),
                    _ => None,
                }
            }
        }
    }
}

impl WeightSource for SyntheticWeights {
    fn tensor(&self, name: &str, dtype: DType) -> Result<TensorData> {
        let Some((shape, std)) = self.spec(name) else {
            bail!("synthetic model has no tensor {name}");
        };
        let n = shape.iter().product();
        let values = if std == 0.0 {
            vec![1.0; n]
        } else {
            Rng::for_name(self.seed, name).uniform_vec(n, std)
        };
        let data = TensorData::new(values, shape);
        Ok(if dtype == DType::F32 {
            data
        } else {
            data.convert_dtype(dtype)
        })
    }
}

/// splitmix64: small, fast, and reproducible across platforms.
struct Rng(u64);

impl Rng {
    fn for_name(seed: u64, name: &str) -> Rng {
        // FNV-1a of the name, mixed with the seed.
        let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        Rng(h ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform values with mean 0 and standard deviation `std`.
    fn uniform_vec(&mut self, n: usize, std: f64) -> Vec<f32> {
        let a = std * 3f64.sqrt();
        (0..n)
            .map(|_| ((2.0 * self.unit() - 1.0) * a) as f32)
            .collect()
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Seeded rank-r LoRA on q/k/v of every layer, scaling 2 (alpha = 2r), both matrices nonzero, on the
/// plain device (call [`Adapter::require_grad`] to train it).
pub fn synthetic_lora(shape: &BenchShape, seed: u64, device: &Device) -> Adapter {
    let c = shape.config();
    let r = shape.lora_rank;
    let mut pairs = vec![None; c.num_hidden_layers * Proj::ALL.len()];
    for l in 0..c.num_hidden_layers {
        for proj in [Proj::Q, Proj::K, Proj::V] {
            let (inp, out) = proj.shape(&c);
            let mut rng = Rng::for_name(seed, &format!("lora.{}", slot(l, proj)));
            let a = rng.uniform_vec(r * inp, 1.0 / (inp as f64).sqrt());
            let b = rng.uniform_vec(out * r, 0.01);
            pairs[slot(l, proj)] = Some(LoraPair {
                a: Tensor::from_data(TensorData::new(a, [r, inp]), device),
                b: Tensor::from_data(TensorData::new(b, [out, r]), device),
            });
        }
    }
    Adapter::Lora {
        scaling: 2.0,
        pairs,
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn train(
    shape: &BenchShape,
    args: &BenchConfig,
    decoder: &Decoder,
    adapter: &mut Adapter,
    seed: u64,
    device: &Device,
) -> Result<StepReport> {
    let mut rng = Rng::for_name(seed, "train.inputs");
    let ids: Vec<u32> = (0..shape.seq)
        .map(|_| rng.below(shape.vocab) as u32)
        .collect();
    let target = rng.below(shape.vocab);
    let batch = Batch::single(&ids);
    let positions = shape.mse_positions.clone();
    let capture = Capture {
        logits: Positions::Last,
        attn: Positions::At(vec![positions.clone()]),
    };
    let attn_targets: Vec<Tensor<3>> = (0..shape.layers)
        .map(|_| {
            let v = rng.uniform_vec(positions.len() * shape.hidden, 0.1);
            Tensor::from_data(
                TensorData::new(v, [1, positions.len(), shape.hidden]),
                device,
            )
        })
        .collect();
    let trainable_tensors = adapter.tensors().len();
    let mut adam = Adam::new(AdamConfig::with_lr(1e-3));
    let mut accum = GradAccumulator::new();

    let (mut total, mut fwd, mut bwd, mut opt) = (vec![], vec![], vec![], vec![]);
    let (mut first_loss, mut last_loss, mut first_grad_norm) = (f32::NAN, f32::NAN, f64::NAN);
    let mut cpu_start = None;
    let mut timed_start = None;
    for step in 0..args.warmup + args.steps {
        if step == args.warmup {
            cpu_start = cpu_time_s();
            timed_start = Some(Instant::now());
        }
        let t0 = Instant::now();
        let mut cache = decoder.new_cache(1, Some(adapter));
        let out = decoder.forward(&batch, &mut cache, Some(adapter), &capture)?;
        let logits = out.logits.context("no logits returned")?;
        ensure!(out.attn.len() == shape.layers, "attention outputs missing");
        let mut loss = log_softmax(logits, 2).narrow(2, target, 1).neg().mean();
        for (a, t) in out.attn.into_iter().zip(&attn_targets) {
            loss = loss + (a - t.clone()).square().mean();
        }
        // Reading the loss forces the forward pass on any lazy backend.
        let loss_value: f32 = loss.clone().into_scalar();
        let t1 = Instant::now();
        let mut grads = loss.backward();
        let t2 = Instant::now();
        accum.add(&adapter.tensors(), &mut grads, 1.0)?;
        let norm = accum.global_norm()?;
        ensure!(norm > 0.0, "all-zero gradient at step {step}");
        adam.step(adapter.tensors_mut(), &mut accum)?;
        let t3 = Instant::now();
        ensure!(
            loss_value.is_finite(),
            "loss is {loss_value} at step {step}"
        );
        if step == 0 {
            first_loss = loss_value;
            first_grad_norm = norm;
        }
        last_loss = loss_value;
        if step >= args.warmup {
            total.push((t3 - t0).as_secs_f64() * 1e3);
            fwd.push((t1 - t0).as_secs_f64() * 1e3);
            bwd.push((t2 - t1).as_secs_f64() * 1e3);
            opt.push((t3 - t2).as_secs_f64() * 1e3);
        }
    }
    let wall = timed_start.map_or(f64::NAN, |t| t.elapsed().as_secs_f64());
    let cpu_utilisation = match (cpu_start, cpu_time_s()) {
        (Some(a), Some(b)) => (b - a) / wall,
        _ => f64::NAN,
    };
    let forward_flop = shape.forward_flops(shape.seq, 0, 1);
    let step_flop = 2.0 * forward_flop;
    let median_ms = median(&total);
    let min_ms = total.iter().copied().fold(f64::INFINITY, f64::min);
    Ok(StepReport {
        steps: args.steps,
        warmup: args.warmup,
        median_ms,
        min_ms,
        max_ms: total.iter().copied().fold(0.0, f64::max),
        forward_ms: median(&fwd),
        backward_ms: median(&bwd),
        optimizer_ms: median(&opt),
        forward_gflop: forward_flop / 1e9,
        step_gflop: step_flop / 1e9,
        gflops_median: step_flop / median_ms / 1e6,
        gflops_best: step_flop / min_ms / 1e6,
        trainable_tensors,
        all_grads_present: true,
        first_loss,
        last_loss,
        first_grad_norm,
        cpu_utilisation,
    })
}

/// Repeated `n × n × n` f32 matmuls on the plain device: the practical peak of this machine and backend.
fn matmul_peak(n: usize, device: &Device) -> MatmulReport {
    let mut rng = Rng::for_name(1, "matmul");
    let a = Tensor::<2>::from_data(TensorData::new(rng.uniform_vec(n * n, 1.0), [n, n]), device);
    let b = Tensor::<2>::from_data(TensorData::new(rng.uniform_vec(n * n, 1.0), [n, n]), device);
    let flop = 2.0 * (n as f64).powi(3);
    // About 2 s of work at 100 GFLOP/s for n = 1024, at least 5 repetitions.
    let reps = ((2e11 / flop) as usize).clamp(5, 100);
    let mut times = Vec::with_capacity(reps);
    for i in 0..reps + 2 {
        let t = Instant::now();
        let c = a.clone().matmul(b.clone());
        let _: f32 = c.slice([0..1, 0..1]).into_scalar();
        if i >= 2 {
            times.push(ms(t));
        }
    }
    let best_ms = times.iter().copied().fold(f64::INFINITY, f64::min);
    MatmulReport {
        n,
        reps,
        best_ms,
        median_ms: median(&times),
        gflops_peak: flop / best_ms / 1e6,
    }
}

/// Greedy decoding of the base model through [`crate::greedy`] (what `ia2 generate` runs), with and
/// without the KV cache.
fn decode(
    shape: &BenchShape,
    n: usize,
    decoder: &Decoder,
    seed: u64,
    floors: &Floors,
) -> Result<DecodeReport> {
    let mut rng = Rng::for_name(seed, "decode.prompt");
    let prompt: Vec<u32> = (0..shape.prompt_tokens)
        .map(|_| rng.below(shape.vocab) as u32)
        .collect();
    let run = |max_new_tokens: usize, use_cache: bool| -> Result<(Vec<u32>, f64)> {
        let options = crate::GenerateOptions {
            max_new_tokens,
            eos_token_ids: Vec::new(),
            pad_token_id: 0,
            use_cache,
        };
        let t = Instant::now();
        let out = crate::greedy(
            decoder,
            None,
            std::slice::from_ref(&prompt),
            &options,
            |_, _| false,
            |_| {},
        )?;
        Ok((
            out.into_iter().next().expect("one prompt").tokens,
            t.elapsed().as_secs_f64(),
        ))
    };
    run(2.min(n), true)?; // warm-up of the single-token path
    let (cached, cached_s) = run(n, true)?;
    let (recomputed, recompute_s) = run(n, false)?;
    if let Some(i) = (0..n).find(|&i| cached[i] != recomputed[i]) {
        bail!(
            "greedy decoding with and without the KV cache differ at new token {i}: {} vs {}",
            cached[i],
            recomputed[i]
        );
    }
    Ok(DecodeReport {
        prompt_tokens: prompt.len(),
        new_tokens: n,
        cached_s,
        recompute_s,
        cached_tokens_per_s: n as f64 / cached_s,
        recompute_tokens_per_s: n as f64 / recompute_s,
        speedup: recompute_s / cached_s,
        speedup_at_floors: (0..n)
            .map(|i| floors.recompute_ms(prompt.len() + i))
            .sum::<f64>()
            / (n as f64 * floors.cached_ms()),
        tokens_equal: true,
        first_tokens: cached.iter().copied().take(16).collect(),
    })
}

/// Prefix length of [`StepAtReport`] (the "recomputing the prefix at 200 tokens").
pub const STEP_AT_PREFIX: usize = 200;

/// What the hardware allows: FLOPs at the matmul peak, weight bytes at the memory bandwidth.
struct Floors<'a> {
    shape: &'a BenchShape,
    gflops: f64,
    bandwidth_gb_s: f64,
}

impl Floors<'_> {
    /// A forward pass over `prefix` tokens with the logits of the last one.
    fn recompute_ms(&self, prefix: usize) -> f64 {
        self.shape.forward_flops(prefix, 0, 1) / (self.gflops * 1e9) * 1e3
    }

    /// One token through the cache: every weight read once.
    fn cached_ms(&self) -> f64 {
        self.shape.weight_bytes() / (self.bandwidth_gb_s * 1e9) * 1e3
    }
}

/// Decoding steps at a `prefix`-token context: [`STEP_REPS`] single-token steps through a KV cache
/// filled with the prefix, against the same steps recomputed from scratch (prefix + new tokens).
fn step_at(
    shape: &BenchShape,
    prefix: usize,
    decoder: &Decoder,
    seed: u64,
    floors: &Floors,
) -> Result<StepAtReport> {
    const STEP_REPS: usize = 8;
    let mut rng = Rng::for_name(seed, "decode.step_at");
    let mut ids: Vec<u32> = (0..prefix).map(|_| rng.below(shape.vocab) as u32).collect();
    let capture = Capture {
        logits: Positions::Last,
        attn: Positions::None,
    };
    let next_token = |out: crate::Output| -> Result<u32> {
        let logits = out.logits.context("no logits returned")?;
        let row = logits
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("reading logits: {e:?}"))?;
        Ok(crate::argmax(&row))
    };
    let mut cache = decoder.new_cache(1, None);
    let mut token =
        next_token(decoder.forward(&Batch::single(&ids), &mut cache, None, &capture)?)?;
    let (mut cached_ms, mut recompute_ms) = (Vec::new(), Vec::new());
    for step in 0..STEP_REPS {
        ids.push(token);
        let t = Instant::now();
        let cached =
            next_token(decoder.forward(&Batch::single(&[token]), &mut cache, None, &capture)?)?;
        cached_ms.push(ms(t));
        let t = Instant::now();
        let mut fresh = decoder.new_cache(1, None);
        let recomputed =
            next_token(decoder.forward(&Batch::single(&ids), &mut fresh, None, &capture)?)?;
        recompute_ms.push(ms(t));
        ensure!(
            cached == recomputed,
            "decoding step {step} at prefix {}: the cached step predicts {cached}, recomputing {recomputed}",
            ids.len()
        );
        token = cached;
    }
    let (cached_ms, recompute_ms) = (median(&cached_ms), median(&recompute_ms));
    Ok(StepAtReport {
        prefix_tokens: prefix,
        cached_ms,
        recompute_ms,
        speedup: recompute_ms / cached_ms,
        cached_floor_ms: floors.cached_ms(),
        recompute_floor_ms: floors.recompute_ms(prefix + STEP_REPS / 2),
        tokens_equal: true,
    })
}

/// Best read bandwidth of a 134 MB buffer (4× the L3 of this machine) summed by every thread.
fn memory_bandwidth() -> BandwidthReport {
    use rayon::prelude::*;
    let n = 32 << 20;
    // Distinct contents on every page, so no page-sharing layer can serve it from a few pages.
    let buf: Vec<f32> = (0..n)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 8) as f32)
        .collect();
    let reps = 10;
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        let s: f32 = buf
            .par_chunks(1 << 16)
            .map(|c| {
                let mut acc = [0f32; 8];
                for ch in c.chunks_exact(8) {
                    for i in 0..8 {
                        acc[i] += ch[i];
                    }
                }
                acc.iter().sum::<f32>()
            })
            .sum();
        std::hint::black_box(s);
        best = best.min(t.elapsed().as_secs_f64());
    }
    BandwidthReport {
        buffer_mb: (n * 4) as f64 / 1e6,
        reps,
        gb_per_s: (n * 4) as f64 / best / 1e9,
    }
}

/// A `kB` field of /proc/self/status (`VmRSS:`, `VmHWM:`), in MB (10^6 bytes).
pub fn proc_status_mb(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024.0 / 1e6)
}

fn loadavg() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|x| x.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// User + system CPU time of this process (clock ticks of 1/100 s, as on Linux).
fn cpu_time_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the command name and state.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shape;
        let load = |l: Option<[f64; 3]>| {
            l.map_or("n/a".to_string(), |[a, b, c]| {
                format!("{a:.2} {b:.2} {c:.2}")
            })
        };
        writeln!(
            f,
            "ia2 bench ({:?}): Qwen3-style hidden {}, {} layers, {}/{} heads x {}, intermediate {}, \
             vocab {}, {:.1} M params, {}",
            s.size,
            s.hidden,
            s.layers,
            s.heads,
            s.kv_heads,
            s.head_dim,
            s.intermediate,
            s.vocab,
            s.params as f64 / 1e6,
            s.dtype
        )?;
        writeln!(
            f,
            "threads {}, load average before {} / after {}, model built in {:.2} s",
            self.threads,
            load(self.load_before),
            load(self.load_after),
            self.build_s
        )?;
        let st = &self.step;
        writeln!(f)?;
        writeln!(
            f,
            "training step: sequence {}, batch {}, LoRA r={} on {}, CE(last token) + MSE(attention \
             output at {:?}), backward, Adam",
            s.seq,
            s.batch,
            s.lora_rank,
            s.lora_targets.join("/"),
            s.mse_positions
        )?;
        writeln!(
            f,
            "  {} steps after {} warm-up: median {:.1} ms, min {:.1} ms, max {:.1} ms",
            st.steps, st.warmup, st.median_ms, st.min_ms, st.max_ms
        )?;
        writeln!(
            f,
            "  phases (medians): forward+loss {:.1} ms, backward {:.1} ms, Adam {:.1} ms; CPU use {:.2} cores",
            st.forward_ms, st.backward_ms, st.optimizer_ms, st.cpu_utilisation
        )?;
        writeln!(
            f,
            "  FLOPs: forward {:.2} G, step {:.2} G -> {:.1} GFLOP/s median, {:.1} best ({:.0}% of peak)",
            st.forward_gflop,
            st.step_gflop,
            st.gflops_median,
            st.gflops_best,
            self.efficiency * 100.0
        )?;
        writeln!(
            f,
            "  matmul peak ({0}x{0}x{0} f32, {1} reps): {2:.1} GFLOP/s (best {3:.2} ms, median {4:.2} ms); \
             FLOP floor of the step {5:.1} ms",
            self.matmul.n,
            self.matmul.reps,
            self.matmul.gflops_peak,
            self.matmul.best_ms,
            self.matmul.median_ms,
            self.floor_ms
        )?;
        writeln!(
            f,
            "  gradients: all {} trainable tensors every step (first |g| {:.3e}); loss {:.4} -> {:.4}",
            st.trainable_tensors, st.first_grad_norm, st.first_loss, st.last_loss
        )?;
        writeln!(
            f,
            "  memory: RSS after build {:.0} MB, peak RSS after training {:.0} MB, at the end {:.0} MB",
            self.rss_model_mb, self.peak_rss_train_mb, self.peak_rss_mb
        )?;
        writeln!(f, "  FLOP formula: {}", self.flop_formula)?;
        let d = &self.decode;
        writeln!(f)?;
        writeln!(
            f,
            "greedy decoding (base model, ia2_model::greedy): prompt {}, {} new tokens, batch 1",
            d.prompt_tokens, d.new_tokens
        )?;
        writeln!(
            f,
            "  KV cache: {:.2} s, {:.1} tokens/s; recompute: {:.2} s, {:.1} tokens/s; speed-up {:.1}x; \
             same tokens: {} (first {:?})",
            d.cached_s,
            d.cached_tokens_per_s,
            d.recompute_s,
            d.recompute_tokens_per_s,
            d.speedup,
            d.tokens_equal,
            d.first_tokens
        )?;
        writeln!(
            f,
            "  that speed-up with both ways at their floors: {:.1}x (recomputation at the matmul peak, the \
             cache reading the {:.0} MB of weights once per token at {:.1} GB/s, measured over a {:.0} MB buffer)",
            d.speedup_at_floors, self.weight_mb, self.bandwidth.gb_per_s, self.bandwidth.buffer_mb
        )?;
        let a = &self.step_at;
        writeln!(
            f,
            "  one step at a {}-token prefix (medians): KV cache {:.2} ms (floor {:.2}), recompute {:.1} ms \
             (floor {:.1}); speed-up {:.1}x ({:.1}x at the floors); same next tokens: {}",
            a.prefix_tokens,
            a.cached_ms,
            a.cached_floor_ms,
            a.recompute_ms,
            a.recompute_floor_ms,
            a.speedup,
            a.recompute_floor_ms / a.cached_floor_ms,
            a.tokens_equal
        )?;
        if !self.targets.is_empty() {
            writeln!(f)?;
            writeln!(f, "targets:")?;
            for t in &self.targets {
                writeln!(
                    f,
                    "  {:<24} {:>8.1} {:<2}  {} {:>6.1} {:<2}  {}  ({})",
                    t.name,
                    t.measured,
                    t.unit,
                    if t.at_least { ">=" } else { "<=" },
                    t.target,
                    t.unit,
                    if t.pass { "PASS" } else { "MISS" },
                    t.reference
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_tiny_is_sane() {
        let args = BenchConfig {
            steps: 2,
            warmup: 1,
            decode_tokens: 8,
            threads: Some(2),
            size: BenchSize::Tiny,
            json: None,
        };
        let r = run(&args).expect("tiny benchmark");
        assert!(r.step.all_grads_present);
        assert_eq!(r.step.trainable_tensors, 2 * 3 * r.shape.layers);
        assert!(r.step.first_grad_norm > 0.0 && r.step.first_grad_norm.is_finite());
        assert!(r.step.first_loss.is_finite() && r.step.last_loss.is_finite());
        assert!(r.step.median_ms > 0.0 && r.step.min_ms <= r.step.median_ms);
        assert!(r.matmul.gflops_peak > 0.0);
        assert!(r.decode.tokens_equal);
        assert!(r.step_at.tokens_equal && r.step_at.prefix_tokens == STEP_AT_PREFIX);
        assert!(r.step_at.cached_ms > 0.0 && r.step_at.recompute_ms > 0.0);
        assert!(r.bandwidth.gb_per_s > 0.0 && r.weight_mb > 0.0);
        assert_eq!(r.decode.new_tokens, 8);
        assert!(
            r.decode
                .first_tokens
                .iter()
                .all(|&t| (t as usize) < r.shape.vocab)
        );
        assert!(r.peak_rss_mb > 0.0);
        assert!(r.targets.is_empty());
        let text = r.to_string();
        assert!(text.contains("training step") && text.contains("KV cache"));
        let json = serde_json::to_value(&r).expect("json");
        assert!(json["step"]["median_ms"].as_f64().is_some());
    }

    #[test]
    fn flops_match_engine_notes() {
        let s = BenchShape::new(BenchSize::Reference);
        // notes/engine.md: forward ~13.4 GFLOP.
        let f = s.forward_flops(s.seq, 0, 1) / 1e9;
        assert!((13.3..13.6).contains(&f), "{f}");
        assert_eq!(s.mse_positions, vec![63, 127, 191, 255]);
    }

    #[test]
    fn synthetic_weights_cover_the_decoder() {
        let shape = BenchShape::new(BenchSize::Tiny);
        let w = SyntheticWeights {
            config: shape.config(),
            seed: 7,
        };
        assert!(w.spec("model.layers.1.mlp.down_proj.weight").is_some());
        assert!(w.spec("model.layers.2.mlp.down_proj.weight").is_none());
        assert!(w.spec("model.layers.0.mlp.q_proj.weight").is_none());
        let a = w.tensor("lm_head.weight", DType::F32).unwrap();
        let b = w.tensor("lm_head.weight", DType::F32).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.shape().as_slice(), &[shape.vocab, shape.hidden]);
    }
}
