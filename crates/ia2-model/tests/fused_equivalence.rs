//! The fused kernels (`ia2_model::fused`) against the same decoder composed from burn's ops: equal
//! logits, attention outputs and adapter gradients, on left-padded batches, through the KV cache and
//! for every adapter kind (grouped kv heads, Qwen3's q/k norms and Llama's plain attention included);
//! a one-pass cache (training, scoring) against a kept one; `rotary_attention` against its composition.

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use ia2_model::adapter::{Ia3Vector, LoraPair, slot};
use ia2_model::{Adapter, Batch, Capture, Decoder, Positions, Proj};

/// One adapter of each kind, with nonzero values everywhere (so every gradient path is exercised).
fn adapters(model: &Decoder, device: &Device) -> Vec<(&'static str, Adapter)> {
    let c = &model.config;
    let n_slots = c.num_hidden_layers * Proj::ALL.len();
    let mut pairs = vec![None; n_slots];
    let mut vectors = vec![None; n_slots];
    for l in 0..c.num_hidden_layers {
        for (i, proj) in Proj::ALL.into_iter().enumerate() {
            let (inp, out) = proj.shape(c);
            let seed = (l * 7 + i) as u64;
            pairs[slot(l, proj)] = Some(LoraPair {
                a: t2(uniform(4 * inp, seed, 0.3), [4, inp], device),
                b: t2(uniform(out * 4, seed + 100, 0.3), [out, 4], device),
            });
            let on_input = proj == Proj::Down;
            let len = if on_input { inp } else { out };
            let scale = uniform(len, seed + 200, 0.2)
                .into_iter()
                .map(|v| 1.0 + v)
                .collect::<Vec<_>>();
            vectors[slot(l, proj)] = Some(Ia3Vector {
                scale: Tensor::from_data(TensorData::new(scale, [len]), device),
                on_input,
            });
        }
    }
    let kv = c.num_hidden_layers * 2 * c.num_key_value_heads * c.head_dim;
    vec![
        (
            "lora",
            Adapter::Lora {
                scaling: 2.0,
                pairs,
            },
        ),
        ("ia3", Adapter::Ia3 { vectors }),
        (
            "prompt",
            Adapter::Prompt {
                embeddings: t2(
                    uniform(3 * c.hidden_size, 7, 1.0),
                    [3, c.hidden_size],
                    device,
                ),
            },
        ),
        (
            "prefix",
            Adapter::Prefix {
                embeddings: t2(uniform(3 * kv, 8, 1.0), [3, kv], device),
            },
        ),
    ]
}

/// Logits and attention outputs at every position of a left-padded batch, a scalar loss mixing
/// both, and the gradient of every adapter tensor.
/// With `one_pass`, the cache of a training step (`KvCache::one_pass`).
fn run(
    model: &Decoder,
    adapter: &Adapter,
    batch: &Batch,
    one_pass: bool,
) -> (Values, Values, Vec<Vec<f32>>) {
    let mut adapter = adapter.clone();
    adapter.require_grad();
    let mut cache = model.new_cache(batch.batch, Some(&adapter));
    if one_pass {
        cache = cache.one_pass();
    }
    let capture = Capture {
        logits: Positions::All,
        attn: Positions::All,
    };
    let out = model
        .forward(batch, &mut cache, Some(&adapter), &capture)
        .unwrap();
    let logits = out.logits.unwrap();
    let attn: Tensor<4> = Tensor::stack(out.attn, 0);
    let device = model.device();
    let weights = |dims: Vec<usize>, seed| {
        let n = dims.iter().product();
        Tensor::<1>::from_data(TensorData::new(uniform(n, seed, 1.0), [n]), device)
    };
    let loss = (logits.clone().flatten::<1>(0, 2) * weights(logits.dims().to_vec(), 1)).sum()
        + (attn.clone().flatten::<1>(0, 3) * weights(attn.dims().to_vec(), 2)).sum();
    let grads = loss.backward();
    let mut out_grads = Vec::new();
    for t in adapter.tensors() {
        let g = match t {
            ia2_model::adapter::AdapterTensor::D1(t) => t.grad(&grads).map(|g| values(g).0),
            ia2_model::adapter::AdapterTensor::D2(t) => t.grad(&grads).map(|g| values(g).0),
        };
        out_grads.push(g.expect("every adapter tensor gets a gradient"));
    }
    (values(logits), values(attn), out_grads)
}

#[test]
fn the_fused_path_is_taken_on_flex() {
    let d = device();
    let t = Tensor::<2>::zeros([2, 2], &d);
    assert!(ia2_model::fused::available(&t));
    assert!(ia2_model::fused::available(&t.clone().autodiff()));
    assert!(!ia2_model::fused::available(
        &t.cast(burn::tensor::DType::BF16)
    ));
}

#[test]
fn fused_and_composed_decoders_agree_in_values_and_gradients() {
    for name in MODELS {
        let Some((mut model, cases)) = load(name) else {
            return;
        };
        let seqs: Vec<Vec<u32>> = (0..2).map(|i| ids(&cases, i)).collect();
        let batch = Batch::left_padded(&seqs, 0);
        for (kind, adapter) in adapters(&model, &device()) {
            model.fused = true;
            let fused = run(&model, &adapter, &batch, false);
            model.fused = false;
            let composed = run(&model, &adapter, &batch, false);
            let what = format!("{name} {kind}");
            assert_close(&format!("{what} logits"), fused.0, composed.0, 1e-4);
            assert_close(&format!("{what} attention"), fused.1, composed.1, 1e-4);
            for (i, (g, h)) in fused.2.iter().zip(&composed.2).enumerate() {
                let err = rel_err(g, h);
                assert!(err < 1e-4, "{what} gradient of tensor {i}: rel err {err}");
            }
        }
    }
}

/// A one-pass cache (training) takes the rotary attention op that recomputes the normed, rotated queries
/// and keys in the backward pass (Qwen3), and stores no keys: the same values and gradients, bit for bit.
#[test]
fn a_one_pass_cache_gives_the_same_values_and_gradients_bit_for_bit() {
    for name in MODELS {
        let Some((mut model, cases)) = load(name) else {
            return;
        };
        let seqs: Vec<Vec<u32>> = (0..2).map(|i| ids(&cases, i)).collect();
        let batch = Batch::left_padded(&seqs, 0);
        for fused in [true, false] {
            model.fused = fused;
            for (kind, adapter) in adapters(&model, &device()) {
                let kept = run(&model, &adapter, &batch, false);
                let one_pass = run(&model, &adapter, &batch, true);
                let what = format!("{name} {kind} fused={fused}");
                assert_eq!(kept.0.0, one_pass.0.0, "{what}: logits");
                assert_eq!(kept.1.0, one_pass.1.0, "{what}: attention outputs");
                assert_eq!(kept.2, one_pass.2, "{what}: gradients");
            }
        }
    }
}

/// Outside autodiff (the op's plain forward; evaluation scores with a one-pass cache): the same logits
/// for every adapter kind on a left-padded batch; then a second pass is refused.
#[test]
fn a_one_pass_cache_gives_the_same_logits_and_refuses_a_second_pass() {
    for name in MODELS {
        let Some((model, cases)) = load(name) else {
            return;
        };
        let seqs: Vec<Vec<u32>> = (0..2).map(|i| ids(&cases, i)).collect();
        let batch = Batch::left_padded(&seqs, 0);
        let capture = Capture {
            logits: Positions::All,
            attn: Positions::All,
        };
        for (kind, adapter) in adapters(&model, &device()) {
            let mut kept = model.new_cache(2, Some(&adapter));
            let want = model
                .forward(&batch, &mut kept, Some(&adapter), &capture)
                .unwrap();
            let mut cache = model.new_cache(2, Some(&adapter)).one_pass();
            let got = model
                .forward(&batch, &mut cache, Some(&adapter), &capture)
                .unwrap();
            let what = format!("{name} {kind}");
            assert_eq!(
                values(got.logits.unwrap()),
                values(want.logits.unwrap()),
                "{what}"
            );
            for (g, w) in got.attn.into_iter().zip(want.attn) {
                assert_eq!(values(g), values(w), "{what}");
            }
        }
    }
    let Some((model, cases)) = load(MODELS[0]) else {
        return;
    };
    let mut cache = model.new_cache(1, None).one_pass();
    let capture = Capture {
        logits: Positions::Last,
        attn: Positions::None,
    };
    let batch = Batch::single(&ids(&cases, 0));
    model.forward(&batch, &mut cache, None, &capture).unwrap();
    let err = model
        .forward(&Batch::single(&[1]), &mut cache, None, &capture)
        .unwrap_err()
        .to_string();
    assert!(err.contains("one forward pass"), "{err}");
}

#[test]
fn fused_and_composed_decoding_agree_through_the_cache() {
    for name in MODELS {
        let Some((mut model, cases)) = load(name) else {
            return;
        };
        let seqs: Vec<Vec<u32>> = (0..2).map(|i| ids(&cases, i)).collect();
        let mut steps = Vec::new();
        for fused in [true, false] {
            model.fused = fused;
            let mut cache = model.new_cache(2, None);
            let capture = Capture {
                logits: Positions::Last,
                attn: Positions::Last,
            };
            let mut logits = Vec::new();
            let first = model
                .forward(&Batch::left_padded(&seqs, 0), &mut cache, None, &capture)
                .unwrap();
            logits.push(values(first.logits.unwrap()));
            for step in 0..3u32 {
                let next = Batch::left_padded(&[vec![step + 1], vec![step + 5]], 0);
                let out = model.forward(&next, &mut cache, None, &capture).unwrap();
                logits.push(values(out.logits.unwrap()));
            }
            steps.push(logits);
        }
        for (i, (f, c)) in steps[0].iter().zip(&steps[1]).enumerate() {
            assert_close(&format!("{name} step {i}"), f.clone(), c.clone(), 1e-4);
        }
    }
}

/// `fused::rotary_attention` against the fused ops it stands for (norm, rotation, transpose, attention), on
/// grouped heads with a causal mask: the same values and the same gradients of q, k and v, bit for bit;
/// with norm weights that want gradients (not frozen), those gradients too.
#[test]
fn rotary_attention_equals_the_ops_it_stands_for() {
    use burn::tensor::Bool;
    use ia2_model::fused;
    let d = device();
    let (b, s, heads, kv, hd) = (2, 5, 4, 2, 8);
    let t4 = |seed, n: usize, shape: [usize; 4]| {
        Tensor::<4>::from_data(TensorData::new(uniform(n, seed, 1.0), shape), &d).autodiff()
    };
    let t1 = |seed| {
        let w = uniform(hd, seed, 0.5)
            .into_iter()
            .map(|v| 1.0 + v)
            .collect();
        Tensor::<1>::from_data(TensorData::new(w, [hd]), &d).autodiff()
    };
    let t3 = |seed| {
        Tensor::<3>::from_data(
            TensorData::new(uniform(b * s * hd, seed, 1.0), [b, s, hd]),
            &d,
        )
    };
    let mask: Vec<bool> = (0..b)
        .flat_map(|_| (0..s).flat_map(move |i| (0..s).map(move |j| j > i)))
        .collect();
    let mask = Tensor::<3, Bool>::from_data(TensorData::new(mask, [b, s, s]), &d);
    let (cos, sin) = (t3(5), t3(6));
    for tracked_weights in [false, true] {
        let q = t4(1, b * s * heads * hd, [b, s, heads, hd]).require_grad();
        let k = t4(2, b * s * kv * hd, [b, s, kv, hd]).require_grad();
        let v = t4(3, b * kv * s * hd, [b, kv, s, hd]).require_grad();
        let (mut qw, mut kw) = (t1(7), t1(8));
        if tracked_weights {
            (qw, kw) = (qw.require_grad(), kw.require_grad());
        }
        let fused_out = fused::rotary_attention(
            q.clone(),
            k.clone(),
            v.clone(),
            (qw.clone(), kw.clone()),
            1e-6,
            cos.clone(),
            sin.clone(),
            mask.clone(),
            0.35,
        );
        let rotate = |x: Tensor<4>, w: Tensor<1>| {
            fused::rope(fused::rms_norm(x, w, 1e-6), cos.clone(), sin.clone()).swap_dims(1, 2)
        };
        let composed_out = fused::attention(
            rotate(q.clone(), qw.clone()),
            rotate(k.clone(), kw.clone()),
            v.clone(),
            mask.clone(),
            0.35,
        );
        let weights = Tensor::<1>::from_data(
            TensorData::new(uniform(b * heads * s * hd, 9, 1.0), [b * heads * s * hd]),
            &d,
        );
        let loss = |out: Tensor<4>| (out.flatten::<1>(0, 3) * weights.clone()).sum();
        let what = format!("tracked norm weights: {tracked_weights}");
        assert_eq!(
            values(fused_out.clone()),
            values(composed_out.clone()),
            "{what}"
        );
        let (gf, gc) = (loss(fused_out).backward(), loss(composed_out).backward());
        for (name, x) in [("q", &q), ("k", &k), ("v", &v)] {
            let (f, c) = (x.grad(&gf).unwrap(), x.grad(&gc).unwrap());
            assert_eq!(values(f.clone()), values(c), "{what}: d{name}");
            assert!(
                values(f).0.iter().any(|g| *g != 0.0),
                "{what}: d{name} is zero"
            );
        }
        for (name, w) in [("q_norm", &qw), ("k_norm", &kw)] {
            match (w.grad(&gf), w.grad(&gc)) {
                (Some(f), Some(c)) if tracked_weights => {
                    assert_eq!(values(f), values(c), "{what}: d{name}")
                }
                (None, None) if !tracked_weights => {}
                (f, c) => panic!(
                    "{what}: d{name} present in the op: {}, in the composition: {}",
                    f.is_some(),
                    c.is_some()
                ),
            }
        }
    }
}
