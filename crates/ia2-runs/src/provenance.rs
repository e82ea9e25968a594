//! Files built from other files (training sets and demo sets from `main.json`) record the sha256 of their
//! source in a sidecar `{file}.ia2-source.json`, so a consumer can tell when the source changed since.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The sidecar of a derived file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// The source as it was named.
    pub source: String,
    pub source_sha256: String,
}

/// `{file}.ia2-source.json`.
pub fn sidecar_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_os_string();
    s.push(crate::layout::SOURCE_SUFFIX);
    PathBuf::from(s)
}

/// Records that `file` was built from `source` (atomically).
pub fn record_source(file: &Path, source: &Path) -> Result<()> {
    let rec = SourceRecord {
        source: source.display().to_string(),
        source_sha256: crate::fingerprint::file_sha256(source)?,
    };
    crate::tmp::write_json_atomic(&sidecar_path(file), &rec)
}

/// How a derived file relates to its source now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceCheck {
    /// Built from the source as it is now.
    Current,
    /// Built from another version of the source (recorded sha256, current sha256).
    Changed { recorded: String, current: String },
    /// No sidecar (built before sidecars existed, or by another tool).
    Unknown,
}

/// Compares `file`'s recorded source checksum with `source` now.
pub fn check_source(file: &Path, source: &Path) -> Result<SourceCheck> {
    let side = sidecar_path(file);
    if !side.is_file() {
        return Ok(SourceCheck::Unknown);
    }
    let rec: SourceRecord = crate::tmp::read_json(&side)?;
    let current = crate::fingerprint::file_sha256(source)?;
    Ok(if rec.source_sha256 == current {
        SourceCheck::Current
    } else {
        SourceCheck::Changed {
            recorded: rec.source_sha256,
            current,
        }
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
        assert_eq!(check_source(&out, &src).unwrap(), SourceCheck::Unknown);
        record_source(&out, &src).unwrap();
        assert_eq!(check_source(&out, &src).unwrap(), SourceCheck::Current);
        std::fs::write(&src, b"{\"v\": 2}").unwrap();
        assert!(matches!(
            check_source(&out, &src).unwrap(),
            SourceCheck::Changed { .. }
        ));
    }
}
