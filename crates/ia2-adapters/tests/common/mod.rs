//! Shared helpers for tests against ../shared/fixtures (transformers + PEFT reference outputs).
#![allow(dead_code)]

use burn::tensor::activation::log_softmax;
use burn::tensor::{DType, Device, Tensor};
use ia2_hf::Weights;
use ia2_model::{Adapter, Batch, Capture, Decoder, Positions, load_decoder};
use std::path::PathBuf;

pub const MODELS: [&str; 2] = ["qwen3-tiny", "llama-tiny"];
pub const KINDS: [&str; 6] = [
    "lora",
    "lora_qkv_mlp",
    "ia3",
    "ia3_kv_ff",
    "prompt",
    "prefix",
];

/// `../shared/fixtures/<name>`, or None (with a notice) when the shared folder is absent.
pub fn fixture(name: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures")
        .join(name);
    if dir.exists() {
        Some(dir)
    } else {
        eprintln!("skipping: fixture {} not found", dir.display());
        None
    }
}

pub fn device() -> Device {
    Device::flex()
}

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
        let (v, _) = self
            .cases
            .get_i64(&format!("case{i}.input_ids"))
            .expect("input ids");
        v.into_iter().map(|x| x as u32).collect()
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

/// Values and shape of a tensor.
pub type Values = (Vec<f32>, Vec<usize>);

pub fn expected(w: &Weights, name: &str) -> (Vec<f32>, Vec<usize>) {
    let view = w.get(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    (view.to_f32_vec(), view.shape().to_vec())
}

pub fn values<const D: usize>(t: Tensor<D>) -> (Vec<f32>, Vec<usize>) {
    let dims = t.dims().to_vec();
    (
        t.without_autodiff()
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("f32 data"),
        dims,
    )
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// ‖a − b‖ / ‖b‖
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}

pub fn assert_close(
    what: &str,
    got: (Vec<f32>, Vec<usize>),
    want: (Vec<f32>, Vec<usize>),
    tol: f32,
) {
    assert_eq!(got.1, want.1, "{what}: shape");
    let err = max_abs_diff(&got.0, &want.0);
    assert!(err <= tol, "{what}: max abs error {err} > {tol}");
}

/// Stacks per-layer `[1, S, H]` attention outputs into `[layers, S, H]` values.
pub fn stack_attn(attn: Vec<Tensor<3>>) -> (Vec<f32>, Vec<usize>) {
    let t: Tensor<4> = Tensor::stack(attn, 0);
    let [l, _, s, h] = t.dims();
    values(t.reshape([l, s, h]))
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
