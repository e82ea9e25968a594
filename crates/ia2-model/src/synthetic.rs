//! Seeded synthetic checkpoints in Hugging Face layout with the shapes of real models (Qwen3-0.6B, 1.7B and
//! 4B), for benchmarks at realistic sizes with no download (`ia2 bench --suite scale`).
//!
//! A checkpoint is what `transformers` writes: `config.json`, sharded `model-0000i-of-0000n.safetensors`
//! files with `model.safetensors.index.json`, in bf16 like the released checkpoints, and a tokenizer (a
//! byte-level one by default, or a copy of a real one, e.g. Qwen3's), so every command (`ia2 train --model
//! DIR`, `ia2 eval`, ...) runs on it. The weights are meaningless: linear weights and embeddings are
//! normal-ish (Irwin–Hall sum of 4 uniforms, standard deviation 0.02, as the models' `initializer_range`),
//! every RMSNorm weight is 1, so activations stay finite and of ordinary scale.
//!
//! Writing streams: the safetensors headers are computed from the shapes first, then each tensor is generated
//! and written in 1 Mi-element chunks (generated in parallel, each chunk from its own seeded stream, so the
//! bytes do not depend on the thread count), never holding more than a few chunks in memory. A cached
//! checkpoint ([`materialize`]) is written into a temporary directory and renamed into place under a lock,
//! after checking the free disk space.

use crate::config::Proj;
use anyhow::{Context, Result, bail, ensure};
use ia2_hf::{Arch, Dtype, ModelConfig, RopeScaling, SAFETENSORS_INDEX_FILE};
use ia2_rng::Generator;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Bumped whenever the generated files change, so stale cached copies are never reused.
pub const VERSION: u32 = 1;

/// Default seed of the weights.
pub const DEFAULT_SEED: u64 = 0x1a2_5ca1e;

/// Default largest shard (bytes): Qwen3-0.6B in bf16 is one shard, 1.7B two, 4B five.
pub const DEFAULT_SHARD_BYTES: u64 = 2_000_000_000;

/// Standard deviation of the linear weights and embeddings (the Qwen3 configs' `initializer_range`).
pub const WEIGHT_STD: f64 = 0.02;

/// Elements generated per seeded stream.
const CHUNK: usize = 1 << 20;

/// The shapes a synthetic checkpoint can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SyntheticModel {
    /// Qwen3-0.6B: 28 layers, hidden 1024, intermediate 3072, 16/8 heads × 128, vocab 151936, tied.
    #[serde(rename = "qwen3-0.6b")]
    Qwen3_0_6B,
    /// Qwen3-1.7B: 28 layers, hidden 2048, intermediate 6144, 16/8 heads × 128, vocab 151936, tied.
    #[serde(rename = "qwen3-1.7b")]
    Qwen3_1_7B,
    /// Qwen3-4B: 36 layers, hidden 2560, intermediate 9728, 32/8 heads × 128, vocab 151936, tied.
    #[serde(rename = "qwen3-4b")]
    Qwen3_4B,
    /// A seconds-long test shape: 2 layers, hidden 64, 4/2 heads × 16, vocab 320, tied, qk-norm.
    #[serde(rename = "tiny")]
    Tiny,
}

impl SyntheticModel {
    pub const ALL: [SyntheticModel; 4] = [
        SyntheticModel::Qwen3_0_6B,
        SyntheticModel::Qwen3_1_7B,
        SyntheticModel::Qwen3_4B,
        SyntheticModel::Tiny,
    ];

    /// The real model shapes (without the test shape).
    pub const REAL: [SyntheticModel; 3] = [
        SyntheticModel::Qwen3_0_6B,
        SyntheticModel::Qwen3_1_7B,
        SyntheticModel::Qwen3_4B,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SyntheticModel::Qwen3_0_6B => "qwen3-0.6b",
            SyntheticModel::Qwen3_1_7B => "qwen3-1.7b",
            SyntheticModel::Qwen3_4B => "qwen3-4b",
            SyntheticModel::Tiny => "tiny",
        }
    }

    /// The configuration: the released `Qwen/Qwen3-*-Base` config.json values (rope theta 1e6, RMSNorm eps
    /// 1e-6, no attention bias, tied embeddings, 32768 positions), with no special token ids (they come
    /// from the tokenizer written beside it).
    pub fn config(self) -> ModelConfig {
        let (layers, hidden, intermediate, heads, kv_heads, head_dim, vocab) = match self {
            SyntheticModel::Qwen3_0_6B => (28, 1024, 3072, 16, 8, 128, 151_936),
            SyntheticModel::Qwen3_1_7B => (28, 2048, 6144, 16, 8, 128, 151_936),
            SyntheticModel::Qwen3_4B => (36, 2560, 9728, 32, 8, 128, 151_936),
            SyntheticModel::Tiny => (2, 64, 128, 4, 2, 16, 320),
        };
        ModelConfig {
            arch: Arch::Qwen3,
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: intermediate,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            head_dim,
            rms_norm_eps: 1e-6,
            max_position_embeddings: 32_768,
            tie_word_embeddings: true,
            rope_theta: 1_000_000.0,
            rope_scaling: RopeScaling::Default,
            attention_bias: false,
            mlp_bias: false,
            bos_token_id: None,
            eos_token_ids: Vec::new(),
            pad_token_id: None,
            torch_dtype: Some("bfloat16".into()),
        }
    }
}

impl std::fmt::Display for SyntheticModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SyntheticModel {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        SyntheticModel::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .with_context(|| {
                format!("unknown synthetic model {s:?}: expected qwen3-0.6b, qwen3-1.7b, qwen3-4b or tiny")
            })
    }
}

/// How the values of a tensor are drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Normal-ish (Irwin–Hall sum of 4 uniforms, rescaled) with mean 0 and this standard deviation.
    Normal(f64),
    /// Every value 1 (RMSNorm weights).
    Ones,
}

/// One tensor of a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub init: Init,
}

impl TensorSpec {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Every tensor of a Hugging Face checkpoint of `config`, in checkpoint order (`model.embed_tokens.weight`,
/// each layer, `model.norm.weight`, then `lm_head.weight` unless the embeddings are tied). Biases, where the
/// architecture has them, are drawn like the weights.
pub fn tensor_specs(config: &ModelConfig) -> Vec<TensorSpec> {
    let c = config;
    let normal = |name: String, shape: Vec<usize>| TensorSpec {
        name,
        shape,
        init: Init::Normal(WEIGHT_STD),
    };
    let ones = |name: String, len: usize| TensorSpec {
        name,
        shape: vec![len],
        init: Init::Ones,
    };
    let mut specs = vec![normal(
        "model.embed_tokens.weight".into(),
        vec![c.vocab_size, c.hidden_size],
    )];
    for l in 0..c.num_hidden_layers {
        let p = format!("model.layers.{l}");
        specs.push(ones(format!("{p}.input_layernorm.weight"), c.hidden_size));
        for proj in Proj::ALL {
            let (fan_in, fan_out) = proj.shape(c);
            specs.push(normal(
                format!("{}.weight", proj.path(l)),
                vec![fan_out, fan_in],
            ));
            if proj.has_bias(c) {
                specs.push(normal(format!("{}.bias", proj.path(l)), vec![fan_out]));
            }
            if proj == Proj::V && c.qk_norm() {
                specs.push(ones(format!("{p}.self_attn.q_norm.weight"), c.head_dim));
                specs.push(ones(format!("{p}.self_attn.k_norm.weight"), c.head_dim));
            }
        }
        specs.push(ones(
            format!("{p}.post_attention_layernorm.weight"),
            c.hidden_size,
        ));
    }
    specs.push(ones("model.norm.weight".into(), c.hidden_size));
    if !c.tie_word_embeddings {
        specs.push(normal(
            "lm_head.weight".into(),
            vec![c.vocab_size, c.hidden_size],
        ));
    }
    specs
}

/// Parameters of `config` (every checkpoint tensor; tied embeddings counted once).
pub fn param_count(config: &ModelConfig) -> u64 {
    tensor_specs(config).iter().map(|s| s.numel() as u64).sum()
}

/// Bytes of every checkpoint tensor of `config` held in a dtype of `bytes_per_element` bytes.
pub fn weight_bytes(config: &ModelConfig, bytes_per_element: usize) -> u64 {
    param_count(config) * bytes_per_element as u64
}

/// Options of [`write_checkpoint`] and [`materialize`].
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticOptions {
    /// Seed of every value.
    pub seed: u64,
    /// Element type of the safetensors files (bf16 as the released checkpoints).
    pub dtype: Dtype,
    /// Largest shard in bytes (a shard holds at least one tensor).
    pub shard_bytes: u64,
    /// A directory holding a `tokenizer.json` (and optionally `tokenizer_config.json`) to copy, e.g. Qwen3's;
    /// `None`: a byte-level tokenizer (one token per byte, `<|endoftext|>` = 256).
    pub tokenizer: Option<PathBuf>,
}

impl Default for SyntheticOptions {
    fn default() -> Self {
        SyntheticOptions {
            seed: DEFAULT_SEED,
            dtype: Dtype::BF16,
            shard_bytes: DEFAULT_SHARD_BYTES,
            tokenizer: None,
        }
    }
}

/// A written checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyntheticCheckpoint {
    pub dir: PathBuf,
    pub params: u64,
    /// Bytes of the tensors in the files.
    pub bytes: u64,
    pub tensors: usize,
    pub shards: usize,
    /// Whether this call wrote it (false: found in the cache).
    pub written: bool,
    /// Seconds spent writing (0 when found in the cache).
    pub write_s: f64,
}

/// The shard file name `model-0000i-of-0000n.safetensors` (i from 1), as `transformers` names them.
pub fn shard_name(i: usize, n: usize) -> String {
    format!("model-{i:05}-of-{n:05}.safetensors")
}

fn safetensors_dtype(d: Dtype) -> &'static str {
    match d {
        Dtype::F32 => "F32",
        Dtype::BF16 => "BF16",
        Dtype::F16 => "F16",
    }
}

/// Splits `specs` (in order) into shards of at most `limit` bytes each (a larger tensor gets its own).
fn plan_shards(specs: &[TensorSpec], elem: usize, limit: u64) -> Vec<Vec<&TensorSpec>> {
    let mut shards: Vec<Vec<&TensorSpec>> = Vec::new();
    let mut size = 0u64;
    for s in specs {
        let b = (s.numel() * elem) as u64;
        match shards.last_mut() {
            Some(last) if size + b <= limit => {
                last.push(s);
                size += b;
            }
            _ => {
                shards.push(vec![s]);
                size = b;
            }
        }
    }
    shards
}

/// A stream seed for chunk `chunk` of tensor `name`.
fn chunk_seed(seed: u64, name: &str, chunk: usize) -> u64 {
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut z = seed ^ h.rotate_left(17) ^ (chunk as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Values `[start, start + n)` of chunk `chunk` of a tensor, as little-endian bytes of `dtype`.
fn chunk_bytes(spec: &TensorSpec, seed: u64, chunk: usize, n: usize, dtype: Dtype) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * dtype.size());
    let mut push = |x: f32| match dtype {
        Dtype::F32 => out.extend_from_slice(&x.to_le_bytes()),
        Dtype::BF16 => out.extend_from_slice(&half::bf16::from_f32(x).to_le_bytes()),
        Dtype::F16 => out.extend_from_slice(&half::f16::from_f32(x).to_le_bytes()),
    };
    match spec.init {
        Init::Ones => (0..n).for_each(|_| push(1.0)),
        Init::Normal(std) => {
            let mut g = Generator::new(chunk_seed(seed, &spec.name, chunk));
            // Sum of 4 uniforms on [0, 1) (16 bits each): mean 2, variance 4/12.
            let scale = (std * 3f64.sqrt()) as f32;
            for _ in 0..n {
                let r = g.next_u64();
                let s = (r & 0xffff) + ((r >> 16) & 0xffff) + ((r >> 32) & 0xffff) + (r >> 48);
                let u = (s as f32 + 2.0) / 65536.0 - 2.0;
                // bf16-representable in every file dtype: checkpoints of one seed in f32, bf16 or f16
                // hold the same model (up to f16's range, which these values are far inside).
                push(half::bf16::from_f32(u * scale).to_f32());
            }
        }
    }
    out
}

/// Writes one tensor's bytes, chunk by chunk (a few chunks generated in parallel at a time).
fn write_tensor(
    w: &mut impl Write,
    spec: &TensorSpec,
    opts: &SyntheticOptions,
    progress: &mut dyn FnMut(u64),
) -> std::io::Result<()> {
    let n = spec.numel();
    let chunks = n.div_ceil(CHUNK);
    let group = rayon::current_num_threads().max(1) * 2;
    let mut c = 0;
    while c < chunks {
        let end = (c + group).min(chunks);
        let parts: Vec<Vec<u8>> = (c..end)
            .into_par_iter()
            .map(|i| {
                let len = CHUNK.min(n - i * CHUNK);
                chunk_bytes(spec, opts.seed, i, len, opts.dtype)
            })
            .collect();
        for p in &parts {
            w.write_all(p)?;
            progress(p.len() as u64);
        }
        c = end;
    }
    Ok(())
}

/// Writes one safetensors file: the header (computed from the shapes), then each tensor in turn.
fn write_shard(
    path: &Path,
    specs: &[&TensorSpec],
    opts: &SyntheticOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let elem = opts.dtype.size();
    let mut header = serde_json::Map::new();
    header.insert(
        "__metadata__".into(),
        serde_json::json!({"format": "pt", "ia2_synthetic_seed": opts.seed.to_string()}),
    );
    let mut offset = 0usize;
    for s in specs {
        let bytes = s.numel() * elem;
        header.insert(
            s.name.clone(),
            serde_json::json!({
                "dtype": safetensors_dtype(opts.dtype),
                "shape": s.shape,
                "data_offsets": [offset, offset + bytes],
            }),
        );
        offset += bytes;
    }
    let mut text = serde_json::to_string(&serde_json::Value::Object(header))?;
    // The data starts 8-byte aligned, as the safetensors writer pads it.
    while !(8 + text.len()).is_multiple_of(8) {
        text.push(' ');
    }
    let io = || format!("writing {}", path.display());
    let file = std::fs::File::create(path).with_context(io)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 22, file);
    w.write_all(&(text.len() as u64).to_le_bytes())
        .with_context(io)?;
    w.write_all(text.as_bytes()).with_context(io)?;
    for s in specs {
        write_tensor(&mut w, s, opts, progress).with_context(io)?;
    }
    let file = w
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(io)?;
    file.sync_all().with_context(io)?;
    Ok(())
}

/// Free bytes for an unprivileged writer on the file system holding `path` (or its nearest existing
/// ancestor); `None` where it cannot be read.
pub fn free_disk_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let mut p = path;
    while !p.exists() {
        p = p.parent()?;
    }
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a valid out-pointer.
    let r = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (r == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

/// Bytes left free on the disk after writing a checkpoint of `needed` bytes (builds and other work share
/// the disk): a quarter of it plus 64 MB, at most 2 GB.
pub fn disk_reserve(needed: u64) -> u64 {
    (needed / 4 + (64 << 20)).min(2_000_000_000)
}

/// Checks that `needed` bytes fit on the file system of `dir` with [`disk_reserve`] to spare.
fn check_disk(dir: &Path, needed: u64, what: &str) -> Result<()> {
    if let Some(free) = free_disk_bytes(dir)
        && free < needed + disk_reserve(needed)
    {
        bail!(
            "not enough disk space for {what}: it needs ≈ {:.2} GB (and {:.2} GB left free), {:.2} GB are free \
             on the file system of {} (set IA2_CACHE to a directory on a larger disk)",
            needed as f64 / 1e9,
            disk_reserve(needed) as f64 / 1e9,
            free as f64 / 1e9,
            dir.display()
        );
    }
    Ok(())
}

/// Writes a checkpoint of `config` into `dir` (created if needed; existing files of the same names are
/// replaced): config.json, the shards, model.safetensors.index.json and the tokenizer. Not atomic as a
/// whole: [`materialize`] writes through a temporary directory. `progress` gets the bytes written so far.
pub fn write_checkpoint(
    config: &ModelConfig,
    dir: &Path,
    opts: &SyntheticOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<SyntheticCheckpoint> {
    config.validate()?;
    ensure!(opts.shard_bytes > 0, "the shard size must be positive");
    let start = std::time::Instant::now();
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let specs = tensor_specs(config);
    let elem = opts.dtype.size();
    let bytes: u64 = specs.iter().map(|s| (s.numel() * elem) as u64).sum();
    check_disk(dir, bytes, &format!("the checkpoint in {}", dir.display()))?;
    write_tokenizer(dir, config, opts.tokenizer.as_deref())?;
    let mut config = config.clone();
    config.torch_dtype = Some(
        match opts.dtype {
            Dtype::F32 => "float32",
            Dtype::BF16 => "bfloat16",
            Dtype::F16 => "float16",
        }
        .into(),
    );
    config.write_file(dir.join("config.json"))?;
    let shards = plan_shards(&specs, elem, opts.shard_bytes);
    let n = shards.len();
    let mut weight_map = serde_json::Map::new();
    let mut written = 0u64;
    for (i, shard) in shards.iter().enumerate() {
        let name = shard_name(i + 1, n);
        write_shard(&dir.join(&name), shard, opts, &mut |b| {
            written += b;
            progress(written)
        })?;
        for s in shard {
            weight_map.insert(s.name.clone(), name.clone().into());
        }
    }
    let index = serde_json::json!({"metadata": {"total_size": bytes}, "weight_map": weight_map});
    ia2_runs::write_atomic(
        &dir.join(SAFETENSORS_INDEX_FILE),
        serde_json::to_string_pretty(&index)?.as_bytes(),
    )?;
    Ok(SyntheticCheckpoint {
        dir: dir.to_path_buf(),
        params: specs.iter().map(|s| s.numel() as u64).sum(),
        bytes,
        tensors: specs.len(),
        shards: n,
        written: true,
        write_s: start.elapsed().as_secs_f64(),
    })
}

/// Writes tokenizer.json and tokenizer_config.json: a copy from `source`, else the byte-level tokenizer.
fn write_tokenizer(dir: &Path, config: &ModelConfig, source: Option<&Path>) -> Result<()> {
    let Some(src) = source else {
        ensure!(
            config.vocab_size > 256,
            "the byte-level tokenizer needs a vocabulary of at least 257 tokens, the model has {}",
            config.vocab_size
        );
        ia2_runs::write_atomic(
            &dir.join("tokenizer.json"),
            crate::builtin::byte_level_tokenizer_json().as_bytes(),
        )?;
        let cfg = serde_json::json!({"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
            "model_max_length": config.max_position_embeddings, "tokenizer_class": "PreTrainedTokenizerFast"});
        return ia2_runs::write_atomic(
            &dir.join("tokenizer_config.json"),
            cfg.to_string().as_bytes(),
        );
    };
    let tok = ia2_hf::Tokenizer::from_dir(src)
        .with_context(|| format!("the tokenizer to copy from {}", src.display()))?;
    ensure!(
        tok.vocab_size() <= config.vocab_size,
        "the tokenizer in {} has {} tokens, more than the model's vocabulary of {}",
        src.display(),
        tok.vocab_size(),
        config.vocab_size
    );
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        let from = src.join(file);
        if from.is_file() {
            let bytes =
                std::fs::read(&from).with_context(|| format!("reading {}", from.display()))?;
            ia2_runs::write_atomic(&dir.join(file), &bytes)?;
        }
    }
    Ok(())
}

/// Default cache root of synthetic checkpoints: `$IA2_CACHE/synthetic`, else `~/.cache/ia2/synthetic`.
pub fn default_cache_root() -> PathBuf {
    crate::builtin::ia2_cache_dir("synthetic")
}

/// The cache directory name of a checkpoint: `<name>-v1`, with the seed, dtype, shard size and tokenizer in
/// the name when they are not the defaults.
pub fn cache_name(name: &str, opts: &SyntheticOptions) -> String {
    let d = SyntheticOptions::default();
    let mut s = name.to_string();
    if opts.seed != d.seed {
        s += &format!("-seed{}", opts.seed);
    }
    if opts.dtype != d.dtype {
        s += &format!("-{}", opts.dtype.to_string().to_lowercase());
    }
    if opts.shard_bytes != d.shard_bytes {
        s += &format!("-shard{}", opts.shard_bytes);
    }
    if let Some(t) = &opts.tokenizer {
        // The copied tokenizer's contents identify it.
        let bytes = std::fs::read(t.join("tokenizer.json")).unwrap_or_default();
        s += &format!(
            "-tok{:08x}",
            chunk_seed(0, &String::from_utf8_lossy(&bytes), 0) as u32
        );
    }
    format!("{s}-v{VERSION}")
}

/// Writes (once) and returns the checkpoint `name` of `config` under `cache_root` (see [`cache_name`]):
/// written into a temporary directory beside it and renamed into place, under the lock of its name, so
/// concurrent callers write it once and an interrupted write leaves nothing behind but a temporary that
/// the next writer removes.
pub fn materialize(
    name: &str,
    config: &ModelConfig,
    cache_root: &Path,
    opts: &SyntheticOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<SyntheticCheckpoint> {
    let dir = cache_root.join(cache_name(name, opts));
    std::fs::create_dir_all(cache_root)
        .with_context(|| format!("creating {}", cache_root.display()))?;
    let specs = tensor_specs(config);
    let elem = opts.dtype.size();
    let bytes: u64 = specs.iter().map(|s| (s.numel() * elem) as u64).sum();
    let found = |written: bool, write_s: f64| SyntheticCheckpoint {
        dir: dir.clone(),
        params: specs.iter().map(|s| s.numel() as u64).sum(),
        bytes,
        tensors: specs.len(),
        shards: plan_shards(&specs, elem, opts.shard_bytes).len(),
        written,
        write_s,
    };
    let complete = || dir.join(SAFETENSORS_INDEX_FILE).is_file();
    if complete() {
        return Ok(found(false, 0.0));
    }
    let _lock = ia2_runs::Lock::acquire(&dir, ia2_runs::Wait::Block)?;
    if complete() {
        return Ok(found(false, 0.0));
    }
    let file_name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    ia2_runs::tmp::remove_leftovers(cache_root, &file_name, true)?;
    check_disk(
        cache_root,
        bytes,
        &format!("the synthetic {name} checkpoint"),
    )?;
    tracing::info!(model = name, dir = %dir.display(), gb = bytes as f64 / 1e9, "writing a synthetic checkpoint");
    let tmp = ia2_runs::tmp::tmp_path(&dir);
    let result = write_checkpoint(config, &tmp, opts, &mut |b| progress(b, bytes)).and_then(|c| {
        std::fs::rename(&tmp, &dir)
            .with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
        Ok(c.write_s)
    });
    match result {
        Ok(write_s) => Ok(found(true, write_s)),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

/// [`materialize`] of one of the [`SyntheticModel`] shapes.
pub fn materialize_model(
    model: SyntheticModel,
    cache_root: &Path,
    opts: &SyntheticOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<SyntheticCheckpoint> {
    materialize(model.as_str(), &model.config(), cache_root, opts, progress)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shapes give the published parameter counts (0.6B: 596M with tied embeddings; 1.7B: 1.72B;
    /// 4B: 4.02B).
    #[test]
    fn real_shapes_have_the_published_sizes() {
        let p = |m: SyntheticModel| param_count(&m.config()) as f64 / 1e9;
        assert!(
            (0.59..0.60).contains(&p(SyntheticModel::Qwen3_0_6B)),
            "{}",
            p(SyntheticModel::Qwen3_0_6B)
        );
        assert!(
            (1.71..1.73).contains(&p(SyntheticModel::Qwen3_1_7B)),
            "{}",
            p(SyntheticModel::Qwen3_1_7B)
        );
        assert!(
            (4.01..4.03).contains(&p(SyntheticModel::Qwen3_4B)),
            "{}",
            p(SyntheticModel::Qwen3_4B)
        );
        for m in SyntheticModel::ALL {
            m.config().validate().unwrap();
            assert_eq!(m.as_str().parse::<SyntheticModel>().unwrap(), m);
            let names: std::collections::BTreeSet<String> = tensor_specs(&m.config())
                .into_iter()
                .map(|s| s.name)
                .collect();
            let expected: std::collections::BTreeSet<String> =
                m.config().expected_tensor_names().into_iter().collect();
            assert_eq!(names, expected, "{m}");
        }
        assert!("qwen3-8b".parse::<SyntheticModel>().is_err());
    }

    /// Irwin–Hall draws: mean ≈ 0, standard deviation ≈ 0.02, bounded by 2√3 σ.
    #[test]
    fn normal_ish_values_have_the_asked_moments() {
        let spec = TensorSpec {
            name: "w".into(),
            shape: vec![1 << 16],
            init: Init::Normal(0.02),
        };
        let b = chunk_bytes(&spec, 3, 0, 1 << 16, Dtype::F32);
        let v: Vec<f64> = b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        assert!(mean.abs() < 5e-4, "{mean}");
        assert!((std - 0.02).abs() < 5e-4, "{std}");
        // Bounded by 2√3 σ (up to bf16 rounding), and every value a bf16 number.
        assert!(
            v.iter()
                .all(|x| x.abs() <= 0.02 * 2.0 * 3f64.sqrt() * 1.004)
        );
        assert!(v.iter().all(|&x| half::bf16::from_f64(x).to_f64() == x));
        // Another chunk, another stream.
        assert_ne!(b, chunk_bytes(&spec, 3, 1, 1 << 16, Dtype::F32));
    }

    #[test]
    fn shards_respect_the_limit() {
        let specs = tensor_specs(&SyntheticModel::Tiny.config());
        let shards = plan_shards(&specs, 2, 40_000);
        assert!(shards.len() > 1);
        let flat: Vec<&TensorSpec> = shards.iter().flatten().copied().collect();
        assert_eq!(flat.len(), specs.len());
        for s in &shards {
            let b: usize = s.iter().map(|t| t.numel() * 2).sum();
            assert!(b <= 40_000 || s.len() == 1, "{b}");
        }
        assert_eq!(shard_name(2, 5), "model-00002-of-00005.safetensors");
    }
}
