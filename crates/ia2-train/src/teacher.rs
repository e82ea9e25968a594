//! Teacher targets: what the frozen base model does *with* the ICL demos, collected once and cached on disk.
//!
//! For every sequence the base model decodes greedily from the ICL prompt (batched, left-padded, KV cache)
//! for up to T tokens, stopping after EOS. At each step it records the token, every layer's self-attention
//! output at the predicting position and, for `tokl`, the next-token distribution (full logits or top-k
//! probabilities). The seed recomputes the whole prefix for every token, for every run and every method; here
//! one cache entry per (model, data file, demo order, T, dtype, distribution kind) serves them all.
//!
//! A cache entry is a safetensors file whose metadata holds the full key and a sha256 of its tensor bytes: an
//! entry for other inputs is never matched (the key is part of the file name and checked again on read) and a
//! corrupt one is detected, reported and recomputed.

use crate::args::TopK;
use crate::examples::Sequence;
use anyhow::{Context, Result, anyhow, bail, ensure};
use ia2_model::{Decoder, GenerateOptions, Observation, greedy_observed};
use indicatif::ProgressBar;
use safetensors::Dtype as StDtype;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tracing::{info, warn};

/// Next-token distributions of the response steps, `[steps, ·]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum Distribution {
    /// Raw logits `[steps, vocab]` (softmax taken in the loss).
    Full(Vec<f32>),
    /// Top-k `(indices, probabilities)`, each `[steps, k]`.
    TopK {
        indices: Vec<u32>,
        probs: Vec<f32>,
        k: usize,
    },
}

/// What the base model did with ICL for one sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Greedy response (at most T tokens; the last one is EOS when it stopped early).
    pub tokens: Vec<u32>,
    /// `[layers, tokens.len(), hidden]`: attention outputs at the positions predicting each token.
    pub activations: Vec<f32>,
    pub dist: Option<Distribution>,
}

/// Teacher targets of one run's training and dev sequences.
#[derive(Debug, Clone)]
pub struct Targets {
    pub train: Vec<Target>,
    pub dev: Vec<Target>,
}

/// Everything a cache entry depends on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheKey {
    pub format: u32,
    pub model_fingerprint: String,
    pub dtype: String,
    pub data_file_sha256: String,
    /// Demo orderings (`--shuffle-demos`): K and the run index seeding them.
    pub demo_shuffles: Option<(usize, usize)>,
    pub num_generated_tokens: usize,
    /// `None`: tokens and activations only; `Some("all")` / `Some("k")`: with distributions.
    pub distributions: Option<String>,
}

impl CacheKey {
    pub fn digest(&self) -> String {
        let json = serde_json::to_string(self).expect("a cache key always serializes");
        hex::encode(&Sha256::digest(json.as_bytes())[..16])
    }
}

/// sha256 of a file, and the base-model fingerprint (whole-file hashes of the weights, cached by path, size
/// and mtime): defined with the on-disk contract in [`ia2_runs::fingerprint`].
pub use ia2_runs::fingerprint::{file_sha256, model_fingerprint};

/// How the teacher decodes.
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    /// Tokens that end a response (kept as its last token).
    pub eos: Vec<u32>,
    /// Padding id of left-padded batches (masked, its value never matters).
    pub pad: u32,
    /// Sequences per batch.
    pub batch: usize,
}

/// Greedy ICL responses of up to `num_generated_tokens` tokens with activations (and distributions) for
/// `sequences`.
pub fn collect(
    decoder: &Decoder,
    sequences: &[Sequence],
    num_generated_tokens: usize,
    distributions: Option<TopK>,
    opts: &DecodeOptions,
    progress: &ProgressBar,
) -> Result<Vec<Target>> {
    let mut out = Vec::with_capacity(sequences.len());
    for chunk in sequences.chunks(opts.batch.max(1)) {
        out.extend(collect_batch(
            decoder,
            chunk,
            num_generated_tokens,
            &opts.eos,
            opts.pad,
            distributions,
        )?);
        progress.inc(chunk.len() as u64);
    }
    Ok(out)
}

fn collect_batch(
    decoder: &Decoder,
    seqs: &[Sequence],
    steps: usize,
    eos: &[u32],
    pad: u32,
    distributions: Option<TopK>,
) -> Result<Vec<Target>> {
    let c = &decoder.config;
    let (rows, layers, hidden, vocab) =
        (seqs.len(), c.num_hidden_layers, c.hidden_size, c.vocab_size);
    let prompts: Vec<Vec<u32>> = seqs.iter().map(|s| s.icl_ids.clone()).collect();
    let options = GenerateOptions {
        max_new_tokens: steps,
        eos_token_ids: eos.to_vec(),
        pad_token_id: pad,
        use_cache: true,
    };
    // Per row, per step: activations [layers][hidden] and the distribution.
    let mut acts: Vec<Vec<Vec<f32>>> = vec![Vec::new(); rows];
    let mut dists: Vec<Vec<f32>> = vec![Vec::new(); rows];
    let mut topk_idx: Vec<Vec<u32>> = vec![Vec::new(); rows];
    let generated = greedy_observed(
        decoder,
        None,
        &prompts,
        &options,
        true,
        |_, _| false,
        |o| {
            let Observation::Token { row: r, outputs } = o else {
                return;
            };
            let mut step_act = Vec::with_capacity(layers * hidden);
            for l in 0..layers {
                step_act.extend_from_slice(outputs.attn(l, r));
            }
            acts[r].push(step_act);
            match distributions {
                None => {}
                Some(TopK::All) => dists[r].extend_from_slice(outputs.logits(r)),
                Some(TopK::K(k)) => {
                    let (idx, probs) = top_k_probs(outputs.logits(r), k);
                    topk_idx[r].extend(idx);
                    dists[r].extend(probs);
                }
            }
        },
    )?;
    Ok(generated
        .into_iter()
        .enumerate()
        .map(|(r, g)| {
            let n = g.tokens.len();
            // [steps][layers][hidden] -> [layers][steps][hidden]
            let mut activations = vec![0.0f32; layers * n * hidden];
            for (t, step) in acts[r].iter().enumerate() {
                for l in 0..layers {
                    let dst = (l * n + t) * hidden;
                    activations[dst..dst + hidden]
                        .copy_from_slice(&step[l * hidden..(l + 1) * hidden]);
                }
            }
            let dist = distributions.map(|d| match d {
                TopK::All => Distribution::Full(std::mem::take(&mut dists[r])),
                TopK::K(k) => Distribution::TopK {
                    indices: std::mem::take(&mut topk_idx[r]),
                    probs: std::mem::take(&mut dists[r]),
                    k: k.min(vocab),
                },
            });
            Target {
                tokens: g.tokens,
                activations,
                dist,
            }
        })
        .collect())
}

/// Softmax of `logits`, then the `k` largest probabilities and their indices (descending, ties by index).
pub fn top_k_probs(logits: &[f32], k: usize) -> (Vec<u32>, Vec<f32>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&x| ((x - max) as f64).exp()).sum();
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    let k = k.min(logits.len());
    order.select_nth_unstable_by(k.saturating_sub(1), |&a, &b| {
        logits[b as usize]
            .total_cmp(&logits[a as usize])
            .then(a.cmp(&b))
    });
    let mut top: Vec<u32> = order[..k].to_vec();
    top.sort_by(|&a, &b| {
        logits[b as usize]
            .total_cmp(&logits[a as usize])
            .then(a.cmp(&b))
    });
    let probs = top
        .iter()
        .map(|&i| (((logits[i as usize] - max) as f64).exp() / sum) as f32)
        .collect();
    (top, probs)
}

// ---------------------------------------------------------------------------------------------------------
// The cache.

#[derive(Serialize, Deserialize)]
struct EntryMeta {
    key: CacheKey,
    /// Per split, per sequence: the response tokens.
    train_tokens: Vec<Vec<u32>>,
    dev_tokens: Vec<Vec<u32>>,
    layers: usize,
    hidden: usize,
    vocab: usize,
    content_sha256: String,
}

/// Cache file of `key` under `dir`.
pub fn cache_path(dir: &Path, key: &CacheKey) -> PathBuf {
    ia2_runs::layout::teacher_entry(dir, &key.digest())
}

/// The checksum of an entry: every header field (key, response tokens, sizes) and every tensor's name and
/// bytes, in order.
fn entry_checksum<'a>(
    meta: &EntryMeta,
    tensors: impl Iterator<Item = (&'a str, &'a [u8])>,
) -> Result<String> {
    let mut header = serde_json::to_value(meta)?;
    if let Some(m) = header.as_object_mut() {
        m.remove("content_sha256");
    }
    let mut h = Sha256::new();
    h.update(ia2_runs::canonical_json(&header).as_bytes());
    for (name, bytes) in tensors {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    Ok(hex::encode(h.finalize()))
}

/// A tensor for `safetensors::serialize`.
struct View<'a> {
    dtype: safetensors::Dtype,
    shape: &'a [usize],
    data: &'a [u8],
}

impl safetensors::View for View<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn tensor_names(split: &str, i: usize) -> [String; 3] {
    [
        format!("{split}.{i}.activations"),
        format!("{split}.{i}.dist"),
        format!("{split}.{i}.topk_indices"),
    ]
}

/// Writes `targets` as the entry of `key` (atomically).
pub fn save(dir: &Path, key: &CacheKey, targets: &Targets, decoder: &Decoder) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let c = &decoder.config;
    let (layers, hidden, vocab) = (c.num_hidden_layers, c.hidden_size, c.vocab_size);
    ensure!(
        vocab < 1 << 24,
        "vocabulary too large for the teacher cache's f32 token ids"
    );
    // Owned little-endian buffers first, then borrowed views for the writer.
    let mut owned: Vec<(String, StDtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (split, list) in [("train", &targets.train), ("dev", &targets.dev)] {
        for (i, t) in list.iter().enumerate() {
            let n = t.tokens.len();
            let [a, d, ti] = tensor_names(split, i);
            owned.push((
                a,
                StDtype::F32,
                vec![layers, n, hidden],
                f32_bytes(&t.activations),
            ));
            match &t.dist {
                None => {}
                Some(Distribution::Full(l)) => {
                    owned.push((d, StDtype::F32, vec![n, vocab], f32_bytes(l)))
                }
                Some(Distribution::TopK { indices, probs, k }) => {
                    owned.push((d, StDtype::F32, vec![n, *k], f32_bytes(probs)));
                    // Token ids are exact in f32 below 2^24 (checked below); the writer takes floats only.
                    let ids: Vec<f32> = indices.iter().map(|&x| x as f32).collect();
                    owned.push((ti, StDtype::F32, vec![n, *k], f32_bytes(&ids)));
                }
            }
        }
    }
    let mut meta = EntryMeta {
        key: key.clone(),
        train_tokens: targets.train.iter().map(|t| t.tokens.clone()).collect(),
        dev_tokens: targets.dev.iter().map(|t| t.tokens.clone()).collect(),
        layers,
        hidden,
        vocab,
        content_sha256: String::new(),
    };
    meta.content_sha256 = entry_checksum(
        &meta,
        owned.iter().map(|(n, _, _, b)| (n.as_str(), b.as_slice())),
    )?;
    let views: Vec<(&str, View<'_>)> = owned
        .iter()
        .map(|(n, dt, s, b)| {
            (
                n.as_str(),
                View {
                    dtype: *dt,
                    shape: s.as_slice(),
                    data: b.as_slice(),
                },
            )
        })
        .collect();
    let path = cache_path(dir, key);
    let metadata = HashMap::from([
        ("ia2_teacher".to_string(), serde_json::to_string(&meta)?),
        ("format".to_string(), "pt".to_string()),
    ]);
    let bytes = safetensors::serialize(views, Some(metadata))
        .map_err(|e| anyhow!("serializing teacher cache {}: {e}", path.display()))?;
    ia2_runs::write_atomic(&path, &bytes)
        .with_context(|| format!("writing teacher cache {}", path.display()))?;
    Ok(path)
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Reads the entry of `key`: `Ok(None)` when there is none, an error when it exists but is corrupt or was
/// written for another key.
pub fn load(dir: &Path, key: &CacheKey) -> Result<Option<Targets>> {
    let path = cache_path(dir, key);
    if !path.exists() {
        return Ok(None);
    }
    read_entry(&path, key)
        .with_context(|| format!("teacher cache {}", path.display()))
        .map(Some)
}

fn read_entry(path: &Path, key: &CacheKey) -> Result<Targets> {
    let bytes = std::fs::read(path)?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow!("not a valid safetensors file: {e}"))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| anyhow!("unreadable header: {e}"))?;
    let meta_json = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get("ia2_teacher"))
        .context("no `ia2_teacher` metadata")?;
    let meta: EntryMeta =
        serde_json::from_str(meta_json).context("parsing `ia2_teacher` metadata")?;
    ensure!(
        meta.key == *key,
        "written for another configuration (stale): {:?}",
        meta.key
    );
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    // Same order as written: split, index, then activations / dist / indices.
    let mut expected = Vec::new();
    for (split, list) in [("train", &meta.train_tokens), ("dev", &meta.dev_tokens)] {
        for i in 0..list.len() {
            for n in tensor_names(split, i) {
                if names.contains(&n) {
                    expected.push(n);
                }
            }
        }
    }
    names.sort();
    let mut sorted_expected = expected.clone();
    sorted_expected.sort();
    ensure!(names == sorted_expected, "unexpected tensors in the file");
    let tensors = expected
        .iter()
        .map(|n| Ok((n.as_str(), st.tensor(n)?.data())))
        .collect::<Result<Vec<_>>>()?;
    ensure!(
        entry_checksum(&meta, tensors.into_iter())? == meta.content_sha256,
        "content checksum mismatch (corrupt file)"
    );
    let f32s = |name: &str| -> Result<Vec<f32>> {
        let t = st.tensor(name)?;
        ensure!(t.dtype() == safetensors::Dtype::F32, "{name}: expected F32");
        Ok(t.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    };
    let read_split = |split: &str, tokens: &[Vec<u32>]| -> Result<Vec<Target>> {
        tokens
            .iter()
            .enumerate()
            .map(|(i, toks)| {
                let [a, d, ti] = tensor_names(split, i);
                let activations = f32s(&a)?;
                ensure!(
                    activations.len() == meta.layers * toks.len() * meta.hidden,
                    "{a}: wrong size"
                );
                let dist = if !st.names().contains(&d.as_str()) {
                    None
                } else if st.names().contains(&ti.as_str()) {
                    let k = st.tensor(&ti)?.shape()[1];
                    Some(Distribution::TopK {
                        indices: f32s(&ti)?.into_iter().map(|x| x as u32).collect(),
                        probs: f32s(&d)?,
                        k,
                    })
                } else {
                    Some(Distribution::Full(f32s(&d)?))
                };
                Ok(Target {
                    tokens: toks.clone(),
                    activations,
                    dist,
                })
            })
            .collect()
    };
    Ok(Targets {
        train: read_split("train", &meta.train_tokens)?,
        dev: read_split("dev", &meta.dev_tokens)?,
    })
}

/// Cached targets for `key`, collecting (and caching) them when absent or unusable. Returns whether they came
/// from the cache.
pub fn get_or_collect(
    dir: &Path,
    key: &CacheKey,
    decoder: &Decoder,
    train: &[Sequence],
    dev: &[Sequence],
    opts: &DecodeOptions,
) -> Result<(Targets, bool)> {
    // One writer per entry: a second process waits and then reads what the first one cached.
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let _lock = ia2_runs::Lock::acquire(&cache_path(dir, key), ia2_runs::Wait::Block)?;
    match load(dir, key) {
        Ok(Some(t)) if t.train.len() == train.len() && t.dev.len() == dev.len() => {
            info!(path = %cache_path(dir, key).display(), "teacher targets from cache");
            return Ok((t, true));
        }
        Ok(Some(_)) => warn!("teacher cache entry has the wrong number of sequences; recomputing"),
        Ok(None) => {}
        Err(e) => warn!("{e:#}; recomputing it"),
    }
    let distributions = match key.distributions.as_deref() {
        None => None,
        Some(s) => Some(
            s.parse::<TopK>()
                .map_err(|e| anyhow!("cache key distributions: {e}"))?,
        ),
    };
    let bar = crate::progress::bar(
        (train.len() + dev.len()) as u64,
        &format!("teacher (T={})", key.num_generated_tokens),
    );
    let t = key.num_generated_tokens;
    let targets = Targets {
        train: collect(decoder, train, t, distributions, opts, &bar)?,
        dev: collect(decoder, dev, t, distributions, opts, &bar)?,
    };
    bar.finish_and_clear();
    if targets
        .train
        .iter()
        .chain(&targets.dev)
        .any(|t| t.tokens.is_empty())
    {
        bail!("the teacher produced an empty response");
    }
    let path = save(dir, key, &targets, decoder)?;
    info!(path = %path.display(), "teacher targets cached");
    Ok((targets, false))
}
