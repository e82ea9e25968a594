//! Decoder properties: greedy tokens, KV cache == recomputation, left padding == alone, and gradients
//! through the whole decoder against finite differences.

mod common;

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use common::*;
use ia2_model::adapter::{LoraPair, slot};
use ia2_model::{Adapter, Batch, Capture, GenerateOptions, Positions, Proj, greedy};

fn logits_at(model: &ia2_model::Decoder, batch: &Batch, pos: Positions) -> (Vec<f32>, Vec<usize>) {
    let mut cache = model.new_cache(batch.batch, None);
    let capture = Capture {
        logits: pos,
        attn: Positions::None,
    };
    values(
        model
            .forward(batch, &mut cache, None, &capture)
            .unwrap()
            .logits
            .unwrap(),
    )
}

#[test]
fn greedy_tokens_match_transformers_with_and_without_cache() {
    for name in MODELS {
        let Some((model, cases)) = load(name) else {
            return;
        };
        for i in 0..2 {
            let (want, _) = cases.get_i64(&format!("case{i}.greedy")).unwrap();
            let want: Vec<u32> = want.into_iter().map(|t| t as u32).collect();
            for use_cache in [true, false] {
                let opts = GenerateOptions {
                    max_new_tokens: want.len(),
                    eos_token_ids: vec![],
                    pad_token_id: 0,
                    use_cache,
                };
                let got =
                    greedy(&model, None, &[ids(&cases, i)], &opts, |_, _| false, |_| {}).unwrap();
                assert_eq!(got[0].tokens, want, "{name} case{i} use_cache={use_cache}");
            }
        }
    }
}

#[test]
fn kv_cache_decoding_equals_full_recomputation() {
    for name in MODELS {
        let Some((model, cases)) = load(name) else {
            return;
        };
        let ids = ids(&cases, 1);
        let full = logits_at(&model, &Batch::single(&ids), Positions::All);
        let vocab = full.1[2];
        // Prefix in one call, then one token per call, all through the same cache.
        let split = ids.len() - 5;
        let mut cache = model.new_cache(1, None);
        let capture = Capture {
            logits: Positions::All,
            attn: Positions::None,
        };
        let mut got = values(
            model
                .forward(&Batch::single(&ids[..split]), &mut cache, None, &capture)
                .unwrap()
                .logits
                .unwrap(),
        )
        .0;
        for t in split..ids.len() {
            let out = model
                .forward(&Batch::single(&ids[t..t + 1]), &mut cache, None, &capture)
                .unwrap();
            got.extend(values(out.logits.unwrap()).0);
        }
        assert_eq!(cache.len(), ids.len());
        assert_eq!(got.len(), ids.len() * vocab);
        let err = max_abs_diff(&got, &full.0);
        assert!(err <= 1e-4, "{name}: cached logits differ by {err}");
    }
}

#[test]
fn left_padded_batch_equals_each_sequence_alone() {
    for name in MODELS {
        let Some((model, cases)) = load(name) else {
            return;
        };
        let seqs: Vec<Vec<u32>> = (0..2).map(|i| ids(&cases, i)).collect();
        assert_ne!(
            seqs[0].len(),
            seqs[1].len(),
            "fixture cases should differ in length"
        );
        let batch = Batch::left_padded(&seqs, 0);
        let width = seqs.iter().map(Vec::len).min().unwrap();
        // The last `width` real positions of each row, in padded coordinates.
        let at: Vec<Vec<usize>> = vec![(batch.seq - width..batch.seq).collect(); seqs.len()];
        let mut cache = model.new_cache(2, None);
        let capture = Capture {
            logits: Positions::At(at.clone()),
            attn: Positions::At(at),
        };
        let out = model.forward(&batch, &mut cache, None, &capture).unwrap();
        let (logits, dims) = values(out.logits.unwrap());
        let per_row = dims[1] * dims[2];
        for (r, s) in seqs.iter().enumerate() {
            let alone_at = Positions::At(vec![(s.len() - width..s.len()).collect()]);
            let mut c = model.new_cache(1, None);
            let cap = Capture {
                logits: alone_at.clone(),
                attn: alone_at,
            };
            let alone = model
                .forward(&Batch::single(s), &mut c, None, &cap)
                .unwrap();
            let err = max_abs_diff(
                &logits[r * per_row..(r + 1) * per_row],
                &values(alone.logits.unwrap()).0,
            );
            assert!(err <= 1e-4, "{name} row {r}: logits differ by {err}");
            for (l, (a_batch, a_alone)) in out.attn.iter().zip(alone.attn).enumerate() {
                let row = values(a_batch.clone().narrow(0, r, 1)).0;
                let err = max_abs_diff(&row, &values(a_alone).0);
                assert!(
                    err <= 1e-4,
                    "{name} row {r} layer {l}: attention differs by {err}"
                );
            }
        }
        // Batched greedy decoding equals decoding each prompt alone.
        let opts = GenerateOptions {
            max_new_tokens: 6,
            eos_token_ids: vec![],
            pad_token_id: 0,
            use_cache: true,
        };
        let batched = greedy(&model, None, &seqs, &opts, |_, _| false, |_| {}).unwrap();
        for (r, s) in seqs.iter().enumerate() {
            let alone = greedy(
                &model,
                None,
                std::slice::from_ref(s),
                &opts,
                |_, _| false,
                |_| {},
            )
            .unwrap();
            assert_eq!(batched[r], alone[0], "{name} row {r}");
        }
    }
}

/// LoRA on every projection of every layer, so a gradient must flow through the whole decoder.
fn lora_everywhere(model: &ia2_model::Decoder, rank: usize) -> Adapter {
    let c = &model.config;
    let dev = device();
    // Deterministic values in [-0.2, 0.2) from a fixed LCG, so the test is reproducible.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut uniform = |shape: [usize; 2]| {
        let values: Vec<f32> = (0..shape[0] * shape[1])
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.4
            })
            .collect();
        Tensor::<2>::from_data(TensorData::new(values, shape), &dev)
    };
    let mut pairs = vec![None; c.num_hidden_layers * Proj::ALL.len()];
    for l in 0..c.num_hidden_layers {
        for p in Proj::ALL {
            let (fan_in, fan_out) = p.shape(c);
            pairs[slot(l, p)] = Some(LoraPair {
                a: uniform([rank, fan_in]),
                b: uniform([fan_out, rank]),
            });
        }
    }
    Adapter::Lora {
        scaling: 2.0,
        pairs,
    }
}

/// CE on the last position + MSE of every layer's attention output at the last two positions.
fn loss(model: &ia2_model::Decoder, adapter: &Adapter, ids: &[u32], target: u32) -> Tensor<1> {
    let n = ids.len();
    let capture = Capture {
        logits: Positions::Last,
        attn: Positions::At(vec![vec![n - 2, n - 1]]),
    };
    let mut cache = model.new_cache(1, Some(adapter));
    let out = model
        .forward(&Batch::single(ids), &mut cache, Some(adapter), &capture)
        .unwrap();
    let vocab = model.config.vocab_size;
    let logp = log_softmax(out.logits.unwrap().reshape([1, vocab]), 1);
    let idx =
        Tensor::<2, Int>::from_data(TensorData::new(vec![target as i64], [1, 1]), &logp.device());
    let ce = logp.gather(1, idx).reshape([1]).neg();
    let attn: Tensor<4> = Tensor::stack(out.attn, 0);
    let mse = attn.square().mean().mul_scalar(0.5);
    ce + mse
}

#[test]
fn gradients_through_the_decoder_match_finite_differences() {
    for name in MODELS {
        let Some((model, cases)) = load(name) else {
            return;
        };
        let ids = ids(&cases, 0);
        let mut adapter = lora_everywhere(&model, 2);
        let base = adapter.clone();
        adapter.require_grad();
        let grads = loss(&model, &adapter, &ids, 7).backward();
        let tensors = adapter.tensors();
        let grad_vecs: Vec<Vec<f32>> = tensors
            .iter()
            .map(|t| match t {
                ia2_model::adapter::AdapterTensor::D2(t) => {
                    values(t.grad(&grads).expect("every LoRA tensor has a gradient")).0
                }
                ia2_model::adapter::AdapterTensor::D1(t) => {
                    values(t.grad(&grads).expect("gradient")).0
                }
            })
            .collect();
        assert!(
            grad_vecs.iter().all(|g| g.iter().any(|&v| v != 0.0)),
            "{name}: a LoRA tensor has an all-zero gradient"
        );
        // Directional derivatives along random directions vs central differences.
        for dir_seed in 0..3u64 {
            let dirs: Vec<Vec<f32>> = grad_vecs
                .iter()
                .enumerate()
                .map(|(k, g)| {
                    (0..g.len())
                        .map(|i| {
                            let x =
                                (i as u64 * 2654435761 + k as u64 * 97 + dir_seed * 7919) % 1000;
                            x as f32 / 500.0 - 1.0
                        })
                        .collect()
                })
                .collect();
            let analytic: f64 = grad_vecs
                .iter()
                .zip(&dirs)
                .flat_map(|(g, d)| g.iter().zip(d).map(|(a, b)| (*a as f64) * (*b as f64)))
                .sum();
            let h = 1e-3f32;
            let shifted = |sign: f32| {
                let mut a = base.clone();
                for (t, d) in a.tensors_mut().into_iter().zip(&dirs) {
                    if let ia2_model::adapter::AdapterTensorMut::D2(t) = t {
                        let delta =
                            Tensor::<2>::from_data(TensorData::new(d.clone(), t.dims()), &device());
                        *t = t.clone() + delta.mul_scalar(sign * h);
                    }
                }
                values(loss(&model, &a, &ids, 7)).0[0] as f64
            };
            let numeric = (shifted(1.0) - shifted(-1.0)) / (2.0 * h as f64);
            let rel = (analytic - numeric).abs() / numeric.abs().max(1e-6);
            eprintln!(
                "{name} direction {dir_seed}: analytic {analytic:.6} numeric {numeric:.6} rel {rel:.2e}"
            );
            assert!(
                rel <= 2e-3,
                "{name} direction {dir_seed}: analytic {analytic} vs numeric {numeric} (rel {rel})"
            );
        }
    }
}

/// The gradient of a loss summed over a left-padded batch equals the sum of each sequence's gradient
/// alone: the packed real rows (see `rows.rs`) carry every gradient, and padding none.
#[test]
fn left_padded_batch_gradients_equal_the_sum_over_sequences_alone() {
    for name in MODELS {
        let Some((model, cases)) = load(name) else {
            return;
        };
        let seqs: Vec<Vec<u32>> = (0..2).map(|i| ids(&cases, i)).collect();
        assert_ne!(seqs[0].len(), seqs[1].len());
        let mut adapter = lora_everywhere(&model, 2);
        adapter.require_grad();
        // CE of token 7 at the last position + MSE of every layer's attention output there.
        let loss = |batch: &Batch| {
            let capture = Capture {
                logits: Positions::Last,
                attn: Positions::Last,
            };
            let mut cache = model.new_cache(batch.batch, Some(&adapter));
            let out = model
                .forward(batch, &mut cache, Some(&adapter), &capture)
                .unwrap();
            let vocab = model.config.vocab_size;
            let logp = log_softmax(out.logits.unwrap().reshape([batch.batch, vocab]), 1);
            let idx = Tensor::<2, Int>::from_data(
                TensorData::new(vec![7i64; batch.batch], [batch.batch, 1]),
                &logp.device(),
            );
            let ce = logp.gather(1, idx).sum().neg();
            let attn: Tensor<4> = Tensor::stack(out.attn, 0);
            ce + attn.square().sum().mul_scalar(0.5)
        };
        let grads_of = |batch: &Batch| -> Vec<Vec<f32>> {
            let grads = loss(batch).backward();
            adapter
                .tensors()
                .iter()
                .map(|t| match t {
                    ia2_model::adapter::AdapterTensor::D2(t) => values(t.grad(&grads).unwrap()).0,
                    ia2_model::adapter::AdapterTensor::D1(t) => values(t.grad(&grads).unwrap()).0,
                })
                .collect()
        };
        let batched = grads_of(&Batch::left_padded(&seqs, 0));
        let mut alone = grads_of(&Batch::single(&seqs[0]));
        for (sum, g) in alone.iter_mut().zip(grads_of(&Batch::single(&seqs[1]))) {
            for (s, v) in sum.iter_mut().zip(g) {
                *s += v;
            }
        }
        let scale = alone
            .iter()
            .flatten()
            .fold(0f32, |m, v| m.max(v.abs()))
            .max(1e-6);
        for (k, (b, a)) in batched.iter().zip(&alone).enumerate() {
            let err = max_abs_diff(b, a);
            assert!(
                err <= 1e-4 * scale,
                "{name} adapter tensor {k}: batched gradient differs by {err} (scale {scale})"
            );
        }
    }
}

/// NaN stays NaN: a NaN weight makes every logit NaN, as in transformers (the fused softmax used to turn
/// an all-NaN score row into zeros, hiding the corruption). Only the fused path is checked: the composed
/// path on flex calls burn-flex's own attention, which has the same upstream behaviour (zeros for a row
/// without a finite score).
#[test]
fn nan_weights_give_nan_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = ia2_model::builtin::materialize("tiny-qwen3", tmp.path()).unwrap();
    let mut model = ia2_model::load_decoder(&dir, burn::tensor::DType::F32, &device()).unwrap();
    let w = &mut model.layers[0].proj[0].weight; // q_proj of layer 0
    let dims = w.dims();
    *w = Tensor::<2>::full(dims, f32::NAN, &device());
    let batch = Batch::single(&[1, 2, 3, 4]);
    assert!(model.fused);
    let (logits, _) = logits_at(&model, &batch, Positions::All);
    assert!(
        logits.iter().all(|v| v.is_nan()),
        "{} of {} logits are not NaN",
        logits.iter().filter(|v| !v.is_nan()).count(),
        logits.len()
    );
}

/// Positions past `max_position_embeddings` are an error before anything is allocated for them, also when
/// a KV cache grows past the limit.
#[test]
fn positions_past_the_limit_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = ia2_model::builtin::materialize("tiny-qwen3", tmp.path()).unwrap();
    let mut model = ia2_model::load_decoder(&dir, burn::tensor::DType::F32, &device()).unwrap();
    model.config.max_position_embeddings = 8;
    let capture = Capture {
        logits: Positions::Last,
        attn: Positions::None,
    };
    let run = |ids: &[u32], cache: &mut ia2_model::KvCache| {
        model.forward(&Batch::single(ids), cache, None, &capture)
    };
    let mut cache = model.new_cache(1, None);
    run(&[1; 8], &mut cache).expect("8 positions fit");
    let err = run(&[1], &mut cache).unwrap_err().to_string();
    assert!(
        err.contains("9 positions") && err.contains("max_position_embeddings 8"),
        "{err}"
    );
    let err = run(&[1; 9], &mut model.new_cache(1, None))
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_position_embeddings"), "{err}");
    // Left padding does not count.
    let batch = Batch::left_padded(&[vec![1; 8], vec![2; 3]], 0);
    model
        .forward(&batch, &mut model.new_cache(2, None), None, &capture)
        .expect("padding takes no position");
}
