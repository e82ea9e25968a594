//! Shared set-up of the training tests: a tiny classification dataset with training files, and `TrainArgs`
//! parsed from command-line words exactly as `ia2 train` parses them.
#![allow(dead_code)]

use clap::Parser;
use ia2_data::schema::{Example, MainFile};
use ia2_data::train_sets::TrainSetsArgs;
use ia2_train::TrainArgs;
use std::path::{Path, PathBuf};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: TrainArgs,
}

/// `TrainArgs` from `ia2 train` words.
pub fn args(words: &[&str]) -> TrainArgs {
    let mut all = vec!["ia2-train"];
    all.extend_from_slice(words);
    Cli::try_parse_from(all).expect("valid test arguments").args
}

/// The fixture model directory of `name` (qwen3-tiny or llama-tiny), or None when ../shared is absent.
pub fn model(name: &str) -> Option<PathBuf> {
    ia2_testkit::fixture(name).map(|d| d.join("model"))
}

const WORDS: [&str; 12] = [
    "a gripping film",
    "dull and slow",
    "funny and moving",
    "a waste of time",
    "brilliant acting",
    "tedious plot",
    "warm and clever",
    "flat jokes",
    "a joy to watch",
    "painfully long",
    "sharp writing",
    "lifeless",
];

/// Writes `<root>/data/<name>/main.json` (12 training and 4 validation examples, labels 0/1) and the
/// training files for `n` examples and `runs` runs. Returns the data directory.
pub fn dataset(root: &Path, name: &str, n: usize, runs: u32) -> PathBuf {
    let data_dir = root.join("data");
    let ex = |i: usize, w: &str| Example {
        idx: i,
        question: format!("Text:{w}\nLabel:"),
        answer: (1 - i % 2).to_string(),
    };
    let main = MainFile {
        metadata: serde_json::json!({"max_choices": 2, "remap_dict": {"0": null, "1": null}}),
        train_examples: WORDS.iter().enumerate().map(|(i, w)| ex(i, w)).collect(),
        val_examples: WORDS[..4]
            .iter()
            .enumerate()
            .map(|(i, w)| ex(i, w))
            .collect(),
    };
    ia2_data::io::write_json_atomic(&data_dir.join(name).join("main.json"), &main).unwrap();
    ia2_data::train_sets::run(TrainSetsArgs {
        num_runs: runs,
        ..TrainSetsArgs::new(name, data_dir.clone(), vec![n])
    })
    .unwrap();
    data_dir
}

/// Common options: the model, data and output directories, one run, small adapters.
pub fn base_words(root: &Path, model: &Path) -> Vec<String> {
    [
        "--model",
        model.to_str().unwrap(),
        "--dataset",
        "toy",
        "--data-dir",
        root.join("data").to_str().unwrap(),
        "--output-dir",
        root.join("outputs").to_str().unwrap(),
        "--num-runs",
        "1",
        "--num-virtual-tokens",
        "4",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `TrainArgs` from the common options plus `extra`.
pub fn train_args(root: &Path, model: &Path, extra: &[&str]) -> TrainArgs {
    let words = base_words(root, model);
    let mut all: Vec<&str> = words.iter().map(String::as_str).collect();
    all.extend_from_slice(extra);
    args(&all)
}

/// The metrics.jsonl records of a run directory.
pub fn metrics(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
