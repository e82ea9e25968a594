//! Shared set-up of the training tests: a tiny classification dataset with training files, and the common
//! `TrainConfig` of the tests.
#![allow(dead_code)]

use ia2_load::ModelOptions;
use ia2_train::TrainConfig;
use std::path::{Path, PathBuf};

/// The fixture model directory of `name` (qwen3-tiny or llama-tiny), or None when ../shared is absent.
pub fn model(name: &str) -> Option<PathBuf> {
    ia2_testkit::fixture(name).map(|d| d.join("model"))
}

/// Writes `<root>/data/<name>/main.json` (12 training and 4 validation examples, labels 0/1) and the
/// training files for `n` examples and `runs` runs. Returns the data directory.
pub fn dataset(root: &Path, name: &str, n: usize, runs: u32) -> PathBuf {
    let data_dir = root.join("data");
    ia2_testkit::review_dataset(&data_dir, name, 4, n, runs);
    data_dir
}

/// Common options: the model, data and output directories, one run, small adapters; the rest are the
/// command line's defaults.
pub fn train_args(root: &Path, model: &Path) -> TrainConfig {
    TrainConfig {
        model: ModelOptions {
            model: model.to_str().unwrap().to_string(),
            ..ModelOptions::default()
        },
        dataset: "toy".into(),
        data_dir: root.join("data"),
        output_dir: root.join("outputs"),
        num_runs: 1,
        num_virtual_tokens: 4,
        ..TrainConfig::default()
    }
}

/// The metrics.jsonl records of a run directory.
pub fn metrics(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
