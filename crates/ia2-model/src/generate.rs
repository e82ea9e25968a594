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

/// Greedy decoding of every prompt. `stop_check(row, tokens)` is called after each new token and returns
/// true when the row should stop on a stop string (it sees the tokens generated so far).
pub fn greedy(
    decoder: &Decoder,
    adapter: Option<&Adapter>,
    prompts: &[Vec<u32>],
    options: &GenerateOptions,
    mut stop_check: impl FnMut(usize, &[u32]) -> bool,
    mut on_step: impl FnMut(usize),
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
        attn: Positions::None,
    };
    let mut cache = decoder.new_cache(rows, adapter);
    let mut step_batch = Batch::left_padded(prompts, options.pad_token_id);
    for step in 0..options.max_new_tokens {
        if !options.use_cache {
            cache = decoder.new_cache(rows, adapter);
        }
        let logits = decoder
            .forward(&step_batch, &mut cache, adapter, &capture)?
            .logits;
        let next = argmax_last(logits.expect("logits were requested"))?;
        for row in 0..rows {
            if done[row] {
                continue;
            }
            let tok = next[row];
            out[row].tokens.push(tok);
            if options.eos_token_ids.contains(&tok) {
                (done[row], out[row].stop) = (true, StopReason::Eos);
            } else if stop_check(row, &out[row].tokens) {
                (done[row], out[row].stop) = (true, StopReason::StopString);
            }
        }
        on_step(step);
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

/// Argmax over the vocabulary of `[rows, 1, vocab]` logits (first index on ties, as torch).
fn argmax_last(logits: Tensor<3>) -> Result<Vec<u32>> {
    let [rows, _, vocab] = logits.dims();
    let values = logits
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading logits: {e:?}"))?;
    Ok((0..rows)
        .map(|r| {
            let row = &values[r * vocab..(r + 1) * vocab];
            let mut best = 0;
            for (i, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = i;
                }
            }
            best as u32
        })
        .collect())
}
