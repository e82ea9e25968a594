mod common;

use ia2_hf::{HubOptions, ModelSource, repo_cache_dir, resolve_with};
use std::path::{Path, PathBuf};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// Builds `<cache>/models--Qwen--Qwen3-Tiny/{refs/main, snapshots/<COMMIT>/...}`.
fn fake_cache(cache: &Path, files: &[&str]) -> PathBuf {
    let repo = repo_cache_dir(cache, "Qwen/Qwen3-Tiny");
    assert!(repo.ends_with("models--Qwen--Qwen3-Tiny"));
    let snap = repo.join("snapshots").join(COMMIT);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), format!("{COMMIT}\n")).unwrap();
    for f in files {
        std::fs::write(snap.join(f), "{}").unwrap();
    }
    snap
}

fn hub(id: &str, revision: Option<&str>) -> ModelSource {
    ModelSource::Hub {
        id: id.into(),
        revision: revision.map(str::to_string),
    }
}

#[test]
fn resolves_from_cache_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let snap = fake_cache(
        tmp.path(),
        &[
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
        ],
    );
    let opts = HubOptions::offline(tmp.path());
    assert_eq!(
        resolve_with(&hub("Qwen/Qwen3-Tiny", None), &opts).unwrap(),
        snap
    );
    assert_eq!(
        resolve_with(&hub("Qwen/Qwen3-Tiny", Some("main")), &opts).unwrap(),
        snap
    );
    // a commit hash without a ref
    assert_eq!(
        resolve_with(&hub("Qwen/Qwen3-Tiny", Some(COMMIT)), &opts).unwrap(),
        snap
    );
    // an unknown branch is not found
    let e = resolve_with(&hub("Qwen/Qwen3-Tiny", Some("dev")), &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("Qwen/Qwen3-Tiny") && e.contains("dev"), "{e}");
}

#[test]
fn resolves_sharded_snapshot_and_reports_missing_shards() {
    let tmp = tempfile::tempdir().unwrap();
    let snap = fake_cache(
        tmp.path(),
        &[
            "config.json",
            "tokenizer.json",
            "model-00001-of-00002.safetensors",
        ],
    );
    std::fs::write(
        snap.join("model.safetensors.index.json"),
        r#"{"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#,
    )
    .unwrap();
    let opts = HubOptions::offline(tmp.path());
    let e = resolve_with(&hub("Qwen/Qwen3-Tiny", None), &opts)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("model-00002-of-00002.safetensors") && e.contains("offline"),
        "{e}"
    );
    std::fs::write(snap.join("model-00002-of-00002.safetensors"), "").unwrap();
    assert_eq!(
        resolve_with(&hub("Qwen/Qwen3-Tiny", None), &opts).unwrap(),
        snap
    );
}

#[test]
fn incomplete_snapshot_offline_names_missing_files() {
    let tmp = tempfile::tempdir().unwrap();
    fake_cache(tmp.path(), &["config.json"]);
    let e = resolve_with(
        &hub("Qwen/Qwen3-Tiny", None),
        &HubOptions::offline(tmp.path()),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("tokenizer.json") && e.contains("model.safetensors"),
        "{e}"
    );
}

#[test]
fn missing_model_offline_error() {
    let tmp = tempfile::tempdir().unwrap();
    let e = resolve_with(&hub("Qwen/X", None), &HubOptions::offline(tmp.path()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("model Qwen/X"), "{e}");
    assert!(e.contains("not found in the Hugging Face cache at"), "{e}");
    assert!(e.contains(&tmp.path().display().to_string()), "{e}");
    assert!(
        e.contains("could not be downloaded") && e.contains("HF_HUB_OFFLINE"),
        "{e}"
    );
    assert!(e.contains("set HF_HOME or pass a local directory"), "{e}");
}

#[test]
fn download_failure_is_reported() {
    // Network allowed but the endpoint refuses connections (a closed local port: no internet
    // is touched).
    let tmp = tempfile::tempdir().unwrap();
    let opts = HubOptions {
        cache_dir: tmp.path().to_path_buf(),
        offline: false,
        endpoint: Some("http://127.0.0.1:9".into()),
        progress: false,
    };
    let e = resolve_with(&hub("Qwen/X", None), &opts)
        .unwrap_err()
        .to_string();
    eprintln!("{e}");
    assert!(
        e.contains("model Qwen/X") && e.contains("could not be downloaded:"),
        "{e}"
    );
    assert!(e.contains("set HF_HOME or pass a local directory"), "{e}");
    // nothing was left in the cache that would look like a snapshot
    assert!(
        !repo_cache_dir(tmp.path(), "Qwen/X")
            .join("snapshots")
            .exists()
    );
}

#[test]
fn invalid_hub_ids() {
    let tmp = tempfile::tempdir().unwrap();
    for id in ["a/b/c", "../x", "a/", ""] {
        let e = resolve_with(&hub(id, None), &HubOptions::offline(tmp.path()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("invalid Hugging Face model id") || e.contains("not found"),
            "{id}: {e}"
        );
    }
}

#[test]
fn local_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = HubOptions::offline(tmp.path());
    let missing = tmp.path().join("nope");
    let e = resolve_with(&ModelSource::Dir(missing.clone()), &opts)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("does not exist") && e.contains(&missing.display().to_string()),
        "{e}"
    );
    let e = resolve_with(&ModelSource::Dir(tmp.path().to_path_buf()), &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("config.json"), "{e}");
    std::fs::write(tmp.path().join("file"), "").unwrap();
    let e = resolve_with(&ModelSource::Dir(tmp.path().join("file")), &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a directory"), "{e}");
    if let Some(dir) = common::fixture_model("qwen3-tiny") {
        assert_eq!(
            resolve_with(&ModelSource::Dir(dir.clone()), &opts).unwrap(),
            dir
        );
        assert_eq!(
            ModelSource::parse(dir.to_str().unwrap()),
            ModelSource::Dir(dir)
        );
    }
}

#[test]
fn parse_sources() {
    assert_eq!(
        ModelSource::parse("Qwen/Qwen3-4B-Base"),
        hub("Qwen/Qwen3-4B-Base", None)
    );
    assert_eq!(
        ModelSource::parse("Qwen/Qwen3-4B-Base@v1"),
        hub("Qwen/Qwen3-4B-Base", Some("v1"))
    );
    assert_eq!(
        ModelSource::parse("./models/x"),
        ModelSource::Dir("./models/x".into())
    );
    assert_eq!(
        ModelSource::parse("/abs/x/y"),
        ModelSource::Dir("/abs/x/y".into())
    );
    assert_eq!(
        ModelSource::parse("plainname"),
        ModelSource::Dir("plainname".into())
    );
    assert_eq!(hub("Qwen/A", Some("r")).to_string(), "Qwen/A@r");
}
