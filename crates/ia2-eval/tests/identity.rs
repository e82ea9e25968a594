//! Evaluation results are identified by their full configuration (issue 11): another base model whose
//! directory has the same name never reuses (nor silently replaces) a result; a retrained adapter and
//! changed data are evaluated again; a result holding fewer records than examples is not finished.

use burn::tensor::Device;
use ia2_adapters::{LoraConfig, LoraInit, PeftConfig, init_adapter, save_peft};
use ia2_data::schema::{Example, MainFile};
use ia2_data::train_sets::TrainSetsConfig;
use ia2_eval::EvalConfig;
use ia2_load::ModelOptions;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn examples(prefix: &str, n: usize, offset: usize) -> Vec<Example> {
    (0..n)
        .map(|i| Example {
            idx: i + offset,
            question: format!("Text:{prefix} number {}\nLabel:", i + offset),
            answer: ["0", "1"][(i * 7 + offset) % 2].to_string(),
        })
        .collect()
}

fn write_json(path: &Path, v: &Value) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_string_pretty(v).unwrap()).unwrap();
}

struct Fx {
    _root: tempfile::TempDir,
    root: PathBuf,
}

fn fixture() -> Fx {
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_path_buf();
    let main = MainFile {
        metadata: json!({"max_choices": 2, "remap_dict": null}),
        train_examples: examples("good", 16, 0),
        val_examples: examples("fine", 6, 100),
    };
    write_json(
        &r.join("data/sst2/main.json"),
        &serde_json::to_value(&main).unwrap(),
    );
    ia2_data::train_sets::run(TrainSetsConfig {
        num_runs: 1,
        ..TrainSetsConfig::new("sst2", r.join("data"), vec![4])
    })
    .unwrap();
    // Two base models in directories both called `model`; b differs from a by one weight.
    let built = ia2_model::builtin::materialize("tiny-qwen3", &r.join("cache")).unwrap();
    for d in ["a/model", "b/model"] {
        let to = r.join(d);
        std::fs::create_dir_all(&to).unwrap();
        for e in std::fs::read_dir(&built).unwrap().flatten() {
            if e.path().is_file() {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }
    let w = r.join("b/model/model.safetensors");
    let mut bytes = std::fs::read(&w).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&w, bytes).unwrap();
    Fx {
        _root: root,
        root: r,
    }
}

/// An evaluation of `model_types` on sst2 (N = 4, run 0) with the base model `fx.root/model`.
fn args(fx: &Fx, model: &str, model_types: &[&str]) -> EvalConfig {
    EvalConfig {
        model: ModelOptions {
            model: fx.root.join(model).to_str().unwrap().to_string(),
            ..ModelOptions::default()
        },
        outputs_dir: fx.root.join("outputs"),
        data_dir: fx.root.join("data"),
        icl_max_demos: vec![3],
        eval_datasets: vec!["sst2".into()],
        num_examples: vec![4],
        run_indices: vec![0],
        model_types: model_types.iter().map(|s| s.to_string()).collect(),
        ..EvalConfig::default()
    }
}

fn save_lora(fx: &Fx, seed: u64) -> PathBuf {
    let model = ia2_hf::HfModelDir::open(fx.root.join("a/model"))
        .unwrap()
        .config;
    let lora = PeftConfig::Lora(LoraConfig {
        init_lora_weights: LoraInit::Bool(false),
        ..LoraConfig::new(4, 8.0, &["q_proj", "v_proj"])
    });
    let dir = fx
        .root
        .join("outputs/tok/sst2/model_qv_4_8_1_4_0.0001_0_ground_truth");
    save_peft(
        &dir,
        &init_adapter(&lora, &model, seed, &Device::flex()).unwrap(),
        &lora,
    )
    .unwrap();
    let fp = ia2_eval::base_model_fingerprint(&fx.root.join("a/model")).unwrap();
    write_json(
        &dir.join("training_config.json"),
        &json!({"dataset": "sst2", "training_method": "tok", "model_name": "model", "lora_type": "qv",
                "lora_r": 4, "lora_alpha": 8, "num_train_examples": 4, "num_generated_tokens": 1,
                "lr": 0.0001, "label_type": "ground_truth", "run_idx": 0, "ldr_mode": false,
                "ia2": {"model_id": "a/model", "base_model_fingerprint": fp}}),
    );
    write_json(
        &dir.join("final_loss_statistics.json"),
        &json!({"best_dev_loss": 0.5, "training_completed": true, "final_epoch": 3, "total_steps": 12,
                "current_train_loss": {"mse": 0.0, "ce": 1.0, "total": 1.0}}),
    );
    dir
}

#[test]
fn another_base_model_with_the_same_directory_name_is_not_reused() {
    let fx = fixture();
    let a = ia2_eval::run(&args(&fx, "a/model", &["base"])).unwrap();
    assert_eq!((a.evaluated, a.skipped), (1, 0), "{a}");
    let path = a.entries[0].result_path.clone();
    let before = std::fs::read(&path).unwrap();
    let again = ia2_eval::run(&args(&fx, "a/model", &["base"])).unwrap();
    assert_eq!((again.evaluated, again.skipped), (0, 1), "{again}");

    let err = ia2_eval::run(&args(&fx, "b/model", &["base"])).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("base_model_fingerprint") && msg.contains("--overwrite"),
        "{msg}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before, "a's result is kept");
    let b = ia2_eval::run(&EvalConfig {
        overwrite: true,
        ..args(&fx, "b/model", &["base"])
    })
    .unwrap();
    assert_eq!(b.evaluated, 1);
    let r: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        r["evaluation_config"]["identity_inputs"]["base_model_fingerprint"],
        ia2_eval::base_model_fingerprint(&fx.root.join("b/model"))
            .unwrap()
            .as_str()
    );
}

#[test]
fn a_retrained_adapter_or_a_result_with_missing_records_is_evaluated_again() {
    let fx = fixture();
    save_lora(&fx, 7);
    let run = || ia2_eval::run(&args(&fx, "a/model", &["tok"])).unwrap();
    let first = run();
    assert_eq!((first.evaluated, first.skipped), (1, 0), "{first}");
    let path = first.entries[0].result_path.clone();
    let second = run();
    assert_eq!((second.evaluated, second.skipped), (0, 1), "{second}");

    // Retrained with --force: same directory and config, other weights.
    save_lora(&fx, 9);
    let third = run();
    assert_eq!((third.evaluated, third.skipped), (1, 0), "{third}");
    let r: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        r["evaluation_config"]["identity_inputs"]["adapter"]["weights_sha256"],
        ia2_runs::file_sha256(&path_of_adapter(&fx))
            .unwrap()
            .as_str()
    );

    // 3 of the 6 records in both modes, status still "complete": not finished.
    let mut r = r;
    for mode in ["with_icl", "without_icl"] {
        r["results"][mode].as_array_mut().unwrap().truncate(3);
    }
    write_json(&path, &r);
    assert!(!ia2_eval::results::is_finished(&path));
    let fourth = run();
    assert_eq!((fourth.evaluated, fourth.skipped), (1, 0), "{fourth}");
    assert!(ia2_eval::results::is_finished(&path));
}

fn path_of_adapter(fx: &Fx) -> PathBuf {
    fx.root
        .join("outputs/tok/sst2/model_qv_4_8_1_4_0.0001_0_ground_truth/adapter_model.safetensors")
}

#[test]
fn demo_files_built_from_an_older_main_json_are_rebuilt() {
    use ia2_runs::provenance::{SourceCheck, check_sources};
    let fx = fixture();
    let s = ia2_eval::run(&args(&fx, "a/model", &["base"])).unwrap();
    assert_eq!(s.evaluated, 1);
    let main = fx.root.join("data/sst2/main.json");
    // data/{eval}/val/{icl source}/{N}_{run}_d{D}.json
    let demos = [fx.root.join("data/sst2/val/sst2/4_0_d3.json")];
    assert!(demos[0].is_file());
    assert_eq!(
        check_sources(&demos[0], &[&main, &main]).unwrap(),
        SourceCheck::Current
    );
    let mut v: Value = serde_json::from_slice(&std::fs::read(&main).unwrap()).unwrap();
    v["val_examples"][0]["question"] = json!("Text:changed number 100\nLabel:");
    write_json(&main, &v);
    assert!(matches!(
        check_sources(&demos[0], &[&main, &main]).unwrap(),
        SourceCheck::Changed(_)
    ));
    let s = ia2_eval::run(&args(&fx, "a/model", &["base"])).unwrap();
    assert_eq!(s.evaluated, 1, "the changed data is evaluated again");
    assert_eq!(
        check_sources(&demos[0], &[&main, &main]).unwrap(),
        SourceCheck::Current
    );
    let text = std::fs::read_to_string(&demos[0]).unwrap();
    assert!(
        text.contains("changed number 100"),
        "rebuilt from the new main.json"
    );
}
