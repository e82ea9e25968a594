//! Helpers for tests against ../shared/fixtures (transformers reference outputs); the generic ones come
//! from `ia2-testkit`.
#![allow(dead_code)]

use burn::tensor::{DType, Device, Tensor, TensorData};
use ia2_hf::Weights;
use ia2_model::{Decoder, load_decoder};
pub use ia2_testkit::*;

pub fn load(name: &str) -> Option<(Decoder, Weights)> {
    let dir = fixture(name)?;
    let decoder =
        load_decoder(&dir.join("model"), DType::F32, &device()).expect("load fixture model");
    let cases = Weights::open_file(dir.join("cases.safetensors")).expect("open cases");
    Some((decoder, cases))
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

/// Writes a Qwen3-shaped model of 16 layers (hidden 256) whose weights, stored in `dtype`, spread over many
/// ~1 MiB tensors (≈ 64 MiB in f32): `ia2_model::synthetic`'s seeded checkpoint of that shape. Returns the
/// configuration and the bytes of the tensors in the files.
pub fn write_test_model(dir: &std::path::Path, dtype: ia2_hf::Dtype) -> (ia2_hf::ModelConfig, u64) {
    use ia2_model::synthetic::{SyntheticModel, SyntheticOptions, write_checkpoint};
    let mut c = SyntheticModel::Tiny.config();
    c.hidden_size = 256;
    c.intermediate_size = 1024;
    c.num_hidden_layers = 16;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 64;
    c.vocab_size = 2048;
    let opts = SyntheticOptions {
        dtype,
        ..SyntheticOptions::default()
    };
    let written = write_checkpoint(&c, dir, &opts, &mut |_| {}).unwrap();
    (c, written.bytes)
}

/// Uniform values in `[-scale, scale)` from a splitmix64 stream.
pub fn uniform(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// A rank-2 tensor of `v`.
pub fn t2(v: Vec<f32>, shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(v, shape), device)
}
