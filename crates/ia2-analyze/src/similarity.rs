//! Activation similarity (analysis.md, "Activation similarity").
//!
//! Per (key, N, run), on the first M evaluation examples: the base model WITH the run's ICL demos (the
//! evaluation demo set of that run, as `ia2 eval` uses it) against each adapter (selected hyper-parameters,
//! LoRA / IA3 merged into a copy of the weights) WITHOUT demos. At every response step t and layer ℓ, the
//! cosine of the self-attention outputs (after o_proj, before the residual add) at the predicting position:
//! `s = ⟨a,b⟩ / (max(‖a‖,1e-8)·max(‖b‖,1e-8))`.
//!
//! Two variants, both reported:
//! - **free-running**: each model decodes greedily its own response (T steps, EOS stops); T_i = the shorter;
//! - **teacher-forced**: the adapter is fed the query plus the base model's ICL response (exactly what `act`
//!   trains on); T_i = the base response's length.
//!
//! plus a reference row, the base model WITHOUT demos. Aggregates: overall(i) = mean over (ℓ, t ≤ T_i);
//! layerwise(i)[ℓ] = mean over t; per (key, N): mean ± population std of overall over examples × runs,
//! layerwise mean, and tokenwise mean per (ℓ, t) over the examples that reach t (never a ragged average).

use crate::select::{self, GroupKey, RunInfo, SelectionConfig};
use crate::stats::MeanStd;
use anyhow::{Context, Result, bail, ensure};
use burn::tensor::Tensor;
use ia2_model::{
    Adapter, Batch, Capture, Decoder, GenerateOptions, Observation, Positions, greedy_observed,
};
use ia2_train::examples::{Sequence, prompt_ids};
use ia2_train::teacher::{self, CacheKey, DecodeOptions};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tracing::{info, warn};

/// Name of the reference row (the base model without demos).
pub const BASE_NO_DEMOS: &str = "base (no demos)";

/// The two ways of comparing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    FreeRunning,
    TeacherForced,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::FreeRunning => "free_running",
            Variant::TeacherForced => "teacher_forced",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Variant::FreeRunning => "free-running",
            Variant::TeacherForced => "teacher-forced",
        }
    }
}

/// The model every adapter was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelSpec {
    /// A local Hugging Face directory or `builtin:NAME`.
    pub model: String,
    /// A hub id resolved from the Hugging Face cache (takes precedence).
    pub model_id: Option<String>,
    pub revision: Option<String>,
    /// `f32`, `bf16` or `f16`.
    pub dtype: String,
    pub device: String,
}

impl Default for ModelSpec {
    fn default() -> Self {
        ModelSpec {
            model: "builtin:tiny-qwen3".into(),
            model_id: None,
            revision: None,
            dtype: "f32".into(),
            device: "cpu".into(),
        }
    }
}

impl ModelSpec {
    fn args(&self) -> Result<ia2_load::ModelOptions> {
        use ia2_load::WeightDtype;
        let dtype = match self.dtype.as_str() {
            "f32" | "float32" | "float" => WeightDtype::F32,
            "bf16" | "bfloat16" => WeightDtype::Bf16,
            "f16" | "float16" | "half" => WeightDtype::F16,
            other => bail!("unknown dtype {other:?}: expected f32, bf16 or f16"),
        };
        Ok(ia2_load::ModelOptions {
            model: self.model.clone(),
            model_id: self.model_id.clone(),
            revision: self.revision.clone(),
            dtype,
            adapter: None,
            merge_adapter: false,
            device: self.device.clone(),
        })
    }
}

/// Configuration of `ia2 analyze similarity`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimilarityConfig {
    pub selection: SelectionConfig,
    pub model: ModelSpec,
    /// The data directory (`<data>/<dataset>/main.json`, training and demo files).
    pub data_dir: PathBuf,
    /// Evaluation dataset (default: each key's trained dataset; demos come from the trained dataset).
    pub eval_dataset: Option<String>,
    /// Demo count asked for (capped at N - 1 and the pool, as `ia2 eval` does).
    pub icl_max_demos: usize,
    /// M: the first M evaluation examples.
    pub num_examples: usize,
    /// T (default: each key's training T).
    pub num_generated_tokens: Option<usize>,
    pub variants: Vec<Variant>,
    /// Include the base-without-demos reference row.
    pub reference_row: bool,
    /// Sequences per batch for free-running decoding.
    pub batch_size: usize,
    /// Reuse cached results (keys hold everything that changes them).
    pub reuse_cache: bool,
    /// Cache directory (default: `<out_dir>/cache`).
    pub cache_dir: Option<PathBuf>,
    pub out_dir: PathBuf,
    pub plots: bool,
}

impl Default for SimilarityConfig {
    fn default() -> Self {
        SimilarityConfig {
            selection: SelectionConfig::default(),
            model: ModelSpec::default(),
            data_dir: PathBuf::from("data"),
            eval_dataset: None,
            icl_max_demos: 256,
            num_examples: 100,
            num_generated_tokens: None,
            variants: vec![Variant::FreeRunning, Variant::TeacherForced],
            reference_row: true,
            batch_size: 8,
            reuse_cache: true,
            cache_dir: None,
            out_dir: PathBuf::from("outputs/analysis"),
            plots: true,
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// The arithmetic (pure).

/// `⟨a,b⟩ / (max(‖a‖,1e-8)·max(‖b‖,1e-8))`, in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa.sqrt().max(1e-8) * bb.sqrt().max(1e-8))
}

/// The similarities of one example: `[layers, steps]` row-major.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExampleSim {
    pub layers: usize,
    /// T_i.
    pub steps: usize,
    pub values: Vec<f64>,
}

impl ExampleSim {
    /// Cosines of two activation sets `[layers, ta, hidden]` and `[layers, tb, hidden]` over the first
    /// `min(ta, tb)` steps.
    pub fn between(
        a: &[f32],
        ta: usize,
        b: &[f32],
        tb: usize,
        layers: usize,
        hidden: usize,
    ) -> ExampleSim {
        assert_eq!(a.len(), layers * ta * hidden, "activations a: wrong size");
        assert_eq!(b.len(), layers * tb * hidden, "activations b: wrong size");
        let steps = ta.min(tb);
        let mut values = Vec::with_capacity(layers * steps);
        for l in 0..layers {
            for t in 0..steps {
                let x = &a[(l * ta + t) * hidden..(l * ta + t + 1) * hidden];
                let y = &b[(l * tb + t) * hidden..(l * tb + t + 1) * hidden];
                values.push(cosine(x, y));
            }
        }
        ExampleSim {
            layers,
            steps,
            values,
        }
    }

    pub fn at(&self, layer: usize, t: usize) -> f64 {
        self.values[layer * self.steps + t]
    }

    /// Mean over (ℓ, t ≤ T_i).
    pub fn overall(&self) -> f64 {
        self.values.iter().sum::<f64>() / self.values.len().max(1) as f64
    }

    /// Per layer, mean over t.
    pub fn layerwise(&self) -> Vec<f64> {
        (0..self.layers)
            .map(|l| (0..self.steps).map(|t| self.at(l, t)).sum::<f64>() / self.steps.max(1) as f64)
            .collect()
    }
}

/// Aggregates over examples (× runs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    /// Mean ± population std of overall(i) over the examples.
    pub overall: Option<MeanStd>,
    /// Per layer, mean over examples of layerwise(i).
    pub layerwise: Vec<f64>,
    /// `[layers][T]`: per (ℓ, t), the mean over the examples that reach t (`None` where none does).
    pub tokenwise: Vec<Vec<Option<f64>>>,
    /// Per t, how many examples reach it.
    pub token_counts: Vec<usize>,
}

impl Aggregate {
    pub fn of(examples: &[ExampleSim]) -> Aggregate {
        let layers = examples.first().map_or(0, |e| e.layers);
        let max_t = examples.iter().map(|e| e.steps).max().unwrap_or(0);
        let overall: Vec<f64> = examples
            .iter()
            .filter(|e| e.steps > 0)
            .map(ExampleSim::overall)
            .collect();
        let mut layerwise = vec![0.0; layers];
        let mut used = 0usize;
        for e in examples.iter().filter(|e| e.steps > 0) {
            for (acc, v) in layerwise.iter_mut().zip(e.layerwise()) {
                *acc += v;
            }
            used += 1;
        }
        for v in &mut layerwise {
            *v /= used.max(1) as f64;
        }
        let token_counts: Vec<usize> = (0..max_t)
            .map(|t| examples.iter().filter(|e| e.steps > t).count())
            .collect();
        let tokenwise = (0..layers)
            .map(|l| {
                (0..max_t)
                    .map(|t| {
                        let vals: Vec<f64> = examples
                            .iter()
                            .filter(|e| e.steps > t)
                            .map(|e| e.at(l, t))
                            .collect();
                        (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64)
                    })
                    .collect()
            })
            .collect();
        Aggregate {
            overall: MeanStd::of(&overall),
            layerwise,
            tokenwise,
            token_counts,
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// The model side.

/// A response with the activations that predicted it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub tokens: Vec<u32>,
    /// `[layers, tokens.len(), hidden]`.
    pub activations: Vec<f32>,
}

/// Greedy decoding of `prompts` (batched, left-padded, KV cache; EOS stops and is kept) recording every
/// layer's attention output at each predicting position.
pub fn free_running(
    decoder: &Decoder,
    adapter: Option<&Adapter>,
    prompts: &[Vec<u32>],
    steps: usize,
    opts: &DecodeOptions,
) -> Result<Vec<Observed>> {
    let c = &decoder.config;
    let (layers, hidden) = (c.num_hidden_layers, c.hidden_size);
    let mut out = Vec::with_capacity(prompts.len());
    for chunk in prompts.chunks(opts.batch.max(1)) {
        let options = GenerateOptions {
            max_new_tokens: steps,
            eos_token_ids: opts.eos.clone(),
            pad_token_id: opts.pad,
            use_cache: true,
        };
        let mut acts: Vec<Vec<Vec<f32>>> = vec![Vec::new(); chunk.len()];
        let generated = greedy_observed(
            decoder,
            adapter,
            chunk,
            &options,
            true,
            |_, _| false,
            |o| {
                if let Observation::Token { row, outputs } = o {
                    let mut step = Vec::with_capacity(layers * hidden);
                    for l in 0..layers {
                        step.extend_from_slice(outputs.attn(l, row));
                    }
                    acts[row].push(step);
                }
            },
        )?;
        for (r, g) in generated.into_iter().enumerate() {
            let n = g.tokens.len();
            let mut activations = vec![0.0f32; layers * n * hidden];
            for (t, step) in acts[r].iter().enumerate() {
                for l in 0..layers {
                    let dst = (l * n + t) * hidden;
                    activations[dst..dst + hidden]
                        .copy_from_slice(&step[l * hidden..(l + 1) * hidden]);
                }
            }
            out.push(Observed {
                tokens: g.tokens,
                activations,
            });
        }
    }
    Ok(out)
}

/// One forward pass over `query + response[..n-1]`: every layer's attention output `[layers, n, hidden]` at
/// the n positions that predict the response's tokens.
pub fn teacher_forced(
    decoder: &Decoder,
    adapter: Option<&Adapter>,
    query: &[u32],
    response: &[u32],
) -> Result<Vec<f32>> {
    ensure!(!query.is_empty(), "empty query");
    let n = response.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut ids = query.to_vec();
    ids.extend_from_slice(&response[..n - 1]);
    let positions: Vec<usize> = (query.len() - 1..query.len() - 1 + n).collect();
    let batch = Batch::single(&ids);
    let mut cache = decoder.new_cache(1, adapter).one_pass();
    let capture = Capture {
        logits: Positions::None,
        attn: Positions::At(vec![positions]),
    };
    let out = decoder.forward(&batch, &mut cache, adapter, &capture)?;
    let attn: Tensor<4> = Tensor::stack(out.attn, 0);
    let [layers, _, npos, hidden] = attn.dims();
    ensure!(npos == n, "captured {npos} positions, expected {n}");
    attn.reshape([layers * n * hidden])
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading attention outputs: {e:?}"))
}

// ---------------------------------------------------------------------------------------------------------
// Results.

/// One method in one (key, N) and variant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MethodResult {
    pub method: String,
    pub hp: Option<String>,
    /// Per run: mean ± std of overall over its examples.
    pub runs: BTreeMap<u32, RunSim>,
    /// Over examples × runs.
    pub aggregate: Aggregate,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSim {
    pub dir: Option<PathBuf>,
    pub overall: Option<MeanStd>,
    pub layerwise: Vec<f64>,
    pub examples: usize,
    pub cached: bool,
}

/// One (key, N).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupSim {
    pub key: GroupKey,
    pub n: usize,
    pub eval_dataset: String,
    pub icl_source: String,
    pub demos: usize,
    pub num_examples: usize,
    pub num_generated_tokens: usize,
    pub layers: usize,
    /// Method → `hp via selection source`.
    pub selection: BTreeMap<String, String>,
    /// Variant → method → result.
    pub variants: BTreeMap<String, BTreeMap<String, MethodResult>>,
}

/// `similarity.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimilarityReport {
    pub config: SimilarityConfig,
    pub hp_selection: String,
    pub model_fingerprint: String,
    pub groups: Vec<GroupSim>,
    pub vs_performance: Option<crate::vs_performance::VsPerformance>,
    pub messages: Vec<String>,
}

// ---------------------------------------------------------------------------------------------------------
// Caching of per-example similarities.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SimCacheKey {
    format: u32,
    model_fingerprint: String,
    dtype: String,
    device: String,
    /// sha256 of adapter_config.json + adapter_model.safetensors, or "base".
    adapter: String,
    /// Digest of every data file, the tokenizer, M and the demo count.
    data: String,
    num_generated_tokens: usize,
    variant: Variant,
    /// Digest of the base model's ICL responses (teacher-forced inputs).
    base_responses: String,
}

/// Values are stored as f64 bit patterns, so a cached result is bit-identical to a computed one.
#[derive(Serialize, Deserialize)]
struct SimCacheEntry {
    key: SimCacheKey,
    examples: Vec<(usize, usize, Vec<u64>)>,
}

fn digest(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(&h.finalize()[..16])
}

fn cache_path(dir: &Path, key: &SimCacheKey) -> PathBuf {
    let json = serde_json::to_string(key).expect("a cache key serializes");
    dir.join(format!("similarity-{}.json", digest(&[json.as_bytes()])))
}

fn cache_load(dir: &Path, key: &SimCacheKey) -> Option<Vec<ExampleSim>> {
    let path = cache_path(dir, key);
    let bytes = std::fs::read(&path).ok()?;
    match serde_json::from_slice::<SimCacheEntry>(&bytes) {
        Ok(e) if e.key == *key => e
            .examples
            .into_iter()
            .map(|(layers, steps, bits)| {
                (bits.len() == layers * steps).then(|| ExampleSim {
                    layers,
                    steps,
                    values: bits.into_iter().map(f64::from_bits).collect(),
                })
            })
            .collect(),
        Ok(_) => {
            warn!(path = %path.display(), "similarity cache entry for another key; recomputing");
            None
        }
        Err(e) => {
            warn!(path = %path.display(), "unreadable similarity cache entry ({e}); recomputing");
            None
        }
    }
}

fn cache_save(dir: &Path, key: &SimCacheKey, examples: &[ExampleSim]) -> Result<()> {
    let entry = SimCacheEntry {
        key: key.clone(),
        examples: examples
            .iter()
            .map(|e| {
                (
                    e.layers,
                    e.steps,
                    e.values.iter().map(|v| v.to_bits()).collect(),
                )
            })
            .collect(),
    };
    ia2_data::io::write_atomic(&cache_path(dir, key), &serde_json::to_vec(&entry)?)
}

fn adapter_identity(dir: &Path) -> Result<String> {
    let c = std::fs::read(dir.join(ia2_adapters::CONFIG_FILE))
        .with_context(|| format!("reading {}", dir.join(ia2_adapters::CONFIG_FILE).display()))?;
    let w = ia2_runs::fingerprint::file_sha256(&dir.join(ia2_adapters::WEIGHTS_FILE))?;
    Ok(digest(&[&c, w.as_bytes()]))
}

// ---------------------------------------------------------------------------------------------------------
// The runner.

/// Inputs of one (key, N, run): prompts and the base model's ICL side.
struct RunInputs {
    queries: Vec<Vec<u32>>,
    base: Vec<Observed>,
    data_digest: String,
    base_digest: String,
}

struct Ctx<'a> {
    cfg: &'a SimilarityConfig,
    loaded: &'a ia2_load::LoadedModel,
    fingerprint: String,
    tokenizer_sha: String,
    decode: DecodeOptions,
    cache_dir: PathBuf,
    store: ia2_eval::prompts::DataStore,
}

impl Ctx<'_> {
    fn run_inputs(
        &mut self,
        key: &GroupKey,
        n: usize,
        run: u32,
        steps: usize,
        meta: &mut (String, String, usize, usize),
    ) -> Result<RunInputs> {
        let eval = self
            .cfg
            .eval_dataset
            .clone()
            .unwrap_or_else(|| key.trained_dataset.clone());
        let source = key.trained_dataset.clone();
        let plan = self
            .store
            .plan_demos(&eval, &source, n, run, self.cfg.icl_max_demos)?;
        let set = self.store.eval_set(&plan, Some(self.cfg.num_examples))?;
        *meta = (eval, source, plan.demos, set.examples.len());
        let tok = &self.loaded.tokenizer;
        let mut seqs = Vec::with_capacity(set.examples.len());
        for (i, (ex, icl)) in set.examples.iter().zip(&set.icl_prompts).enumerate() {
            seqs.push(Sequence {
                example: i,
                query_ids: prompt_ids(tok, &ex.question)
                    .with_context(|| format!("tokenizing example {i}"))?,
                icl_ids: prompt_ids(tok, icl)
                    .with_context(|| format!("tokenizing example {i} with demos"))?,
                ground_truth: Vec::new(),
            });
        }
        let mut parts: Vec<Vec<u8>> = set
            .files
            .iter()
            .map(|f| format!("{}:{}", f.role, f.sha256).into_bytes())
            .collect();
        parts.push(self.tokenizer_sha.clone().into_bytes());
        parts.push(format!("M={} D={}", set.examples.len(), plan.demos).into_bytes());
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let data_digest = digest(&refs);
        // The base model with demos: the teacher collection and its cache.
        let tkey = CacheKey {
            format: 1,
            model_fingerprint: self.fingerprint.clone(),
            dtype: self.cfg.model.dtype.clone(),
            data_file_sha256: format!("analysis-similarity-{data_digest}"),
            demo_shuffles: None,
            num_generated_tokens: steps,
            distributions: None,
        };
        let targets = if self.cfg.reuse_cache {
            teacher::get_or_collect(
                &self.cache_dir,
                &tkey,
                &self.loaded.decoder,
                &seqs,
                &[],
                &self.decode,
            )?
            .0
            .train
        } else {
            let bar = indicatif::ProgressBar::hidden();
            teacher::collect(&self.loaded.decoder, &seqs, steps, None, &self.decode, &bar)?
        };
        let base: Vec<Observed> = targets
            .into_iter()
            .map(|t| Observed {
                tokens: t.tokens,
                activations: t.activations,
            })
            .collect();
        let mut h = Sha256::new();
        for b in &base {
            h.update((b.tokens.len() as u64).to_le_bytes());
            for t in &b.tokens {
                h.update(t.to_le_bytes());
            }
        }
        Ok(RunInputs {
            queries: seqs.into_iter().map(|s| s.query_ids).collect(),
            base,
            data_digest,
            base_digest: hex::encode(&h.finalize()[..16]),
        })
    }

    /// Similarities of one model (merged adapter or the base without demos) against the base with demos.
    fn compare(
        &self,
        decoder: &Decoder,
        adapter: Option<&Adapter>,
        identity: &str,
        inputs: &RunInputs,
        steps: usize,
        variant: Variant,
    ) -> Result<(Vec<ExampleSim>, bool)> {
        let c = &decoder.config;
        let (layers, hidden) = (c.num_hidden_layers, c.hidden_size);
        let key = SimCacheKey {
            format: 1,
            model_fingerprint: self.fingerprint.clone(),
            dtype: self.cfg.model.dtype.clone(),
            device: self.cfg.model.device.clone(),
            adapter: identity.to_string(),
            data: inputs.data_digest.clone(),
            num_generated_tokens: steps,
            variant,
            base_responses: inputs.base_digest.clone(),
        };
        if self.cfg.reuse_cache
            && let Some(e) = cache_load(&self.cache_dir, &key)
            && e.len() == inputs.base.len()
        {
            return Ok((e, true));
        }
        let sims: Vec<ExampleSim> = match variant {
            Variant::FreeRunning => {
                let own = free_running(decoder, adapter, &inputs.queries, steps, &self.decode)?;
                own.iter()
                    .zip(&inputs.base)
                    .map(|(o, b)| {
                        ExampleSim::between(
                            &b.activations,
                            b.tokens.len(),
                            &o.activations,
                            o.tokens.len(),
                            layers,
                            hidden,
                        )
                    })
                    .collect()
            }
            Variant::TeacherForced => inputs
                .queries
                .iter()
                .zip(&inputs.base)
                .map(|(q, b)| {
                    let acts = teacher_forced(decoder, adapter, q, &b.tokens)?;
                    let n = b.tokens.len();
                    Ok(ExampleSim::between(
                        &b.activations,
                        n,
                        &acts,
                        n,
                        layers,
                        hidden,
                    ))
                })
                .collect::<Result<_>>()?,
        };
        if self.cfg.reuse_cache {
            cache_save(&self.cache_dir, &key, &sims)?;
        }
        Ok((sims, false))
    }
}

/// A model view of one selected adapter: merged copy (LoRA / IA3) or the adapter to pass along.
fn adapter_view(base: &Decoder, dir: &Path) -> Result<(Option<Decoder>, Option<Adapter>)> {
    let (adapter, _config) = ia2_adapters::load_peft(dir, &base.config, base.device())
        .with_context(|| format!("loading adapter {}", dir.display()))?;
    if matches!(adapter, Adapter::Lora { .. } | Adapter::Ia3 { .. }) {
        let mut merged = base.clone();
        ia2_adapters::merge(&mut merged, &adapter)
            .with_context(|| format!("merging adapter {}", dir.display()))?;
        Ok((Some(merged), None))
    } else {
        Ok((None, Some(adapter)))
    }
}

fn check_fingerprint(run: &RunInfo, fingerprint: &str) -> Result<()> {
    if let Some(f) = &run.base_model_fingerprint
        && f != fingerprint
    {
        bail!(
            "{}: trained on a model with fingerprint {f}, but the analysed model's is {fingerprint} (pass the model it was trained on with --model / --model-id)",
            run.dir.display()
        );
    }
    Ok(())
}

/// `ia2 analyze similarity`: selection, similarities of every variant, `similarity.json`, the join with
/// performance (`similarity_vs_performance.csv`) and the plots under `cfg.out_dir`.
pub fn run(cfg: &SimilarityConfig) -> Result<SimilarityReport> {
    ensure!(cfg.num_examples > 0, "--num-examples must be at least 1");
    ensure!(!cfg.variants.is_empty(), "no similarity variant selected");
    // The model must exist before the (cheap) selection and the (costly) load.
    let model_args = cfg.model.args()?;
    model_args.resolve_dir()?;
    let accuracy = crate::performance::accuracy_lookup(&cfg.selection.outputs);
    let (selected, selection_messages) = select::select(&cfg.selection, &|r| accuracy(r))?;
    if selected.is_empty() {
        bail!(
            "no finished runs of {} under {}",
            cfg.selection.methods.join(", "),
            cfg.selection.outputs.display()
        );
    }
    let loaded = model_args.load()?;
    let fingerprint = ia2_runs::fingerprint::model_fingerprint(&loaded.dir)?;
    let tokenizer_sha = {
        let p = loaded.dir.join("tokenizer.json");
        if p.is_file() {
            ia2_runs::fingerprint::file_sha256(&p)?
        } else {
            String::new()
        }
    };
    let mut eos = loaded.generation.eos_token_ids.clone();
    let answer_eos = loaded.tokenizer.special_tokens().eos.as_ref().map(|e| e.1);
    if let Some(e) = answer_eos
        && !eos.contains(&e)
    {
        eos.push(e);
    }
    let pad = loaded.generation.pad_token_id.or(answer_eos).unwrap_or(0);
    let cache_dir = cfg
        .cache_dir
        .clone()
        .unwrap_or_else(|| cfg.out_dir.join("cache"));
    let mut ctx = Ctx {
        cfg,
        loaded: &loaded,
        fingerprint: fingerprint.clone(),
        tokenizer_sha,
        decode: DecodeOptions {
            eos,
            pad,
            batch: cfg.batch_size.max(1),
        },
        cache_dir,
        store: ia2_eval::prompts::DataStore::new(&cfg.data_dir),
    };
    let mut messages = selection_messages;
    let mut groups = Vec::new();
    let layers = loaded.decoder.config.num_hidden_layers;
    for ((key, n), methods) in select::by_group(&selected) {
        let steps = cfg
            .num_generated_tokens
            .unwrap_or(key.num_generated_tokens)
            .max(1);
        info!(key = %key, n, steps, "activation similarity");
        let runs: std::collections::BTreeSet<u32> = methods
            .values()
            .flat_map(|s| s.runs.keys().copied())
            .collect();
        // variant → method → (hp, run → (dir, sims, cached))
        type PerRun = BTreeMap<u32, (Option<PathBuf>, Vec<ExampleSim>, bool)>;
        let mut acc: BTreeMap<Variant, BTreeMap<String, (Option<String>, PerRun)>> =
            BTreeMap::new();
        let mut meta = (String::new(), String::new(), 0usize, 0usize);
        for run in runs {
            let inputs = ctx.run_inputs(&key, n, run, steps, &mut meta)?;
            let mut models: Vec<(String, Option<String>, Option<&RunInfo>)> = Vec::new();
            if cfg.reference_row {
                models.push((BASE_NO_DEMOS.to_string(), None, None));
            }
            for (m, sel) in &methods {
                match sel.runs.get(&run) {
                    Some(info) => models.push((m.clone(), Some(sel.hp.clone()), Some(info))),
                    None => messages.push(format!("{key} N={n}: run {run} has no {m} adapter")),
                }
            }
            for (method, hp, info) in models {
                let (merged, adapter, identity, dir) = match info {
                    None => (None, None, "base".to_string(), None),
                    Some(info) => {
                        check_fingerprint(info, &fingerprint)?;
                        let (d, a) = adapter_view(&loaded.decoder, &info.dir)?;
                        (d, a, adapter_identity(&info.dir)?, Some(info.dir.clone()))
                    }
                };
                let decoder = merged.as_ref().unwrap_or(&loaded.decoder);
                for &variant in &cfg.variants {
                    let (sims, cached) = ctx.compare(
                        decoder,
                        adapter.as_ref(),
                        &identity,
                        &inputs,
                        steps,
                        variant,
                    )?;
                    acc.entry(variant)
                        .or_default()
                        .entry(method.clone())
                        .or_insert_with(|| (hp.clone(), BTreeMap::new()))
                        .1
                        .insert(run, (dir.clone(), sims, cached));
                }
            }
        }
        let variants = acc
            .into_iter()
            .map(|(v, methods)| {
                let per_method = methods
                    .into_iter()
                    .map(|(m, (hp, per_run))| {
                        let all: Vec<ExampleSim> =
                            per_run.values().flat_map(|(_, s, _)| s.clone()).collect();
                        let runs = per_run
                            .into_iter()
                            .map(|(r, (dir, sims, cached))| {
                                let a = Aggregate::of(&sims);
                                (
                                    r,
                                    RunSim {
                                        dir,
                                        overall: a.overall,
                                        layerwise: a.layerwise,
                                        examples: sims.len(),
                                        cached,
                                    },
                                )
                            })
                            .collect();
                        (
                            m.clone(),
                            MethodResult {
                                method: m,
                                hp,
                                runs,
                                aggregate: Aggregate::of(&all),
                            },
                        )
                    })
                    .collect();
                (v.name().to_string(), per_method)
            })
            .collect();
        groups.push(GroupSim {
            key: key.clone(),
            n,
            eval_dataset: meta.0.clone(),
            icl_source: meta.1.clone(),
            demos: meta.2,
            num_examples: meta.3,
            num_generated_tokens: steps,
            layers,
            selection: methods
                .iter()
                .map(|(m, s)| (m.clone(), format!("{} via {}", s.hp, s.source)))
                .collect(),
            variants,
        });
    }
    let index = crate::performance::EvalIndex::load(&cfg.selection.outputs);
    let vs = crate::vs_performance::join(&groups, &index);
    let report = SimilarityReport {
        config: cfg.clone(),
        hp_selection: cfg.selection.hp_selection.to_string(),
        model_fingerprint: fingerprint,
        groups,
        vs_performance: Some(vs),
        messages,
    };
    std::fs::create_dir_all(&cfg.out_dir)
        .with_context(|| format!("creating {}", cfg.out_dir.display()))?;
    ia2_data::io::write_json_atomic(&cfg.out_dir.join("similarity.json"), &report)?;
    if let Some(vs) = &report.vs_performance {
        crate::vs_performance::write_csv(vs, &cfg.out_dir.join("similarity_vs_performance.csv"))?;
    }
    if cfg.plots {
        crate::plots::similarity_plots(&report, &cfg.out_dir)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_guards_zero_vectors() {
        assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-12);
        assert!((cosine(&[1.0, 0.0], &[0.0, 3.0])).abs() < 1e-12);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
    }

    #[test]
    fn tokenwise_means_only_over_examples_that_reach_t() {
        let e1 = ExampleSim {
            layers: 1,
            steps: 2,
            values: vec![1.0, 0.0],
        };
        let e2 = ExampleSim {
            layers: 1,
            steps: 1,
            values: vec![0.5],
        };
        let a = Aggregate::of(&[e1, e2]);
        assert_eq!(a.token_counts, vec![2, 1]);
        assert_eq!(a.tokenwise[0], vec![Some(0.75), Some(0.0)]);
        // overall(1) = 0.5, overall(2) = 0.5
        let o = a.overall.unwrap();
        assert!((o.mean - 0.5).abs() < 1e-12 && o.std.abs() < 1e-12);
        assert!((a.layerwise[0] - 0.5).abs() < 1e-12);
    }
}
