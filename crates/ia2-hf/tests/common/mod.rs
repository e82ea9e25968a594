#![allow(dead_code)]
use std::path::PathBuf;

/// `/work/shared` (computed from the manifest dir); None with a notice if absent.
pub fn shared() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    if p.join("fixtures").is_dir() {
        Some(p)
    } else {
        eprintln!(
            "NOTICE: shared fixtures not found at {}; skipping",
            p.display()
        );
        None
    }
}

pub fn fixture_model(name: &str) -> Option<PathBuf> {
    let p = shared()?.join("fixtures").join(name).join("model");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("NOTICE: fixture {} not found; skipping", p.display());
        None
    }
}
