//! Helpers for tests against ../shared/fixtures (transformers reference outputs); the generic ones come
//! from `ia2-testkit`.
#![allow(dead_code)]

use burn::tensor::DType;
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
