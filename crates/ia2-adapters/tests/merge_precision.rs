//! Merging into a bf16 checkpoint loaded in f32 (held as its exact bf16 values) writes f32 weights: the
//! merged values are those of an f32 model, not rounded back to bf16.

use burn::tensor::{DType, Device, Tensor, TensorData};
use ia2_model::adapter::{LoraPair, slot};
use ia2_model::synthetic::{SyntheticModel, SyntheticOptions, write_checkpoint};
use ia2_model::{Adapter, Proj, load_decoder};

#[test]
fn merged_weights_take_the_decoder_precision() {
    let device = Device::flex();
    let tmp = tempfile::tempdir().unwrap();
    let opts = SyntheticOptions {
        dtype: ia2_hf::Dtype::BF16,
        ..SyntheticOptions::default()
    };
    write_checkpoint(
        &SyntheticModel::Tiny.config(),
        tmp.path(),
        &opts,
        &mut |_| {},
    )
    .unwrap();
    let mut model = load_decoder(tmp.path(), DType::F32, &device).unwrap();
    let c = model.config.clone();
    assert_eq!(model.layers[0].proj[0].weight.dtype(), DType::BF16);
    let (fan_in, fan_out) = Proj::Q.shape(&c);
    let a = Tensor::<2>::from_data(
        TensorData::new(vec![1e-3f32; 2 * fan_in], [2, fan_in]),
        &device,
    );
    let b = Tensor::<2>::from_data(
        TensorData::new(vec![1e-3f32; fan_out * 2], [fan_out, 2]),
        &device,
    );
    let mut pairs = vec![None; c.num_hidden_layers * Proj::ALL.len()];
    pairs[slot(0, Proj::Q)] = Some(LoraPair { a, b });
    let adapter = Adapter::Lora {
        scaling: 1.0,
        pairs,
    };
    let values = |t: &Tensor<2>| {
        t.clone()
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap()
    };
    let before = values(&model.layers[0].proj[0].weight);
    ia2_adapters::merge(&mut model, &adapter).unwrap();
    let w = &model.layers[0].proj[0].weight;
    assert_eq!(w.dtype(), DType::F32, "merged weights are f32");
    // B A = 2 · 1e-6 everywhere: below bf16's resolution at these magnitudes, kept exactly in f32.
    for (x, y) in before.iter().zip(values(w)) {
        assert!(((y - x) - 2e-6).abs() < 1e-8, "{x} -> {y}");
    }
    // Untouched projections keep their stored bf16 values.
    assert_eq!(model.layers[0].proj[1].weight.dtype(), DType::BF16);
}
