//! Files built from other files (training sets, LDR sets and demo sets from `main.json`) record the sha256
//! of their sources in a sidecar `.{file}.ia2-source.json`, so a builder or a consumer can tell when a source
//! changed since.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One source of a derived file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// The source as it was named.
    pub path: String,
    pub sha256: String,
}

/// The sidecar of a derived file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceRecord {
    pub sources: Vec<Source>,
}

/// `.{file name}.ia2-source.json` beside the file (hidden, so listings of data directories skip it).
pub fn sidecar_path(file: &Path) -> PathBuf {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    file.with_file_name(format!(".{name}{}", crate::layout::SOURCE_SUFFIX))
}

fn current(sources: &[&Path]) -> Result<Vec<Source>> {
    sources
        .iter()
        .map(|p| {
            Ok(Source {
                path: p.display().to_string(),
                sha256: crate::fingerprint::file_sha256(p)?,
            })
        })
        .collect()
}

/// Records that `file` was built from `sources` (atomically).
pub fn record_sources(file: &Path, sources: &[&Path]) -> Result<()> {
    let rec = SourceRecord {
        sources: current(sources)?,
    };
    crate::tmp::write_json_atomic(&sidecar_path(file), &rec)
}

/// How a derived file relates to its sources now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceCheck {
    /// Built from the sources as they are now.
    Current,
    /// Built from another version of these sources (their paths).
    Changed(Vec<String>),
    /// No (readable) sidecar: built before sidecars existed, or by another tool.
    Unknown,
}

/// Compares `file`'s recorded source checksums with `sources` now (by content: the same file named another
/// way, e.g. `./data` for `data`, is the same source).
pub fn check_sources(file: &Path, sources: &[&Path]) -> Result<SourceCheck> {
    let side = sidecar_path(file);
    let Ok(rec) = crate::tmp::read_json::<SourceRecord>(&side) else {
        return Ok(SourceCheck::Unknown);
    };
    let now = current(sources)?;
    let changed: Vec<String> = now
        .iter()
        .filter(|n| !rec.sources.iter().any(|r| r.sha256 == n.sha256))
        .map(|n| n.path.clone())
        .collect();
    Ok(if changed.is_empty() {
        SourceCheck::Current
    } else {
        SourceCheck::Changed(changed)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_source_is_detected() {
        let d = tempfile::tempdir().unwrap();
        let (src, out) = (d.path().join("main.json"), d.path().join("4_0.json"));
        std::fs::write(&src, b"{\"v\": 1}").unwrap();
        std::fs::write(&out, b"[]").unwrap();
        assert_eq!(check_sources(&out, &[&src]).unwrap(), SourceCheck::Unknown);
        record_sources(&out, &[&src]).unwrap();
        assert_eq!(check_sources(&out, &[&src]).unwrap(), SourceCheck::Current);
        std::fs::write(&src, b"{\"v\": 2}").unwrap();
        assert_eq!(
            check_sources(&out, &[&src]).unwrap(),
            SourceCheck::Changed(vec![src.display().to_string()])
        );
    }
}
