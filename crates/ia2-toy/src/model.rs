//! The toy model directory and its cache.
//!
//! A toy model is an ordinary Hugging Face directory (config.json, model.safetensors, tokenizer.json,
//! tokenizer_config.json, generation_config.json) plus `toy_model.json`: the full configuration, the cache key,
//! the training curve, the held-out in-context accuracy, and the size and sha256 of every other file. The
//! directory is built under a temporary name and renamed into place when complete, and a cached directory is
//! used only when `toy_model.json` names the expected key and every file matches its recorded checksum, so a
//! partial or corrupt copy is never used (it is rebuilt).

use crate::pretrain::{self, IclReport, MAX_POSITIONS, PretrainConfig, TrainingSummary};
use crate::task;
use crate::tokenizer::{self, EOS_ID};
use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Bumped whenever the training code changes the weights it produces (part of the cache key).
pub const MODEL_VERSION: u32 = 1;
/// The metadata file written last into a toy model directory.
pub const INFO_FILE: &str = "toy_model.json";
const FILES: [&str; 5] = [
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
];

/// Size and checksum of one file of the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    pub bytes: u64,
    pub sha256: String,
}

/// Contents of `toy_model.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToyModelInfo {
    pub format: String,
    pub key: String,
    pub model_version: u32,
    pub ia2_version: String,
    pub config: PretrainConfig,
    pub family: Value,
    pub training: TrainingSummary,
    pub icl_eval: IclReport,
    pub files: BTreeMap<String, FileDigest>,
}

/// Where and how to get the toy model.
#[derive(Debug, Clone)]
pub struct ToyModelOptions {
    /// Directory holding cached toy models (one subdirectory per cache key).
    pub cache_root: PathBuf,
    pub config: PretrainConfig,
    /// Retrain even when a valid cached copy exists.
    pub force: bool,
}

impl Default for ToyModelOptions {
    fn default() -> Self {
        ToyModelOptions {
            cache_root: default_cache_root(),
            config: PretrainConfig::default(),
            force: false,
        }
    }
}

/// Default cache root: `$IA2_CACHE/toy`, else `~/.cache/ia2/toy` (beside the built-in models).
pub fn default_cache_root() -> PathBuf {
    ia2_model::builtin::ia2_cache_dir("toy")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The cache key: sha256 of everything that changes the directory's content (code versions, task family,
/// tokenizer, configuration).
pub fn cache_key(config: &PretrainConfig) -> String {
    let canonical = json!({
        "model_version": MODEL_VERSION,
        "family": task::family_json(),
        "tokenizer": tokenizer::tokenizer_json(),
        "config": config,
    });
    hex(&Sha256::digest(canonical.to_string().as_bytes()))
}

/// The cached directory of `config` under `root` (it may not exist yet).
pub fn cache_dir(root: &Path, config: &PretrainConfig) -> PathBuf {
    root.join(format!("toy-qwen3-{}", &cache_key(config)[..16]))
}

fn digest(path: &Path) -> Result<FileDigest> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(FileDigest {
        bytes: bytes.len() as u64,
        sha256: hex(&Sha256::digest(&bytes)),
    })
}

/// Checks a toy model directory: `toy_model.json` parses, names `expected_key` (when given), and every file
/// has its recorded size and checksum.
pub fn verify(dir: &Path, expected_key: Option<&str>) -> Result<ToyModelInfo> {
    let info_path = dir.join(INFO_FILE);
    let text = std::fs::read_to_string(&info_path)
        .with_context(|| format!("reading {}", info_path.display()))?;
    let info: ToyModelInfo =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", info_path.display()))?;
    if let Some(k) = expected_key
        && info.key != k
    {
        bail!(
            "{} was built for cache key {}, expected {k}",
            dir.display(),
            info.key
        );
    }
    for name in FILES {
        let want = info
            .files
            .get(name)
            .with_context(|| format!("{} does not list {name}", info_path.display()))?;
        let got = digest(&dir.join(name))?;
        if &got != want {
            bail!(
                "{} does not match its recorded checksum",
                dir.join(name).display()
            );
        }
    }
    Ok(info)
}

/// Writes the Hugging Face files of a trained decoder into `dir`.
fn write_hf_files(dir: &Path, decoder: &ia2_model::Decoder, key: &str) -> Result<()> {
    decoder
        .config
        .write_file(dir.join("config.json"))
        .context("writing config.json")?;
    let weights = pretrain::export_weights(decoder)?;
    let refs: Vec<(&str, &[usize], &[f32])> = weights
        .iter()
        .map(|(n, s, v)| (n.as_str(), s.as_slice(), v.as_slice()))
        .collect();
    let metadata = [("ia2_toy_key".to_string(), key.to_string())].into();
    ia2_hf::save_safetensors_f32(dir.join("model.safetensors"), &refs, Some(metadata))
        .context("writing model.safetensors")?;
    tokenizer::write_tokenizer(dir, MAX_POSITIONS)?;
    let generation = json!({"eos_token_id": EOS_ID, "pad_token_id": EOS_ID, "do_sample": false});
    std::fs::write(
        dir.join("generation_config.json"),
        serde_json::to_string_pretty(&generation)?,
    )
    .with_context(|| format!("writing generation_config.json in {}", dir.display()))
}

/// Trains a model and writes the complete directory at `tmp` (which must not exist).
fn build(tmp: &Path, config: &PretrainConfig) -> Result<ToyModelInfo> {
    let key = cache_key(config);
    std::fs::create_dir_all(tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let bar = indicatif::ProgressBar::new(config.steps as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "pretraining toy model [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let (decoder, training) = pretrain::train(config, &Device::flex(), &|step, msg| {
        bar.set_position(step as u64);
        bar.set_message(msg.to_string());
    })?;
    bar.finish_and_clear();
    write_hf_files(tmp, &decoder, &key)?;
    // The evaluation reloads the written files, so it checks them as ia2 and transformers will read them.
    let icl_eval = pretrain::evaluate_dir(tmp, &config.eval, config.scope)?;
    for r in &icl_eval.results {
        tracing::info!(
            sampling = ?r.sampling,
            demos = r.demos,
            accuracy = format!("{:.3}", r.accuracy),
            accuracy_in_label_set = format!("{:.3}", r.accuracy_in_label_set),
            "held-out in-context accuracy"
        );
    }
    let files = FILES
        .iter()
        .map(|f| Ok((f.to_string(), digest(&tmp.join(f))?)))
        .collect::<Result<_>>()?;
    let info = ToyModelInfo {
        format: "ia2-toy-model".into(),
        key,
        model_version: MODEL_VERSION,
        ia2_version: env!("CARGO_PKG_VERSION").into(),
        config: config.clone(),
        family: task::family_json(),
        training,
        icl_eval,
        files,
    };
    std::fs::write(tmp.join(INFO_FILE), serde_json::to_string_pretty(&info)?)
        .with_context(|| format!("writing {INFO_FILE} in {}", tmp.display()))?;
    Ok(info)
}

/// A fresh temporary sibling of `dir` in the project's one temporary-name scheme ([`ia2_runs::tmp`]).
fn temp_sibling(dir: &Path) -> PathBuf {
    ia2_runs::tmp::tmp_path(dir)
}

/// Trains into a temporary sibling of `dir` and moves the finished directory to `dir`, replacing what is there
/// (the caller decided it may).
fn build_at(dir: &Path, config: &PretrainConfig) -> Result<ToyModelInfo> {
    let tmp = temp_sibling(dir);
    if let Some(parent) = tmp.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let info = match build(&tmp, config) {
        Ok(info) => info,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    if dir.exists() {
        // Another process may have finished the same model meanwhile: keep a valid copy.
        if verify(dir, Some(&info.key)).is_ok() {
            let _ = std::fs::remove_dir_all(&tmp);
            return Ok(info);
        }
        let old = temp_sibling(dir);
        std::fs::rename(dir, &old).with_context(|| format!("moving {} aside", dir.display()))?;
        let _ = std::fs::remove_dir_all(&old);
    }
    std::fs::rename(&tmp, dir)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
    Ok(info)
}

/// The directory of the toy model: the cached copy when a valid one exists (and not `force`), else trains it
/// (minutes) and caches it.
pub fn ensure_toy_model(opts: &ToyModelOptions) -> Result<PathBuf> {
    opts.config.validate()?;
    let dir = cache_dir(&opts.cache_root, &opts.config);
    let key = cache_key(&opts.config);
    if !opts.force && dir.exists() {
        match verify(&dir, Some(&key)) {
            Ok(_) => {
                tracing::info!(model = %dir.display(), "using the cached toy model");
                return Ok(dir);
            }
            Err(e) => tracing::warn!("cached toy model is unusable, rebuilding it: {e:#}"),
        }
    }
    build_at(&dir, &opts.config)?;
    tracing::info!(model = %dir.display(), "toy model written");
    Ok(dir)
}

/// Trains the toy model into `out` (an explicit directory). An existing valid model with the same key is kept
/// unless `force`; anything else already at `out` is replaced only with `force`, and only when it is empty or
/// a toy model directory.
pub fn pretrain_to(out: &Path, config: &PretrainConfig, force: bool) -> Result<ToyModelInfo> {
    config.validate()?;
    if out.exists() {
        let key = cache_key(config);
        if !force && let Ok(info) = verify(out, Some(&key)) {
            tracing::info!(model = %out.display(), "toy model already there (use --force to retrain)");
            return Ok(info);
        }
        let empty = out
            .read_dir()
            .with_context(|| format!("reading {}", out.display()))?
            .next()
            .is_none();
        if !empty {
            if !out.join(INFO_FILE).exists() {
                bail!(
                    "{} exists and is not a toy model directory; refusing to replace it",
                    out.display()
                );
            }
            if !force {
                bail!(
                    "{} holds a different or damaged toy model; pass --force to replace it",
                    out.display()
                );
            }
        }
    }
    build_at(out, config)
}
