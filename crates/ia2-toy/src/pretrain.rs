//! Full-parameter pretraining of the toy Qwen3 model on the task family, and its in-context evaluation.
//!
//! Every training sequence is one random non-held-out task shown as `pairs_per_sequence` examples in the
//! prompt format (3 tokens each, see [`crate::tokenizer`]), all sequences of a batch the same length (no
//! padding). The loss is the cross-entropy of every label token — predictable only from earlier examples of
//! the same class: in-context learning — plus `other_loss_weight` × that of every other token. The other
//! tokens matter: predicting the next word (drawn from the task's two classes) is what teaches the model the
//! hidden classes; without it the labels alone did not lead to in-context learning within 2000 steps.
//!
//! Learning is a plateau (the model copies one of the labels it has seen: ~46 % on training labels) followed by
//! an abrupt transition once an induction-style circuit forms (~81 %: the rest are labels of classes not yet
//! shown, which cannot be known). Gradient noise sets its pace: on this project's 2-core machine it came after
//! 700–1300 steps at batch 64 for every seed tried (0–3), but after 1000 to more than 4000 steps, or not within
//! 4000, at batch 16. Hence the default: batch 64, 1800 steps (~110 s in a release build), the learning rate
//! held constant until 60 % of the run. In runs at batch 16–32, larger models (hidden 128), more layers or heads,
//! other learning rates (1e-3 to 1e-2), Adam β2, initial scales, RoPE bases, shorter sequences and bursty data
//! (repeated words) did not shorten the plateau.
//!
//! All weights (embeddings, projections, norms) are trainable: they are moved to the autodiff device with
//! `require_grad`, and `ia2_model::optim` accumulates, clips and applies Adam updates, failing if any weight
//! got no gradient.

use crate::task::{self, CLASSES_PER_TASK, Pair, Scope, Split, Task};
use crate::tokenizer::{self, EOS_ID, VOCAB_SIZE, encode_pairs, label_token};
use anyhow::{Context, Result, ensure};
use burn::tensor::activation::log_softmax;
use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use ia2_hf::{Arch, ModelConfig, RopeScaling};
use ia2_model::adapter::{AdapterTensor, AdapterTensorMut};
use ia2_model::optim::{Adam, AdamConfig, GradAccumulator};
use ia2_model::{Batch, Capture, Decoder, Positions, Proj, WeightSource};
use ia2_rng::{Generator, SeedSequence};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

/// Everything that determines the pretrained weights and the stored evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainConfig {
    /// Seed of the weight initialisation and of the training data stream.
    pub seed: u64,
    /// The part of the task family trained and evaluated on (the full family for the real model).
    pub scope: Scope,
    /// Optimizer steps.
    pub steps: usize,
    /// Sequences per step.
    pub batch_size: usize,
    /// Examples per training sequence: labels are predicted after 0, 1, ..., n-1 demos.
    pub pairs_per_sequence: usize,
    /// Peak Adam learning rate: linear warmup over `warmup_steps`, constant until `decay_start` (a fraction
    /// of `steps`), then cosine decay to `lr * final_lr_fraction`. The constant phase keeps the rate high
    /// while the in-context transition happens.
    pub lr: f64,
    pub warmup_steps: usize,
    pub decay_start: f64,
    pub final_lr_fraction: f64,
    /// Weight of the loss on the non-label tokens (words and template) relative to the label loss.
    pub other_loss_weight: f64,
    /// Adam's moment decay rates.
    pub beta1: f64,
    pub beta2: f64,
    /// Global gradient-norm clipping.
    pub grad_clip: f64,
    /// Standard deviation of the normal initialisation of embeddings and projections (norms start at 1).
    pub init_std: f64,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    /// RoPE base.
    pub rope_theta: f64,
    /// Steps between progress log lines with a quick held-out check (0: none). Changes no weight.
    pub log_every: usize,
    /// The evaluation stored with the model.
    pub eval: EvalConfig,
}

/// Held-out in-context evaluation: `tasks` held-out tasks, `queries_per_task` queries each, every query
/// asked after each number of demos in `demos` (same query for every count, so the counts are compared on
/// the same questions). Demos never contain the query's word.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    pub seed: u64,
    pub tasks: usize,
    pub queries_per_task: usize,
    pub demos: Vec<usize>,
    pub batch_size: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            seed: 0xe7a1,
            tasks: 200,
            queries_per_task: 4,
            demos: vec![0, 1, 2, 4, 8],
            batch_size: 100,
        }
    }
}

impl Default for PretrainConfig {
    /// The configuration of the cached toy model (see the module documentation for the measurements behind it).
    fn default() -> Self {
        PretrainConfig {
            seed: 0,
            scope: Scope::FULL,
            steps: 1800,
            batch_size: 64,
            pairs_per_sequence: 10,
            lr: 3e-3,
            warmup_steps: 100,
            decay_start: 0.6,
            final_lr_fraction: 0.1,
            other_loss_weight: 3.0,
            beta1: 0.9,
            beta2: 0.999,
            grad_clip: 1.0,
            init_std: 0.02,
            hidden_size: 64,
            intermediate_size: 128,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: 16,
            rope_theta: 10_000.0,
            log_every: 100,
            eval: EvalConfig::default(),
        }
    }
}

impl PretrainConfig {
    /// Checks the configuration (user input) before anything runs.
    pub fn validate(&self) -> Result<()> {
        ensure!(self.steps > 0, "steps must be at least 1");
        ensure!(self.batch_size > 0, "batch_size must be at least 1");
        ensure!(
            (1..=MAX_PAIRS).contains(&self.pairs_per_sequence),
            "pairs_per_sequence must be in 1..={MAX_PAIRS}"
        );
        ensure!(self.lr > 0.0 && self.lr.is_finite(), "lr must be positive");
        ensure!(
            (0.0..=1.0).contains(&self.final_lr_fraction)
                && (0.0..=1.0).contains(&self.decay_start),
            "final_lr_fraction and decay_start must be in [0, 1]"
        );
        ensure!(
            self.other_loss_weight >= 0.0 && self.other_loss_weight.is_finite(),
            "other_loss_weight must be non-negative"
        );
        self.scope.validate()?;
        ensure!(
            self.pairs_per_sequence <= CLASSES_PER_TASK * self.scope.words_per_class,
            "pairs_per_sequence must be at most {} (the words of a task; a sequence repeats none)",
            CLASSES_PER_TASK * self.scope.words_per_class
        );
        ensure!(self.grad_clip > 0.0, "grad_clip must be positive");
        ensure!(
            (0.0..1.0).contains(&self.beta1) && (0.0..1.0).contains(&self.beta2),
            "beta1 and beta2 must be in [0, 1)"
        );
        ensure!(
            self.init_std > 0.0 && self.init_std.is_finite(),
            "init_std must be positive"
        );
        ensure!(
            self.eval.tasks > 0 && self.eval.queries_per_task > 0 && self.eval.batch_size > 0,
            "eval tasks, queries_per_task and batch_size must be at least 1"
        );
        ensure!(
            self.eval.demos.iter().all(|&k| k < MAX_PAIRS),
            "eval demo counts must be at most {}",
            MAX_PAIRS - 1
        );
        self.model_config().validate()?;
        Ok(())
    }

    /// The Hugging Face configuration of the model (Qwen3, tied embeddings, no biases).
    pub fn model_config(&self) -> ModelConfig {
        ModelConfig {
            arch: Arch::Qwen3,
            vocab_size: VOCAB_SIZE,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_layers,
            num_attention_heads: self.num_heads,
            num_key_value_heads: self.num_kv_heads,
            head_dim: self.head_dim,
            rms_norm_eps: 1e-6,
            max_position_embeddings: MAX_POSITIONS,
            tie_word_embeddings: true,
            rope_theta: self.rope_theta,
            rope_scaling: RopeScaling::Default,
            attention_bias: false,
            mlp_bias: false,
            bos_token_id: None,
            eos_token_ids: vec![EOS_ID],
            pad_token_id: Some(EOS_ID),
            torch_dtype: Some("float32".into()),
        }
    }

    /// Learning rate at step `step` (0-based).
    pub fn lr_at(&self, step: usize) -> f64 {
        let warm = ((step + 1) as f64 / self.warmup_steps.max(1) as f64).min(1.0);
        let start = (self.decay_start * self.steps as f64).max(self.warmup_steps as f64);
        let span = (self.steps as f64 - start).max(1.0);
        let t = ((step as f64 - start) / span).clamp(0.0, 1.0);
        let cos = 0.5 * (1.0 + (std::f64::consts::PI * t).cos());
        self.lr * warm * (self.final_lr_fraction + (1.0 - self.final_lr_fraction) * cos)
    }
}

/// Longest prompt the model is meant for, in examples (the position range it is told about).
pub const MAX_PAIRS: usize = 64;
/// `max_position_embeddings`: 3 tokens per example.
pub const MAX_POSITIONS: usize = 3 * MAX_PAIRS;

/// A stream of explicit seeds derived from the configuration's seed (`SeedSequence([lo, hi, stream])`).
fn stream(seed: u64, id: u32) -> Generator {
    Generator::from_seed_sequence(&SeedSequence::from_words(&[
        seed as u32,
        (seed >> 32) as u32,
        id,
    ]))
}

const STREAM_INIT: u32 = 1;
const STREAM_DATA: u32 = 2;

/// Randomly initialised weights (the `WeightSource` the decoder is built from).
struct InitWeights(HashMap<String, (Vec<usize>, Vec<f32>)>);

impl WeightSource for InitWeights {
    fn tensor(&self, name: &str, dtype: DType) -> Result<TensorData> {
        let (shape, values) = self
            .0
            .get(name)
            .with_context(|| format!("no initial value for {name}"))?;
        Ok(TensorData::new(values.clone(), shape.clone()).convert_dtype(dtype))
    }
}

/// The freshly initialised decoder: normal(0, init_std) embeddings and projections, unit norms.
pub fn init_decoder(config: &PretrainConfig, device: &Device) -> Result<Decoder> {
    let mc = config.model_config();
    let mut rng = stream(config.seed, STREAM_INIT);
    let mut w = HashMap::new();
    for name in mc.expected_tensor_names() {
        let shape =
            expected_shape(&mc, &name).with_context(|| format!("unexpected tensor name {name}"))?;
        let n: usize = shape.iter().product();
        let values = if name.ends_with("norm.weight") {
            vec![1.0; n]
        } else {
            (0..n)
                .map(|_| config.init_std as f32 * (rng.standard_normal() as f32))
                .collect()
        };
        w.insert(name, (shape, values));
    }
    Decoder::load(mc, &InitWeights(w), DType::F32, device)
}

/// Shape of a checkpoint tensor of `mc` (only the tensors this architecture has).
fn expected_shape(mc: &ModelConfig, name: &str) -> Option<Vec<usize>> {
    let (h, v, hd) = (mc.hidden_size, mc.vocab_size, mc.head_dim);
    if name == "model.embed_tokens.weight" || name == "lm_head.weight" {
        return Some(vec![v, h]);
    }
    if name == "model.norm.weight"
        || name.ends_with("input_layernorm.weight")
        || name.ends_with("post_attention_layernorm.weight")
    {
        return Some(vec![h]);
    }
    if name.ends_with("q_norm.weight") || name.ends_with("k_norm.weight") {
        return Some(vec![hd]);
    }
    let proj = Proj::ALL
        .into_iter()
        .find(|p| name.ends_with(&format!("{}.weight", p.name())))?;
    let (fan_in, fan_out) = proj.shape(mc);
    Some(vec![fan_out, fan_in])
}

/// Every weight of `d` with its checkpoint name, in a fixed order (the order of [`params_mut`]).
pub fn named_params(d: &Decoder) -> Vec<(String, AdapterTensor<'_>)> {
    let mut out = vec![(
        "model.embed_tokens.weight".to_string(),
        AdapterTensor::D2(&d.embed_tokens),
    )];
    for (l, layer) in d.layers.iter().enumerate() {
        for (pr, lin) in Proj::ALL.into_iter().zip(&layer.proj) {
            out.push((
                format!("{}.weight", pr.path(l)),
                AdapterTensor::D2(&lin.weight),
            ));
            if let Some(b) = &lin.bias {
                out.push((format!("{}.bias", pr.path(l)), AdapterTensor::D1(b)));
            }
        }
        let p = format!("model.layers.{l}");
        out.push((
            format!("{p}.input_layernorm.weight"),
            AdapterTensor::D1(&layer.input_layernorm.weight),
        ));
        out.push((
            format!("{p}.post_attention_layernorm.weight"),
            AdapterTensor::D1(&layer.post_attention_layernorm.weight),
        ));
        if let Some(n) = &layer.q_norm {
            out.push((
                format!("{p}.self_attn.q_norm.weight"),
                AdapterTensor::D1(&n.weight),
            ));
        }
        if let Some(n) = &layer.k_norm {
            out.push((
                format!("{p}.self_attn.k_norm.weight"),
                AdapterTensor::D1(&n.weight),
            ));
        }
    }
    out.push((
        "model.norm.weight".to_string(),
        AdapterTensor::D1(&d.norm.weight),
    ));
    if let Some(h) = &d.lm_head {
        out.push(("lm_head.weight".to_string(), AdapterTensor::D2(h)));
    }
    out
}

/// Mutable access to every weight, in the order of [`named_params`].
pub fn params_mut(d: &mut Decoder) -> Vec<AdapterTensorMut<'_>> {
    let mut out = vec![AdapterTensorMut::D2(&mut d.embed_tokens)];
    for layer in d.layers.iter_mut() {
        for lin in layer.proj.iter_mut() {
            out.push(AdapterTensorMut::D2(&mut lin.weight));
            if let Some(b) = &mut lin.bias {
                out.push(AdapterTensorMut::D1(b));
            }
        }
        out.push(AdapterTensorMut::D1(&mut layer.input_layernorm.weight));
        out.push(AdapterTensorMut::D1(
            &mut layer.post_attention_layernorm.weight,
        ));
        if let Some(n) = &mut layer.q_norm {
            out.push(AdapterTensorMut::D1(&mut n.weight));
        }
        if let Some(n) = &mut layer.k_norm {
            out.push(AdapterTensorMut::D1(&mut n.weight));
        }
    }
    out.push(AdapterTensorMut::D1(&mut d.norm.weight));
    if let Some(h) = &mut d.lm_head {
        out.push(AdapterTensorMut::D2(h));
    }
    out
}

fn params(d: &Decoder) -> Vec<AdapterTensor<'_>> {
    named_params(d).into_iter().map(|(_, t)| t).collect()
}

/// Sets every weight to trainable (`autodiff: true`) or plain.
fn set_trainable(d: &mut Decoder, trainable: bool) {
    for t in params_mut(d) {
        match t {
            AdapterTensorMut::D1(t) if trainable => *t = t.clone().autodiff().require_grad(),
            AdapterTensorMut::D2(t) if trainable => *t = t.clone().autodiff().require_grad(),
            AdapterTensorMut::D1(t) => *t = t.clone().without_autodiff(),
            AdapterTensorMut::D2(t) => *t = t.clone().without_autodiff(),
        }
    }
}

/// An inference copy (plain tensors, shared storage) of a decoder being trained.
fn inference_copy(d: &Decoder) -> Decoder {
    let mut c = d.clone();
    set_trainable(&mut c, false);
    c
}

/// One exported weight: checkpoint name, shape, values.
pub type NamedWeight = (String, Vec<usize>, Vec<f32>);

/// The weights, ready for `save_safetensors_f32`.
pub fn export_weights(d: &Decoder) -> Result<Vec<NamedWeight>> {
    named_params(d)
        .into_iter()
        .map(|(name, t)| {
            let data = match t {
                AdapterTensor::D1(t) => t.clone().without_autodiff().into_data(),
                AdapterTensor::D2(t) => t.clone().without_autodiff().into_data(),
            };
            let shape = data.shape().to_vec();
            let values = data
                .convert::<f32>()
                .try_to_vec::<f32>()
                .map_err(|e| anyhow::anyhow!("reading {name}: {e:?}"))?;
            Ok((name, shape, values))
        })
        .collect()
}

/// One training batch: token ids `[batch, seq]`, the trained positions (labels first) and their targets.
struct TrainBatch {
    batch: Batch,
    positions: Vec<usize>,
    targets: Vec<i64>,
    /// Leading entries of `positions` that predict a label.
    labels: usize,
}

/// The trained positions of a sequence: every input position, those that predict a label first. Returns the
/// positions and how many predict a label.
fn trained_positions(full: &[u32]) -> (Vec<usize>, usize) {
    let is_label = |t: &usize| tokenizer::is_label_token(full[t + 1]);
    let mut positions: Vec<usize> = (0..full.len() - 1).filter(is_label).collect();
    let labels = positions.len();
    positions.extend((0..full.len() - 1).filter(|t| !is_label(t)));
    (positions, labels)
}

fn sample_batch(rng: &mut Generator, config: &PretrainConfig) -> TrainBatch {
    let mut seqs = Vec::with_capacity(config.batch_size);
    let mut targets = Vec::new();
    // Every sequence has the same layout (same number of examples, 3 tokens each), so the first one's
    // trained positions are every row's.
    let mut layout: Option<(Vec<usize>, usize)> = None;
    for _ in 0..config.batch_size {
        let task = Task::sample_in(rng, Split::Train, config.scope);
        let pairs = task.sample_pairs(rng, config.pairs_per_sequence, &[]);
        // The full stream ends with the separator that follows the last label (its prediction is trained
        // too); the model's input is everything before it.
        let mut full = encode_pairs(&pairs, true);
        full.push(tokenizer::SEP_TEXT_ID);
        let (positions, _) = layout.get_or_insert_with(|| trained_positions(&full));
        targets.extend(positions.iter().map(|&t| full[t + 1] as i64));
        full.pop();
        seqs.push(full);
    }
    let (positions, labels) = layout.expect("batch_size >= 1");
    TrainBatch {
        batch: Batch::left_padded(&seqs, EOS_ID),
        positions,
        targets,
        labels,
    }
}

/// One logged point of the training curve.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryPoint {
    pub step: usize,
    pub lr: f64,
    /// Mean over the steps since the previous point.
    pub label_loss: f64,
    pub other_loss: f64,
    /// Label accuracy on the training batches since the previous point (all demo counts mixed).
    pub train_label_accuracy: f64,
    /// Quick held-out check: accuracy with 0 and 4 demos on a few tasks.
    pub heldout_accuracy_k0: Option<f64>,
    pub heldout_accuracy_k4: Option<f64>,
    pub seconds: f64,
}

/// What [`train`] returns besides the weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingSummary {
    pub steps: usize,
    pub seconds: f64,
    pub parameters: usize,
    pub sequence_tokens: usize,
    pub history: Vec<HistoryPoint>,
}

/// Pretrains a decoder from scratch. `progress` is told the step count after every step.
pub fn train(
    config: &PretrainConfig,
    device: &Device,
    progress: &dyn Fn(usize, &str),
) -> Result<(Decoder, TrainingSummary)> {
    config.validate()?;
    let start = Instant::now();
    let mut decoder = init_decoder(config, device)?;
    set_trainable(&mut decoder, true);
    let parameters = named_params(&decoder)
        .iter()
        .map(|(_, t)| match t {
            AdapterTensor::D1(t) => t.dims()[0],
            AdapterTensor::D2(t) => t.dims().iter().product(),
        })
        .sum();
    let mut data_rng = stream(config.seed, STREAM_DATA);
    let mut adam = Adam::new(AdamConfig {
        beta1: config.beta1,
        beta2: config.beta2,
        ..AdamConfig::with_lr(config.lr)
    });
    let mut accum = GradAccumulator::new();
    let mut history = Vec::new();
    let (mut sum_label, mut sum_other, mut sum_acc, mut n_since) = (0.0, 0.0, 0.0, 0usize);
    let mut sequence_tokens = 0;
    tracing::info!(
        parameters,
        steps = config.steps,
        batch = config.batch_size,
        examples_per_sequence = config.pairs_per_sequence,
        "pretraining the toy model"
    );
    for step in 0..config.steps {
        let tb = sample_batch(&mut data_rng, config);
        sequence_tokens = tb.batch.seq;
        let (b, n) = (tb.batch.batch, tb.positions.len());
        let capture = Capture {
            logits: Positions::At(vec![tb.positions.clone(); b]),
            attn: Positions::None,
        };
        let mut cache = decoder.new_cache(b, None);
        let out = decoder.forward(&tb.batch, &mut cache, None, &capture)?;
        let logits = out.logits.context("the forward pass returned no logits")?;
        let logp = log_softmax(logits.clone(), 2);
        let idx =
            Tensor::<3, Int>::from_data(TensorData::new(tb.targets.clone(), [b, n, 1]), device);
        let nll = logp.gather(2, idx).neg();
        let label_loss = nll.clone().narrow(1, 0, tb.labels).mean();
        let other_loss = nll.narrow(1, tb.labels, n - tb.labels).mean();
        let loss = label_loss.clone() + other_loss.clone().mul_scalar(config.other_loss_weight);
        let (ll, tl): (f32, f32) = (label_loss.into_scalar(), other_loss.into_scalar());
        ensure!(
            ll.is_finite() && tl.is_finite(),
            "loss is not finite at step {step} (labels {ll}, other tokens {tl})"
        );
        let pred = logits
            .narrow(1, 0, tb.labels)
            .argmax(2)
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .map_err(|e| anyhow::anyhow!("reading predictions: {e:?}"))?;
        let correct = pred
            .iter()
            .enumerate()
            .filter(|&(i, &p)| p == tb.targets[(i / tb.labels) * n + i % tb.labels])
            .count();
        let mut grads = loss.backward();
        accum.add(&params(&decoder), &mut grads, 1.0)?;
        accum.clip(config.grad_clip)?;
        adam.config.lr = config.lr_at(step);
        adam.step(params_mut(&mut decoder), &mut accum)?;

        sum_label += ll as f64;
        sum_other += tl as f64;
        sum_acc += correct as f64 / pred.len() as f64;
        n_since += 1;
        let last = step + 1 == config.steps;
        let msg = format!("label loss {ll:.3}");
        if config.log_every > 0 && ((step + 1) % config.log_every == 0 || last) {
            let quick = EvalConfig {
                seed: config.eval.seed ^ 0x9e37_79b9,
                tasks: 32,
                queries_per_task: 2,
                demos: vec![0, 4],
                batch_size: 64,
            };
            let r = evaluate(
                &inference_copy(&decoder),
                &quick,
                config.scope,
                &|p: &[Pair]| Ok(encode_pairs(p, false)),
            )?;
            let point = HistoryPoint {
                step: step + 1,
                lr: config.lr_at(step),
                label_loss: sum_label / n_since as f64,
                other_loss: sum_other / n_since as f64,
                train_label_accuracy: sum_acc / n_since as f64,
                heldout_accuracy_k0: r.accuracy(Sampling::Random, 0),
                heldout_accuracy_k4: r.accuracy(Sampling::Random, 4),
                seconds: start.elapsed().as_secs_f64(),
            };
            tracing::info!(
                step = point.step,
                label_loss = format!("{:.4}", point.label_loss),
                other_loss = format!("{:.4}", point.other_loss),
                train_acc = format!("{:.3}", point.train_label_accuracy),
                heldout_k0 = format!("{:.3}", point.heldout_accuracy_k0.unwrap_or(f64::NAN)),
                heldout_k4 = format!("{:.3}", point.heldout_accuracy_k4.unwrap_or(f64::NAN)),
                "pretraining"
            );
            history.push(point);
            (sum_label, sum_other, sum_acc, n_since) = (0.0, 0.0, 0.0, 0);
        }
        progress(step + 1, &msg);
    }
    set_trainable(&mut decoder, false);
    Ok((
        decoder,
        TrainingSummary {
            steps: config.steps,
            seconds: start.elapsed().as_secs_f64(),
            parameters,
            sequence_tokens,
            history,
        },
    ))
}

/// How demos are drawn in an evaluation prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// Each demo's class uniformly at random (as a random draw from a dataset): with k demos the query's class
    /// is absent with probability 2^-k, and then its label cannot be known.
    Random,
    /// Classes alternate (shuffled), so with k >= 2 demos both classes are shown.
    Balanced,
}

/// Accuracy after one number of demos.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoAccuracy {
    pub sampling: Sampling,
    pub demos: usize,
    pub prompts: usize,
    /// Greedy next token (argmax over the whole vocabulary) equals the gold label.
    pub accuracy: f64,
    /// Argmax over the task's two labels only (chance 0.5).
    pub accuracy_in_label_set: f64,
    /// Fraction of prompts whose greedy token is one of the task's two labels.
    pub label_set_rate: f64,
}

/// Held-out in-context accuracy per sampling and demo count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IclReport {
    pub config: EvalConfig,
    /// Accuracy of always answering the first label: with the whole vocabulary as choices, chance is
    /// 1 / #labels (a model that knows the label pool but not the task).
    pub chance_full_vocabulary: f64,
    pub chance_in_label_set: f64,
    pub results: Vec<DemoAccuracy>,
}

impl IclReport {
    /// Accuracy (whole vocabulary) for a sampling and demo count, if measured.
    pub fn accuracy(&self, sampling: Sampling, demos: usize) -> Option<f64> {
        self.results
            .iter()
            .find(|r| r.sampling == sampling && r.demos == demos)
            .map(|r| r.accuracy)
    }
}

/// Held-out in-context evaluation of `decoder`. `encode` turns `demos ++ [query]` (the query's label
/// unused) into the prompt's token ids: the real tokenizer on [`task::prompt`], or [`encode_pairs`].
pub fn evaluate(
    decoder: &Decoder,
    config: &EvalConfig,
    scope: Scope,
    encode: &dyn Fn(&[Pair]) -> Result<Vec<u32>>,
) -> Result<IclReport> {
    let mut rng = Generator::new(config.seed);
    // Tasks and queries first, so every demo count and sampling asks the same questions.
    let mut items: Vec<(Task, Pair, u64)> = Vec::new();
    for _ in 0..config.tasks {
        let task = Task::sample_in(&mut rng, Split::HeldOut, scope);
        for q in task.sample_pairs(&mut rng, config.queries_per_task, &[]) {
            items.push((task, q, rng.next_u64()));
        }
    }
    let mut results = Vec::new();
    for sampling in [Sampling::Random, Sampling::Balanced] {
        for &k in &config.demos {
            let mut prompts = Vec::with_capacity(items.len());
            for (task, query, demo_seed) in &items {
                let mut r = Generator::new(*demo_seed ^ k as u64);
                let mut pairs = match sampling {
                    Sampling::Random => task.sample_pairs(&mut r, k, &[query.word]),
                    Sampling::Balanced => task.sample_balanced(&mut r, k, &[query.word]),
                };
                pairs.push(*query);
                prompts.push((encode(&pairs)?, *task, *query));
            }
            let (mut correct, mut in_set, mut in_set_correct) = (0usize, 0usize, 0usize);
            for chunk in prompts.chunks(config.batch_size) {
                let seqs: Vec<Vec<u32>> = chunk.iter().map(|(ids, _, _)| ids.clone()).collect();
                let batch = Batch::left_padded(&seqs, EOS_ID);
                let mut cache = decoder.new_cache(batch.batch, None);
                let capture = Capture {
                    logits: Positions::Last,
                    attn: Positions::None,
                };
                let out = decoder.forward(&batch, &mut cache, None, &capture)?;
                let logits = out
                    .logits
                    .context("no logits")?
                    .into_data()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .map_err(|e| anyhow::anyhow!("reading logits: {e:?}"))?;
                let v = decoder.config.vocab_size;
                for (row, (_, task, query)) in chunk.iter().enumerate() {
                    let l = &logits[row * v..(row + 1) * v];
                    let argmax = (0..v)
                        .max_by(|&a, &b| l[a].total_cmp(&l[b]))
                        .expect("non-empty vocabulary") as u32;
                    let gold = label_token(query.label);
                    correct += usize::from(argmax == gold);
                    let set = task.labels.map(label_token);
                    in_set += usize::from(set.contains(&argmax));
                    let best = *set
                        .iter()
                        .max_by(|&&a, &&b| l[a as usize].total_cmp(&l[b as usize]))
                        .expect("two labels");
                    in_set_correct += usize::from(best == gold);
                }
            }
            let n = prompts.len() as f64;
            results.push(DemoAccuracy {
                sampling,
                demos: k,
                prompts: prompts.len(),
                accuracy: correct as f64 / n,
                accuracy_in_label_set: in_set_correct as f64 / n,
                label_set_rate: in_set as f64 / n,
            });
        }
    }
    Ok(IclReport {
        config: config.clone(),
        chance_full_vocabulary: 1.0 / task::LABELS.len() as f64,
        chance_in_label_set: 1.0 / CLASSES_PER_TASK as f64,
        results,
    })
}

/// Evaluates a saved model directory exactly as ia2 loads any model: config, safetensors and the
/// tokenizer from the directory, prompts rendered as text and tokenized.
pub fn evaluate_dir(dir: &Path, config: &EvalConfig, scope: Scope) -> Result<IclReport> {
    let device = Device::flex();
    let decoder = ia2_model::load_decoder(dir, DType::F32, &device)
        .with_context(|| format!("loading {}", dir.display()))?;
    let tok = ia2_hf::Tokenizer::from_dir(dir)?;
    evaluate(&decoder, config, scope, &|pairs: &[Pair]| {
        let (query, demos) = pairs.split_last().context("no query")?;
        Ok(tok.encode(&task::prompt(demos, *query), true)?)
    })
}
