//! The objectives of training.md, on a left-padded batch of sequences in one forward pass.
//!
//! Student input = the no-ICL prompt (up to the decode position `dp`) followed by the response tokens; the
//! outputs at positions `dp .. dp + len − 1` are the ones that predict the response. The last response token is
//! not fed: nothing reads its outputs (the seed feeds it; causal attention makes the results identical).
//! Per sequence, as the seed computes it:
//! - CE: mean over the response of `−log p(token)`;
//! - KL (tokl): mean over steps of `Σ_v p_icl (log p_icl − log q)`, with top-k targets spreading the remaining
//!   mass uniformly over the other tokens;
//! - MSE (act): `num_layers · mean((A − A_icl)²)` over layers, positions and hidden units;
//! - tna: `(1 − w)·MSE + w·CE`.
//!
//! Rows of different lengths share one rectangular set of positions; the padding entries get weight 0.

use crate::method::Loss;
use crate::teacher::Distribution;
use anyhow::{Context, Result, anyhow, ensure};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use ia2_model::{Adapter, Batch, Capture, Decoder, Positions};

/// One sequence of a batch.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    /// Prompt tokens up to and including the decode position.
    pub query: &'a [u32],
    /// Response tokens (teacher response or ground truth): the CE targets.
    pub response: &'a [u32],
    /// `[layers, response.len(), hidden]` teacher attention outputs (MSE objectives).
    pub activations: Option<&'a [f32]>,
    /// Teacher distributions of the response steps (tokl).
    pub dist: Option<&'a Distribution>,
}

/// Loss values summed over the batch's sequences (each sequence's value as the seed computes it).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct LossSums {
    pub total: f64,
    pub ce: f64,
    pub mse: f64,
}

impl std::ops::AddAssign for LossSums {
    fn add_assign(&mut self, o: LossSums) {
        self.total += o.total;
        self.ce += o.ce;
        self.mse += o.mse;
    }
}

impl From<LossSums> for ia2_runs::TrainLoss {
    fn from(l: LossSums) -> Self {
        ia2_runs::TrainLoss {
            mse: l.mse,
            ce: l.ce,
            total: l.total,
        }
    }
}

impl LossSums {
    pub fn scaled(self, s: f64) -> LossSums {
        LossSums {
            total: self.total * s,
            ce: self.ce * s,
            mse: self.mse * s,
        }
    }
}

/// The error of [`batch_loss`] when the loss is NaN or infinite (the trainer reports it as divergence).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NonFiniteLoss(pub f64);

impl std::fmt::Display for NonFiniteLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the loss is {} (NaN or infinite)", self.0)
    }
}

impl std::error::Error for NonFiniteLoss {}

/// Forward pass over `items` and the summed loss: `(Σ_sequences loss, values)`. Differentiable when the
/// adapter's tensors require gradients.
pub fn batch_loss(
    decoder: &Decoder,
    adapter: &Adapter,
    items: &[Item<'_>],
    loss: Loss,
    ce_weight: f64,
    pad: u32,
) -> Result<(Tensor<1>, LossSums)> {
    ensure!(!items.is_empty(), "empty batch");
    let c = &decoder.config;
    let device = decoder.device().clone();
    let (layers, hidden, vocab) = (c.num_hidden_layers, c.hidden_size, c.vocab_size);
    let lens: Vec<usize> = items.iter().map(|it| it.response.len()).collect();
    ensure!(
        lens.iter().all(|&l| l > 0),
        "a sequence has an empty response"
    );
    let width = *lens.iter().max().unwrap_or(&1);
    let seqs: Vec<Vec<u32>> = items
        .iter()
        .map(|it| {
            let mut s = it.query.to_vec();
            s.extend_from_slice(&it.response[..it.response.len() - 1]);
            s
        })
        .collect();
    let batch = Batch::left_padded(&seqs, pad);
    let rows = items.len();
    // Positions predicting each response token; padding entries repeat the last real one (weight 0).
    let positions: Vec<Vec<usize>> = items
        .iter()
        .zip(&seqs)
        .zip(&lens)
        .map(|((it, s), &len)| {
            let start = (batch.seq - s.len()) + it.query.len() - 1;
            (0..width).map(|t| start + t.min(len - 1)).collect()
        })
        .collect();
    // w[r, t] = 1 / len_r on real entries.
    let weights: Vec<f32> = lens
        .iter()
        .flat_map(|&len| (0..width).map(move |t| if t < len { 1.0 / len as f32 } else { 0.0 }))
        .collect();
    let want_logits = matches!(loss, Loss::Ce | Loss::Kl | Loss::Mixed);
    let want_attn = loss.needs_activations();
    let capture = Capture {
        logits: if want_logits {
            Positions::At(positions.clone())
        } else {
            Positions::None
        },
        attn: if want_attn {
            Positions::At(positions)
        } else {
            Positions::None
        },
    };
    // One pass: the keys and values are not kept for another, and under autodiff the rotated queries
    // and keys are recomputed in the backward pass instead of held (`KvCache::one_pass`).
    let mut cache = decoder.new_cache(rows, Some(adapter)).one_pass();
    let out = decoder.forward(&batch, &mut cache, Some(adapter), &capture)?;
    let n = rows * width;
    let w = Tensor::<1>::from_data(TensorData::new(weights.clone(), [n]), &device);

    let mut ce = None;
    let mut kl_const = 0.0f64;
    if want_logits {
        let logits = out.logits.context("no logits returned")?;
        let logp = log_softmax(logits, 2).reshape([n * vocab]);
        ce = Some(match loss {
            Loss::Kl => {
                let (t, k) = kl_terms(&logp, items, &lens, width, vocab, &weights, &device)?;
                kl_const = k;
                t
            }
            _ => {
                let idx: Vec<i64> = items
                    .iter()
                    .enumerate()
                    .flat_map(|(r, it)| {
                        (0..width).map(move |t| {
                            let tok = it.response[t.min(it.response.len() - 1)];
                            ((r * width + t) * vocab + tok as usize) as i64
                        })
                    })
                    .collect();
                let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [n]), &device);
                (logp.select(0, idx) * w.clone()).sum().neg()
            }
        });
    }
    let mut mse = None;
    if want_attn {
        ensure!(out.attn.len() == layers, "attention outputs missing");
        let mut sq: Option<Tensor<3>> = None;
        for (l, a) in out.attn.into_iter().enumerate() {
            let mut target = vec![0.0f32; n * hidden];
            for (r, (it, &len)) in items.iter().zip(&lens).enumerate() {
                let acts = it
                    .activations
                    .context("activation targets missing for an MSE objective")?;
                ensure!(
                    acts.len() == layers * len * hidden,
                    "activation targets cover {} values, expected {layers}×{len}×{hidden} (the response and \
                     the teacher's activations must have the same length)",
                    acts.len()
                );
                let src = &acts[l * len * hidden..(l + 1) * len * hidden];
                let dst = r * width * hidden;
                target[dst..dst + len * hidden].copy_from_slice(src);
            }
            let y = Tensor::<3>::from_data(TensorData::new(target, [rows, width, hidden]), &device);
            let d = (a - y).square().sum_dim(2);
            sq = Some(match sq {
                Some(s) => s + d,
                None => d,
            });
        }
        let sq = sq.context("no layers")?.reshape([n]);
        mse = Some((sq * w.clone()).sum().div_scalar(hidden as f64));
    }

    let scalar = |t: &Tensor<1>| -> f64 { t.clone().into_scalar::<f32>() as f64 };
    let ce_v = ce.as_ref().map(scalar).map_or(0.0, |v| v + kl_const);
    let mse_v = mse.as_ref().map(scalar).unwrap_or(0.0);
    let (total, total_v) = match loss {
        Loss::Ce | Loss::Kl => (ce.context("no CE term")?, ce_v),
        Loss::Mse => (mse.context("no MSE term")?, mse_v),
        Loss::Mixed => (
            mse.context("no MSE term")?.mul_scalar(1.0 - ce_weight)
                + ce.context("no CE term")?.mul_scalar(ce_weight),
            (1.0 - ce_weight) * mse_v + ce_weight * ce_v,
        ),
    };
    if !total_v.is_finite() {
        return Err(NonFiniteLoss(total_v).into());
    }
    Ok((
        total,
        LossSums {
            total: total_v,
            ce: ce_v,
            mse: mse_v,
        },
    ))
}

/// `−Σ_rt w_rt Σ_v p log q` as a tensor, and the constant `Σ_rt w_rt Σ_v p log p` (computed here in f64).
fn kl_terms(
    logp: &Tensor<1>,
    items: &[Item<'_>],
    lens: &[usize],
    width: usize,
    vocab: usize,
    weights: &[f32],
    device: &burn::tensor::Device,
) -> Result<(Tensor<1>, f64)> {
    let n = items.len() * width;
    let mut constant = 0.0f64;
    let dist0 = items[0]
        .dist
        .context("tokl needs the teacher's distributions")?;
    match dist0 {
        Distribution::Full(_) => {
            let mut p = vec![0.0f32; n * vocab];
            for (r, (it, &len)) in items.iter().zip(lens).enumerate() {
                let Some(Distribution::Full(logits)) = it.dist else {
                    return Err(anyhow!("mixed distribution kinds in one batch"));
                };
                ensure!(
                    logits.len() == len * vocab,
                    "teacher logits do not cover the response"
                );
                for t in 0..len {
                    let row = &logits[t * vocab..(t + 1) * vocab];
                    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
                    let z: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
                    let wt = weights[r * width + t] as f64;
                    let dst = &mut p[(r * width + t) * vocab..(r * width + t + 1) * vocab];
                    for (d, &x) in dst.iter_mut().zip(row) {
                        let q = (x as f64 - max).exp() / z;
                        if q > 0.0 {
                            constant += wt * q * q.ln();
                        }
                        *d = (wt * q) as f32;
                    }
                }
            }
            let p = Tensor::<1>::from_data(TensorData::new(p, [n * vocab]), device);
            Ok(((logp.clone() * p).sum().neg(), constant))
        }
        Distribution::TopK { k, .. } => {
            let k = *k;
            // Σ_v p log q = u Σ_v log q + Σ_topk (p_k − u) log q_k.
            let mut u_w = vec![0.0f32; n];
            let mut idx = vec![0i64; n * k];
            let mut coef = vec![0.0f32; n * k];
            for (r, (it, &len)) in items.iter().zip(lens).enumerate() {
                let Some(Distribution::TopK {
                    indices,
                    probs,
                    k: k2,
                }) = it.dist
                else {
                    return Err(anyhow!("mixed distribution kinds in one batch"));
                };
                ensure!(
                    *k2 == k && probs.len() == len * k,
                    "teacher top-k does not cover the response"
                );
                for t in 0..width {
                    let pos = r * width + t;
                    for j in 0..k {
                        idx[pos * k + j] = (pos * vocab) as i64;
                    }
                    if t >= len {
                        continue;
                    }
                    let wt = weights[pos] as f64;
                    let top = &probs[t * k..(t + 1) * k];
                    let sum_top: f64 = top.iter().map(|&x| x as f64).sum();
                    let u = (1.0 - sum_top).max(0.0) / (vocab - k).max(1) as f64;
                    u_w[pos] = (wt * u) as f32;
                    for j in 0..k {
                        let pk = top[j] as f64;
                        idx[pos * k + j] = (pos * vocab + indices[t * k + j] as usize) as i64;
                        coef[pos * k + j] = (wt * (pk - u)) as f32;
                        if pk > 0.0 {
                            constant += wt * pk * pk.ln();
                        }
                    }
                    if u > 0.0 {
                        constant += wt * (vocab - k) as f64 * u * u.ln();
                    }
                }
            }
            let row_sums = logp.clone().reshape([n, vocab]).sum_dim(1).reshape([n]);
            let u_w = Tensor::<1>::from_data(TensorData::new(u_w, [n]), device);
            let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [n * k]), device);
            let coef = Tensor::<1>::from_data(TensorData::new(coef, [n * k]), device);
            let cross = (row_sums * u_w).sum() + (logp.clone().select(0, idx) * coef).sum();
            Ok((cross.neg(), constant))
        }
    }
}
