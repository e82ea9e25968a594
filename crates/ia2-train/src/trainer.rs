//! The training loop: seeded shuffling, gradient accumulation over `batch_size` examples, optional global-norm
//! clipping, Adam, dev loss every `dev_eval_steps` steps and at the end of every epoch, early stopping with
//! patience, and the best state restored at the end.
//!
//! A run that diverges fails ([`Diverged`]), so nothing of it is written as finished. Diverged means, checked
//! as training goes:
//! - **non-finite**: a train or dev loss, or any adapter parameter, is NaN or infinite (checked every step);
//! - **explosion**: the state that is kept (the best dev state, or without a dev set the last one) has a dev
//!   loss (without a dev set: a last-epoch mean train loss) above [`EXPLOSION_FACTOR`] × its initial value
//!   (measured once on the starting adapter, before the first step; initial values below
//!   [`EXPLOSION_FLOOR`] count as that floor, so a loss that starts near 0 is not flagged for tiny absolute
//!   changes). A transient spike that early stopping and the best-state restore leave behind is not a
//!   failure;
//! - **collapse**: the logits of the first training example's decode position have a spread (max − min over
//!   the vocabulary) below [`COLLAPSE_SPREAD`]: the model predicts the uniform distribution whatever the
//!   input, its CE is ln V. This is what an absurd learning rate leaves (hidden states overflow and the final
//!   RMSNorm returns zeros) while the loss stays finite; or two different prompts give the same logits.
//!   Judged, like explosion, on the state that is kept (one forward pass of the two probes per run).
//!
//! Differences from the seed, on purpose: a last partial batch of an epoch takes its own optimizer step (the
//! seed silently carried its gradients into the next epoch's first step), the best dev state is restored
//! also when training runs out of epochs (the seed restored it only on early stopping), and the shuffling is
//! seeded.

// One line of metrics.jsonl: the contract's own type, written here and read by `ia2 report`.
use crate::loss::{Item, LossSums, batch_loss};
use crate::method::Loss;
use anyhow::Result;
use ia2_model::optim::{Adam, AdamConfig, GradAccumulator};
use ia2_model::{Adapter, Decoder};
use ia2_rng::RandomState;
use ia2_runs::MetricsRecord;
use std::time::Instant;

/// A loss this many times its initial value (after the warm-up) is an explosion.
pub const EXPLOSION_FACTOR: f64 = 10.0;
/// Initial losses below this count as this value when testing for an explosion.
pub const EXPLOSION_FLOOR: f64 = 0.01;
/// Logits whose spread over the vocabulary is below this are constant: the model has collapsed.
pub const COLLAPSE_SPREAD: f32 = 1e-4;
/// Two different inputs whose (mean-centred) logits differ by at most this fraction of their magnitude give
/// the same prediction: the model's output no longer depends on its input.
pub const INPUT_INDEPENDENCE: f64 = 1e-5;

/// Why a run was stopped as diverged (see the module documentation for the precise criteria).
#[derive(Debug, Clone, PartialEq)]
pub enum Criterion {
    /// The train or dev loss is NaN or infinite.
    NonFiniteLoss { which: &'static str, value: f64 },
    /// An adapter parameter is NaN or infinite.
    NonFiniteParameters,
    /// A loss above `EXPLOSION_FACTOR` × its initial value.
    Explosion {
        which: &'static str,
        value: f64,
        initial: f64,
    },
    /// Constant logits (spread below `COLLAPSE_SPREAD`).
    Collapse { spread: f32, ln_vocab: f64 },
    /// Two different inputs give the same logits (within `INPUT_INDEPENDENCE`).
    InputIndependent { difference: f64, scale: f64 },
}

impl std::fmt::Display for Criterion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Criterion::NonFiniteLoss { which, value } => {
                write!(
                    f,
                    "non-finite loss: the {which} loss is {value} (NaN or infinite)"
                )
            }
            Criterion::NonFiniteParameters => {
                write!(
                    f,
                    "non-finite parameters: an adapter parameter is NaN or infinite"
                )
            }
            Criterion::Explosion {
                which,
                value,
                initial,
            } => write!(
                f,
                "loss explosion: the {which} loss {value:.6} is above {EXPLOSION_FACTOR}× its initial value \
                 {initial:.6}"
            ),
            Criterion::Collapse { spread, ln_vocab } => write!(
                f,
                "collapse: the logits are constant (spread {spread:e} < {COLLAPSE_SPREAD:e} over the \
                 vocabulary; the model predicts the uniform distribution, CE = ln V = {ln_vocab:.4})"
            ),
            Criterion::InputIndependent { difference, scale } => write!(
                f,
                "collapse: the output no longer depends on the input (two different prompts give logits \
                 that differ by {difference:e}, at most {INPUT_INDEPENDENCE:e} × their magnitude {scale:.3e})"
            ),
        }
    }
}

/// The error of a diverged run: the step (0 = the starting adapter, before any update), its epoch, and the
/// criterion met. Callers add the run's name as context.
#[derive(Debug, Clone, PartialEq)]
pub struct Diverged {
    pub step: usize,
    pub epoch: usize,
    pub criterion: Criterion,
}

impl std::fmt::Display for Diverged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "training diverged at step {} (epoch {}): {}; the run is failed and nothing is kept as finished \
             (try a smaller --lr or --gradient-clip-val)",
            self.step, self.epoch, self.criterion
        )
    }
}

impl std::error::Error for Diverged {}

fn diverged(step: usize, epoch: usize, criterion: Criterion) -> anyhow::Error {
    anyhow::Error::new(Diverged {
        step,
        epoch,
        criterion,
    })
}

/// `batch_loss`, with a non-finite loss reported as divergence at `step`.
fn checked_loss<'a>(
    decoder: &Decoder,
    adapter: &Adapter,
    items: &[Item<'a>],
    cfg: &LoopConfig,
    which: &'static str,
    (step, epoch): (usize, usize),
) -> Result<(burn::tensor::Tensor<1>, LossSums)> {
    batch_loss(decoder, adapter, items, cfg.loss, cfg.ce_weight, cfg.pad).map_err(|e| {
        match e.downcast_ref::<crate::loss::NonFiniteLoss>() {
            Some(n) => diverged(step, epoch, Criterion::NonFiniteLoss { which, value: n.0 }),
            None => e,
        }
    })
}

/// The logits at the decode position of each query (no gradients), in one left-padded forward pass.
fn decode_logits(
    decoder: &Decoder,
    adapter: &Adapter,
    queries: &[&[u32]],
    pad: u32,
) -> Result<Vec<Vec<f32>>> {
    use ia2_model::{Batch, Capture, Positions};
    let mut frozen = adapter.clone();
    frozen.without_autodiff();
    let seqs: Vec<Vec<u32>> = queries.iter().map(|q| q.to_vec()).collect();
    let batch = Batch::left_padded(&seqs, pad);
    let mut cache = decoder.new_cache(seqs.len(), Some(&frozen));
    let capture = Capture {
        logits: Positions::Last,
        ..Capture::default()
    };
    let out = decoder.forward(&batch, &mut cache, Some(&frozen), &capture)?;
    let values = out
        .logits
        .ok_or_else(|| anyhow::anyhow!("no logits returned"))?
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("logits: {e:?}"))?;
    let vocab = decoder.config.vocab_size;
    Ok(values.chunks(vocab).map(<[f32]>::to_vec).collect())
}

/// The queries the collapse test looks at: the first training example's and the first one that differs
/// from it (when there is one).
fn probes<'a>(train: &[Item<'a>]) -> Vec<&'a [u32]> {
    let first = train[0].query;
    let mut out = vec![first];
    if let Some(other) = train.iter().map(|it| it.query).find(|q| *q != first) {
        out.push(other);
    }
    out
}

/// Fails with [`Criterion::Collapse`] when the model's logits are constant over the vocabulary, or no
/// longer depend on the input (two different queries give the same logits).
fn check_collapse(
    decoder: &Decoder,
    adapter: &Adapter,
    probes: &[&[u32]],
    pad: u32,
    (step, epoch): (usize, usize),
) -> Result<()> {
    let logits = decode_logits(decoder, adapter, probes, pad)?;
    let (lo, hi) = logits[0]
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        });
    let spread = hi - lo;
    let ln_vocab = (decoder.config.vocab_size as f64).ln();
    // A NaN spread comes from NaN logits, which the loss reports as non-finite.
    if spread < COLLAPSE_SPREAD {
        return Err(diverged(
            step,
            epoch,
            Criterion::Collapse { spread, ln_vocab },
        ));
    }
    if let Some(other) = logits.get(1) {
        // Compared after removing each row's mean (a constant shift does not change the distribution).
        let centred = |l: &[f32]| -> Vec<f64> {
            let m = l.iter().map(|&x| x as f64).sum::<f64>() / l.len() as f64;
            l.iter().map(|&x| x as f64 - m).collect()
        };
        let (a, b) = (centred(&logits[0]), centred(other));
        let diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        let scale = a.iter().map(|x| x.abs()).fold(0.0, f64::max).max(1.0);
        tracing::debug!(step, spread, diff, scale, "collapse probe");
        if diff <= INPUT_INDEPENDENCE * scale {
            return Err(diverged(
                step,
                epoch,
                Criterion::InputIndependent {
                    difference: diff,
                    scale,
                },
            ));
        }
    }
    Ok(())
}

fn parameters_finite(adapter: &Adapter) -> bool {
    use ia2_model::adapter::AdapterTensor;
    adapter.tensors().iter().all(|t| {
        let bad = match t {
            AdapterTensor::D1(t) => (*t).clone().is_finite().bool_not().any(),
            AdapterTensor::D2(t) => (*t).clone().is_finite().bool_not().any(),
        };
        !bad.into_scalar::<bool>()
    })
}

/// Fails with [`Criterion::Explosion`] when `value` is above the factor times `initial` (floored).
fn check_explosion(
    which: &'static str,
    value: f64,
    initial: f64,
    (step, epoch): (usize, usize),
) -> Result<()> {
    if value > EXPLOSION_FACTOR * initial.max(EXPLOSION_FLOOR) {
        return Err(diverged(
            step,
            epoch,
            Criterion::Explosion {
                which,
                value,
                initial,
            },
        ));
    }
    Ok(())
}

/// Hyper-parameters of the loop.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    pub loss: Loss,
    pub ce_weight: f64,
    pub epochs: usize,
    pub batch_size: usize,
    /// Rows per forward pass (0: the whole step).
    pub micro_batch: usize,
    pub lr: f64,
    pub gradient_clip: Option<f64>,
    pub patience: usize,
    pub dev_eval_steps: usize,
    pub seed: u64,
    pub pad: u32,
}

/// How training ended.
#[derive(Debug, Clone)]
pub struct LoopOutcome {
    pub best_dev: Option<LossSums>,
    pub best_step: Option<usize>,
    /// Mean losses over the examples of the last epoch.
    pub last_epoch_train: LossSums,
    pub final_epoch: usize,
    pub total_steps: usize,
    pub early_stopped: bool,
}

/// Mean loss over `items` without gradients.
pub fn eval_loss(
    decoder: &Decoder,
    adapter: &Adapter,
    items: &[Item<'_>],
    cfg: &LoopConfig,
) -> Result<LossSums> {
    let mut frozen = adapter.clone();
    frozen.without_autodiff();
    let mb = if cfg.micro_batch == 0 {
        cfg.batch_size
    } else {
        cfg.micro_batch
    };
    let mut sums = LossSums::default();
    for chunk in items.chunks(mb.max(1)) {
        let (_, s) = batch_loss(decoder, &frozen, chunk, cfg.loss, cfg.ce_weight, cfg.pad)?;
        sums += s;
    }
    Ok(sums.scaled(1.0 / items.len().max(1) as f64))
}

/// [`eval_loss`] with a non-finite loss reported as divergence at `at`.
fn checked_eval_loss(
    decoder: &Decoder,
    adapter: &Adapter,
    items: &[Item<'_>],
    cfg: &LoopConfig,
    which: &'static str,
    at: (usize, usize),
) -> Result<LossSums> {
    eval_loss(decoder, adapter, items, cfg).map_err(|e| {
        match e.downcast_ref::<crate::loss::NonFiniteLoss>() {
            Some(n) => diverged(at.0, at.1, Criterion::NonFiniteLoss { which, value: n.0 }),
            None => e,
        }
    })
}

fn weight_norm(adapter: &Adapter) -> f64 {
    use ia2_model::adapter::AdapterTensor;
    adapter
        .tensors()
        .iter()
        .map(|t| match t {
            AdapterTensor::D1(t) => (*t).clone().square().sum().into_scalar::<f32>() as f64,
            AdapterTensor::D2(t) => (*t).clone().square().sum().into_scalar::<f32>() as f64,
        })
        .sum::<f64>()
        .sqrt()
}

/// Trains `adapter` in place; `on_step` sees every optimizer step (metrics, checkpoints, progress). Fails
/// with [`Diverged`] (downcast the error) when the run diverges.
pub fn train(
    decoder: &Decoder,
    adapter: &mut Adapter,
    train: &[Item<'_>],
    dev: &[Item<'_>],
    cfg: &LoopConfig,
    mut on_step: impl FnMut(&MetricsRecord, &Adapter) -> Result<()>,
) -> Result<LoopOutcome> {
    anyhow::ensure!(!train.is_empty(), "no training examples");
    adapter.require_grad();
    let mut adam = Adam::new(AdamConfig::with_lr(cfg.lr));
    let mut rng = RandomState::new(cfg.seed as u32);
    let per_step = cfg.batch_size.min(train.len());
    let micro = if cfg.micro_batch == 0 {
        per_step
    } else {
        cfg.micro_batch
    };
    let start = Instant::now();
    // The starting adapter's losses: the references of the explosion test (and a NaN base model or
    // adapter stops here, before any step).
    let probes = probes(train);
    ensure_finite_parameters(adapter, (0, 0))?;
    // The explosion test's reference (see its end): the starting adapter's dev loss, or without a dev set
    // its train loss (the kept state is then the last one, judged by its last epoch's train loss).
    let initial = if dev.is_empty() {
        checked_eval_loss(decoder, adapter, train, cfg, "initial train", (0, 0))?.total
    } else {
        checked_eval_loss(decoder, adapter, dev, cfg, "initial dev", (0, 0))?.total
    };
    let (mut step, mut bad_evals) = (0usize, 0usize);
    let mut best: Option<(LossSums, usize, Adapter)> = None;
    let mut outcome = LoopOutcome {
        best_dev: None,
        best_step: None,
        last_epoch_train: LossSums::default(),
        final_epoch: 0,
        total_steps: 0,
        early_stopped: false,
    };
    'epochs: for epoch in 0..cfg.epochs {
        outcome.final_epoch = epoch;
        let mut order: Vec<usize> = (0..train.len()).collect();
        rng.shuffle(&mut order);
        let mut epoch_sums = LossSums::default();
        let mut seen = 0;
        let chunks: Vec<&[usize]> = order.chunks(per_step).collect();
        for (ci, chunk) in chunks.iter().enumerate() {
            let mut accum = GradAccumulator::new();
            let scale = 1.0 / chunk.len() as f64;
            let mut sums = LossSums::default();
            for mb in chunk.chunks(micro.max(1)) {
                let items: Vec<Item<'_>> = mb.iter().map(|&i| train[i]).collect();
                let (loss, s) =
                    checked_loss(decoder, adapter, &items, cfg, "train", (step + 1, epoch))?;
                let mut grads = loss.mul_scalar(scale).backward();
                // Errors when a trainable tensor got no gradient.
                accum.add(&adapter.tensors(), &mut grads, 1.0)?;
                sums += s;
            }
            let grad_norm = match cfg.gradient_clip {
                Some(c) => accum.clip(c)?,
                None => accum.global_norm()?,
            };
            adam.step(adapter.tensors_mut(), &mut accum)?;
            step += 1;
            epoch_sums += sums;
            seen += chunk.len();
            let at = (step, epoch);
            ensure_finite_parameters(adapter, at)?;
            let end_of_epoch = ci + 1 == chunks.len();
            let dev_loss = if !dev.is_empty() && (step % cfg.dev_eval_steps == 0 || end_of_epoch) {
                Some(checked_eval_loss(decoder, adapter, dev, cfg, "dev", at)?)
            } else {
                None
            };
            let record = MetricsRecord {
                step,
                epoch,
                train: sums.scaled(scale).into(),
                dev: dev_loss.map(Into::into),
                grad_norm,
                weight_norm: weight_norm(adapter),
                lr: cfg.lr,
                examples: chunk.len(),
                seconds: start.elapsed().as_secs_f64(),
            };
            on_step(&record, adapter)?;
            outcome.total_steps = step;
            if let Some(d) = dev_loss {
                if best.as_ref().is_none_or(|b| d.total < b.0.total) {
                    let mut snapshot = adapter.clone();
                    snapshot.without_autodiff();
                    best = Some((d, step, snapshot));
                    bad_evals = 0;
                } else {
                    bad_evals += 1;
                    if bad_evals >= cfg.patience {
                        outcome.early_stopped = true;
                        outcome.last_epoch_train = epoch_sums.scaled(1.0 / seen as f64);
                        break 'epochs;
                    }
                }
            }
        }
        outcome.last_epoch_train = epoch_sums.scaled(1.0 / seen.max(1) as f64);
    }
    if let Some((d, s, snapshot)) = best {
        *adapter = snapshot;
        outcome.best_dev = Some(d);
        outcome.best_step = Some(s);
    }
    adapter.without_autodiff();
    // The state that is kept: the restored best state, else the last one.
    let at = (outcome.best_step.unwrap_or(step), outcome.final_epoch);
    ensure_finite_parameters(adapter, at)?;
    // Collapse is judged on the kept state, like explosion below: a state that collapsed on the way but was
    // not kept (early stopping and the best-state restore leave it behind) is no failure, and a kept state
    // is tested whatever path led to it (one forward pass of the probes per run).
    check_collapse(decoder, adapter, &probes, cfg.pad, at)?;
    // Explosion is judged on the kept state: a transient spike that early stopping and the best-state
    // restore leave behind is not a failure (the demo's a2t runs spike and recover); a kept state whose
    // every dev evaluation was far worse than the start is.
    match outcome.best_dev {
        // A best dev state exists exactly when there is a dev set and a step was taken.
        Some(d) => check_explosion("best dev", d.total, initial, at)?,
        None if outcome.total_steps > 0 => check_explosion(
            "last epoch's mean train",
            outcome.last_epoch_train.total,
            initial,
            at,
        )?,
        None => {}
    }
    Ok(outcome)
}

fn ensure_finite_parameters(adapter: &Adapter, (step, epoch): (usize, usize)) -> Result<()> {
    if parameters_finite(adapter) {
        Ok(())
    } else {
        Err(diverged(step, epoch, Criterion::NonFiniteParameters))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explosion_is_above_the_factor_times_the_floored_initial_value() {
        assert!(check_explosion("dev", 9.9, 1.0, (5, 1)).is_ok());
        let e = check_explosion("dev", 10.1, 1.0, (5, 1)).unwrap_err();
        let d = e.downcast_ref::<Diverged>().unwrap();
        assert_eq!((d.step, d.epoch), (5, 1));
        assert!(matches!(d.criterion, Criterion::Explosion { .. }));
        let msg = e.to_string();
        assert!(
            msg.contains("step 5") && msg.contains("loss explosion") && msg.contains("dev"),
            "{msg}"
        );
        // A loss starting near 0 is compared with the floor, not with 10 × 1e-6.
        assert!(check_explosion("train", 0.05, 1e-6, (3, 2)).is_ok());
        assert!(check_explosion("train", 0.11, 1e-6, (3, 2)).is_err());
        // NaN never passes as "not above": it is caught as non-finite before, but must not panic here.
        assert!(check_explosion("train", f64::NAN, 1.0, (3, 2)).is_ok());
    }

    #[test]
    fn criteria_read_well() {
        let d = Diverged {
            step: 7,
            epoch: 2,
            criterion: Criterion::Collapse {
                spread: 0.0,
                ln_vocab: 5.5,
            },
        };
        let msg = d.to_string();
        assert!(
            msg.contains("step 7 (epoch 2)")
                && msg.contains("collapse")
                && msg.contains("constant"),
            "{msg}"
        );
        let n = Criterion::NonFiniteLoss {
            which: "train",
            value: f64::NAN,
        };
        assert!(n.to_string().contains("non-finite loss"));
    }
}
