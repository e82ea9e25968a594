//! `TrainConfig` is plain data: built with struct literals, read from JSON with missing keys at their defaults,
//! unknown keys refused (so a misspelled key is an error, not a silently ignored option).

use ia2_train::{LabelType, TopK, TrainConfig};

#[test]
fn defaults_are_the_command_lines_and_valid() {
    let d = TrainConfig::default();
    assert_eq!(d.training_method.to_string(), "tok");
    assert_eq!(
        (d.lr, d.batch_size, d.num_train_epochs, d.seed),
        (1e-4, 4, 50, 42)
    );
    assert_eq!(
        (d.tokl_top_k, d.label_type),
        (TopK::All, LabelType::IclOutputs)
    );
    assert_eq!(d.model.model, "builtin:tiny-qwen3");
    d.validate().unwrap();
    assert_eq!(d.runs(), vec![0, 1, 2, 3, 4]);
    assert!(d.data_file(2).ends_with("data/sst2/train/4_2.json"));
    assert!(d.teacher_cache().ends_with("outputs/teacher_cache"));
}

#[test]
fn json_round_trips_and_missing_keys_take_defaults() {
    let a = TrainConfig {
        training_method: "prefix-tokl".parse().unwrap(),
        tokl_top_k: TopK::K(5),
        lr: 0.01,
        run_index: Some(3),
        ..TrainConfig::default()
    };
    let text = serde_json::to_string(&a).unwrap();
    assert!(
        text.contains("\"training_method\":\"prefix-tokl\""),
        "{text}"
    );
    let back: TrainConfig = serde_json::from_str(&text).unwrap();
    assert_eq!(back, a);
    let partial: TrainConfig = serde_json::from_str(
        r#"{"lr": 0.01, "training_method": "prefix-tokl", "tokl_top_k": {"K": 5}, "run_index": 3}"#,
    )
    .unwrap();
    assert_eq!(partial, a);
    let err = serde_json::from_str::<TrainConfig>(r#"{"learning_rate": 0.01}"#).unwrap_err();
    assert!(err.to_string().contains("learning_rate"), "{err}");
}

#[test]
fn validate_names_the_option() {
    let bad = TrainConfig {
        batch_size: 0,
        ..TrainConfig::default()
    };
    assert!(format!("{:#}", bad.validate().unwrap_err()).contains("--batch-size"));
}
