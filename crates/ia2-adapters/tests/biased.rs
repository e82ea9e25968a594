//! Merging into a model with biases (Llama with attention and MLP bias) and bf16 weights, with no fixtures.

mod common;

use anyhow::Result;
use burn::tensor::{DType, TensorData};
use common::*;
use ia2_adapters::{Ia3Config, LoraConfig, PeftConfig, init_adapter, merge, unmerge};
use ia2_hf::{Arch, ModelConfig, RopeScaling};
use ia2_model::adapter::AdapterTensorMut;
use ia2_model::{Adapter, Decoder, WeightSource};

/// Deterministic pseudo-random weights for every tensor name.
struct Random(ModelConfig);

impl WeightSource for Random {
    fn tensor(&self, name: &str, dtype: DType) -> Result<TensorData> {
        let c = &self.0;
        let shape: Vec<usize> = if name.ends_with("norm.weight") {
            vec![if name.contains("q_norm") || name.contains("k_norm") {
                c.head_dim
            } else {
                c.hidden_size
            }]
        } else if name == "model.embed_tokens.weight" || name == "lm_head.weight" {
            vec![c.vocab_size, c.hidden_size]
        } else {
            let proj = ia2_model::Proj::ALL
                .into_iter()
                .find(|p| name.contains(p.name()))
                .unwrap();
            let (fan_in, fan_out) = proj.shape(c);
            if name.ends_with(".bias") {
                vec![fan_out]
            } else {
                vec![fan_out, fan_in]
            }
        };
        let n: usize = shape.iter().product();
        let mut h = name.bytes().fold(1469598103934665603u64, |h, b| {
            (h ^ b as u64).wrapping_mul(1099511628211)
        });
        let norm = name.ends_with("norm.weight");
        let data: Vec<f32> = (0..n)
            .map(|_| {
                h ^= h << 13;
                h ^= h >> 7;
                h ^= h << 17;
                let u = (h >> 11) as f32 / (1u64 << 53) as f32 - 0.5;
                if norm { 1.0 + 0.1 * u } else { 0.2 * u }
            })
            .collect();
        Ok(TensorData::new(data, shape).convert_dtype(dtype))
    }
}

fn config() -> ModelConfig {
    ModelConfig {
        arch: Arch::Llama,
        vocab_size: 97,
        hidden_size: 32,
        intermediate_size: 48,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 8,
        rms_norm_eps: 1e-6,
        max_position_embeddings: 128,
        tie_word_embeddings: false,
        rope_theta: 10000.0,
        rope_scaling: RopeScaling::Default,
        attention_bias: true,
        mlp_bias: true,
        bos_token_id: None,
        eos_token_ids: vec![1],
        pad_token_id: None,
        torch_dtype: None,
    }
}

/// Random non-identity adapter values (so the merge is not trivially the identity).
fn perturb(a: &mut Adapter) {
    for (i, t) in a.tensors_mut().into_iter().enumerate() {
        match t {
            AdapterTensorMut::D1(t) => {
                let n = t.dims()[0];
                let v: Vec<f32> = (0..n)
                    .map(|j| 0.5 + ((i * 31 + j * 7) % 11) as f32 / 10.0)
                    .collect();
                *t = burn::tensor::Tensor::from_data(TensorData::new(v, [n]), &device());
            }
            AdapterTensorMut::D2(t) => {
                let [r, c] = t.dims();
                let v: Vec<f32> = (0..r * c)
                    .map(|j| (((i * 17 + j * 13) % 19) as f32 - 9.0) / 40.0)
                    .collect();
                *t = burn::tensor::Tensor::from_data(TensorData::new(v, [r, c]), &device());
            }
        }
    }
}

fn weights_and_biases(m: &Decoder) -> Vec<Vec<f32>> {
    let mut out = Vec::new();
    for l in &m.layers {
        for p in &l.proj {
            out.push(values(p.weight.clone().cast(DType::F32)).0);
            out.push(values(p.bias.clone().unwrap().cast(DType::F32)).0);
        }
    }
    out
}

#[test]
fn merge_handles_biases_and_bf16() {
    let mc = config();
    let ids = [3u32, 14, 15, 92, 65, 35, 8];
    let all = [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    ];
    let configs = [
        PeftConfig::Lora(LoraConfig::new(4, 8.0, &all)),
        PeftConfig::Ia3(Ia3Config::new(&all, &["o_proj", "down_proj"])),
    ];
    for dtype in [DType::F32, DType::BF16] {
        let model = Decoder::load(mc.clone(), &Random(mc.clone()), dtype, &device()).unwrap();
        let before = weights_and_biases(&model);
        for config in &configs {
            let mut adapter = init_adapter(config, &mc, 0, &device()).unwrap();
            perturb(&mut adapter);
            let (l0, a0) = run_all(&model, &ids, Some(&adapter));
            let mut merged = model.clone();
            merge(&mut merged, &adapter).unwrap();
            let (l1, a1) = run_all(&merged, &ids, None);
            // bf16 weights are rounded after the merge: compare relative to that precision.
            let tol = if dtype == DType::F32 { 1e-4 } else { 5e-2 };
            assert_close(
                &format!("{dtype:?} {} logits", config.peft_type()),
                l1,
                l0,
                tol,
            );
            assert_close(
                &format!("{dtype:?} {} attn", config.peft_type()),
                a1,
                a0,
                tol,
            );
            let after = weights_and_biases(&merged);
            assert_ne!(after, before);
            // Output-scaled IA3 modules scale the bias; LoRA and input-scaled modules leave it alone.
            if let Adapter::Ia3 { .. } = adapter {
                assert_ne!(after[1], before[1], "q_proj bias scaled");
                assert_eq!(after[7], before[7], "o_proj (feed-forward) bias untouched");
            } else {
                assert_eq!(after[1], before[1], "LoRA leaves biases");
            }
            unmerge(&mut merged, &adapter).unwrap();
            let restored = weights_and_biases(&merged);
            let tol = if dtype == DType::F32 { 1e-5 } else { 2e-2 };
            for (w, w0) in restored.iter().zip(&before) {
                let err = max_abs_diff(w, w0);
                assert!(
                    err <= tol,
                    "{dtype:?} {}: restored within {err}",
                    config.peft_type()
                );
            }
            for l in &merged.layers {
                assert_eq!(
                    l.proj[0].weight.dtype(),
                    dtype,
                    "merge keeps the weight dtype"
                );
            }
        }
    }
}
