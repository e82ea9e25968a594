//! Checksums of inputs: whole-file sha256 (cached by canonical path, size and modification time, so a
//! multi-GB model is hashed once) and the base-model fingerprint every run and evaluation records.

use anyhow::{Context, Result, ensure};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// sha256 of a file, hex (always reads the file).
pub fn file_sha256(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// sha256 of bytes, hex.
pub fn bytes_sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// ia2's cache folder `sub`: `$IA2_CACHE/<sub>`, else `~/.cache/ia2/<sub>` (the same root as the built-in
/// and toy models, `ia2_model::builtin::ia2_cache_dir`).
pub fn ia2_cache_dir(sub: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("IA2_CACHE") {
        return PathBuf::from(dir).join(sub);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".cache/ia2").join(sub)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CachedDigest {
    size: u64,
    mtime_ns: i128,
    sha256: String,
}

/// Digests of files keyed by canonical path, valid while size and modification time (ns) are unchanged.
/// Stored as one JSON file, updated under its lock and written atomically.
#[derive(Debug, Clone)]
pub struct DigestCache {
    path: PathBuf,
}

impl Default for DigestCache {
    /// `<ia2 cache>/fingerprints/sha256.json`.
    fn default() -> Self {
        DigestCache::at(ia2_cache_dir("fingerprints").join("sha256.json"))
    }
}

impl DigestCache {
    pub fn at(path: PathBuf) -> DigestCache {
        DigestCache { path }
    }

    fn read(&self) -> BTreeMap<String, CachedDigest> {
        std::fs::read(&self.path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// sha256 of `path`, from the cache when size and mtime match; otherwise hashed and recorded. A cache
    /// that cannot be written (read-only home) only costs the rehash next time.
    pub fn sha256(&self, path: &Path) -> Result<String> {
        let canon =
            std::fs::canonicalize(path).with_context(|| format!("resolving {}", path.display()))?;
        let meta =
            std::fs::metadata(&canon).with_context(|| format!("reading {}", path.display()))?;
        let stamp = |m: &std::fs::Metadata| {
            (
                m.len(),
                m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
            )
        };
        let (size, mtime_ns) = stamp(&meta);
        let key = canon.display().to_string();
        if let Some(c) = self.read().get(&key)
            && c.size == size
            && c.mtime_ns == mtime_ns
        {
            return Ok(c.sha256.clone());
        }
        let sha256 = file_sha256(&canon)?;
        // Changed while being hashed: do not cache.
        let after = std::fs::metadata(&canon).map(|m| stamp(&m)).ok();
        if after == Some((size, mtime_ns)) {
            let update = || -> Result<()> {
                let _lock = crate::lock::Lock::acquire(&self.path, crate::lock::Wait::Block)?;
                let mut all = self.read();
                all.insert(
                    key,
                    CachedDigest {
                        size,
                        mtime_ns,
                        sha256: sha256.clone(),
                    },
                );
                crate::tmp::write_json_atomic(&self.path, &all)
            };
            if let Err(e) = update() {
                tracing::debug!("digest cache {} not updated: {e:#}", self.path.display());
            }
        }
        Ok(sha256)
    }
}

/// sha256 of a file through the default [`DigestCache`].
pub fn file_sha256_cached(path: &Path) -> Result<String> {
    DigestCache::default().sha256(path)
}

/// Files of a model directory that determine its outputs: the configs and tokenizer when present.
const MODEL_FILES: [&str; 4] = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
];

/// Fingerprint of a model directory: sha256 over the name and whole-file sha256 of config.json,
/// generation_config.json, tokenizer.json, tokenizer_config.json (when present) and every `*.safetensors`
/// file (weight digests through `cache`). Any edit of the weights, however small, changes it.
pub fn model_fingerprint_with(dir: &Path, cache: &DigestCache) -> Result<String> {
    let config = dir.join("config.json");
    ensure!(config.is_file(), "no config.json in {}", dir.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    ensure!(
        !files.is_empty(),
        "no .safetensors files in {}",
        dir.display()
    );
    let mut h = Sha256::new();
    for name in MODEL_FILES {
        let p = dir.join(name);
        if p.is_file() {
            h.update(name.as_bytes());
            h.update(file_sha256(&p)?.as_bytes());
        }
    }
    for path in files {
        h.update(path.file_name().unwrap_or_default().as_encoded_bytes());
        h.update(cache.sha256(&path)?.as_bytes());
    }
    Ok(hex::encode(&h.finalize()[..16]))
}

/// [`model_fingerprint_with`] the default [`DigestCache`].
pub fn model_fingerprint(dir: &Path) -> Result<String> {
    model_fingerprint_with(dir, &DigestCache::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, b"abc").unwrap();
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(file_sha256(&p).unwrap(), abc);
        assert_eq!(bytes_sha256(b"abc"), abc);
        assert!(file_sha256(&dir.path().join("missing")).is_err());
    }

    fn model(dir: &Path, weights: &[u8]) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("config.json"), b"{}").unwrap();
        std::fs::write(dir.join("model.safetensors"), weights).unwrap();
    }

    #[test]
    fn same_size_edit_in_the_middle_changes_the_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DigestCache::at(dir.path().join("cache/sha256.json"));
        // 3 MiB: the old fingerprint read only the first and last MiB.
        let mut w = vec![0u8; 3 << 20];
        model(&dir.path().join("a/model"), &w);
        w[(3 << 20) / 2] = 1;
        model(&dir.path().join("b/model"), &w);
        let a = model_fingerprint_with(&dir.path().join("a/model"), &cache).unwrap();
        let b = model_fingerprint_with(&dir.path().join("b/model"), &cache).unwrap();
        assert_ne!(a, b);
        assert_eq!(
            model_fingerprint_with(&dir.path().join("a/model"), &cache).unwrap(),
            a
        );
        assert!(model_fingerprint_with(dir.path(), &cache).is_err());
    }

    #[test]
    fn digests_are_cached_by_path_size_and_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DigestCache::at(dir.path().join("c.json"));
        let p = dir.path().join("w");
        std::fs::write(&p, b"abc").unwrap();
        let d = cache.sha256(&p).unwrap();
        assert_eq!(d, bytes_sha256(b"abc"));
        // Poison the cache entry: a hit returns it (proving nothing was re-read).
        let text = std::fs::read_to_string(dir.path().join("c.json")).unwrap();
        std::fs::write(dir.path().join("c.json"), text.replace(&d, "cached")).unwrap();
        assert_eq!(cache.sha256(&p).unwrap(), "cached");
        // A changed file (new mtime and size) is hashed again.
        std::fs::write(&p, b"abcd").unwrap();
        assert_eq!(cache.sha256(&p).unwrap(), bytes_sha256(b"abcd"));
    }
}
