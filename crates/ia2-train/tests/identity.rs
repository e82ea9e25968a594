//! Runs are identified by their full configuration (issue 11): a finished run is reused only when its
//! identity matches; otherwise the mismatch is explained and `--force` is needed. Concurrent trainings of
//! one run end with one complete run. `final_epoch` is 1-based as the seed writes it.

mod common;

use ia2_runs::{FinalStats, RunConfig};
use ia2_train::{LabelType, TrainConfig};
use std::path::Path;

fn err_of(args: &TrainConfig) -> String {
    format!("{:#}", ia2_train::run(args).expect_err("the run must fail"))
}

/// tok on ground truth: no teacher needed, fast.
fn args(root: &Path, model: &Path) -> TrainConfig {
    TrainConfig {
        training_method: "tok".parse().unwrap(),
        label_type: LabelType::GroundTruth,
        lr: 0.01,
        ..common::train_args(root, model)
    }
}

#[test]
fn a_smoke_run_does_not_block_the_real_run_and_final_epoch_is_one_based() {
    let Some(model) = common::model("qwen3-tiny") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    common::dataset(root, "toy", 4, 1);
    let smoke = ia2_train::run(&TrainConfig {
        num_train_epochs: 0,
        ..args(root, &model)
    })
    .unwrap();
    assert!(smoke[0].trained);
    assert_eq!(smoke[0].stats.as_ref().unwrap().final_epoch, 0);
    let real = TrainConfig {
        num_train_epochs: 3,
        patience: 100,
        ..args(root, &model)
    };
    let err = err_of(&real);
    assert!(
        err.contains("ia2.num_train_epochs: 0 → 3") && err.contains("--force"),
        "{err}"
    );
    let mut forced = real.clone();
    forced.force = true;
    let out = ia2_train::run(&forced).unwrap();
    assert!(out[0].trained);
    let stats: FinalStats =
        ia2_runs::read_json(&out[0].dir.join("final_loss_statistics.json")).unwrap();
    // The seed writes epoch + 1 after the last epoch: 3 epochs ran.
    let metrics = ia2_runs::read_metrics(&out[0].dir.join("metrics.jsonl")).unwrap();
    let epochs_run = metrics.iter().map(|m| m.epoch).max().unwrap() + 1;
    assert_eq!(epochs_run, 3);
    assert_eq!(stats.final_epoch, 3);
    assert_eq!(
        metrics.len(),
        stats.total_steps,
        "every metrics.jsonl line read back"
    );
    // Same configuration again: reused, not retrained.
    assert!(!ia2_train::run(&real).unwrap()[0].trained);
}

#[test]
fn another_base_model_with_the_same_directory_name_or_a_regenerated_training_file_is_not_reused() {
    let Some(model) = common::model("qwen3-tiny") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    common::dataset(root, "toy", 4, 1);
    // Two base models whose directories are both called `model`; b differs by one weight, same size.
    let (a, b) = (root.join("a/model"), root.join("b/model"));
    for d in [&a, &b] {
        std::fs::create_dir_all(d).unwrap();
        for e in std::fs::read_dir(&model).unwrap().flatten() {
            std::fs::copy(e.path(), d.join(e.file_name())).unwrap();
        }
    }
    let w = b.join("model.safetensors");
    let mut bytes = std::fs::read(&w).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&w, &bytes).unwrap();

    let first = ia2_train::run(&TrainConfig {
        num_train_epochs: 1,
        ..args(root, &a)
    })
    .unwrap();
    assert!(first[0].trained);
    let err = err_of(&TrainConfig {
        num_train_epochs: 1,
        ..args(root, &b)
    });
    assert!(err.contains("ia2.base_model_fingerprint"), "{err}");

    // A regenerated training file (same name, other content).
    let file = root.join("data/toy/train/4_0.json");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push('\n');
    std::fs::write(&file, text).unwrap();
    let err = err_of(&TrainConfig {
        num_train_epochs: 1,
        ..args(root, &a)
    });
    assert!(err.contains("ia2.train_file_sha256"), "{err}");
    // Other seed, batch size, patience: each named.
    let one_epoch = TrainConfig {
        num_train_epochs: 1,
        ..args(root, &a)
    };
    for (x, key) in [
        (
            TrainConfig {
                seed: 7,
                ..one_epoch.clone()
            },
            "ia2.seed",
        ),
        (
            TrainConfig {
                batch_size: 2,
                ..one_epoch.clone()
            },
            "ia2.batch_size",
        ),
        (
            TrainConfig {
                patience: 1,
                ..one_epoch.clone()
            },
            "ia2.patience",
        ),
    ] {
        let err = err_of(&x);
        assert!(err.contains(key), "{key}: {err}");
    }
    let config: RunConfig =
        ia2_runs::read_json(&first[0].dir.join("training_config.json")).unwrap();
    assert_eq!(
        config.ia2.identity.as_deref(),
        Some(config.compute_identity().as_str())
    );
}

#[test]
fn concurrent_trainings_of_one_run_end_with_one_complete_run() {
    let Some(model) = common::model("qwen3-tiny") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    common::dataset(root, "toy", 4, 1);
    let a = TrainConfig {
        num_train_epochs: 4,
        patience: 100,
        ..args(root, &model)
    };
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let a = a.clone();
            std::thread::spawn(move || ia2_train::run(&a))
        })
        .collect();
    let outcomes: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().unwrap().expect("both succeed"))
        .collect();
    let trained = outcomes.iter().filter(|o| o[0].trained).count();
    assert_eq!(trained, 1, "one trains, the other waits and reuses it");
    let dir = &outcomes[0][0].dir;
    assert!(ia2_runs::is_complete(dir));
    let stats: FinalStats = ia2_runs::read_json(&dir.join("final_loss_statistics.json")).unwrap();
    let metrics = ia2_runs::read_metrics(&dir.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.len(), stats.total_steps);
    let leftovers: Vec<String> = std::fs::read_dir(dir.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(".ia2-tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn the_teacher_cache_checksum_covers_the_response_tokens_in_its_header() {
    let Some(model) = common::model("qwen3-tiny") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    common::dataset(root, "toy", 4, 1);
    let mut act = TrainConfig {
        training_method: "act".parse().unwrap(),
        num_train_epochs: 1,
        ..common::train_args(root, &model)
    };
    assert_eq!(
        ia2_train::run(&act).unwrap()[0].teacher_from_cache,
        Some(false)
    );
    act.force = true;
    assert_eq!(
        ia2_train::run(&act).unwrap()[0].teacher_from_cache,
        Some(true)
    );
    // Change one response token id in the header (same length, the file stays valid safetensors).
    let cache = root.join("outputs/teacher_cache");
    let entry = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("teacher-")
        })
        .unwrap();
    let mut bytes = std::fs::read(&entry).unwrap();
    let pat = b"train_tokens\\\":[[";
    let at = bytes
        .windows(pat.len())
        .position(|w| w == pat)
        .expect("token list in the header")
        + pat.len();
    bytes[at] = if bytes[at] == b'1' { b'2' } else { b'1' };
    std::fs::write(&entry, &bytes).unwrap();
    let again = ia2_train::run(&act).unwrap();
    assert_eq!(
        again[0].teacher_from_cache,
        Some(false),
        "an edited token id is detected and the targets recomputed"
    );
}

#[test]
fn a_training_file_built_from_an_older_main_json_is_refused() {
    let Some(model) = common::model("qwen3-tiny") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    common::dataset(root, "toy", 4, 1);
    let main = root.join("data/toy/main.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&main).unwrap()).unwrap();
    v["val_examples"][0]["answer"] = serde_json::json!("1");
    std::fs::write(&main, serde_json::to_vec(&v).unwrap()).unwrap();
    let err = err_of(&TrainConfig {
        num_train_epochs: 1,
        ..args(root, &model)
    });
    assert!(err.contains("older") && err.contains("train-sets"), "{err}");
}
