//! Shared helpers for tests against ../shared/fixtures (transformers + PEFT reference outputs).
#![allow(dead_code)]

use burn::tensor::{DType, Device, Tensor};
use ia2_hf::Weights;
use ia2_model::{Decoder, load_decoder};
use std::path::PathBuf;

pub const MODELS: [&str; 2] = ["qwen3-tiny", "llama-tiny"];

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

pub fn load(name: &str) -> Option<(Decoder, Weights)> {
    let dir = fixture(name)?;
    let decoder =
        load_decoder(&dir.join("model"), DType::F32, &device()).expect("load fixture model");
    let cases = Weights::open_file(dir.join("cases.safetensors")).expect("open cases");
    Some((decoder, cases))
}

pub fn ids(cases: &Weights, i: usize) -> Vec<u32> {
    let (v, _) = cases
        .get_i64(&format!("case{i}.input_ids"))
        .expect("input ids");
    v.into_iter().map(|x| x as u32).collect()
}

pub fn expected(w: &Weights, name: &str) -> (Vec<f32>, Vec<usize>) {
    let view = w.get(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    (view.to_f32_vec(), view.shape().to_vec())
}

pub fn values<const D: usize>(t: Tensor<D>) -> (Vec<f32>, Vec<usize>) {
    let dims = t.dims().to_vec();
    (
        t.into_data()
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

/// Asserts two tensors (values + shapes) agree within `tol` (max abs error).
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

/// Runs case `i` of a fixture's cases file alone and checks logits and attention outputs (≤ 1e-4).
pub fn check_case(model: &Decoder, cases: &Weights, label: &str, i: usize) {
    use ia2_model::{Batch, Capture, Positions};
    let ids = ids(cases, i);
    let mut cache = model.new_cache(1, None);
    let capture = Capture {
        logits: Positions::All,
        attn: Positions::All,
    };
    let out = model
        .forward(&Batch::single(&ids), &mut cache, None, &capture)
        .unwrap();
    let (logits, mut shape) = values(out.logits.unwrap());
    shape.remove(0);
    let want = |field: &str| expected(cases, &format!("case{i}.{field}"));
    assert_close(
        &format!("{label} case{i} logits"),
        (logits, shape),
        want("logits"),
        1e-4,
    );
    assert_close(
        &format!("{label} case{i} attn"),
        stack_attn(out.attn),
        want("attn"),
        1e-4,
    );
}
