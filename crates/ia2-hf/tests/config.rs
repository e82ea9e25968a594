mod common;

use ia2_hf::{Arch, Error, ModelConfig, RopeScaling};
use std::path::Path;

fn parse(text: &str) -> Result<ModelConfig, Error> {
    ModelConfig::from_json_str(text, Path::new("/x/config.json"))
}

fn err_text(text: &str) -> String {
    parse(text).expect_err("expected an error").to_string()
}

const QWEN3_4B_BASE: &str = r#"{
  "architectures": ["Qwen3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 151643, "eos_token_id": 151643, "head_dim": 128, "hidden_act": "silu",
  "hidden_size": 2560, "initializer_range": 0.02, "intermediate_size": 9728,
  "max_position_embeddings": 32768, "max_window_layers": 36, "model_type": "qwen3",
  "num_attention_heads": 32, "num_hidden_layers": 36, "num_key_value_heads": 8,
  "rms_norm_eps": 1e-06, "rope_scaling": null, "rope_theta": 1000000, "sliding_window": null,
  "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.51.0",
  "use_cache": true, "use_sliding_window": false, "vocab_size": 151936
}"#;

const QWEN25_05B: &str = r#"{
  "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
  "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02,
  "intermediate_size": 4864, "max_position_embeddings": 32768, "max_window_layers": 24,
  "model_type": "qwen2", "num_attention_heads": 14, "num_hidden_layers": 24,
  "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
  "sliding_window": 32768, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "transformers_version": "4.40.1", "use_cache": true, "use_sliding_window": false,
  "vocab_size": 151936
}"#;

const LLAMA31_8B: &str = r#"{
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
  "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
  "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "transformers_version": "4.43.0.dev0", "use_cache": true, "vocab_size": 128256
}"#;

fn with(base: &str, patch: &[(&str, serde_json::Value)]) -> String {
    let mut v: serde_json::Value = serde_json::from_str(base).unwrap();
    for (k, val) in patch {
        if val.is_null() && k.starts_with('-') {
            v.as_object_mut().unwrap().remove(&k[1..]);
        } else {
            v[*k] = val.clone();
        }
    }
    v.to_string()
}

#[test]
fn fixture_qwen3_tiny_config() {
    let Some(dir) = common::fixture_model("qwen3-tiny") else {
        return;
    };
    let c = ModelConfig::from_dir(&dir).unwrap();
    assert_eq!(c.arch, Arch::Qwen3);
    assert_eq!(
        (
            c.vocab_size,
            c.hidden_size,
            c.intermediate_size,
            c.num_hidden_layers
        ),
        (1024, 64, 160, 3)
    );
    assert_eq!(
        (c.num_attention_heads, c.num_key_value_heads, c.head_dim),
        (4, 2, 16)
    );
    assert_eq!(c.rope_theta, 1e6);
    assert_eq!(c.rope_scaling, RopeScaling::Default);
    assert!(c.tie_word_embeddings);
    assert_eq!(c.rms_norm_eps, 1e-6);
    assert_eq!(c.max_position_embeddings, 2048);
    assert_eq!(
        (c.bos_token_id, c.eos_token_ids.clone(), c.pad_token_id),
        (None, vec![0], None)
    );
    assert!(c.qk_norm() && !c.qkv_bias() && !c.o_bias() && !c.mlp_bias);
    assert_eq!(c.kv_groups(), 2);
    assert_eq!(c.torch_dtype.as_deref(), Some("float32"));
}

#[test]
fn fixture_llama_tiny_config_llama3_rope() {
    let Some(dir) = common::fixture_model("llama-tiny") else {
        return;
    };
    let c = ModelConfig::from_file(dir.join("config.json")).unwrap();
    assert_eq!(c.arch, Arch::Llama);
    assert_eq!(c.rope_theta, 500000.0);
    assert_eq!(
        c.rope_scaling,
        RopeScaling::Llama3 {
            factor: 32.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 64
        }
    );
    assert!(c.tie_word_embeddings && !c.qk_norm());
    assert_eq!(
        (c.bos_token_id, c.eos_token_ids.clone()),
        (Some(0), vec![1])
    );
    // llama3 scaling: highest frequencies untouched, lowest divided by factor.
    let inv = c.rope_inv_freq();
    assert_eq!(inv.len(), 8);
    assert_eq!(inv[0], 1.0);
    let base_last = 1.0 / 500000f64.powf(14.0 / 16.0);
    assert!((inv[7] - base_last / 32.0).abs() < 1e-15);
}

#[test]
fn transformers4_qwen3_4b_base() {
    let c = parse(QWEN3_4B_BASE).unwrap();
    assert_eq!(c.arch, Arch::Qwen3);
    // hidden (2560) != heads * head_dim (4096) is legal for qwen3
    assert_eq!(
        (c.hidden_size, c.num_attention_heads, c.head_dim),
        (2560, 32, 128)
    );
    assert_eq!(c.rope_theta, 1e6);
    assert_eq!(c.rope_scaling, RopeScaling::Default);
    assert_eq!(c.eos_token_ids, vec![151643]);
    assert_eq!(c.torch_dtype.as_deref(), Some("bfloat16"));
}

#[test]
fn transformers4_qwen2_biases_and_head_dim_default() {
    let c = parse(QWEN25_05B).unwrap();
    assert_eq!(c.arch, Arch::Qwen2);
    assert_eq!(c.head_dim, 64);
    assert!(c.qkv_bias() && !c.o_bias() && !c.qk_norm());
    // attention_bias is not a qwen2 field: ignored
    let c = parse(&with(QWEN25_05B, &[("attention_bias", true.into())])).unwrap();
    assert!(c.qkv_bias() && !c.o_bias());
}

#[test]
fn transformers4_llama31_rope_scaling_and_eos_list() {
    let c = parse(LLAMA31_8B).unwrap();
    assert_eq!(c.eos_token_ids, vec![128001, 128008, 128009]);
    assert_eq!(c.head_dim, 128);
    assert_eq!(c.rms_norm_eps, 1e-5);
    assert!(!c.tie_word_embeddings);
    assert!(
        matches!(c.rope_scaling, RopeScaling::Llama3 { factor, original_max_position_embeddings: 8192, .. } if factor == 8.0)
    );
    // old `type` key instead of `rope_type`
    let old = with(
        LLAMA31_8B,
        &[(
            "rope_scaling",
            serde_json::json!({"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                               "original_max_position_embeddings": 8192, "type": "llama3"}),
        )],
    );
    assert_eq!(parse(&old).unwrap().rope_scaling, c.rope_scaling);
    let biased = parse(&with(
        LLAMA31_8B,
        &[("attention_bias", true.into()), ("mlp_bias", true.into())],
    ))
    .unwrap();
    assert!(biased.qkv_bias() && biased.o_bias() && biased.mlp_bias);
}

#[test]
fn defaults_when_fields_absent() {
    let text = r#"{"model_type":"llama","vocab_size":100,"hidden_size":64,"intermediate_size":128,
                   "num_hidden_layers":2,"num_attention_heads":4}"#;
    let c = parse(text).unwrap();
    assert_eq!((c.num_key_value_heads, c.head_dim), (4, 16));
    assert!(!c.tie_word_embeddings);
    assert_eq!(c.rope_theta, 10000.0);
    assert_eq!(c.rope_scaling, RopeScaling::Default);
    assert_eq!(c.max_position_embeddings, 2048);
    assert!(c.eos_token_ids.is_empty());
    let q3 = parse(&text.replace("llama", "qwen3")).unwrap();
    assert_eq!(q3.head_dim, 128, "transformers' Qwen3Config default");
}

#[test]
fn errors_name_field_and_value() {
    let e = err_text(&with(QWEN3_4B_BASE, &[("model_type", "mistral".into())]));
    assert!(
        e.contains("model_type")
            && e.contains("mistral")
            && e.contains("qwen3")
            && e.contains("llama"),
        "{e}"
    );
    assert!(e.contains("/x/config.json"), "{e}");
    let e = err_text(&with(
        QWEN3_4B_BASE,
        &[("-model_type", serde_json::Value::Null)],
    ));
    assert!(e.contains("model_type") && e.contains("missing"), "{e}");

    for t in ["yarn", "linear", "dynamic", "longrope"] {
        let e = err_text(&with(
            QWEN3_4B_BASE,
            &[(
                "rope_scaling",
                serde_json::json!({"rope_type": t, "factor": 4.0}),
            )],
        ));
        assert!(e.contains("rope_scaling") && e.contains(t), "{e}");
        let e = err_text(&with(
            QWEN3_4B_BASE,
            &[(
                "rope_parameters",
                serde_json::json!({"rope_type": t, "rope_theta": 1e4}),
            )],
        ));
        assert!(
            e.contains("rope_parameters.rope_type") && e.contains(t),
            "{e}"
        );
    }
    let e = err_text(&with(
        QWEN3_4B_BASE,
        &[("rope_scaling", serde_json::json!({"type": "yarn"}))],
    ));
    assert!(e.contains("rope_scaling.type") && e.contains("yarn"), "{e}");
    let e = err_text(&with(
        LLAMA31_8B,
        &[(
            "rope_scaling",
            serde_json::json!({"rope_type": "llama3", "factor": 8.0}),
        )],
    ));
    assert!(
        e.contains("low_freq_factor") && e.contains("missing"),
        "{e}"
    );

    let e = err_text(&with(QWEN25_05B, &[("use_sliding_window", true.into())]));
    assert!(
        e.contains("use_sliding_window") && e.contains("not supported"),
        "{e}"
    );
    let e = err_text(&with(
        QWEN3_4B_BASE,
        &[(
            "layer_types",
            serde_json::json!(["full_attention", "sliding_attention"]),
        )],
    ));
    assert!(
        e.contains("layer_types") && e.contains("sliding_attention"),
        "{e}"
    );
    let e = err_text(&with(LLAMA31_8B, &[("hidden_act", "gelu".into())]));
    assert!(
        e.contains("hidden_act") && e.contains("gelu") && e.contains("silu"),
        "{e}"
    );
    let e = err_text(&with(LLAMA31_8B, &[("num_key_value_heads", 5.into())]));
    assert!(e.contains("num_key_value_heads") && e.contains('5'), "{e}");
    let e = err_text(&with(LLAMA31_8B, &[("hidden_size", "big".into())]));
    assert!(e.contains("hidden_size") && e.contains("big"), "{e}");
    let e = err_text(&with(
        LLAMA31_8B,
        &[("-vocab_size", serde_json::Value::Null)],
    ));
    assert!(e.contains("vocab_size") && e.contains("missing"), "{e}");
    let e = err_text(&with(LLAMA31_8B, &[("eos_token_id", 999999.into())]));
    assert!(e.contains("eos_token_id") && e.contains("999999"), "{e}");
    let e = err_text(&with(
        LLAMA31_8B,
        &[("eos_token_id", serde_json::json!([1, "x"]))],
    ));
    assert!(e.contains("eos_token_id"), "{e}");
    let e = err_text("[1, 2]");
    assert!(e.contains("object"), "{e}");
    let e = err_text("{not json");
    assert!(
        e.contains("invalid JSON") && e.contains("/x/config.json"),
        "{e}"
    );
    let e = ModelConfig::from_file("/nonexistent/config.json")
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/config.json"), "{e}");
}

#[test]
fn to_json_round_trips() {
    let mut configs = vec![
        parse(QWEN3_4B_BASE).unwrap(),
        parse(QWEN25_05B).unwrap(),
        parse(LLAMA31_8B).unwrap(),
    ];
    for name in ["qwen3-tiny", "llama-tiny"] {
        if let Some(dir) = common::fixture_model(name) {
            configs.push(ModelConfig::from_dir(dir).unwrap());
        }
    }
    for c in configs {
        let text = c.to_json().unwrap();
        let back = parse(&text).unwrap();
        assert_eq!(back, c, "{text}");
        // both the transformers-5 and the transformers-4 rope fields are written
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v["rope_parameters"]["rope_theta"].as_f64(),
            Some(c.rope_theta)
        );
        assert_eq!(v["rope_theta"].as_f64(), Some(c.rope_theta));
        assert_eq!(v["model_type"], c.arch.model_type());
        assert_eq!(v["architectures"][0], c.arch.class_name());
        if let RopeScaling::Llama3 { factor, .. } = c.rope_scaling {
            assert_eq!(v["rope_scaling"]["rope_type"], "llama3");
            assert_eq!(v["rope_parameters"]["factor"].as_f64(), Some(factor));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let c = parse(LLAMA31_8B).unwrap();
    c.write_file(dir.path().join("config.json")).unwrap();
    assert_eq!(ModelConfig::from_dir(dir.path()).unwrap(), c);
}

#[test]
fn struct_literal_validation() {
    let mut c = parse(QWEN25_05B).unwrap();
    c.validate().unwrap();
    c.attention_bias = true;
    assert!(
        c.validate()
            .unwrap_err()
            .to_string()
            .contains("attention_bias")
    );
    assert!(c.to_json().is_err());
    let mut c = parse(LLAMA31_8B).unwrap();
    c.head_dim = 0;
    assert!(c.validate().unwrap_err().to_string().contains("head_dim"));
}

/// Absurd sizes are errors naming the field before anything is allocated from them.
#[test]
fn implausibly_large_sizes_are_refused() {
    for (field, value) in [
        (
            "num_hidden_layers",
            serde_json::json!(1_000_000_000_000_000u64),
        ),
        ("vocab_size", serde_json::json!(1_000_000_000_000u64)),
        ("hidden_size", serde_json::json!(1u64 << 40)),
        ("intermediate_size", serde_json::json!(1u64 << 40)),
        ("max_position_embeddings", serde_json::json!(1u64 << 50)),
    ] {
        let e = err_text(&with(QWEN3_4B_BASE, &[(field, value)]));
        assert!(
            e.contains(field) && e.contains("implausibly large"),
            "{field}: {e}"
        );
    }
    // Real models stay well inside the limits.
    parse(QWEN3_4B_BASE).unwrap();
    parse(LLAMA31_8B).unwrap();
}

/// config.json is checked against the checkpoint before the weights are loaded: vocabulary and hidden size
/// against the embedding's shape, the layer count against the layers present.
#[test]
fn config_values_are_checked_against_the_weights() {
    let Some(model) = common::fixture_model("qwen3-tiny") else {
        return;
    };
    let weights = ia2_hf::Weights::open(&model).unwrap();
    let config = ModelConfig::from_dir(&model).unwrap();
    let path = model.join("config.json");
    config.check_weights(&path, &weights).unwrap();
    let check = |edit: &dyn Fn(&mut ModelConfig)| {
        let mut c = config.clone();
        edit(&mut c);
        c.check_weights(&path, &weights).unwrap_err().to_string()
    };
    let e = check(&|c| c.vocab_size += 1);
    assert!(
        e.contains("vocab_size") && e.contains("embed_tokens"),
        "{e}"
    );
    let e = check(&|c| c.hidden_size += 2);
    assert!(e.contains("hidden_size"), "{e}");
    let e = check(&|c| c.num_hidden_layers += 1);
    assert!(
        e.contains("num_hidden_layers")
            && e.contains(&format!("holds {} layers", config.num_hidden_layers)),
        "{e}"
    );
    let e = check(&|c| c.num_hidden_layers -= 1);
    assert!(
        e.contains("num_hidden_layers") && e.contains("more layers"),
        "{e}"
    );
}
