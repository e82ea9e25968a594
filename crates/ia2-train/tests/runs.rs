//! The loop and the run directories: early stopping keeps the best state, a2t / t2a start from their phase-1
//! adapter, finished runs are skipped and interrupted or failed ones never look finished, and bad input
//! stops with a clear message.

mod common;

use ia2_model::Adapter;
use ia2_model::adapter::AdapterTensor;
use ia2_testkit::{device, max_abs_diff, values};
use ia2_train::{RunConfig, TrainConfig};
use std::path::Path;

fn flat(a: &Adapter) -> Vec<f32> {
    a.tensors()
        .into_iter()
        .flat_map(|t| match t {
            AdapterTensor::D1(t) => values(t.clone()).0,
            AdapterTensor::D2(t) => values(t.clone()).0,
        })
        .collect()
}

fn load(dir: &Path, model: &Path) -> Adapter {
    let hf = ia2_hf::HfModelDir::open(model).unwrap();
    ia2_adapters::load_peft(dir, &hf.config, &device())
        .unwrap()
        .0
}

fn err_of(args: &TrainConfig) -> String {
    format!("{:#}", ia2_train::run(args).expect_err("the run must fail"))
}

#[test]
fn early_stopping_restores_the_best_dev_state() {
    let Some(model) = common::model("qwen3-tiny") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    common::dataset(root, "toy", 8, 1);
    let args = TrainConfig {
        training_method: "tok".parse().unwrap(),
        label_type: "ground_truth".parse().unwrap(),
        lr: 0.3,
        patience: 2,
        dev_eval_steps: 1,
        num_train_epochs: 40,
        batch_size: 2,
        log_checkpoints: true,
        num_train_examples: 8,
        ..common::train_args(root, &model)
    };
    let out = &ia2_train::run(&args).unwrap()[0];
    let stats = out.stats.as_ref().unwrap();
    assert!(
        stats.early_stopped,
        "a learning rate of 0.3 overshoots: patience must run out"
    );
    let records = common::metrics(&out.dir);
    let devs: Vec<(usize, f64)> = records
        .iter()
        .filter_map(|r| Some((r["step"].as_u64()? as usize, r["dev"]["total"].as_f64()?)))
        .collect();
    let (best_step, best) = devs
        .iter()
        .copied()
        .fold((0, f64::INFINITY), |b, d| if d.1 < b.1 { d } else { b });
    assert_eq!(stats.best_step, Some(best_step));
    assert_eq!(stats.best_dev_loss, Some(best));
    // Patience 2: exactly two evaluations after the best one, and training stopped there.
    assert_eq!(devs.iter().filter(|d| d.0 > best_step).count(), 2);
    assert_eq!(
        records.last().unwrap()["step"].as_u64().unwrap() as usize,
        stats.total_steps
    );
    // The saved adapter is the best step's checkpoint, not the last state.
    let saved = flat(&load(&out.dir, &model));
    let at_best = flat(&load(
        &out.dir.join(format!("checkpoints/step_{best_step}")),
        &model,
    ));
    let last = flat(&load(
        &out.dir
            .join(format!("checkpoints/step_{}", stats.total_steps)),
        &model,
    ));
    assert_eq!(saved, at_best);
    assert!(max_abs_diff(&saved, &last) > 0.0);
}

#[test]
fn a2t_and_t2a_continue_their_phase_one_adapter() {
    let Some(model) = common::model("llama-tiny") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    common::dataset(root, "toy", 4, 1);
    let lr = 1e-2f32;
    for (first, second) in [("act", "a2t"), ("prefix-tok", "prefix-t2a")] {
        let err = err_of(&TrainConfig {
            training_method: second.parse().unwrap(),
            ..common::train_args(root, &model)
        });
        assert!(err.contains("train it first"), "{err}");
        let p1 = &ia2_train::run(&TrainConfig {
            training_method: first.parse().unwrap(),
            lr: 0.01,
            num_train_epochs: 3,
            ..common::train_args(root, &model)
        })
        .unwrap()[0];
        let p2 = &ia2_train::run(&TrainConfig {
            training_method: second.parse().unwrap(),
            lr: 0.01,
            num_train_epochs: 2,
            log_checkpoints: true,
            ..common::train_args(root, &model)
        })
        .unwrap()[0];
        let phase_one = flat(&load(&p1.dir, &model));
        let step1 = flat(&load(&p2.dir.join("checkpoints/step_1"), &model));
        // Adam's first step moves every element by at most lr.
        let moved = max_abs_diff(&phase_one, &step1);
        assert!(
            moved > 0.0 && moved <= lr * 1.001,
            "{second}: first step moved {moved}"
        );
        let config: RunConfig =
            ia2_data::io::read_json(&p2.dir.join("training_config.json")).unwrap();
        assert_eq!(
            config.ia2.continued_from.as_deref(),
            Some(p1.dir.to_str().unwrap())
        );
    }
}

#[test]
fn finished_runs_are_skipped_and_failed_or_interrupted_ones_never_count() {
    let Some(model) = common::model("qwen3-tiny") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    common::dataset(root, "toy", 4, 2);
    let args = TrainConfig {
        training_method: "act".parse().unwrap(),
        num_train_epochs: 2,
        num_runs: 2,
        ..common::train_args(root, &model)
    };
    let first = ia2_train::run(&args).unwrap();
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|o| o.trained));
    assert_eq!(first[0].teacher_from_cache, Some(false));
    let again = ia2_train::run(&args).unwrap();
    assert!(
        again.iter().all(|o| !o.trained),
        "finished runs are skipped"
    );

    // --force retrains, and the teacher targets now come from the cache.
    let mut forced = args.clone();
    forced.force = true;
    forced.run_index = Some(1);
    // A leftover of an interrupted run is removed, never mistaken for a finished one.
    let parent = first[1].dir.parent().unwrap();
    let name = first[1].dir.file_name().unwrap().to_str().unwrap();
    let leftover = parent.join(format!(".{name}.partial-999999"));
    std::fs::create_dir_all(&leftover).unwrap();
    let redo = ia2_train::run(&forced).unwrap();
    assert!(redo[0].trained);
    assert_eq!(redo[0].teacher_from_cache, Some(true));
    assert!(!leftover.exists());

    // A run that fails (the loss diverges) leaves nothing behind.
    let mut diverging = TrainConfig {
        training_method: "act".parse().unwrap(),
        lr: 1e30,
        num_train_epochs: 5,
        ..common::train_args(root, &model)
    };
    diverging.run_index = Some(0);
    let err = err_of(&diverging);
    assert!(err.contains("NaN or infinite"), "{err}");
    let left: Vec<String> = std::fs::read_dir(root.join("outputs/act/toy"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("1e+30"))
        .collect();
    assert!(left.is_empty(), "a failed run left {left:?}");
}

#[test]
fn bad_input_gives_clear_errors() {
    let Some(model) = common::model("qwen3-tiny") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    common::dataset(root, "toy", 4, 1);

    let err = err_of(&TrainConfig {
        num_train_examples: 16,
        ..common::train_args(root, &model)
    });
    assert!(
        err.contains("16_0.json") && err.contains("ia2 data train-sets"),
        "{err}"
    );

    let err = err_of(&TrainConfig {
        training_method: "tokl".parse().unwrap(),
        label_type: "ground_truth".parse().unwrap(),
        ..common::train_args(root, &model)
    });
    assert!(err.contains("--label-type"), "{err}");

    let adapter = ia2_testkit::fixture("qwen3-tiny")
        .unwrap()
        .join("adapters/lora");
    let mut a = common::train_args(root, &model);
    a.model.adapter = Some(adapter);
    let err = err_of(&a);
    assert!(err.contains("--adapter"), "{err}");

    // An evaluation-only dataset's file has no training examples.
    let file = root.join("data/evalonly/train/4_0.json");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, r#"{"remaining_indices": [0, 1, 2]}"#).unwrap();
    let mut a = common::train_args(root, &model);
    a.dataset = "evalonly".into();
    let err = err_of(&a);
    assert!(err.contains("no `train`/`dev`"), "{err}");

    // A label that tokenizes to nothing.
    let text = std::fs::read_to_string(root.join("data/toy/train/4_0.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["train"]["examples"][1]["answer"] = "".into();
    let dir = root.join("data/emptylabel/train");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("4_0.json"), v.to_string()).unwrap();
    let mut a = TrainConfig {
        label_type: "ground_truth".parse().unwrap(),
        ..common::train_args(root, &model)
    };
    a.dataset = "emptylabel".into();
    let err = err_of(&a);
    assert!(
        err.contains("tokenizes to nothing") && err.contains("example 1"),
        "{err}"
    );

    // Shuffled demos: K orderings of every example.
    let a = TrainConfig {
        training_method: "act".parse().unwrap(),
        shuffle_demos: true,
        num_shuffles: 3,
        num_train_epochs: 1,
        ..common::train_args(root, &model)
    };
    let out = &ia2_train::run(&a).unwrap()[0];
    let config: RunConfig = ia2_data::io::read_json(&out.dir.join("training_config.json")).unwrap();
    assert_eq!(config.ia2.num_train_sequences, 12);
}

#[test]
fn low_data_regime_trains_on_unlabelled_queries_with_the_labelled_demos() {
    let Some(model) = common::model("qwen3-tiny") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data_dir = common::dataset(root, "toy", 4, 1);
    ia2_data::ldr::run(ia2_data::ldr::LdrConfig {
        dataset: "toy".into(),
        num_labelled: vec![3],
        num_unlabelled: vec![6],
        max_permutations: vec![4],
        num_runs: 1,
        num_dev_examples: 48,
        data_dir,
        force: false,
    })
    .unwrap();
    let args = TrainConfig {
        training_method: "act".parse().unwrap(),
        ldr_mode: true,
        num_labelled_samples: 3,
        num_unlabelled_samples: 6,
        max_permutations: 4,
        num_train_epochs: 2,
        ..common::train_args(root, &model)
    };
    let out = &ia2_train::run(&args).unwrap()[0];
    let name = out.dir.file_name().unwrap().to_str().unwrap();
    assert!(name.ends_with("_0_ldr3_6_4"), "{name}");
    let config: RunConfig = ia2_data::io::read_json(&out.dir.join("training_config.json")).unwrap();
    assert!(
        config
            .ia2
            .train_file
            .ends_with("toy-ldr/train/3_6_4_0.json")
    );
    assert_eq!(config.ia2.num_train_sequences, 6);
    assert_eq!(config.num_labelled_samples, Some(3));
}
