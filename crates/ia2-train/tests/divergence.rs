//! Divergence: a run at an absurd learning rate fails with an error naming the run, the step and the
//! criterion met (non-finite, explosion or collapse), and leaves nothing that looks finished.

mod common;

use ia2_train::TrainConfig;
use std::path::{Path, PathBuf};

/// Every file under `dir` (recursively).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn diverging_run(method: &str, lr: &str) -> (String, PathBuf, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    common::dataset(root, "toy", 4, 1);
    let model = Path::new("builtin:tiny-qwen3");
    let args = TrainConfig {
        training_method: method.parse().unwrap(),
        label_type: "ground_truth".parse().unwrap(),
        lr: lr.parse().unwrap(),
        num_train_epochs: 30,
        batch_size: 2,
        patience: 100,
        ..common::train_args(root, model)
    };
    let err = ia2_train::run(&args).expect_err("a run at an absurd learning rate must fail");
    let diverged = err
        .chain()
        .find_map(|e| e.downcast_ref::<ia2_train::trainer::Diverged>())
        .cloned();
    assert!(diverged.is_some(), "not reported as divergence: {err:#}");
    (format!("{err:#}"), root.join("outputs"), tmp)
}

fn assert_nothing_finished(outputs: &Path, msg: &str) {
    let left = files(outputs);
    let finished: Vec<_> = left
        .iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            (name == "final_loss_statistics.json"
                || name == "training_config.json"
                || name == "adapter_model.safetensors")
                && !p.to_string_lossy().contains("teacher_cache")
        })
        .collect();
    assert!(
        finished.is_empty(),
        "a diverged run left {finished:?} ({msg})"
    );
}

#[test]
fn a_diverging_tok_run_fails_and_leaves_nothing_finished() {
    let (msg, outputs, _tmp) = diverging_run("tok", "1e30");
    assert!(msg.contains("tok run 0"), "the run is named: {msg}");
    assert!(msg.contains("diverged at step"), "the step is named: {msg}");
    // An absurd learning rate overflows the hidden states: the final RMSNorm returns zeros, the logits
    // are constant and the loss is ln V, which used to be saved as a finished run.
    assert!(
        msg.contains("collapse") && msg.contains("logits are constant"),
        "the criterion is named: {msg}"
    );
    assert_nothing_finished(&outputs, &msg);
}

#[test]
fn a_diverging_ia3_run_fails_and_leaves_nothing_finished() {
    let (msg, outputs, _tmp) = diverging_run("ia3-tok", "1e30");
    assert!(msg.contains("ia3-tok run 0"), "the run is named: {msg}");
    assert!(msg.contains("diverged at step"), "{msg}");
    assert!(msg.contains("collapse"), "the criterion is named: {msg}");
    assert_nothing_finished(&outputs, &msg);
}

#[test]
fn a_sane_learning_rate_still_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    common::dataset(root, "toy", 4, 1);
    let args = TrainConfig {
        training_method: "tok".parse().unwrap(),
        label_type: "ground_truth".parse().unwrap(),
        lr: 1e-3,
        num_train_epochs: 3,
        ..common::train_args(root, Path::new("builtin:tiny-qwen3"))
    };
    let out = ia2_train::run(&args).unwrap();
    assert!(out[0].trained);
}
