//! Adapters against PEFT's outputs and gradients on the tiny fixture models.

mod common;

use common::*;
use ia2_adapters::{
    CONFIG_FILE, PeftConfig, WEIGHTS_FILE, init_adapter, load_peft, merge, peft_state_dict,
    peft_tensor_names, save_peft, unmerge,
};
use ia2_hf::Weights;
use ia2_model::adapter::AdapterTensor;
use ia2_model::{Adapter, Decoder};

fn load_kind(f: &Fixture, kind: &str) -> (Adapter, PeftConfig) {
    load_peft(f.adapter_dir(kind), &f.model.config, &device())
        .unwrap_or_else(|e| panic!("{} {kind}: {e:#}", f.name))
}

#[test]
fn outputs_match_peft() {
    for name in MODELS {
        let Some(f) = load(name) else { return };
        for kind in ADAPTER_KINDS {
            let (adapter, _) = load_kind(&f, kind);
            let exp = f.expected(kind);
            for i in 0..3 {
                let (logits, attn) = run_all(&f.model, &f.ids(i), Some(&adapter));
                let what = format!("{name} {kind} case{i}");
                assert_close(
                    &format!("{what} logits"),
                    logits,
                    expected(&exp, &format!("case{i}.logits")),
                    1e-4,
                );
                assert_close(
                    &format!("{what} attn"),
                    attn,
                    expected(&exp, &format!("case{i}.attn")),
                    1e-4,
                );
            }
        }
    }
}

#[test]
fn gradients_match_peft_and_only_adapters_train() {
    for name in MODELS {
        let Some(f) = load(name) else { return };
        for kind in ADAPTER_KINDS {
            let (mut adapter, config) = load_kind(&f, kind);
            adapter.require_grad();
            let exp = f.expected(kind);
            let (loss, ce, mse) = fixture_loss(&f.model, &f.ids(0), &adapter, &exp);
            let (want_ce, want_mse) = (
                expected(&exp, "loss.ce").0[0],
                expected(&exp, "loss.mse").0[0],
            );
            assert!(
                (ce - want_ce).abs() <= 1e-4,
                "{name} {kind} ce {ce} vs {want_ce}"
            );
            assert!(
                (mse - want_mse).abs() <= 1e-4 * want_mse.abs().max(1.0),
                "{name} {kind} mse {mse} vs {want_mse}"
            );
            let grads = loss.backward();

            // Frozen base weights: no gradient.
            let m = &f.model;
            assert!(m.embed_tokens.grad(&grads).is_none());
            for layer in &m.layers {
                for p in &layer.proj {
                    assert!(
                        p.weight.grad(&grads).is_none(),
                        "{name} {kind}: base weight grad"
                    );
                }
                assert!(layer.input_layernorm.weight.grad(&grads).is_none());
            }

            let torch_of: std::collections::HashMap<String, String> =
                param_names(&f.adapter_dir(kind))
                    .into_iter()
                    .map(|(t, s)| (s, t))
                    .collect();
            let names = peft_tensor_names(&adapter, &config).unwrap();
            let tensors = adapter.tensors();
            assert_eq!(names.len(), tensors.len());
            assert_eq!(names.len(), torch_of.len(), "{name} {kind}: tensor count");
            for (key, t) in names.iter().zip(tensors) {
                let got = match t {
                    AdapterTensor::D1(t) => t.grad(&grads).map(values),
                    AdapterTensor::D2(t) => t.grad(&grads).map(values),
                };
                let got = got.unwrap_or_else(|| panic!("{name} {kind}: no gradient for {key}"));
                let torch = &torch_of[key];
                let (want, _) = expected(&exp, &format!("grad.{torch}"));
                let err = rel_err(&got.0, &want);
                assert!(
                    err <= 1e-3,
                    "{name} {kind} {key}: gradient relative error {err}"
                );
            }
        }
    }
}

#[test]
fn save_load_round_trip_is_bit_identical() {
    let tmp = tempfile::tempdir().unwrap();
    for name in MODELS {
        let Some(f) = load(name) else { return };
        for kind in ADAPTER_KINDS {
            let src = f.adapter_dir(kind);
            let (adapter, config) = load_kind(&f, kind);
            let out = tmp.path().join(name).join(kind);
            save_peft(&out, &adapter, &config).unwrap();
            // The config text is exactly what PEFT wrote.
            let ours = std::fs::read_to_string(out.join(CONFIG_FILE)).unwrap();
            let theirs = std::fs::read_to_string(src.join(CONFIG_FILE)).unwrap();
            assert_eq!(ours, theirs, "{name} {kind}: adapter_config.json differs");
            // Same keys, shapes, dtypes and bits as PEFT's file, with format=pt metadata.
            let a = Weights::open_file(out.join(WEIGHTS_FILE)).unwrap();
            let b = Weights::open_file(src.join(WEIGHTS_FILE)).unwrap();
            assert_eq!(a.names(), b.names());
            assert_eq!(a.metadata().get("format").map(String::as_str), Some("pt"));
            for key in a.names() {
                let (x, y) = (a.get(key).unwrap(), b.get(key).unwrap());
                assert_eq!(x.dtype(), y.dtype(), "{key}");
                assert_eq!(x.shape(), y.shape(), "{key}");
                assert_eq!(x.bytes(), y.bytes(), "{key}");
            }
            // And loading it back gives the same adapter and configuration.
            let (again, config2) = load_peft(&out, &f.model.config, &device()).unwrap();
            assert_eq!(config, config2);
            assert_eq!(
                peft_state_dict(&adapter, &config).unwrap(),
                peft_state_dict(&again, &config2).unwrap()
            );
            assert!(
                std::fs::read_dir(out.parent().unwrap()).unwrap().all(|e| !e
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')),
                "temporary directories left behind"
            );
        }
    }
}

fn weights_of(m: &Decoder) -> Vec<Vec<f32>> {
    m.layers
        .iter()
        .flat_map(|l| l.proj.iter())
        .map(|p| values(p.weight.clone()).0)
        .collect()
}

#[test]
fn merged_equals_unmerged_and_unmerge_restores() {
    for name in MODELS {
        let Some(f) = load(name) else { return };
        let before = weights_of(&f.model);
        for kind in ["lora", "lora_qkv_mlp", "ia3", "ia3_kv_ff"] {
            let (adapter, _) = load_kind(&f, kind);
            let ids = f.ids(2);
            let (l0, a0) = run_all(&f.model, &ids, Some(&adapter));
            let mut merged = f.model.clone();
            merge(&mut merged, &adapter).unwrap();
            let changed = weights_of(&merged) != before;
            assert!(changed, "{name} {kind}: merge changed nothing");
            let (l1, a1) = run_all(&merged, &ids, None);
            assert_close(&format!("{name} {kind} merged logits"), l1, l0, 1e-4);
            assert_close(&format!("{name} {kind} merged attn"), a1, a0, 1e-4);
            unmerge(&mut merged, &adapter).unwrap();
            for (i, (w, w0)) in weights_of(&merged).iter().zip(&before).enumerate() {
                let err = max_abs_diff(w, w0);
                assert!(
                    err <= 1e-5,
                    "{name} {kind}: weight {i} restored within {err}"
                );
            }
        }
        for kind in ["prompt", "prefix"] {
            let (adapter, _) = load_kind(&f, kind);
            let mut m = f.model.clone();
            let err = merge(&mut m, &adapter).unwrap_err().to_string();
            assert!(err.contains("cannot be merged"), "{err}");
        }
    }
}

#[test]
fn fresh_lora_and_ia3_equal_the_base_model() {
    for name in MODELS {
        let Some(f) = load(name) else { return };
        let ids = f.ids(0);
        let (base_logits, base_attn) = run_all(&f.model, &ids, None);
        for kind in ["lora", "lora_qkv_mlp", "ia3", "ia3_kv_ff"] {
            let (_, config) = load_kind(&f, kind);
            let mut adapter = init_adapter(&config, &f.model.config, 7, &device()).unwrap();
            let (l, a) = run_all(&f.model, &ids, Some(&adapter));
            assert_close(
                &format!("{name} {kind} init logits"),
                l,
                base_logits.clone(),
                1e-6,
            );
            assert_close(
                &format!("{name} {kind} init attn"),
                a,
                base_attn.clone(),
                1e-6,
            );
            // Trainable from the start: every tensor gets a gradient.
            adapter.require_grad();
            let (loss, _, _) = fixture_loss(&f.model, &ids, &adapter, &f.expected(kind));
            let grads = loss.backward();
            for t in adapter.tensors() {
                let g = match t {
                    AdapterTensor::D1(t) => t.grad(&grads).map(values),
                    AdapterTensor::D2(t) => t.grad(&grads).map(values),
                };
                assert!(g.is_some(), "{name} {kind}: init tensor without gradient");
            }
        }
    }
}
