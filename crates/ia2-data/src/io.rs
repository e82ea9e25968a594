//! File helpers shared by every data stage.

use anyhow::{Context, Result};
use serde::Serialize;
use std::path::Path;

/// Writes `bytes` to `path` atomically: a temporary file in the same directory (ia2's one temporary-name
/// scheme, `.ia2-tmp-{pid}-{nonce}-{name}`, whose leftovers the next writer removes once their owner is
/// dead), flushed to disk, then renamed over `path`. An interrupted or failed write never leaves a file at
/// `path` (nor, on failure, the temporary).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    ia2_runs::write_atomic(path, bytes)
}

/// Writes `value` as pretty JSON to `path` atomically (see [`write_atomic`]), so an interrupted run never leaves a
/// half-written file that later looks finished.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).context("serializing JSON")?;
    write_atomic(path, &bytes)
}

/// Reads and parses a JSON file, naming the file, the field (its path, e.g. `train_examples[3].answer`) and
/// serde's line/column on failure.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let de = &mut serde_json::Deserializer::from_slice(&bytes);
    let value: T = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        if field.is_empty() || field == "." {
            anyhow::anyhow!("parsing {}: {inner}", path.display())
        } else {
            anyhow::anyhow!("parsing {}: field `{field}`: {inner}", path.display())
        }
    })?;
    de.end()
        .with_context(|| format!("parsing {}: trailing characters", path.display()))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct File {
        items: Vec<Item>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Item {
        answer: String,
    }

    #[test]
    fn read_json_names_the_file_and_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        std::fs::write(&path, r#"{"items": [{"answer": "a"}, {"answer": 5}]}"#).unwrap();
        let e = read_json::<File>(&path).unwrap_err().to_string();
        assert!(e.contains("f.json") && e.contains("items[1].answer"), "{e}");
        std::fs::write(&path, r#"{"items": [{"answer": "a"}"#).unwrap();
        let e = read_json::<File>(&path).unwrap_err().to_string();
        assert!(e.contains("f.json") && e.contains("EOF"), "{e}");
        std::fs::write(&path, r#"{"items": []} x"#).unwrap();
        assert!(read_json::<File>(&path).is_err());
        std::fs::write(&path, r#"{"items": []}"#).unwrap();
        assert!(read_json::<File>(&path).unwrap().items.is_empty());
    }
}
