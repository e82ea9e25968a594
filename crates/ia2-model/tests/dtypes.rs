//! Weights held in bf16 / f16 (computation stays f32): outputs stay close to the f32 reference.

mod common;

use burn::tensor::DType;
use common::*;
use ia2_model::{Batch, Capture, Positions, load_decoder};

#[test]
fn half_precision_weights_give_close_logits() {
    for name in MODELS {
        let Some(dir) = fixture(name) else { return };
        let cases = ia2_hf::Weights::open_file(dir.join("cases.safetensors")).unwrap();
        let ids = ids(&cases, 0);
        let (want, _) = expected(&cases, "case0.logits");
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        for dtype in [DType::BF16, DType::F16] {
            let model = load_decoder(&dir.join("model"), dtype, &device()).unwrap();
            assert_eq!(
                model.embed_tokens.dtype(),
                dtype,
                "weights are held in {dtype:?}"
            );
            let mut cache = model.new_cache(1, None);
            let capture = Capture {
                logits: Positions::All,
                attn: Positions::None,
            };
            let out = model
                .forward(&Batch::single(&ids), &mut cache, None, &capture)
                .unwrap();
            let (got, _) = values(out.logits.unwrap());
            let err = max_abs_diff(&got, &want);
            // bf16 keeps 8 mantissa bits (rel. 4e-3 per weight), f16 11 bits.
            let tol = if dtype == DType::BF16 { 0.05 } else { 0.01 } * scale.max(1.0);
            assert!(err <= tol, "{name} {dtype:?}: max abs error {err} > {tol}");
            assert!(
                err > 0.0,
                "{name} {dtype:?}: rounding should change something"
            );
        }
    }
}
