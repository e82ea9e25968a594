//! Greedy decoding, batched over left-padded prompts, with or without the KV cache.

use crate::adapter::Adapter;
use crate::batch::{Batch, Capture, Positions};
use crate::decoder::Decoder;
use anyhow::{Result, ensure};
use burn::tensor::Tensor;

/// When to stop generating.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    /// Token ids that end a sequence (included in the output, as transformers does).
    pub eos_token_ids: Vec<u32>,
    /// Padding id for left-padded prompts and finished rows (its value never reaches a real token).
    pub pad_token_id: u32,
    /// Reuse keys/values of earlier positions (false recomputes the whole prefix every step).
    pub use_cache: bool,
}

/// Why a sequence stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Eos,
    StopString,
    MaxNewTokens,
}

/// Generated continuation of one prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    pub tokens: Vec<u32>,
    pub stop: StopReason,
}

/// What one decoding step computed, for the observer of [`greedy_observed`]: per row, the next-token logits and,
/// when asked for, every layer's attention output at the predicting position.
pub struct StepOutputs {
    logits: Vec<f32>,
    attn: Vec<Vec<f32>>,
    vocab: usize,
    hidden: usize,
}

impl StepOutputs {
    /// Next-token logits of `row`.
    pub fn logits(&self, row: usize) -> &[f32] {
        &self.logits[row * self.vocab..(row + 1) * self.vocab]
    }

    /// Attention output of `layer` for `row` (empty unless attention outputs were asked for).
    pub fn attn(&self, layer: usize, row: usize) -> &[f32] {
        self.attn
            .get(layer)
            .map_or(&[], |a| &a[row * self.hidden..(row + 1) * self.hidden])
    }
}

/// What the observer of [`greedy_observed`] is shown.
pub enum Observation<'a> {
    /// Row `row` is about to take its token of this step from `outputs` (the distribution it is chosen from).
    Token {
        row: usize,
        outputs: &'a StepOutputs,
    },
    /// Step `step` (0-based) is finished for every row.
    StepDone(usize),
}

fn to_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading decoder outputs: {e:?}"))
}

/// Greedy decoding of every prompt. `stop_check(row, tokens)` is called after each new token and returns
/// true when the row should stop on a stop string (it sees the tokens generated so far).
pub fn greedy(
    decoder: &Decoder,
    adapter: Option<&Adapter>,
    prompts: &[Vec<u32>],
    options: &GenerateOptions,
    stop_check: impl FnMut(usize, &[u32]) -> bool,
    mut on_step: impl FnMut(usize),
) -> Result<Vec<Generated>> {
    greedy_observed(decoder, adapter, prompts, options, false, stop_check, |o| {
        if let Observation::StepDone(step) = o {
            on_step(step);
        }
    })
}

/// [`greedy`] with an observer, shown every row still generating before its token of the step is appended
/// (so it sees the distribution the token was chosen from), then the end of the step. With `capture_attn` the
/// outputs include every layer's attention output at the predicting position (teacher collection).
pub fn greedy_observed(
    decoder: &Decoder,
    adapter: Option<&Adapter>,
    prompts: &[Vec<u32>],
    options: &GenerateOptions,
    capture_attn: bool,
    mut stop_check: impl FnMut(usize, &[u32]) -> bool,
    mut observe: impl FnMut(Observation<'_>),
) -> Result<Vec<Generated>> {
    ensure!(!prompts.is_empty(), "no prompts to generate from");
    if let Some(i) = prompts.iter().position(Vec::is_empty) {
        anyhow::bail!("prompt {i} is empty");
    }
    let rows = prompts.len();
    let mut out: Vec<Generated> = vec![
        Generated {
            tokens: Vec::new(),
            stop: StopReason::MaxNewTokens
        };
        rows
    ];
    let mut done = vec![false; rows];
    let capture = Capture {
        logits: Positions::Last,
        attn: if capture_attn {
            Positions::Last
        } else {
            Positions::None
        },
    };
    let mut cache = decoder.new_cache(rows, adapter);
    let mut step_batch = Batch::left_padded(prompts, options.pad_token_id);
    for step in 0..options.max_new_tokens {
        if !options.use_cache {
            cache = decoder.new_cache(rows, adapter);
        }
        let result = decoder.forward(&step_batch, &mut cache, adapter, &capture)?;
        let outputs = StepOutputs {
            logits: to_f32(result.logits.expect("logits were requested"))?,
            attn: result.attn.into_iter().map(to_f32).collect::<Result<_>>()?,
            vocab: decoder.config.vocab_size,
            hidden: decoder.config.hidden_size,
        };
        let mut next = vec![options.pad_token_id; rows];
        for row in 0..rows {
            if done[row] {
                continue;
            }
            observe(Observation::Token {
                row,
                outputs: &outputs,
            });
            let tok = argmax(outputs.logits(row));
            next[row] = tok;
            out[row].tokens.push(tok);
            if options.eos_token_ids.contains(&tok) {
                (done[row], out[row].stop) = (true, StopReason::Eos);
            } else if stop_check(row, &out[row].tokens) {
                (done[row], out[row].stop) = (true, StopReason::StopString);
            }
        }
        observe(Observation::StepDone(step));
        if done.iter().all(|&d| d) {
            break;
        }
        // Finished rows are fed a masked pad token, so they neither attend nor are attended to.
        let feed: Vec<(u32, bool)> = (0..rows)
            .map(|r| {
                if done[r] {
                    (options.pad_token_id, false)
                } else {
                    (next[r], true)
                }
            })
            .collect();
        step_batch = if options.use_cache {
            Batch {
                ids: feed.iter().map(|f| f.0).collect(),
                mask: feed.iter().map(|f| f.1).collect(),
                batch: rows,
                seq: 1,
            }
        } else {
            let mut b = step_batch;
            let seq = b.seq + 1;
            let (mut ids, mut mask) = (
                Vec::with_capacity(rows * seq),
                Vec::with_capacity(rows * seq),
            );
            for (r, f) in feed.iter().enumerate() {
                ids.extend_from_slice(&b.ids[r * b.seq..(r + 1) * b.seq]);
                ids.push(f.0);
                mask.extend_from_slice(b.mask_row(r));
                mask.push(f.1);
            }
            (b.ids, b.mask, b.seq) = (ids, mask, seq);
            b
        };
    }
    Ok(out)
}

/// Index of the largest value (the first on ties, as torch's argmax).
pub fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}
