//! A bf16 / f16 checkpoint loaded in f32 keeps its 16-bit values (every one is an f32): same numbers as
//! f32 copies of them, half the memory (merging an adapter into them: `ia2-adapters/tests/merge_precision.rs`).

mod common;

use burn::tensor::{DType, Device, TensorData};
use common::write_test_model as write_model;
use ia2_hf::{Dtype, Weights};
use ia2_model::{Batch, Capture, Decoder, Positions, WeightSource, load_decoder};

/// Widens every tensor to f32 (the reference: f32 weights holding the checkpoint's values).
struct Widened(Weights);

impl WeightSource for Widened {
    fn tensor(&self, name: &str, dtype: DType) -> anyhow::Result<TensorData> {
        let v = self.0.get(name)?;
        Ok(TensorData::new(v.to_f32_vec(), v.shape().to_vec()).convert_dtype(dtype))
    }
}

fn outputs(model: &Decoder, ids: &[u32]) -> (Vec<f32>, Vec<f32>) {
    let mut cache = model.new_cache(1, None);
    let capture = Capture {
        logits: Positions::All,
        attn: Positions::All,
    };
    let out = model
        .forward(&Batch::single(ids), &mut cache, None, &capture)
        .unwrap();
    let v =
        |t: burn::tensor::Tensor<3>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    let attn = out.attn.into_iter().flat_map(v).collect();
    (v(out.logits.unwrap()), attn)
}

#[test]
fn half_checkpoints_loaded_in_f32_hold_their_exact_values() {
    let device = Device::flex();
    let ids: Vec<u32> = (0..40).map(|i| (i * 37 % 2048) as u32).collect();
    for stored in [Dtype::BF16, Dtype::F16] {
        let tmp = tempfile::tempdir().unwrap();
        let (config, _) = write_model(tmp.path(), stored);
        let model = load_decoder(tmp.path(), DType::F32, &device).unwrap();
        let held = if stored == Dtype::BF16 {
            DType::BF16
        } else {
            DType::F16
        };
        assert_eq!(model.dtype, DType::F32, "{stored}: the values are f32");
        assert_eq!(model.embed_tokens.dtype(), held, "{stored}: stored as is");
        assert_eq!(model.layers[0].proj[0].weight.dtype(), held);

        let reference = Decoder::load(
            config,
            &Widened(Weights::open(tmp.path()).unwrap()),
            DType::F32,
            &device,
        )
        .unwrap();
        assert_eq!(reference.embed_tokens.dtype(), DType::F32);
        let (logits, attn) = outputs(&model, &ids);
        let (want_logits, want_attn) = outputs(&reference, &ids);
        // Same values, f32 arithmetic: equal up to the summation order of the matrix products.
        for (what, got, want) in [
            ("logits", &logits, &want_logits),
            ("attn", &attn, &want_attn),
        ] {
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            let err = got
                .iter()
                .zip(want.iter())
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                err <= 1e-5 * scale.max(1.0),
                "{stored} {what}: max abs difference {err} (scale {scale})"
            );
        }
    }
}
