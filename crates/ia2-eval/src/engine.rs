//! The model computations of an evaluation, on token ids (no tokenizer, so the benchmark runs them on the
//! synthetic bench model): the next-token distribution of left-padded prompts (uncertainty mode, T = 1),
//! and batched greedy decoding with the KV cache, optionally recording the top-k distribution of every
//! step (uncertainty mode, T > 1).
//!
//! Logits are read at the last real token of each row ([`Positions::Last`]), which stays correct under
//! left padding and with prompt-tuning virtual tokens; probabilities are computed in f64.

use crate::metrics::{softmax, top_k};
use anyhow::{Context, Result, ensure};
use burn::tensor::Tensor;
use ia2_model::{Adapter, Batch, Capture, Decoder, GenerateOptions, Positions, StopReason, greedy};

/// The next-token distribution after one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct NextToken {
    /// The `k` most probable tokens with their full-softmax probabilities, most probable first (ties:
    /// lower id first).
    pub top: Vec<(u32, f64)>,
    /// Full-softmax probability of each probed id (e.g. each label's first sub-token), in probe order.
    pub probes: Vec<f64>,
}

/// Reads `[rows, 1, vocab]` logits as one f32 vector per row.
fn rows_of(logits: Tensor<3>) -> Result<Vec<Vec<f32>>> {
    let [rows, positions, vocab] = logits.dims();
    ensure!(
        positions == 1,
        "expected one logit position per row, got {positions}"
    );
    let values = logits
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading logits: {e:?}"))?;
    Ok((0..rows)
        .map(|r| values[r * vocab..(r + 1) * vocab].to_vec())
        .collect())
}

fn distribution(logits: &[f32], k: usize, probes: &[u32]) -> NextToken {
    let p = softmax(logits);
    NextToken {
        top: top_k(&p, k).into_iter().map(|i| (i as u32, p[i])).collect(),
        probes: probes
            .iter()
            .map(|&id| p.get(id as usize).copied().unwrap_or(0.0))
            .collect(),
    }
}

/// One forward pass over left-padded `prompts`; the next-token distribution of each.
pub fn next_token(
    decoder: &Decoder,
    adapter: Option<&Adapter>,
    prompts: &[Vec<u32>],
    pad_token_id: u32,
    k: usize,
    probes: &[u32],
) -> Result<Vec<NextToken>> {
    ensure!(!prompts.is_empty(), "no prompts to score");
    if let Some(i) = prompts.iter().position(Vec::is_empty) {
        anyhow::bail!("prompt {i} is empty");
    }
    let mut cache = decoder.new_cache(prompts.len(), adapter);
    let batch = Batch::left_padded(prompts, pad_token_id);
    let capture = Capture {
        logits: Positions::Last,
        attn: Positions::None,
    };
    let logits = decoder
        .forward(&batch, &mut cache, adapter, &capture)?
        .logits
        .context("the forward pass returned no logits")?;
    Ok(rows_of(logits)?
        .iter()
        .map(|row| distribution(row, k, probes))
        .collect())
}

/// A greedy continuation, with the top-k distribution of every step when asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Continuation {
    pub tokens: Vec<u32>,
    pub stop: StopReason,
    /// Per generated token, the `k` most probable tokens and their probabilities (empty unless asked).
    pub steps: Vec<Vec<(u32, f64)>>,
}

/// Greedy decoding of every prompt (batched, left-padded, KV cache, EOS, `stop_check` after each token).
/// Without `top_k` this is [`ia2_model::greedy`]; with it, the same loop also records each step's top-k
/// distribution.
pub fn generate(
    decoder: &Decoder,
    adapter: Option<&Adapter>,
    prompts: &[Vec<u32>],
    options: &GenerateOptions,
    mut stop_check: impl FnMut(usize, &[u32]) -> bool,
    top_k: Option<usize>,
) -> Result<Vec<Continuation>> {
    let Some(k) = top_k else {
        return Ok(
            greedy(decoder, adapter, prompts, options, stop_check, |_| {})?
                .into_iter()
                .map(|g| Continuation {
                    tokens: g.tokens,
                    stop: g.stop,
                    steps: Vec::new(),
                })
                .collect(),
        );
    };
    ensure!(!prompts.is_empty(), "no prompts to generate from");
    if let Some(i) = prompts.iter().position(Vec::is_empty) {
        anyhow::bail!("prompt {i} is empty");
    }
    let rows = prompts.len();
    let mut out = vec![
        Continuation {
            tokens: Vec::new(),
            stop: StopReason::MaxNewTokens,
            steps: Vec::new(),
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
    for _ in 0..options.max_new_tokens {
        let logits = decoder
            .forward(&step_batch, &mut cache, adapter, &capture)?
            .logits
            .context("the forward pass returned no logits")?;
        let rows_logits = rows_of(logits)?;
        let mut next = vec![options.pad_token_id; rows];
        for row in 0..rows {
            if done[row] {
                continue;
            }
            let logits = &rows_logits[row];
            // Argmax on the logits themselves (first index on ties), exactly as `greedy`.
            let mut best = 0;
            for (i, &v) in logits.iter().enumerate() {
                if v > logits[best] {
                    best = i;
                }
            }
            let tok = best as u32;
            next[row] = tok;
            out[row].steps.push(distribution(logits, k, &[]).top);
            out[row].tokens.push(tok);
            if options.eos_token_ids.contains(&tok) {
                (done[row], out[row].stop) = (true, StopReason::Eos);
            } else if stop_check(row, &out[row].tokens) {
                (done[row], out[row].stop) = (true, StopReason::StopString);
            }
        }
        if done.iter().all(|&d| d) {
            break;
        }
        // Finished rows are fed a masked pad token: they neither attend nor are attended to.
        step_batch = Batch {
            ids: (0..rows)
                .map(|r| {
                    if done[r] {
                        options.pad_token_id
                    } else {
                        next[r]
                    }
                })
                .collect(),
            mask: done.iter().map(|&d| !d).collect(),
            batch: rows,
            seq: 1,
        };
    }
    Ok(out)
}
