//! `ia2 bench --suite scale`: load time, memory and step times at real model sizes, on synthetic checkpoints
//! with the shapes of Qwen3-0.6B, 1.7B and 4B ([`ia2_model::synthetic`]: seeded bf16 weights, no download).
//!
//! Every measurement runs in a child process of its own (the binary re-invokes itself, see [`run`]), so the
//! peak RSS belongs to one configuration. A child ([`run_child`]):
//! 1. loads the checkpoint through the path every command takes ([`ia2_load::ModelOptions::load`]) in the
//!    asked dtype, and records the load time and the RSS (anonymous and file-backed) after it;
//! 2. builds a fresh LoRA r = 8, alpha 8 on q, k, o ([`ia2_adapters::init_adapter`], as `ia2 train` does) and
//!    runs `act` training steps through the trainer's own loss ([`crate::loss::batch_loss`]): one sequence of
//!    `seq_len` tokens whose last `response_tokens` positions capture every layer's attention output, MSE to
//!    fixed seeded targets, backward, Adam ([`ia2_model::optim`]); one warm-up step, then `train_steps` timed;
//! 3. runs one evaluation batch as `ia2 eval` does: `eval_batch` left-padded prompts of up to `seq_len`
//!    tokens, one forward pass with the logits of the last position only, the adapter attached.
//!
//! The peak RSS (`VmHWM`) is read after each phase and reset between phases (`/proc/self/clear_refs`), so
//! each phase has its own peak; the child's peak is the largest. The parent skips a configuration whose
//! estimated need (weight bytes × 1.3 + activations) exceeds `MemAvailable`, and says so in the report.

use crate::loss::{Item, batch_loss};
use crate::method::Loss;
use anyhow::{Context, Result, bail, ensure};
use burn::tensor::DType;
use ia2_adapters::{LoraConfig, PeftConfig};
use ia2_load::{ModelOptions, WeightDtype};
use ia2_model::optim::{Adam, AdamConfig, GradAccumulator};
use ia2_model::synthetic::{self, SyntheticModel, SyntheticOptions};
use ia2_model::{Batch, Capture, ModelConfig, Positions};
use ia2_rng::Generator;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::time::Instant;

/// Options of the scale benchmark (flags: `crates/ia2/src/cli/bench.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScaleBenchConfig {
    /// Model shapes.
    pub sizes: Vec<SyntheticModel>,
    /// Precisions the weights are held in.
    pub dtypes: Vec<WeightDtype>,
    /// Child processes per configuration (the report gives min–max ranges over them).
    pub repetitions: usize,
    /// Tokens of the training sequence and of the longest evaluation prompt.
    pub seq_len: usize,
    /// Response tokens of the training sequence (positions of the activation MSE).
    pub response_tokens: usize,
    /// Timed training steps per child (after one warm-up step).
    pub train_steps: usize,
    /// Prompts of the evaluation batch.
    pub eval_batch: usize,
    /// Worker threads of each child (default: rayon's default, one per core).
    pub threads: Option<usize>,
    /// Also write the report as JSON to this file.
    pub json: Option<PathBuf>,
    /// Directory with a tokenizer.json (e.g. Qwen3's) copied into the synthetic checkpoints (default: a
    /// byte-level tokenizer).
    pub tokenizer: Option<PathBuf>,
    /// Run configurations even where the memory estimate exceeds MemAvailable.
    pub ignore_memory_estimate: bool,
    /// Train with `Decoder::recompute_mlp` (`ia2 train --recompute-mlp`).
    pub recompute_mlp: bool,
}

impl Default for ScaleBenchConfig {
    fn default() -> Self {
        ScaleBenchConfig {
            sizes: SyntheticModel::REAL.to_vec(),
            dtypes: vec![WeightDtype::F32, WeightDtype::Bf16],
            repetitions: 3,
            seq_len: 300,
            response_tokens: 1,
            train_steps: 2,
            eval_batch: 8,
            threads: None,
            json: None,
            tokenizer: None,
            ignore_memory_estimate: false,
            recompute_mlp: false,
        }
    }
}

impl ScaleBenchConfig {
    /// Checks the options before anything runs.
    pub fn validate(&self) -> Result<()> {
        ensure!(!self.sizes.is_empty(), "--sizes: give at least one size");
        ensure!(!self.dtypes.is_empty(), "--dtypes: give at least one dtype");
        for (flag, v, max) in [
            ("--repetitions", self.repetitions, 1000),
            ("--seq-len", self.seq_len, 32_768),
            ("--response-tokens", self.response_tokens, 32_768),
            ("--train-steps", self.train_steps, 10_000),
            ("--eval-batch", self.eval_batch, 4096),
        ] {
            ensure!(v > 0, "{flag} must be at least 1");
            ensure!(v <= max, "{flag} {v} is too large (at most {max})");
        }
        ensure!(
            self.response_tokens < self.seq_len,
            "--response-tokens {} must be smaller than --seq-len {}",
            self.response_tokens,
            self.seq_len
        );
        if let Some(n) = self.threads {
            ensure!(
                (1..=4096).contains(&n),
                "--scale-threads must be between 1 and 4096"
            );
        }
        if let Some(path) = &self.json {
            ensure!(
                !path.is_dir(),
                "--scale-json {} is a directory",
                path.display()
            );
        }
        if let Some(dir) = &self.tokenizer {
            ensure!(
                dir.join("tokenizer.json").is_file(),
                "--tokenizer {}: no tokenizer.json in it",
                dir.display()
            );
        }
        Ok(())
    }
}

/// What one child process measures (passed to it as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChildSpec {
    /// The checkpoint directory.
    pub model: PathBuf,
    pub dtype: WeightDtype,
    pub seq_len: usize,
    pub response_tokens: usize,
    pub train_steps: usize,
    pub eval_batch: usize,
    pub seed: u64,
    /// `Decoder::recompute_mlp` for the training steps.
    #[serde(default)]
    pub recompute_mlp: bool,
}

/// The training steps of one child.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainMeasure {
    pub warmup_s: f64,
    /// Each timed step, seconds.
    pub step_s: Vec<f64>,
    /// Medians over the timed steps: forward + loss, backward, gradient accumulation + Adam.
    pub forward_s: f64,
    pub backward_s: f64,
    pub optimizer_s: f64,
    pub trainable_tensors: usize,
    pub trainable_params: usize,
    pub first_loss: f64,
    pub last_loss: f64,
    pub last_grad_norm: f64,
}

/// The evaluation batch of one child.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalMeasure {
    pub batch: usize,
    pub tokens: usize,
    pub seconds: f64,
    /// Every logit finite (checked, else an error).
    pub finite: bool,
}

/// Everything one child measured. Memory in bytes (10^9 = 1 GB in the table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildReport {
    pub threads: usize,
    /// RSS of the child before loading (the executable and its runtime).
    pub rss_before_load: u64,
    pub load_s: f64,
    pub rss_after_load: u64,
    /// Anonymous and file-backed (memory-mapped checkpoint) parts of `rss_after_load`.
    pub rss_anon_after_load: u64,
    pub rss_file_after_load: u64,
    /// One forward pass over 8 tokens right after loading: weights that are mapped rather than copied at
    /// load time are paged in here, so `load_s + first_forward_s` compares loads of either kind.
    pub first_forward_s: f64,
    pub rss_after_first_forward: u64,
    /// Peak RSS of each phase (VmHWM reset between phases where the kernel allows it); the load phase
    /// includes the first forward pass.
    pub peak_load: u64,
    pub peak_train: u64,
    pub peak_eval: u64,
    /// Largest of the phase peaks: the peak of the whole child.
    pub peak_rss: u64,
    /// Whether VmHWM could be reset between phases (else each phase's value is the peak so far).
    pub phase_peaks_reset: bool,
    /// The dtype the decoder holds its weights in.
    pub held_dtype: String,
    /// Bytes of every checkpoint tensor in the held dtype.
    pub weight_bytes: u64,
    /// `peak_rss / weight_bytes`.
    pub peak_over_weights: f64,
    pub train: TrainMeasure,
    pub eval: EvalMeasure,
}

/// Whether a configuration ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "reason")]
pub enum Status {
    Ok,
    /// Not run: the memory estimate exceeds what is available (or the checkpoint could not be written).
    Skipped(String),
    /// A child failed (error, or killed: out of memory?).
    Failed(String),
}

/// A `min`–`max` range over the repetitions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Range {
    pub min: f64,
    pub max: f64,
}

impl Range {
    fn of(values: impl IntoIterator<Item = f64>) -> Option<Range> {
        let v: Vec<f64> = values.into_iter().collect();
        (!v.is_empty()).then(|| Range {
            min: v.iter().copied().fold(f64::INFINITY, f64::min),
            max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

/// Ranges over the repetitions of one configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub load_s: Range,
    /// Load and the first forward pass (mapped weights paged in).
    pub load_first_forward_s: Range,
    pub rss_after_load_gb: Range,
    pub peak_rss_gb: Range,
    pub peak_over_weights: Range,
    /// Median timed step of each child.
    pub train_step_s: Range,
    pub peak_train_gb: Range,
    pub eval_batch_s: Range,
    pub peak_eval_gb: Range,
}

/// One (size, dtype) configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigResult {
    pub size: SyntheticModel,
    pub dtype: WeightDtype,
    pub params: u64,
    pub weight_bytes: u64,
    /// The parent's estimate of the child's need, and MemAvailable when it was checked.
    pub estimate_bytes: u64,
    pub available_bytes: Option<u64>,
    #[serde(flatten)]
    pub status: Status,
    pub runs: Vec<ChildReport>,
    pub summary: Option<Summary>,
}

/// The synthetic checkpoint of one size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointInfo {
    pub size: SyntheticModel,
    /// The dtype of its files (the dtype it is held in).
    pub dtype: String,
    pub dir: PathBuf,
    pub bytes: u64,
    pub shards: usize,
    pub written: bool,
    pub write_s: f64,
}

/// Everything `ia2 bench --suite scale` measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaleReport {
    pub config: ScaleBenchConfig,
    pub mem_total_bytes: Option<u64>,
    pub cpus: usize,
    pub load_before: Option<[f64; 3]>,
    pub load_after: Option<[f64; 3]>,
    pub checkpoints: Vec<CheckpointInfo>,
    pub results: Vec<ConfigResult>,
}

/// The safetensors dtype a checkpoint to be held in `d` is written in.
pub fn file_dtype(d: WeightDtype) -> ia2_hf::Dtype {
    match d {
        WeightDtype::F32 => ia2_hf::Dtype::F32,
        WeightDtype::Bf16 => ia2_hf::Dtype::BF16,
        WeightDtype::F16 => ia2_hf::Dtype::F16,
    }
}

/// Bytes per element of a held dtype.
pub fn dtype_bytes(d: WeightDtype) -> usize {
    match d {
        WeightDtype::F32 => 4,
        WeightDtype::Bf16 | WeightDtype::F16 => 2,
    }
}

/// Estimated activation bytes of the larger phase: the training step over `seq` tokens (what backward keeps
/// per layer and token: ~12 hidden-sized, 4 intermediate-sized, 3 query-sized and 4 key/value-sized f32
/// vectors, and two `heads × seq` attention rows) or the evaluation batch (transients of one layer at a
/// time over `batch × seq` tokens, and the last position's logits).
pub fn activation_bytes(c: &ModelConfig, seq: usize, batch: usize) -> u64 {
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let q = c.num_attention_heads * c.head_dim;
    let kv = c.num_key_value_heads * c.head_dim;
    let per_token = 12 * h + 4 * i + 3 * q + 4 * kv + 2 * c.num_attention_heads * seq;
    let train = (c.num_hidden_layers * seq * per_token * 4) as u64;
    let eval_per_token = 4 * h + 3 * i + q + 2 * kv + 2 * c.num_attention_heads * seq;
    let eval = (batch * seq * eval_per_token * 4 + batch * c.vocab_size * 4) as u64;
    train.max(eval)
}

/// What the parent expects a child to need: the weights × 1.3, the activations, and 300 MB of runtime.
pub fn estimate_bytes(c: &ModelConfig, dtype: WeightDtype, seq: usize, batch: usize) -> u64 {
    let weights = synthetic::weight_bytes(c, dtype_bytes(dtype)) as f64;
    (weights * 1.3) as u64 + activation_bytes(c, seq, batch) + 300_000_000
}

/// Why a configuration needing `estimate` bytes is skipped with `available` bytes of memory available
/// (`None`: it runs; also when the available memory is unknown or `ignore` is set).
pub fn does_not_fit(estimate: u64, available: Option<u64>, ignore: bool) -> Option<String> {
    match available {
        Some(a) if a < estimate && !ignore => Some(format!(
            "does not fit: needs ≈ {:.1} GB, {:.1} GB available",
            estimate as f64 / 1e9,
            a as f64 / 1e9
        )),
        _ => None,
    }
}

/// A `kB` field of a /proc file (`/proc/self/status`, `/proc/meminfo`), in bytes.
pub fn proc_kb_field(file: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

fn status_bytes(field: &str) -> u64 {
    proc_kb_field("/proc/self/status", field).unwrap_or(0)
}

/// Resets VmHWM to the current RSS (Linux ≥ 4.0); false where not allowed.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn loadavg() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|x| x.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn random_ids(g: &mut Generator, n: usize, vocab: usize) -> Vec<u32> {
    (0..n)
        .map(|_| g.random_interval(vocab as u64 - 1) as u32)
        .collect()
}

/// One child's measurements (see the module documentation).
pub fn run_child(spec: &ChildSpec) -> Result<ChildReport> {
    ensure!(
        spec.response_tokens > 0 && spec.response_tokens < spec.seq_len,
        "response tokens {} must be between 1 and the sequence length {} − 1",
        spec.response_tokens,
        spec.seq_len
    );
    ensure!(
        spec.train_steps > 0 && spec.eval_batch > 0,
        "empty workload"
    );
    let phase_peaks_reset = reset_peak();
    let rss_before_load = status_bytes("VmRSS:");
    let t = Instant::now();
    let loaded = ModelOptions {
        model: spec.model.display().to_string(),
        dtype: spec.dtype,
        ..ModelOptions::default()
    }
    .load()?;
    let load_s = t.elapsed().as_secs_f64();
    let rss_after_load = status_bytes("VmRSS:");
    let rss_anon_after_load = status_bytes("RssAnon:");
    let rss_file_after_load = status_bytes("RssFile:");
    let mut decoder = loaded.decoder;
    decoder.recompute_mlp = spec.recompute_mlp;
    let pad = loaded.generation.pad_id();
    drop(loaded.tokenizer);
    let c = decoder.config.clone();
    // What the decoder holds (a 16-bit file asked for in f32 stays 16-bit).
    let held_dtype = format!("{:?}", decoder.dtype).to_lowercase();
    let weight_bytes = synthetic::weight_bytes(&c, decoder.dtype.size());
    let t = Instant::now();
    let ids = random_ids(&mut Generator::new(spec.seed ^ 0xf1), 8, c.vocab_size);
    let mut cache = decoder.new_cache(1, None);
    let capture = Capture {
        logits: Positions::Last,
        attn: Positions::None,
    };
    let out = decoder.forward(&Batch::single(&ids), &mut cache, None, &capture)?;
    let first = out.logits.context("no logits returned")?;
    let first: f32 = first.cast(DType::F32).sum().into_scalar();
    ensure!(
        first.is_finite(),
        "the first forward pass gave non-finite logits"
    );
    let first_forward_s = t.elapsed().as_secs_f64();
    let rss_after_first_forward = status_bytes("VmRSS:");
    let peak_load = status_bytes("VmHWM:");

    reset_peak();
    let train = train_steps(&decoder, spec, pad)?;
    let peak_train = status_bytes("VmHWM:");
    let (adapter, train) = train;
    let rss_after_train = status_bytes("VmRSS:");
    tracing::debug!(rss_after_train, "training done");

    reset_peak();
    let eval = eval_batch(&decoder, &adapter, spec, pad)?;
    let peak_eval = status_bytes("VmHWM:");
    let peak_rss = peak_load.max(peak_train).max(peak_eval);
    Ok(ChildReport {
        threads: rayon::current_num_threads(),
        rss_before_load,
        load_s,
        rss_after_load,
        rss_anon_after_load,
        rss_file_after_load,
        first_forward_s,
        rss_after_first_forward,
        peak_load,
        peak_train,
        peak_eval,
        peak_rss,
        phase_peaks_reset,
        held_dtype,
        weight_bytes,
        peak_over_weights: peak_rss as f64 / weight_bytes as f64,
        train,
        eval,
    })
}

/// The LoRA of the benchmark: r = 8, alpha 8 on q, k, o (PEFT's initialisation, B = 0).
fn lora(c: &ModelConfig, seed: u64, device: &burn::tensor::Device) -> Result<ia2_model::Adapter> {
    let peft = PeftConfig::Lora(LoraConfig::new(8, 8.0, &["q_proj", "k_proj", "o_proj"]));
    ia2_adapters::init_adapter(&peft, c, seed, device)
}

fn train_steps(
    decoder: &ia2_model::Decoder,
    spec: &ChildSpec,
    pad: u32,
) -> Result<(ia2_model::Adapter, TrainMeasure)> {
    let c = &decoder.config;
    let mut g = Generator::new(spec.seed);
    let len = spec.response_tokens;
    // The student input is the query followed by all but the last response token: `seq_len` tokens.
    let query = random_ids(&mut g, spec.seq_len - len + 1, c.vocab_size);
    let response = random_ids(&mut g, len, c.vocab_size);
    let targets = g.normal_pairs(c.num_hidden_layers * len * c.hidden_size, 0.05);
    let item = Item {
        query: &query,
        response: &response,
        activations: Some(&targets),
        dist: None,
    };
    let mut adapter = lora(c, spec.seed, decoder.device())?;
    adapter.require_grad();
    let trainable_tensors = adapter.tensors().len();
    let trainable_params: usize = adapter
        .tensors()
        .iter()
        .map(|t| match t {
            ia2_model::adapter::AdapterTensor::D1(t) => t.shape().num_elements(),
            ia2_model::adapter::AdapterTensor::D2(t) => t.shape().num_elements(),
        })
        .sum();
    let mut adam = Adam::new(AdamConfig::with_lr(1e-3));
    let (mut step_s, mut fwd, mut bwd, mut opt) = (vec![], vec![], vec![], vec![]);
    let (mut first_loss, mut last_loss, mut last_grad_norm) = (f64::NAN, f64::NAN, f64::NAN);
    let mut warmup_s = f64::NAN;
    for step in 0..=spec.train_steps {
        let t0 = Instant::now();
        let (loss, sums) = batch_loss(decoder, &adapter, &[item], Loss::Mse, 0.0, pad)?;
        let t1 = Instant::now();
        let mut grads = loss.backward();
        let t2 = Instant::now();
        let mut accum = GradAccumulator::new();
        accum.add(&adapter.tensors(), &mut grads, 1.0)?;
        last_grad_norm = accum.global_norm()?;
        adam.step(adapter.tensors_mut(), &mut accum)?;
        let t3 = Instant::now();
        if step == 0 {
            first_loss = sums.total;
            warmup_s = (t3 - t0).as_secs_f64();
        } else {
            step_s.push((t3 - t0).as_secs_f64());
            fwd.push((t1 - t0).as_secs_f64());
            bwd.push((t2 - t1).as_secs_f64());
            opt.push((t3 - t2).as_secs_f64());
        }
        last_loss = sums.total;
    }
    ensure!(
        last_grad_norm.is_finite(),
        "the gradient norm is {last_grad_norm}"
    );
    Ok((
        adapter,
        TrainMeasure {
            warmup_s,
            step_s,
            forward_s: median(&fwd),
            backward_s: median(&bwd),
            optimizer_s: median(&opt),
            trainable_tensors,
            trainable_params,
            first_loss,
            last_loss,
            last_grad_norm,
        },
    ))
}

fn eval_batch(
    decoder: &ia2_model::Decoder,
    adapter: &ia2_model::Adapter,
    spec: &ChildSpec,
    pad: u32,
) -> Result<EvalMeasure> {
    let c = &decoder.config;
    let mut g = Generator::new(spec.seed ^ 0xe5a1);
    // Prompts of decreasing length (down to ~3/4 of seq_len), left-padded as eval batches them.
    let prompts: Vec<Vec<u32>> = (0..spec.eval_batch)
        .map(|i| {
            let n = (spec.seq_len - i * spec.seq_len / (4 * spec.eval_batch)).max(1);
            random_ids(&mut g, n, c.vocab_size)
        })
        .collect();
    let tokens = prompts.iter().map(Vec::len).sum();
    let mut adapter = adapter.clone();
    adapter.without_autodiff();
    let batch = Batch::left_padded(&prompts, pad);
    let capture = Capture {
        logits: Positions::Last,
        attn: Positions::None,
    };
    let t = Instant::now();
    // As evaluation scores a batch (`ia2_eval::engine::next_token`): one pass, no keys or values stored.
    let mut cache = decoder.new_cache(batch.batch, Some(&adapter)).one_pass();
    let out = decoder.forward(&batch, &mut cache, Some(&adapter), &capture)?;
    let logits = out.logits.context("no logits returned")?;
    ensure!(
        logits.dims() == [spec.eval_batch, 1, c.vocab_size],
        "logits of shape {:?}, expected [{}, 1, {}]",
        logits.dims(),
        spec.eval_batch,
        c.vocab_size
    );
    let values = logits
        .cast(DType::F32)
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading the logits: {e:?}"))?;
    let seconds = t.elapsed().as_secs_f64();
    ensure!(
        values.iter().all(|v| v.is_finite()),
        "non-finite logits in the evaluation batch"
    );
    Ok(EvalMeasure {
        batch: spec.eval_batch,
        tokens,
        seconds,
        finite: true,
    })
}

/// A configuration that does not run: the reason logged, its repetitions counted on the progress bar.
fn skipped(
    result: ConfigResult,
    reason: String,
    bar: &indicatif::ProgressBar,
    repetitions: usize,
) -> ConfigResult {
    tracing::warn!(size = %result.size, dtype = %result.dtype, "{reason}");
    bar.inc(repetitions as u64);
    ConfigResult {
        status: Status::Skipped(reason),
        ..result
    }
}

/// Runs the suite: for each size, writes (once, cached) its synthetic checkpoint, then for each dtype checks
/// the memory estimate and runs `repetitions` children. `child` builds the command of one child (the binary
/// re-invoked with its hidden child flag and `spec` as JSON); it must print the [`ChildReport`] as JSON on
/// the last line of its standard output.
pub fn run(
    cfg: &ScaleBenchConfig,
    child: &dyn Fn(&ChildSpec) -> Result<std::process::Command>,
) -> Result<ScaleReport> {
    cfg.validate()?;
    let load_before = loadavg();
    let cache_root = synthetic::default_cache_root();
    let opts = SyntheticOptions {
        tokenizer: cfg.tokenizer.clone(),
        ..SyntheticOptions::default()
    };
    let mut checkpoints = Vec::new();
    let mut results = Vec::new();
    let total = (cfg.sizes.len() * cfg.dtypes.len() * cfg.repetitions) as u64;
    let bar = indicatif::ProgressBar::new(total).with_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} scale [{bar:30}] {pos}/{len} runs, {elapsed} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    for &size in &cfg.sizes {
        let c = size.config();
        for &dtype in &cfg.dtypes {
            let estimate = estimate_bytes(&c, dtype, cfg.seq_len, cfg.eval_batch);
            let available = proc_kb_field("/proc/meminfo", "MemAvailable:");
            let mut result = ConfigResult {
                size,
                dtype,
                params: synthetic::param_count(&c),
                weight_bytes: synthetic::weight_bytes(&c, dtype_bytes(dtype)),
                estimate_bytes: estimate,
                available_bytes: available,
                status: Status::Ok,
                runs: Vec::new(),
                summary: None,
            };
            if let Some(reason) = does_not_fit(estimate, available, cfg.ignore_memory_estimate) {
                results.push(skipped(result, reason, &bar, cfg.repetitions));
                continue;
            }
            // The checkpoint is stored in the dtype it is held in (the same bf16-representable values in
            // every dtype): a 16-bit file loaded in f32 stays mapped in 16 bits, which is not f32 holding.
            let opts = SyntheticOptions {
                dtype: file_dtype(dtype),
                ..opts.clone()
            };
            bar.set_message(format!("writing the synthetic {size} {dtype} checkpoint"));
            let written =
                synthetic::materialize_model(size, &cache_root, &opts, &mut |done, all| {
                    bar.set_message(format!(
                        "writing the synthetic {size} {dtype} checkpoint: {:.1}/{:.1} GB",
                        done as f64 / 1e9,
                        all as f64 / 1e9
                    ))
                });
            let ckpt = match written {
                Ok(ckpt) => ckpt,
                Err(e) => {
                    let reason = format!("the synthetic checkpoint could not be written: {e:#}");
                    results.push(skipped(result, reason, &bar, cfg.repetitions));
                    continue;
                }
            };
            checkpoints.push(CheckpointInfo {
                size,
                dtype: dtype.as_str().to_string(),
                dir: ckpt.dir.clone(),
                bytes: ckpt.bytes,
                shards: ckpt.shards,
                written: ckpt.written,
                write_s: ckpt.write_s,
            });
            let spec = ChildSpec {
                model: ckpt.dir.clone(),
                dtype,
                seq_len: cfg.seq_len,
                response_tokens: cfg.response_tokens,
                train_steps: cfg.train_steps,
                eval_batch: cfg.eval_batch,
                seed: 0x5ca1e,
                recompute_mlp: cfg.recompute_mlp,
            };
            for rep in 0..cfg.repetitions {
                bar.set_message(format!(
                    "{size} {dtype} (repetition {}/{})",
                    rep + 1,
                    cfg.repetitions
                ));
                match run_one(child, &spec, cfg.threads) {
                    Ok(r) => result.runs.push(r),
                    Err(e) => {
                        let msg = format!("{e:#}");
                        tracing::warn!(%size, %dtype, "{msg}");
                        result.status = Status::Failed(msg);
                        bar.inc((cfg.repetitions - rep) as u64);
                        break;
                    }
                }
                bar.inc(1);
            }
            result.summary = summarize(&result.runs);
            results.push(result);
        }
    }
    bar.finish_and_clear();
    let report = ScaleReport {
        config: cfg.clone(),
        mem_total_bytes: proc_kb_field("/proc/meminfo", "MemTotal:"),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_before,
        load_after: loadavg(),
        checkpoints,
        results,
    };
    if let Some(path) = &cfg.json {
        let text = serde_json::to_string_pretty(&report)? + "\n";
        ia2_runs::write_atomic(path, text.as_bytes())
            .with_context(|| format!("--scale-json: writing {}", path.display()))?;
    }
    Ok(report)
}

/// Runs one child and reads its report.
fn run_one(
    child: &dyn Fn(&ChildSpec) -> Result<std::process::Command>,
    spec: &ChildSpec,
    threads: Option<usize>,
) -> Result<ChildReport> {
    let mut cmd = child(spec)?;
    if let Some(n) = threads {
        cmd.env("RAYON_NUM_THREADS", n.to_string());
    }
    cmd.stdin(std::process::Stdio::null());
    let out = cmd
        .output()
        .with_context(|| format!("starting the child process {cmd:?}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(6).collect();
    let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
    if !out.status.success() {
        use std::os::unix::process::ExitStatusExt;
        let how = match (out.status.code(), out.status.signal()) {
            (_, Some(9)) => "was killed (signal 9: out of memory?)".to_string(),
            (_, Some(s)) => format!("was killed by signal {s}"),
            (Some(c), _) => format!("exited with status {c}"),
            _ => "failed".to_string(),
        };
        bail!("the child process {how}; its last messages:\n{tail}");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .with_context(|| {
            format!("the child process printed no report; its last messages:\n{tail}")
        })?;
    serde_json::from_str(line).with_context(|| format!("reading the child's report {line:?}"))
}

fn summarize(runs: &[ChildReport]) -> Option<Summary> {
    let gb = |f: fn(&ChildReport) -> u64| Range::of(runs.iter().map(|r| f(r) as f64 / 1e9));
    Some(Summary {
        load_s: Range::of(runs.iter().map(|r| r.load_s))?,
        load_first_forward_s: Range::of(runs.iter().map(|r| r.load_s + r.first_forward_s))?,
        rss_after_load_gb: gb(|r| r.rss_after_load)?,
        peak_rss_gb: gb(|r| r.peak_rss)?,
        peak_over_weights: Range::of(runs.iter().map(|r| r.peak_over_weights))?,
        train_step_s: Range::of(runs.iter().map(|r| median(&r.train.step_s)))?,
        peak_train_gb: gb(|r| r.peak_train)?,
        eval_batch_s: Range::of(runs.iter().map(|r| r.eval.seconds))?,
        peak_eval_gb: gb(|r| r.peak_eval)?,
    })
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = f.precision().unwrap_or(2);
        if (self.max - self.min).abs() < 0.5 * 10f64.powi(-(p as i32)) {
            write!(f, "{:.p$}", self.min)
        } else {
            write!(f, "{:.p$}–{:.p$}", self.min, self.max)
        }
    }
}

impl fmt::Display for ScaleReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        let load = |l: Option<[f64; 3]>| {
            l.map_or("n/a".into(), |[a, b, c]| format!("{a:.2} {b:.2} {c:.2}"))
        };
        writeln!(
            f,
            "scale benchmark: synthetic Qwen3-shaped checkpoints (seeded, files in the held dtype), {} child process(es) per \
             configuration; {} CPUs, {:.1} GB memory; load average before {} / after {}",
            c.repetitions,
            self.cpus,
            self.mem_total_bytes.unwrap_or(0) as f64 / 1e9,
            load(self.load_before),
            load(self.load_after)
        )?;
        writeln!(
            f,
            "training step: act, one {}-token sequence ({} response position(s), every layer's attention \
             output), LoRA r8 q/k/o, backward{}, Adam; median of {} timed step(s) after 1 warm-up. Evaluation: \
             one batch of {} prompts of up to {} tokens, last-position logits. Ranges are min–max over the \
             repetitions; memory in GB (10^9 bytes); `+1st fwd`: load and one 8-token forward pass (mapped \
             weights are paged in there, not at load); peaks are VmHWM of the child, `train peak` that of the \
             training steps alone.",
            c.seq_len,
            c.response_tokens,
            if c.recompute_mlp {
                " (MLP gate / up recomputed: --recompute-mlp)"
            } else {
                ""
            },
            c.train_steps,
            c.eval_batch,
            c.seq_len
        )?;
        for k in &self.checkpoints {
            writeln!(
                f,
                "  {} {}: {} ({:.2} GB in {} shard(s){})",
                k.size,
                k.dtype,
                k.dir.display(),
                k.bytes as f64 / 1e9,
                k.shards,
                if k.written {
                    format!(", written in {:.0} s", k.write_s)
                } else {
                    ", cached".into()
                }
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "{:<11} {:<5} {:>7} {:>9} {:>11} {:>11} {:>11} {:>11} {:>13} {:>11}",
            "size",
            "dtype",
            "weights",
            "load s",
            "+1st fwd s",
            "peak RSS",
            "peak/wts",
            "train peak",
            "train step s",
            "eval s"
        )?;
        for r in &self.results {
            let head = format!(
                "{:<11} {:<5} {:>7.2}",
                r.size.as_str(),
                r.dtype.as_str(),
                r.weight_bytes as f64 / 1e9
            );
            match (&r.status, &r.summary) {
                (Status::Ok, Some(s)) => writeln!(
                    f,
                    "{head} {:>9} {:>11} {:>11} {:>11} {:>11} {:>13} {:>11}",
                    format!("{:.2}", s.load_s),
                    format!("{:.2}", s.load_first_forward_s),
                    format!("{:.2}", s.peak_rss_gb),
                    format!("{:.2}", s.peak_over_weights),
                    format!("{:.2}", s.peak_train_gb),
                    format!("{:.2}", s.train_step_s),
                    format!("{:.2}", s.eval_batch_s),
                )?,
                (Status::Skipped(why), _) => writeln!(f, "{head}  skipped: {why}")?,
                (Status::Failed(why), _) => {
                    let first = why.lines().next().unwrap_or("");
                    writeln!(f, "{head}  FAILED: {first}")?
                }
                (Status::Ok, None) => writeln!(f, "{head}  no runs")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_scale_with_the_dtype() {
        let c = SyntheticModel::Qwen3_4B.config();
        let f32 = estimate_bytes(&c, WeightDtype::F32, 300, 8);
        let bf16 = estimate_bytes(&c, WeightDtype::Bf16, 300, 8);
        // 4.02 G parameters: 16.1 GB in f32, 8.04 GB in bf16, times 1.3, plus the same activations.
        let w = synthetic::param_count(&c) as f64;
        assert!(((f32 - bf16) as f64 - 1.3 * 2.0 * w).abs() < 1e3);
        assert!(f32 as f64 > 1.3 * 4.0 * w);
        let tiny = SyntheticModel::Tiny.config();
        assert!(activation_bytes(&tiny, 16, 2) < activation_bytes(&tiny, 32, 2));
    }

    #[test]
    fn configurations_that_do_not_fit_are_skipped_with_the_numbers() {
        let why = does_not_fit(21_000_000_000, Some(20_000_000_000), false).unwrap();
        assert_eq!(why, "does not fit: needs ≈ 21.0 GB, 20.0 GB available");
        assert_eq!(
            does_not_fit(21_000_000_000, Some(20_000_000_000), true),
            None
        );
        assert_eq!(does_not_fit(1, Some(2), false), None);
        assert_eq!(does_not_fit(1, None, false), None);
    }

    #[test]
    fn reports_round_trip_through_json() {
        for status in [
            Status::Ok,
            Status::Skipped("x".into()),
            Status::Failed("y".into()),
        ] {
            let r = ConfigResult {
                size: SyntheticModel::Tiny,
                dtype: WeightDtype::Bf16,
                params: 1,
                weight_bytes: 2,
                estimate_bytes: 3,
                available_bytes: None,
                status,
                runs: Vec::new(),
                summary: None,
            };
            let v = serde_json::to_value(&r).unwrap();
            assert!(v["status"].is_string(), "{v}");
            assert_eq!(serde_json::from_value::<ConfigResult>(v).unwrap(), r);
        }
    }

    #[test]
    fn ranges_print_as_one_value_when_equal() {
        let r = Range::of([1.0, 2.5, 2.0]).unwrap();
        assert_eq!((r.min, r.max), (1.0, 2.5));
        assert_eq!(format!("{r:.2}"), "1.00–2.50");
        assert_eq!(format!("{:.1}", Range::of([3.0, 3.01]).unwrap()), "3.0");
        assert!(Range::of([]).is_none());
    }

    #[test]
    fn options_are_checked() {
        ScaleBenchConfig::default().validate().unwrap();
        let bad = ScaleBenchConfig {
            response_tokens: 300,
            ..ScaleBenchConfig::default()
        };
        assert!(bad.validate().is_err());
        let none = ScaleBenchConfig {
            sizes: vec![],
            ..ScaleBenchConfig::default()
        };
        assert!(none.validate().is_err());
    }
}
