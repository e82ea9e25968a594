#![allow(dead_code)]
use std::path::PathBuf;

/// `/work/shared` (computed from the manifest dir); None with a notice if absent.
pub fn shared() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    if p.join("fixtures").is_dir() {
        Some(p)
    } else if std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false")) {
        // The same rule as ia2_testkit::fixtures_root (ia2-testkit depends on this crate).
        panic!(
            "shared fixtures not found at {}, and CI is set: fixture tests must not be skipped in CI",
            p.display()
        );
    } else {
        eprintln!(
            "SKIPPED: shared fixtures not found at {} (with CI set this is a failure)",
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
