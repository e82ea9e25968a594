//! Locating a model: a local directory, or a Hugging Face Hub id resolved through the local
//! cache (downloading only missing files when the network is allowed).

use crate::error::{Error, Result};
use crate::weights::{SAFETENSORS_FILE, SAFETENSORS_INDEX_FILE};
use std::path::{Path, PathBuf};

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A local directory in Hugging Face layout (config.json, weights, tokenizer).
    Dir(PathBuf),
    /// A Hub repository id such as `Qwen/Qwen3-4B-Base`; `revision` defaults to `main`
    /// (a branch, tag or full commit hash).
    Hub {
        /// `owner/name`
        id: String,
        /// branch/tag/commit; None = "main"
        revision: Option<String>,
    },
}

impl ModelSource {
    /// Interprets a command-line argument: an existing path, or one starting with `/`, `.`
    /// or `~`, is a directory; otherwise `owner/name` or `owner/name@revision` is a Hub id.
    pub fn parse(s: &str) -> Self {
        let p = Path::new(s);
        let looks_like_path = s.starts_with('/')
            || s.starts_with('.')
            || s.starts_with('~')
            || s.contains('\\')
            || s.matches('/').count() != 1;
        if p.exists() || looks_like_path {
            return ModelSource::Dir(p.to_path_buf());
        }
        match s.split_once('@') {
            Some((id, rev)) if !rev.is_empty() => ModelSource::Hub {
                id: id.to_string(),
                revision: Some(rev.to_string()),
            },
            _ => ModelSource::Hub {
                id: s.to_string(),
                revision: None,
            },
        }
    }

    /// Resolves with [`HubOptions::from_env`] (see [`resolve_with`]).
    pub fn resolve(&self) -> Result<PathBuf> {
        resolve_with(self, &HubOptions::from_env())
    }
}

impl std::fmt::Display for ModelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelSource::Dir(p) => write!(f, "{}", p.display()),
            ModelSource::Hub { id, revision: None } => f.write_str(id),
            ModelSource::Hub {
                id,
                revision: Some(r),
            } => write!(f, "{id}@{r}"),
        }
    }
}

/// How Hub ids are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubOptions {
    /// The hub cache root, holding `models--owner--name/` folders.
    pub cache_dir: PathBuf,
    /// Never touch the network (HF_HUB_OFFLINE).
    pub offline: bool,
    /// Hub endpoint (HF_ENDPOINT); None = `https://huggingface.co`.
    pub endpoint: Option<String>,
    /// Show download progress bars.
    pub progress: bool,
}

impl HubOptions {
    /// From the environment: cache `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
    /// `~/.cache/huggingface/hub`; offline if `HF_HUB_OFFLINE` is 1/true/yes/on; endpoint
    /// `$HF_ENDPOINT`.
    pub fn from_env() -> Self {
        let offline = std::env::var("HF_HUB_OFFLINE")
            .map(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "1" | "true" | "yes" | "on"
                )
            })
            .unwrap_or(false);
        HubOptions {
            cache_dir: default_cache_dir(),
            offline,
            endpoint: std::env::var("HF_ENDPOINT").ok().filter(|s| !s.is_empty()),
            progress: true,
        }
    }

    /// Offline resolution from the given cache root only (used by tests).
    pub fn offline(cache_dir: impl Into<PathBuf>) -> Self {
        HubOptions {
            cache_dir: cache_dir.into(),
            offline: true,
            endpoint: None,
            progress: false,
        }
    }
}

/// The hub cache root from the environment (`HF_HUB_CACHE` > `HF_HOME/hub` >
/// `~/.cache/huggingface/hub`).
pub fn default_cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE").filter(|s| !s.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("HF_HOME").filter(|s| !s.is_empty()) {
        return PathBuf::from(p).join("hub");
    }
    let home = std::env::var_os("HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("huggingface").join("hub")
}

/// Resolves `source` to a local directory holding config.json, the weights and the
/// tokenizer. Local directories must exist and contain config.json. Hub ids are looked up in
/// `opts.cache_dir` (`models--owner--name/refs/<revision>` → `snapshots/<commit>/`, or
/// `snapshots/<revision>/` for a commit hash); missing files are downloaded unless offline.
pub fn resolve_with(source: &ModelSource, opts: &HubOptions) -> Result<PathBuf> {
    match source {
        ModelSource::Dir(dir) => resolve_dir(dir),
        ModelSource::Hub { id, revision } => {
            resolve_hub(id, revision.as_deref().unwrap_or("main"), opts)
        }
    }
}

fn resolve_dir(dir: &Path) -> Result<PathBuf> {
    if !dir.exists() {
        return Err(Error::Resolve(format!(
            "model directory {} does not exist",
            dir.display()
        )));
    }
    if !dir.is_dir() {
        return Err(Error::Resolve(format!(
            "model path {} is not a directory",
            dir.display()
        )));
    }
    if !dir.join("config.json").is_file() {
        return Err(Error::Resolve(format!(
            "model directory {} has no config.json",
            dir.display()
        )));
    }
    Ok(dir.to_path_buf())
}

/// The cache folder of a model repo: `<cache>/models--owner--name`.
pub fn repo_cache_dir(cache_dir: &Path, id: &str) -> PathBuf {
    cache_dir.join(format!("models--{}", id.replace('/', "--")))
}

fn is_commit_hash(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The snapshot directory for `revision` in the cache, if present.
fn find_snapshot(repo_dir: &Path, revision: &str) -> Option<PathBuf> {
    let by_ref = std::fs::read_to_string(repo_dir.join("refs").join(revision))
        .ok()
        .map(|c| repo_dir.join("snapshots").join(c.trim()))
        .filter(|p| p.is_dir());
    by_ref.or_else(|| {
        let p = repo_dir.join("snapshots").join(revision);
        (is_commit_hash(revision) && p.is_dir()).then_some(p)
    })
}

/// Required files absent from `dir` (config, weights and shards named by the index,
/// tokenizer.json).
fn missing_files(dir: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    for f in ["config.json", "tokenizer.json"] {
        if !dir.join(f).is_file() {
            missing.push(f.to_string());
        }
    }
    let index = dir.join(SAFETENSORS_INDEX_FILE);
    if index.is_file() {
        match shard_names(&index) {
            Ok(shards) => missing.extend(shards.into_iter().filter(|s| !dir.join(s).is_file())),
            Err(_) => missing.push(SAFETENSORS_INDEX_FILE.to_string()),
        }
    } else if !dir.join(SAFETENSORS_FILE).is_file() {
        missing.push(format!("{SAFETENSORS_FILE} (or {SAFETENSORS_INDEX_FILE})"));
    }
    missing
}

/// Distinct shard file names of a safetensors index, sorted.
fn shard_names(index: &Path) -> Result<Vec<String>> {
    let v = crate::error::read_json(index)?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::Safetensors {
            path: index.to_path_buf(),
            message: "missing or invalid `weight_map` object".into(),
        })?;
    let mut names: Vec<String> = map
        .values()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

fn resolve_hub(id: &str, revision: &str, opts: &HubOptions) -> Result<PathBuf> {
    let parts: Vec<&str> = id.split('/').collect();
    if parts.len() > 2
        || parts
            .iter()
            .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err(Error::Resolve(format!(
            "invalid Hugging Face model id {id:?} (expected \"owner/name\")"
        )));
    }
    let repo_dir = repo_cache_dir(&opts.cache_dir, id);
    let not_found = |reason: String| {
        Error::Resolve(format!(
            "model {id} (revision {revision}) not found in the Hugging Face cache at {} and \
             could not be downloaded: {reason}; set HF_HOME or pass a local directory",
            opts.cache_dir.display()
        ))
    };
    let mut cached_missing = None;
    if let Some(snap) = find_snapshot(&repo_dir, revision) {
        let missing = missing_files(&snap);
        if missing.is_empty() {
            return Ok(snap);
        }
        cached_missing = Some(format!(
            " (snapshot {} lacks {})",
            snap.display(),
            missing.join(", ")
        ));
    }
    let suffix = cached_missing.unwrap_or_default();
    if opts.offline {
        return Err(not_found(format!("offline mode (HF_HUB_OFFLINE){suffix}")));
    }
    download(id, revision, opts).map_err(|reason| not_found(format!("{reason}{suffix}")))
}

/// Fetches the needed files of `id` at `revision` into the cache, skipping files already
/// there; returns the snapshot directory.
fn download(id: &str, revision: &str, opts: &HubOptions) -> std::result::Result<PathBuf, String> {
    use hf_hub::api::sync::ApiBuilder;
    use hf_hub::{Cache, Repo, RepoType};
    let mut builder =
        ApiBuilder::from_cache(Cache::new(opts.cache_dir.clone())).with_progress(opts.progress);
    if let Some(ep) = &opts.endpoint {
        builder = builder.with_endpoint(ep.clone());
    }
    let api = builder.build().map_err(|e| e.to_string())?;
    let repo = api.repo(Repo::with_revision(
        id.to_string(),
        RepoType::Model,
        revision.to_string(),
    ));
    let info = repo.info().map_err(|e| e.to_string())?;
    let available: std::collections::HashSet<&str> =
        info.siblings.iter().map(|s| s.rfilename.as_str()).collect();
    let fetch = |file: &str| repo.get(file).map_err(|e| format!("{file}: {e}"));

    let config = fetch("config.json")?;
    let snap = config
        .parent()
        .ok_or_else(|| "unexpected cache layout".to_string())?
        .to_path_buf();
    fetch("tokenizer.json")?;
    for optional in ["tokenizer_config.json", "generation_config.json"] {
        if available.contains(optional) {
            fetch(optional)?;
        }
    }
    if available.contains(SAFETENSORS_INDEX_FILE) {
        let index = fetch(SAFETENSORS_INDEX_FILE)?;
        for shard in shard_names(&index).map_err(|e| e.to_string())? {
            fetch(&shard)?;
        }
    } else if available.contains(SAFETENSORS_FILE) {
        fetch(SAFETENSORS_FILE)?;
    } else {
        return Err(format!(
            "the repository has neither {SAFETENSORS_FILE} nor {SAFETENSORS_INDEX_FILE}"
        ));
    }
    let missing = missing_files(&snap);
    if !missing.is_empty() {
        return Err(format!(
            "after download, {} still lacks {}",
            snap.display(),
            missing.join(", ")
        ));
    }
    Ok(snap)
}
