//! Recomputing the MLP's gate and up projections in the backward pass (`Decoder::recompute_mlp`) gives the
//! same values and the same adapter gradients, bit for bit, and keeps less until the backward pass.

mod common;

use burn::tensor::{DType, Device, Tensor, TensorData};
use common::write_test_model;
use ia2_model::adapter::{LoraPair, slot};
use ia2_model::{Adapter, Batch, Capture, Decoder, Positions, Proj, load_decoder};

fn lora(model: &Decoder, device: &Device, targets: &[Proj]) -> Adapter {
    let c = &model.config;
    let mut pairs = vec![None; c.num_hidden_layers * Proj::ALL.len()];
    let mut k = 0u64;
    let mut values = |n: usize| -> Vec<f32> {
        k += 1;
        (0..n as u64)
            .map(|i| ((i * 131 + k * 17) % 97) as f32 * 2e-3 - 0.097)
            .collect()
    };
    for l in 0..c.num_hidden_layers {
        for &p in targets {
            let (fan_in, fan_out) = p.shape(c);
            let a =
                Tensor::<2>::from_data(TensorData::new(values(4 * fan_in), [4, fan_in]), device);
            let b =
                Tensor::<2>::from_data(TensorData::new(values(fan_out * 4), [fan_out, 4]), device);
            pairs[slot(l, p)] = Some(LoraPair { a, b });
        }
    }
    let mut adapter = Adapter::Lora {
        scaling: 2.0,
        pairs,
    };
    adapter.require_grad();
    adapter
}

/// Loss = Σ attention outputs² + Σ last logits², its value and the gradients of every adapter tensor.
fn loss_and_grads(model: &Decoder, adapter: &Adapter) -> (f32, Vec<Vec<f32>>) {
    let ids: Vec<u32> = (0..48).map(|i| (i * 53 % 2048) as u32).collect();
    let mut cache = model.new_cache(1, Some(adapter));
    let capture = Capture {
        logits: Positions::Last,
        attn: Positions::All,
    };
    let out = model
        .forward(&Batch::single(&ids), &mut cache, Some(adapter), &capture)
        .unwrap();
    let mut loss = out.logits.unwrap().square().sum();
    for a in out.attn {
        loss = loss + a.square().sum();
    }
    let value = loss.clone().into_scalar::<f32>();
    let grads = loss.backward();
    let g = adapter
        .tensors()
        .into_iter()
        .map(|t| match t {
            ia2_model::adapter::AdapterTensor::D2(t) => t
                .grad(&grads)
                .expect("every adapter tensor gets a gradient")
                .into_data()
                .try_to_vec::<f32>()
                .unwrap(),
            ia2_model::adapter::AdapterTensor::D1(_) => unreachable!("LoRA tensors are 2-D"),
        })
        .collect();
    (value, g)
}

#[test]
fn recomputed_mlp_gives_identical_values_and_gradients() {
    let device = Device::flex();
    for stored in [ia2_hf::Dtype::F32, ia2_hf::Dtype::BF16] {
        let tmp = tempfile::tempdir().unwrap();
        write_test_model(tmp.path(), stored);
        let mut model = load_decoder(tmp.path(), DType::F32, &device).unwrap();
        // q/k/o and down (the MLP op runs; down is adapted after it) and, second, gate too (the op must
        // step aside for an adapted gate).
        for targets in [
            &[Proj::Q, Proj::K, Proj::O, Proj::Down][..],
            &[Proj::Q, Proj::Gate][..],
        ] {
            let adapter = lora(&model, &device, targets);
            model.recompute_mlp = false;
            let (want_loss, want) = loss_and_grads(&model, &adapter);
            model.recompute_mlp = true;
            let (loss, got) = loss_and_grads(&model, &adapter);
            assert_eq!(loss, want_loss, "{stored} {targets:?}: loss");
            let differing = got
                .iter()
                .flatten()
                .zip(want.iter().flatten())
                .filter(|(a, b)| a != b)
                .count();
            assert_eq!(got.len(), want.len());
            assert_eq!(differing, 0, "{stored} {targets:?}: gradient values differ");
            assert!(want.iter().flatten().any(|g| *g != 0.0));
        }
    }
}
