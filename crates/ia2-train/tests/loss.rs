//! The objectives against direct computations from the decoder's outputs, padded batches against single
//! sequences (values and gradients), and finite differences of every loss through every adapter kind.

use burn::tensor::{Tensor, TensorData};
use ia2_model::adapter::{AdapterTensor, AdapterTensorMut};
use ia2_model::{Adapter, Batch, Capture, Decoder, Positions};
use ia2_rng::Generator;
use ia2_testkit::device;
use ia2_train::loss::{Item, batch_loss};
use ia2_train::method::Loss;
use ia2_train::teacher::{Distribution, top_k_probs};

struct Case {
    query: Vec<u32>,
    response: Vec<u32>,
    activations: Vec<f32>,
    full: Distribution,
    topk: Distribution,
}

fn uniform(g: &mut Generator, n: usize, scale: f64) -> Vec<f32> {
    (0..n)
        .map(|_| ((g.random() * 2.0 - 1.0) * scale) as f32)
        .collect()
}

/// Three sequences of different prompt and response lengths with random teacher targets.
fn cases(decoder: &Decoder) -> Vec<Case> {
    let c = &decoder.config;
    let mut g = Generator::new(7);
    [(5usize, 1usize), (9, 3), (3, 2)]
        .iter()
        .map(|&(q, r)| {
            let mut ids = |n: usize| -> Vec<u32> {
                (0..n)
                    .map(|_| (g.random() * (c.vocab_size - 1) as f64) as u32)
                    .collect()
            };
            let (query, response) = (ids(q), ids(r));
            let activations = uniform(&mut g, c.num_hidden_layers * r * c.hidden_size, 0.5);
            let logits = uniform(&mut g, r * c.vocab_size, 3.0);
            let (mut indices, mut probs) = (Vec::new(), Vec::new());
            for t in 0..r {
                let (i, p) = top_k_probs(&logits[t * c.vocab_size..(t + 1) * c.vocab_size], 7);
                indices.extend(i);
                probs.extend(p);
            }
            Case {
                query,
                response,
                activations,
                full: Distribution::Full(logits),
                topk: Distribution::TopK {
                    indices,
                    probs,
                    k: 7,
                },
            }
        })
        .collect()
}

fn items(cases: &[Case], topk: bool) -> Vec<Item<'_>> {
    cases
        .iter()
        .map(|c| Item {
            query: &c.query,
            response: &c.response,
            activations: Some(&c.activations),
            dist: Some(if topk { &c.topk } else { &c.full }),
        })
        .collect()
}

fn fixture(name: &str, kind: &str) -> Option<(Decoder, Adapter)> {
    let root = ia2_testkit::fixture(name)?;
    let decoder =
        ia2_model::load_decoder(&root.join("model"), burn::tensor::DType::F32, &device()).unwrap();
    let (adapter, _) =
        ia2_adapters::load_peft(root.join("adapters").join(kind), &decoder.config, &device())
            .unwrap();
    Some((decoder, adapter))
}

fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let z: f64 = row
        .iter()
        .map(|&x| (x as f64 - max).exp())
        .sum::<f64>()
        .ln();
    row.iter().map(|&x| x as f64 - max - z).collect()
}

/// Per-sequence losses computed directly from a plain forward pass of one sequence, as the seed does.
fn reference(decoder: &Decoder, adapter: &Adapter, case: &Case, topk: bool) -> (f64, f64, f64) {
    let c = &decoder.config;
    let (v, h, l) = (c.vocab_size, c.hidden_size, c.num_hidden_layers);
    let mut ids = case.query.clone();
    ids.extend_from_slice(&case.response);
    let n = case.response.len();
    let pos: Vec<usize> = (case.query.len() - 1..case.query.len() - 1 + n).collect();
    let mut cache = decoder.new_cache(1, Some(adapter));
    let out = decoder
        .forward(
            &Batch::single(&ids),
            &mut cache,
            Some(adapter),
            &Capture {
                logits: Positions::At(vec![pos.clone()]),
                attn: Positions::At(vec![pos]),
            },
        )
        .unwrap();
    let logits = ia2_testkit::values(out.logits.unwrap()).0;
    let (mut ce, mut kl) = (0.0, 0.0);
    for t in 0..n {
        let lq = log_softmax(&logits[t * v..(t + 1) * v]);
        ce -= lq[case.response[t] as usize];
        // The dense target exactly as the seed builds it.
        let target: Vec<f64> = match (&case.full, &case.topk, topk) {
            (Distribution::Full(tl), _, false) => log_softmax(&tl[t * v..(t + 1) * v])
                .iter()
                .map(|x| x.exp())
                .collect(),
            (_, Distribution::TopK { indices, probs, k }, true) => {
                let top = &probs[t * k..(t + 1) * k];
                let rest = (1.0 - top.iter().map(|&p| p as f64).sum::<f64>()).max(0.0);
                let mut d = vec![rest / (v - k) as f64; v];
                for j in 0..*k {
                    d[indices[t * k + j] as usize] = top[j] as f64;
                }
                d
            }
            _ => unreachable!(),
        };
        kl += target
            .iter()
            .zip(&lq)
            .filter(|(p, _)| **p > 0.0)
            .map(|(p, q)| p * (p.ln() - q))
            .sum::<f64>();
    }
    let mut sq = 0.0;
    for (li, a) in out.attn.iter().enumerate() {
        let a = ia2_testkit::values(a.clone()).0;
        for t in 0..n {
            for j in 0..h {
                let y = case.activations[(li * n + t) * h + j] as f64;
                sq += (a[t * h + j] as f64 - y).powi(2);
            }
        }
    }
    let _ = l;
    (ce / n as f64, kl / n as f64, sq / (n * h) as f64)
}

#[test]
fn losses_equal_direct_computation_and_batches_equal_single_sequences() {
    for name in ia2_testkit::MODELS {
        for kind in ["lora", "prompt", "prefix", "ia3"] {
            let Some((decoder, adapter)) = fixture(name, kind) else {
                return;
            };
            let cases = cases(&decoder);
            for (loss, topk) in [
                (Loss::Ce, false),
                (Loss::Kl, false),
                (Loss::Kl, true),
                (Loss::Mse, false),
                (Loss::Mixed, false),
            ] {
                let what = format!("{name} {kind} {loss:?} topk={topk}");
                let its = items(&cases, topk);
                let w = 0.3;
                let (_, batched) = batch_loss(&decoder, &adapter, &its, loss, w, 0).unwrap();
                let mut want = 0.0;
                for (case, it) in cases.iter().zip(&its) {
                    let (_, single) =
                        batch_loss(&decoder, &adapter, std::slice::from_ref(it), loss, w, 0)
                            .unwrap();
                    let (ce, kl, mse) = reference(&decoder, &adapter, case, topk);
                    let direct = match loss {
                        Loss::Ce => ce,
                        Loss::Kl => kl,
                        Loss::Mse => mse,
                        Loss::Mixed => (1.0 - w) * mse + w * ce,
                    };
                    assert!(
                        (single.total - direct).abs() <= 1e-4 * direct.abs().max(1.0),
                        "{what}: loss {} vs direct {direct}",
                        single.total
                    );
                    want += direct;
                }
                assert!(
                    (batched.total - want).abs() <= 1e-4 * want.abs().max(1.0),
                    "{what}: padded batch {} vs sum of sequences {want}",
                    batched.total
                );
            }
        }
    }
}

fn grads(decoder: &Decoder, adapter: &Adapter, items: &[Item<'_>], loss: Loss) -> Vec<f32> {
    let mut a = adapter.clone();
    a.require_grad();
    let mut flat = Vec::new();
    let (l, _) = batch_loss(decoder, &a, items, loss, 0.3, 0).unwrap();
    let g = l.backward();
    for t in a.tensors() {
        let v = match t {
            AdapterTensor::D1(t) => t.grad(&g).map(ia2_testkit::values),
            AdapterTensor::D2(t) => t.grad(&g).map(ia2_testkit::values),
        };
        flat.extend(v.expect("every adapter tensor has a gradient").0);
    }
    flat
}

fn perturbed(adapter: &Adapter, dir: &[Vec<f32>], eps: f64) -> Adapter {
    let mut a = adapter.clone();
    for (t, d) in a.tensors_mut().into_iter().zip(dir) {
        match t {
            AdapterTensorMut::D1(t) => {
                let dims = t.dims();
                *t = t.clone()
                    + Tensor::from_data(TensorData::new(d.clone(), dims), &device()).mul_scalar(eps)
            }
            AdapterTensorMut::D2(t) => {
                let dims = t.dims();
                *t = t.clone()
                    + Tensor::from_data(TensorData::new(d.clone(), dims), &device()).mul_scalar(eps)
            }
        }
    }
    a
}

#[test]
fn gradients_match_finite_differences_and_padding() {
    for kind in ["lora", "ia3", "prompt", "prefix"] {
        let Some((decoder, adapter)) = fixture("qwen3-tiny", kind) else {
            return;
        };
        let cases = cases(&decoder);
        let mut g = Generator::new(11);
        let dir: Vec<Vec<f32>> = adapter
            .tensors()
            .iter()
            .map(|t| {
                let n = match t {
                    AdapterTensor::D1(t) => t.dims().iter().product(),
                    AdapterTensor::D2(t) => t.dims().iter().product::<usize>(),
                };
                uniform(&mut g, n, 1.0)
            })
            .collect();
        let flat_dir: Vec<f32> = dir.concat();
        for (loss, topk) in [
            (Loss::Ce, false),
            (Loss::Kl, true),
            (Loss::Mse, false),
            (Loss::Mixed, false),
        ] {
            let what = format!("{kind} {loss:?}");
            let its = items(&cases, topk);
            let g_batch = grads(&decoder, &adapter, &its, loss);
            // Padding invariance of the gradient: the batch's gradient is the sum of the sequences'.
            let mut g_sum = vec![0.0f32; g_batch.len()];
            for it in &its {
                for (s, x) in
                    g_sum
                        .iter_mut()
                        .zip(grads(&decoder, &adapter, std::slice::from_ref(it), loss))
                {
                    *s += x;
                }
            }
            let rel = ia2_testkit::rel_err(&g_batch, &g_sum);
            assert!(
                rel < 1e-3,
                "{what}: batched vs summed gradients rel. err {rel}"
            );
            // Directional derivative against a central difference.
            let analytic: f64 = g_batch
                .iter()
                .zip(&flat_dir)
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum();
            let eps = 1e-3;
            let value = |a: &Adapter| batch_loss(&decoder, a, &its, loss, 0.3, 0).unwrap().1.total;
            let numeric = (value(&perturbed(&adapter, &dir, eps))
                - value(&perturbed(&adapter, &dir, -eps)))
                / (2.0 * eps);
            let err = (analytic - numeric).abs() / analytic.abs().max(1e-3);
            assert!(
                err < 2e-2,
                "{what}: analytic {analytic} vs numeric {numeric} (rel {err})"
            );
        }
    }
}
