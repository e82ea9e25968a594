//! The frozen projection (`ia2_model::fused::frozen_linear`) with weights held in f32, bf16 and f16:
//! values and input gradients against a direct f64 computation from the rounded weights and against
//! burn's composed ops; f32 results identical to the composed path; and a decoder holding bf16 / f16
//! weights against the same decoder holding those rounded values in f32.

mod common;

use burn::tensor::module::linear;
use burn::tensor::{DType, Device, Tensor, TensorData};
use common::*;
use ia2_model::adapter::{LoraPair, slot};
use ia2_model::{Adapter, Batch, Capture, Decoder, Positions, Proj, fused, load_decoder};

fn data<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    values(t).0
}

/// `|got - want| ≤ 1e-5 · Σ|terms|` elementwise, `want` and `Σ|terms|` from f64: f32 accumulation of
/// `n` products errs by a few `√n · 2⁻²⁴` of the sum of their magnitudes, a wrong product by far more.
fn close_to_f64(what: &str, got: &[f32], want: &[(f64, f64)]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &(v, mag))) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - v).abs() <= 1e-5 * mag + 1e-30,
            "{what}: element {i}: {g} vs {v} (Σ|terms| {mag})"
        );
    }
}

#[test]
fn values_and_input_gradients_match_f64_for_every_weight_precision() {
    let device = device();
    for (rows, inp, out) in [(1, 70, 131), (3, 70, 131), (17, 33, 29), (300, 45, 23)] {
        let w32 = uniform(out * inp, (rows + inp) as u64, 1.0);
        let x = uniform(rows * inp, 5 + rows as u64, 1.0);
        let g = uniform(rows * out, 9 + out as u64, 1.0);
        for dtype in [DType::F32, DType::BF16, DType::F16] {
            let what = format!("{dtype:?} {rows}x{inp}->{out}");
            let w = t2(w32.clone(), [out, inp], &device).cast(dtype);
            assert!(fused::weight_supported(&w), "{what}: supported");
            // The rounded weight values, as the op must see them.
            let w64: Vec<f64> = data(w.clone().cast(DType::F32))
                .into_iter()
                .map(f64::from)
                .collect();
            let xa = t2(x.clone(), [rows, inp], &device)
                .autodiff()
                .require_grad();
            let y = fused::frozen_linear(xa.clone(), w.clone());
            assert_eq!(y.dims(), [rows, out], "{what}: shape");
            let want_y: Vec<(f64, f64)> = (0..rows * out)
                .map(|i| {
                    let (r, o) = (i / out, i % out);
                    (0..inp).fold((0.0, 0.0), |(s, m), j| {
                        let p = x[r * inp + j] as f64 * w64[o * inp + j];
                        (s + p, m + p.abs())
                    })
                })
                .collect();
            close_to_f64(&format!("{what} y"), &data(y.clone()), &want_y);
            // loss = Σ y ⊙ g, so dx = g W.
            let grads = (y * t2(g.clone(), [rows, out], &device).autodiff())
                .sum()
                .backward();
            let dx = data(xa.grad(&grads).expect("x has a gradient"));
            let want_dx: Vec<(f64, f64)> = (0..rows * inp)
                .map(|i| {
                    let (r, j) = (i / inp, i % inp);
                    (0..out).fold((0.0, 0.0), |(s, m), o| {
                        let p = g[r * out + o] as f64 * w64[o * inp + j];
                        (s + p, m + p.abs())
                    })
                })
                .collect();
            close_to_f64(&format!("{what} dx"), &dx, &want_dx);

            // Against burn's composed ops on the weight's values in f32 (values and gradient).
            let xc = t2(x.clone(), [rows, inp], &device)
                .autodiff()
                .require_grad();
            let yc = xc
                .clone()
                .matmul(w.clone().cast(DType::F32).autodiff().transpose());
            let gc = (yc.clone() * t2(g.clone(), [rows, out], &device).autodiff())
                .sum()
                .backward();
            let dxc = data(xc.grad(&gc).expect("x has a gradient"));
            let err = rel_err(&dx, &dxc);
            assert!(err < 1e-6, "{what}: dx vs composed, rel err {err}");
            // Inference on a few rows reads the weight in place, with the same values.
            if rows <= 16 {
                let yr = fused::linear_rows(t2(x.clone(), [rows, inp], &device), w.clone());
                close_to_f64(&format!("{what} linear_rows"), &data(yr), &want_y);
            }
        }
    }
}

#[test]
fn f32_weights_give_exactly_the_composed_results() {
    // The fused op runs the products the composed `linear` ran before it (fixture parity unchanged).
    let device = device();
    let (inp, out) = (48, 75);
    let w = t2(uniform(out * inp, 1, 1.0), [out, inp], &device);
    for rows in [1, 3, 40] {
        let x = uniform(rows * inp, 2, 1.0);
        let g = t2(uniform(rows * out, 3, 1.0), [rows, out], &device).autodiff();
        let xf = t2(x.clone(), [rows, inp], &device)
            .autodiff()
            .require_grad();
        let yf = fused::frozen_linear(xf.clone(), w.clone());
        let gf = (yf.clone() * g.clone()).sum().backward();
        let xc = t2(x, [rows, inp], &device).autodiff().require_grad();
        let wc = w.clone().autodiff();
        let yc = if rows == 1 {
            wc.matmul(xc.clone().reshape([inp, 1])).reshape([1, out])
        } else {
            linear(xc.clone(), wc.transpose(), None)
        };
        let gc = (yc.clone() * g).sum().backward();
        assert_eq!(data(yf), data(yc), "rows {rows}: values");
        assert_eq!(
            data(xf.grad(&gf).unwrap()),
            data(xc.grad(&gc).unwrap()),
            "rows {rows}: gradients"
        );
    }
}

#[test]
fn a_tracked_weight_gets_its_gradient_through_the_composed_path() {
    let device = device();
    let (rows, inp, out) = (5, 6, 7);
    let x = uniform(rows * inp, 1, 1.0);
    let g = uniform(rows * out, 2, 1.0);
    let w = t2(uniform(out * inp, 3, 1.0), [out, inp], &device)
        .autodiff()
        .require_grad();
    let y = fused::frozen_linear(t2(x.clone(), [rows, inp], &device), w.clone());
    let grads = (y * t2(g.clone(), [rows, out], &device)).sum().backward();
    let dw = data(w.grad(&grads).expect("the weight has a gradient"));
    // dW = gᵀ x.
    for o in 0..out {
        for j in 0..inp {
            let want: f64 = (0..rows)
                .map(|r| g[r * out + o] as f64 * x[r * inp + j] as f64)
                .sum();
            let got = dw[o * inp + j] as f64;
            assert!((got - want).abs() < 1e-5, "dW[{o}, {j}]: {got} vs {want}");
        }
    }
}

/// The decoder with every weight (embeddings, projections and their biases, norms, head) cast to f32:
/// the values a half-precision decoder computes with.
fn widened(model: &Decoder) -> Decoder {
    let mut m = model.clone();
    let f = |t: &Tensor<2>| t.clone().cast(DType::F32);
    let f1 = |t: &Tensor<1>| t.clone().cast(DType::F32);
    m.embed_tokens = f(&m.embed_tokens);
    m.lm_head = m.lm_head.as_ref().map(f);
    m.norm.weight = f1(&m.norm.weight);
    for layer in &mut m.layers {
        for p in &mut layer.proj {
            p.weight = f(&p.weight);
            p.bias = p.bias.as_ref().map(f1);
        }
        for n in [
            Some(&mut layer.input_layernorm),
            Some(&mut layer.post_attention_layernorm),
            layer.q_norm.as_mut(),
            layer.k_norm.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            n.weight = f1(&n.weight);
        }
    }
    m
}

/// A LoRA adapter on every projection, nonzero everywhere.
fn lora(model: &Decoder, device: &Device) -> Adapter {
    let c = &model.config;
    let mut pairs = vec![None; c.num_hidden_layers * Proj::ALL.len()];
    for l in 0..c.num_hidden_layers {
        for (i, proj) in Proj::ALL.into_iter().enumerate() {
            let (inp, out) = proj.shape(c);
            let seed = (l * 7 + i) as u64;
            pairs[slot(l, proj)] = Some(LoraPair {
                a: t2(uniform(4 * inp, seed, 0.3), [4, inp], device),
                b: t2(uniform(out * 4, seed + 100, 0.3), [out, 4], device),
            });
        }
    }
    Adapter::Lora {
        scaling: 2.0,
        pairs,
    }
}

/// Logits at every position of a left-padded batch and the LoRA gradients of a loss on them.
fn train_step(model: &Decoder, adapter: &Adapter, batch: &Batch) -> (Values, Vec<Vec<f32>>) {
    let mut adapter = adapter.clone();
    adapter.require_grad();
    let mut cache = model.new_cache(batch.batch, Some(&adapter));
    let capture = Capture {
        logits: Positions::All,
        attn: Positions::None,
    };
    let logits = model
        .forward(batch, &mut cache, Some(&adapter), &capture)
        .unwrap()
        .logits
        .unwrap();
    let n = logits.dims().iter().product();
    let w = Tensor::<1>::from_data(TensorData::new(uniform(n, 1, 1.0), [n]), model.device());
    let grads = (logits.clone().flatten::<1>(0, 2) * w).sum().backward();
    let g = adapter
        .tensors()
        .into_iter()
        .map(|t| match t {
            ia2_model::adapter::AdapterTensor::D1(t) => data(t.grad(&grads).unwrap()),
            ia2_model::adapter::AdapterTensor::D2(t) => data(t.grad(&grads).unwrap()),
        })
        .collect();
    (values(logits), g)
}

/// Greedy logits of a prompt and three decoding steps through the cache (the few-row kernel).
fn decode(model: &Decoder, seqs: &[Vec<u32>]) -> Vec<Values> {
    let mut cache = model.new_cache(seqs.len(), None);
    let capture = Capture {
        logits: Positions::Last,
        attn: Positions::None,
    };
    let mut out = vec![values(
        model
            .forward(&Batch::left_padded(seqs, 0), &mut cache, None, &capture)
            .unwrap()
            .logits
            .unwrap(),
    )];
    for step in 0..3u32 {
        let next = Batch::left_padded(&[vec![step + 1], vec![step + 5]], 0);
        let o = model.forward(&next, &mut cache, None, &capture).unwrap();
        out.push(values(o.logits.unwrap()));
    }
    out
}

#[test]
fn half_precision_decoders_compute_with_their_rounded_values_in_f32() {
    // Tolerance: both decoders compute in f32 from identical values; only the order of the f32 sums
    // differs (gemm blocking per tile, tiled backward), which moves logits by ~1e-6 relative and
    // gradients by ~1e-6 relative; 1e-4 (the fused-vs-composed bound) leaves a wide margin while a
    // single mis-read weight would not pass.
    for name in MODELS {
        let Some(dir) = fixture(name) else { return };
        let device = device();
        let cases = ia2_hf::Weights::open_file(dir.join("cases.safetensors")).unwrap();
        let seqs: Vec<Vec<u32>> = (0..2).map(|i| ids(&cases, i)).collect();
        let batch = Batch::left_padded(&seqs, 0);
        for dtype in [DType::BF16, DType::F16] {
            let mut model = load_decoder(&dir.join("model"), dtype, &device).unwrap();
            // A bias on every q/k/v projection (Qwen2 has them), held in the weights' precision.
            for (l, layer) in model.layers.iter_mut().enumerate() {
                for proj in [Proj::Q, Proj::K, Proj::V] {
                    let p = &mut layer.proj[proj.index()];
                    let n = p.weight.dims()[0];
                    let b = uniform(n, 40 + l as u64, 0.5);
                    p.bias =
                        Some(Tensor::<1>::from_data(TensorData::new(b, [n]), &device).cast(dtype));
                }
            }
            let reference = widened(&model);
            assert_eq!(model.layers[0].proj[0].weight.dtype(), dtype);
            assert_eq!(reference.layers[0].proj[0].weight.dtype(), DType::F32);
            let adapter = lora(&model, &device);
            let (logits, grads) = train_step(&model, &adapter, &batch);
            let (want_logits, want_grads) = train_step(&reference, &adapter, &batch);
            let what = format!("{name} {dtype:?}");
            let err = rel_err(&logits.0, &want_logits.0);
            assert!(err < 1e-5, "{what} logits: rel err {err}");
            assert_close(&format!("{what} logits"), logits, want_logits, 1e-4);
            for (i, (g, h)) in grads.iter().zip(&want_grads).enumerate() {
                let err = rel_err(g, h);
                assert!(
                    err < 1e-4,
                    "{what} gradient of LoRA tensor {i}: rel err {err}"
                );
            }
            for (i, (got, want)) in decode(&model, &seqs)
                .into_iter()
                .zip(decode(&reference, &seqs))
                .enumerate()
            {
                assert_close(&format!("{what} decoding step {i}"), got, want, 1e-4);
            }
        }
    }
}
