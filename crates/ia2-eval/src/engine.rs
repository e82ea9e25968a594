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
use ia2_model::{
    Adapter, Batch, Capture, Decoder, GenerateOptions, Observation, Positions, StopReason,
    greedy_observed,
};

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
    // One pass: no keys or values are stored for a continuation (the batch's KV cache was this call's
    // largest allocation).
    let mut cache = decoder.new_cache(prompts.len(), adapter).one_pass();
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
    stop_check: impl FnMut(usize, &[u32]) -> bool,
    top_k: Option<usize>,
) -> Result<Vec<Continuation>> {
    let mut steps: Vec<Vec<Vec<(u32, f64)>>> = vec![Vec::new(); prompts.len()];
    let generated = greedy_observed(decoder, adapter, prompts, options, false, stop_check, |o| {
        if let (Some(k), Observation::Token { row, outputs }) = (top_k, o) {
            steps[row].push(distribution(outputs.logits(row), k, &[]).top);
        }
    })?;
    Ok(generated
        .into_iter()
        .zip(steps)
        .map(|(g, steps)| Continuation {
            tokens: g.tokens,
            stop: g.stop,
            steps,
        })
        .collect())
}
