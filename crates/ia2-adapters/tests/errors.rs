//! Error cases: every refusal names what is wrong (file, key, expected shape, option).

mod common;

use common::*;
use ia2_adapters::{
    CONFIG_FILE, Ia3Config, LoraConfig, PeftConfig, WEIGHTS_FILE, init_adapter, load_peft, merge,
    save_peft, unmerge,
};
use ia2_hf::{ModelConfig, Weights, save_safetensors_f32};
use ia2_model::Adapter;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// A copy of a fixture adapter in a temp dir, with its config and tensors editable.
struct Copy {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    config: Value,
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
}

impl Copy {
    fn of(src: &Path) -> Copy {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("adapter");
        let config: Value =
            serde_json::from_str(&std::fs::read_to_string(src.join(CONFIG_FILE)).unwrap()).unwrap();
        let w = Weights::open_file(src.join(WEIGHTS_FILE)).unwrap();
        let tensors = w
            .names()
            .into_iter()
            .map(|n| {
                let v = w.get(n).unwrap();
                (n.to_string(), v.shape().to_vec(), v.to_f32_vec())
            })
            .collect();
        Copy {
            _tmp: tmp,
            dir,
            config,
            tensors,
        }
    }

    fn write(&self) -> &Path {
        std::fs::create_dir_all(&self.dir).unwrap();
        std::fs::write(
            self.dir.join(CONFIG_FILE),
            serde_json::to_string_pretty(&self.config).unwrap(),
        )
        .unwrap();
        let list: Vec<(&str, &[usize], &[f32])> = self
            .tensors
            .iter()
            .map(|(n, s, v)| (n.as_str(), s.as_slice(), v.as_slice()))
            .collect();
        save_safetensors_f32(self.dir.join(WEIGHTS_FILE), &list, None).unwrap();
        &self.dir
    }

    fn load_err(&self, mc: &ModelConfig) -> String {
        let dir = self.write();
        match load_peft(dir, mc, &device()) {
            Ok(_) => panic!("loading {} should fail", dir.display()),
            Err(e) => format!("{e:#}"),
        }
    }
}

fn setup(kind: &str) -> Option<(Copy, ModelConfig)> {
    let f = fixture("qwen3-tiny")?;
    let mc = ModelConfig::from_dir(f.join("model")).unwrap();
    Some((Copy::of(&f.join("adapters").join(kind)), mc))
}

fn assert_has(err: &str, parts: &[&str]) {
    for p in parts {
        assert!(err.contains(p), "error {err:?} should mention {p:?}");
    }
}

const Q0A: &str = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
const Q0B: &str = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight";

#[test]
fn bad_tensors_are_named_with_their_expected_shape() {
    let Some((mut c, mc)) = setup("lora") else {
        return;
    };
    // Shape mismatch.
    let i = c.tensors.iter().position(|t| t.0 == Q0A).unwrap();
    c.tensors[i].1 = vec![4, 32];
    c.tensors[i].2.truncate(128);
    assert_has(
        &c.load_err(&mc),
        &[WEIGHTS_FILE, Q0A, "[4, 32]", "expected [4, 64]"],
    );
    // Missing key.
    let Some((mut c, _)) = setup("lora") else {
        return;
    };
    c.tensors.retain(|t| t.0 != Q0B);
    assert_has(&c.load_err(&mc), &["missing tensor", Q0B, "[64, 4]"]);
    // Unexpected key (a module the config does not target).
    let Some((mut c, _)) = setup("lora") else {
        return;
    };
    let extra = "base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight";
    c.tensors.push((extra.into(), vec![4, 64], vec![0.0; 256]));
    assert_has(&c.load_err(&mc), &["unexpected tensor", extra]);
    // An adapter for another model: prefix width for other kv heads.
    let Some((c, mut mc2)) = setup("prefix") else {
        return;
    };
    mc2.num_key_value_heads = 4;
    mc2.num_attention_heads = 4;
    let err = c.load_err(&mc2);
    assert_has(&err, &["token_dim", "expected 64"]);
    // Same for IA3 on a model with a wider MLP.
    let Some((c, mut mc3)) = setup("ia3_kv_ff") else {
        return;
    };
    mc3.intermediate_size = 192;
    assert_has(
        &c.load_err(&mc3),
        &["mlp.down_proj.ia3_l", "[1, 160]", "expected [1, 192]"],
    );
    // Non-finite values are refused.
    let Some((mut c, _)) = setup("prompt") else {
        return;
    };
    c.tensors[0].2[3] = f32::NAN;
    assert_has(&c.load_err(&mc), &["prompt_embeddings", "non-finite"]);
}

#[test]
fn missing_files_and_pickles_are_refused() {
    let Some((c, mc)) = setup("lora") else { return };
    let dir = c.write();
    std::fs::remove_file(dir.join(WEIGHTS_FILE)).unwrap();
    std::fs::write(dir.join("adapter_model.bin"), b"PK\x03\x04").unwrap();
    let err = format!("{:#}", load_peft(dir, &mc, &device()).unwrap_err());
    assert_has(&err, &["adapter_model.bin", "safetensors"]);
    std::fs::remove_file(dir.join("adapter_model.bin")).unwrap();
    let err = format!("{:#}", load_peft(dir, &mc, &device()).unwrap_err());
    assert_has(&err, &["missing adapter_model.safetensors"]);
    std::fs::remove_file(dir.join(CONFIG_FILE)).unwrap();
    let err = format!("{:#}", load_peft(dir, &mc, &device()).unwrap_err());
    assert_has(&err, &["no adapter_config.json"]);
    let err = format!(
        "{:#}",
        load_peft(dir.join("nope"), &mc, &device()).unwrap_err()
    );
    assert_has(&err, &["does not exist"]);
}

#[test]
fn unsupported_options_are_refused_by_name() {
    let cases: Vec<(&str, &str, Value, &[&str])> = vec![
        (
            "lora",
            "peft_type",
            json!("LOHA"),
            &["unsupported peft_type `LOHA`"],
        ),
        ("lora", "bias", json!("all"), &["bias", "all"]),
        (
            "lora",
            "modules_to_save",
            json!(["lm_head"]),
            &["modules_to_save"],
        ),
        ("lora", "use_dora", json!(true), &["DoRA"]),
        ("lora", "init_lora_weights", json!("pissa"), &["pissa"]),
        (
            "lora",
            "layer_replication",
            json!([[0, 2]]),
            &["layer_replication"],
        ),
        (
            "lora",
            "target_modules",
            json!(["q_proj", "lm_head"]),
            &["lm_head"],
        ),
        (
            "lora",
            "target_modules",
            json!("lm_head|.*q_proj"),
            &["lm_head"],
        ),
        (
            "lora",
            "target_modules",
            json!("(q_proj"),
            &["invalid regular expression"],
        ),
        (
            "lora",
            "layers_to_transform",
            json!([0, 7]),
            &["layer 7 does not exist"],
        ),
        ("lora", "layers_pattern", json!("h"), &["layers_pattern"]),
        (
            "lora",
            "task_type",
            json!("SEQ_CLS"),
            &["task_type", "SEQ_CLS"],
        ),
        (
            "lora",
            "some_future_option",
            json!(3),
            &["some_future_option"],
        ),
        ("lora", "r", json!("four"), &["invalid LORA configuration"]),
        (
            "prefix",
            "prefix_projection",
            json!(true),
            &["prefix_projection"],
        ),
        (
            "prompt",
            "token_dim",
            json!(32),
            &["token_dim = 32", "expected 64"],
        ),
        (
            "prompt",
            "num_transformer_submodules",
            json!(2),
            &["num_transformer_submodules"],
        ),
        (
            "ia3",
            "feedforward_modules",
            json!(["down_proj"]),
            &["subset"],
        ),
    ];
    for (kind, field, value, parts) in cases {
        let Some((mut c, mc)) = setup(kind) else {
            return;
        };
        c.config[field] = value;
        let err = c.load_err(&mc);
        assert_has(&err, parts);
        assert_has(&err, &[CONFIG_FILE]);
    }
    // layers_to_transform with a regex target (PEFT refuses it too).
    let Some((mut c, mc)) = setup("lora") else {
        return;
    };
    c.config["target_modules"] = json!(".*q_proj");
    c.config["layers_to_transform"] = json!([0]);
    assert_has(&c.load_err(&mc), &["layers_to_transform", "string"]);
    // Neutral unknown fields and fan_in_fan_out (ignored for nn.Linear, as PEFT) are accepted.
    let Some((mut c, mc)) = setup("lora") else {
        return;
    };
    c.config["some_future_option"] = Value::Null;
    c.config["fan_in_fan_out"] = json!(true);
    load_peft(c.write(), &mc, &device()).unwrap();
    // A training config with dropout loads, but ia2 will not train with it.
    let mut lc = LoraConfig::new(4, 8.0, &["q_proj"]);
    lc.lora_dropout = 0.1;
    let err = init_adapter(&PeftConfig::Lora(lc), &mc, 0, &device()).unwrap_err();
    assert_has(&format!("{err:#}"), &["lora_dropout"]);
}

#[test]
fn save_refuses_mismatches_and_leaves_nothing_behind() {
    let Some(f) = fixture("qwen3-tiny") else {
        return;
    };
    let mc = ModelConfig::from_dir(f.join("model")).unwrap();
    let dev = device();
    let tmp = tempfile::tempdir().unwrap();
    let lora = PeftConfig::Lora(LoraConfig::new(4, 8.0, &["q_proj"]));
    let a = init_adapter(&lora, &mc, 1, &dev).unwrap();
    let out = tmp.path().join("x");
    // Kind mismatch.
    let ia3 = PeftConfig::Ia3(Ia3Config::new(&["q_proj"], &[] as &[&str]));
    let err = format!("{:#}", save_peft(&out, &a, &ia3).unwrap_err());
    assert_has(&err, &["LORA", "IA3"]);
    // Module and rank mismatches.
    let other = PeftConfig::Lora(LoraConfig::new(4, 8.0, &["k_proj"]));
    assert_has(
        &format!("{:#}", save_peft(&out, &a, &other).unwrap_err()),
        &["q_proj"],
    );
    let rank = PeftConfig::Lora(LoraConfig::new(2, 4.0, &["q_proj"]));
    assert_has(
        &format!("{:#}", save_peft(&out, &a, &rank).unwrap_err()),
        &["rank 2"],
    );
    let alpha = PeftConfig::Lora(LoraConfig::new(4, 16.0, &["q_proj"]));
    assert_has(
        &format!("{:#}", save_peft(&out, &a, &alpha).unwrap_err()),
        &["scaling"],
    );
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);

    // Overwriting an existing adapter keeps the directory's other files.
    save_peft(&out, &a, &lora).unwrap();
    std::fs::write(out.join("training_config.json"), "{}").unwrap();
    let b = init_adapter(&lora, &mc, 2, &dev).unwrap();
    save_peft(&out, &b, &lora).unwrap();
    assert!(out.join("training_config.json").is_file());
    let (c, _) = load_peft(&out, &mc, &dev).unwrap();
    assert_eq!(
        ia2_adapters::peft_state_dict(&c, &lora).unwrap(),
        ia2_adapters::peft_state_dict(&b, &lora).unwrap()
    );
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["x"]);
}

#[test]
fn merge_refuses_what_it_cannot_undo() {
    let Some(f) = load("qwen3-tiny") else { return };
    let dev = device();
    let config = PeftConfig::Ia3(Ia3Config::new(&["v_proj"], &[] as &[&str]));
    let mut a = init_adapter(&config, &f.model.config, 0, &dev).unwrap();
    let Adapter::Ia3 { vectors } = &mut a else {
        panic!()
    };
    let v = vectors.iter_mut().flatten().next().unwrap();
    v.scale = v.scale.clone().mul_scalar(0.0);
    let mut m = f.model.clone();
    merge(&mut m, &a).unwrap();
    let err = format!("{:#}", unmerge(&mut m, &a).unwrap_err());
    assert_has(&err, &["zero entry"]);
    // An adapter built for another model shape.
    let mut mc = f.model.config.clone();
    mc.num_hidden_layers = 2;
    let lora = PeftConfig::Lora(LoraConfig::new(4, 8.0, &["q_proj"]));
    let small = init_adapter(&lora, &mc, 0, &dev).unwrap();
    let err = format!("{:#}", merge(&mut m, &small).unwrap_err());
    assert_has(&err, &["module slots"]);
}
