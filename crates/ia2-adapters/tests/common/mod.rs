//! Helpers for tests against ../shared/fixtures (transformers + PEFT reference outputs); the generic ones
//! come from `ia2-testkit`.
#![allow(dead_code)]

use burn::tensor::activation::log_softmax;
use burn::tensor::{DType, Tensor};
use ia2_hf::Weights;
use ia2_model::{Adapter, Batch, Capture, Decoder, Positions, load_decoder};
use std::path::PathBuf;

pub use ia2_testkit::*;

pub struct Fixture {
    pub name: &'static str,
    pub dir: PathBuf,
    pub model: Decoder,
    pub cases: Weights,
}

impl Fixture {
    pub fn adapter_dir(&self, kind: &str) -> PathBuf {
        self.dir.join("adapters").join(kind)
    }

    pub fn expected(&self, kind: &str) -> Weights {
        Weights::open_file(self.adapter_dir(kind).join("expected.safetensors")).expect("expected")
    }

    pub fn ids(&self, i: usize) -> Vec<u32> {
        ids(&self.cases, i)
    }
}

pub fn load(name: &'static str) -> Option<Fixture> {
    let dir = fixture(name)?;
    let model =
        load_decoder(&dir.join("model"), DType::F32, &device()).expect("load fixture model");
    let cases = Weights::open_file(dir.join("cases.safetensors")).expect("open cases");
    Some(Fixture {
        name,
        dir,
        model,
        cases,
    })
}

/// Logits `[S(+N), vocab]` and attention `[layers, S(+N), hidden]` of one unpadded sequence.
pub fn run_all(model: &Decoder, ids: &[u32], adapter: Option<&Adapter>) -> (Values, Values) {
    let mut cache = model.new_cache(1, adapter);
    let out = model
        .forward(
            &Batch::single(ids),
            &mut cache,
            adapter,
            &Capture {
                logits: Positions::All,
                attn: Positions::All,
            },
        )
        .expect("forward");
    let (logits, mut shape) = values(out.logits.expect("logits"));
    shape.remove(0);
    ((logits, shape), stack_attn(out.attn))
}

/// The fixture loss: `CE(logits[-1], target) + layers * mean((attn[:, -2:, :] - attn_target)^2)`,
/// returned as (total, ce, mse) with `total` still on the autodiff graph.
pub fn fixture_loss(
    model: &Decoder,
    ids: &[u32],
    adapter: &Adapter,
    expected: &Weights,
) -> (Tensor<1>, f32, f32) {
    let dev = device();
    let s = ids.len();
    let mut cache = model.new_cache(1, Some(adapter));
    let out = model
        .forward(
            &Batch::single(ids),
            &mut cache,
            Some(adapter),
            &Capture {
                logits: Positions::Last,
                attn: Positions::At(vec![vec![s - 2, s - 1]]),
            },
        )
        .expect("forward");
    let (target, _) = expected.get_i64("loss.target_token").expect("target");
    let target = target[0] as usize;
    let vocab = model.config.vocab_size;
    let logits: Tensor<1> = out.logits.expect("logits").reshape([vocab]);
    let ce = log_softmax(logits, 0).narrow(0, target, 1).neg();
    let layers = model.config.num_hidden_layers;
    let attn: Tensor<4> = Tensor::stack(out.attn, 0);
    let hidden = model.config.hidden_size;
    let attn = attn.reshape([layers, 2, hidden]);
    let (t, shape) = expected_f32(expected, "loss.attn_target");
    let t = Tensor::<3>::from_data(
        burn::tensor::TensorData::new(t, [shape[0], shape[1], shape[2]]),
        &dev,
    );
    let mse = (attn - t)
        .square()
        .mean()
        .mul_scalar(layers as f64)
        .reshape([1]);
    let ce_v = values(ce.clone()).0[0];
    let mse_v = values(mse.clone()).0[0];
    (ce + mse, ce_v, mse_v)
}

pub fn expected_f32(w: &Weights, name: &str) -> (Vec<f32>, Vec<usize>) {
    expected(w, name)
}

/// `torch name (with .default.) -> saved key` from param_names.json.
pub fn param_names(dir: &std::path::Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(dir.join("param_names.json")).expect("param_names.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let torch = v["trainable_parameter_names (torch, for grad.* keys)"]
        .as_array()
        .expect("torch names");
    let saved = v["saved_keys (adapter_model.safetensors)"]
        .as_array()
        .expect("saved keys");
    assert_eq!(torch.len(), saved.len());
    torch
        .iter()
        .zip(saved)
        .map(|(t, s)| {
            (
                t.as_str().unwrap().to_string(),
                s.as_str().unwrap().to_string(),
            )
        })
        .collect()
}
