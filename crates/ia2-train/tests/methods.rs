//! Every one of the 24 methods trains on both fixture models (Qwen3 without BOS, Llama with BOS), lowers its
//! training loss, writes a complete run directory in the seed's layout, and its adapter loads back.

mod common;

use ia2_train::{RunConfig, TrainConfig, TrainingMethod};
use std::path::Path;

fn check_run(dir: &Path, method: TrainingMethod, model_dir: &Path) {
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "training_config.json",
        "final_loss_statistics.json",
        "metrics.jsonl",
    ] {
        assert!(
            dir.join(f).is_file(),
            "{method}: {f} missing in {}",
            dir.display()
        );
    }
    let config: RunConfig = ia2_data::io::read_json(&dir.join("training_config.json")).unwrap();
    assert_eq!(config.training_method, method);
    assert_eq!(
        dir.file_name().unwrap().to_str().unwrap(),
        config.run_name(),
        "the directory name is derived from the config"
    );
    let stats: serde_json::Value =
        ia2_data::io::read_json(&dir.join("final_loss_statistics.json")).unwrap();
    assert_eq!(stats["training_completed"], true);
    let records = common::metrics(dir);
    assert!(records.len() >= 2, "{method}: {} steps", records.len());
    let first = records[0]["train"]["total"].as_f64().unwrap();
    let best = records
        .iter()
        .map(|r| r["train"]["total"].as_f64().unwrap())
        .fold(f64::INFINITY, f64::min);
    assert!(
        best < first * 0.98,
        "{method}: training loss did not go down (first {first}, best {best})"
    );
    // The adapter loads back against the base model it was trained on.
    let hf = ia2_hf::HfModelDir::open(model_dir).unwrap();
    let (adapter, peft) = ia2_adapters::load_peft(dir, &hf.config, &ia2_testkit::device()).unwrap();
    assert_eq!(ia2_adapters::adapter_kind(&adapter), peft_kind(method));
    assert!(
        peft.to_json_string()
            .unwrap()
            .contains("base_model_name_or_path")
    );
}

fn peft_kind(m: TrainingMethod) -> &'static str {
    ia2_adapters::adapter_kind(&match m.adapter {
        ia2_train::AdapterKind::Lora => ia2_model::Adapter::Lora {
            scaling: 1.0,
            pairs: vec![],
        },
        ia2_train::AdapterKind::Ia3 => ia2_model::Adapter::Ia3 { vectors: vec![] },
        ia2_train::AdapterKind::Prompt => ia2_model::Adapter::Prompt {
            embeddings: burn::tensor::Tensor::zeros([1, 1], &ia2_testkit::device()),
        },
        ia2_train::AdapterKind::Prefix => ia2_model::Adapter::Prefix {
            embeddings: burn::tensor::Tensor::zeros([1, 1], &ia2_testkit::device()),
        },
    })
}

#[test]
fn all_24_methods_train_on_both_fixture_models() {
    for name in ia2_testkit::MODELS {
        let Some(model_dir) = common::model(name) else {
            return;
        };
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        common::dataset(root, "toy", 4, 1);
        // Phase-1 methods first: a2t continues act, t2a continues tok.
        let mut methods = TrainingMethod::all();
        methods.sort_by_key(|m| m.objective.continues().is_some());
        for method in methods {
            let args = TrainConfig {
                training_method: method,
                num_train_epochs: 6,
                lr: 0.01,
                patience: 100,
                tokl_top_k: if method.adapter == ia2_train::AdapterKind::Ia3 {
                    ia2_train::TopK::K(5)
                } else {
                    ia2_train::TopK::All
                },
                ..common::train_args(root, &model_dir)
            };
            let outcomes =
                ia2_train::run(&args).unwrap_or_else(|e| panic!("{name} {method}: {e:#}"));
            assert_eq!(outcomes.len(), 1);
            assert!(outcomes[0].trained);
            check_run(&outcomes[0].dir, method, &model_dir);
            if let Some(p1) = method.phase_one() {
                let config: RunConfig =
                    ia2_data::io::read_json(&outcomes[0].dir.join("training_config.json")).unwrap();
                let from = config.ia2.continued_from.expect("continued_from recorded");
                assert!(
                    from.contains(&format!("/{p1}/")),
                    "{method} continued from {from}"
                );
            }
        }
        // One teacher cache entry per distribution kind served all 24 methods.
        // (Lock files `.ia2-lock-teacher-*` lie beside the entries.)
        let entries = std::fs::read_dir(root.join("outputs/teacher_cache"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("teacher-"))
            .count();
        assert_eq!(
            entries, 3,
            "{name}: tokens+activations, full and top-5 distributions"
        );
    }
}
