//! The training loop: seeded shuffling, gradient accumulation over `batch_size` examples, optional global-norm
//! clipping, Adam, dev loss every `dev_eval_steps` steps and at the end of every epoch, early stopping with
//! patience, and the best state restored at the end.
//!
//! Differences from the seed, on purpose: a last partial batch of an epoch takes its own optimizer step (the
//! seed silently carried its gradients into the next epoch's first step), the best dev state is restored
//! also when training runs out of epochs (the seed restored it only on early stopping), and the shuffling is
//! seeded.

use crate::loss::{Item, LossSums, batch_loss};
use crate::method::Loss;
use anyhow::Result;
use ia2_model::optim::{Adam, AdamConfig, GradAccumulator};
use ia2_model::{Adapter, Decoder};
use ia2_rng::RandomState;
use serde::Serialize;
use std::time::Instant;

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

/// One line of metrics.jsonl.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub step: usize,
    pub epoch: usize,
    /// Mean over the step's examples.
    pub train: LossSums,
    pub dev: Option<LossSums>,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    pub weight_norm: f64,
    pub lr: f64,
    pub examples: usize,
    pub seconds: f64,
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

/// Trains `adapter` in place; `on_step` sees every optimizer step (metrics, checkpoints, progress).
pub fn train(
    decoder: &Decoder,
    adapter: &mut Adapter,
    train: &[Item<'_>],
    dev: &[Item<'_>],
    cfg: &LoopConfig,
    mut on_step: impl FnMut(&StepRecord, &Adapter) -> Result<()>,
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
                    batch_loss(decoder, adapter, &items, cfg.loss, cfg.ce_weight, cfg.pad)?;
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
            let end_of_epoch = ci + 1 == chunks.len();
            let dev_loss = if !dev.is_empty() && (step % cfg.dev_eval_steps == 0 || end_of_epoch) {
                Some(eval_loss(decoder, adapter, dev, cfg)?)
            } else {
                None
            };
            let record = StepRecord {
                step,
                epoch,
                train: sums.scaled(scale),
                dev: dev_loss,
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
    Ok(outcome)
}
