//! Inputs of one forward call: token ids with a left-padding mask, which positions to capture, and the
//! key/value cache carried between calls.

use anyhow::{Result, bail};
use burn::tensor::Tensor;

/// A rectangular batch of token ids, left-padded: `mask[b * seq + t]` is false on padding.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub ids: Vec<u32>,
    pub mask: Vec<bool>,
    pub batch: usize,
    pub seq: usize,
}

impl Batch {
    /// Left-pads sequences of different lengths with `pad_id` (masked out, so its value never matters).
    pub fn left_padded(seqs: &[Vec<u32>], pad_id: u32) -> Batch {
        let seq = seqs.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(seqs.len() * seq);
        let mut mask = Vec::with_capacity(seqs.len() * seq);
        for s in seqs {
            let pad = seq - s.len();
            ids.extend(std::iter::repeat_n(pad_id, pad).chain(s.iter().copied()));
            mask.extend(std::iter::repeat_n(false, pad).chain(std::iter::repeat_n(true, s.len())));
        }
        Batch {
            ids,
            mask,
            batch: seqs.len(),
            seq,
        }
    }

    /// One unpadded sequence.
    pub fn single(ids: &[u32]) -> Batch {
        Batch::left_padded(&[ids.to_vec()], 0)
    }

    /// Mask row of sequence `b`.
    pub fn mask_row(&self, b: usize) -> &[bool] {
        &self.mask[b * self.seq..(b + 1) * self.seq]
    }
}

/// Which positions of a forward call to return (logits or attention outputs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Positions {
    /// Nothing (no logits computed at all).
    #[default]
    None,
    /// Every processed position, including prompt-tuning virtual tokens on the first call.
    All,
    /// The last position of each row (with left padding: the last real token).
    Last,
    /// Per row, indices into this call's token ids (virtual tokens excluded). Rows must have equal length.
    At(Vec<Vec<usize>>),
}

impl Positions {
    /// Resolves to per-row indices into the processed sequence (`virt` virtual tokens + `seq` tokens).
    pub(crate) fn resolve(&self, batch: usize, virt: usize, seq: usize) -> Result<Vec<Vec<usize>>> {
        let total = virt + seq;
        Ok(match self {
            Positions::None => vec![Vec::new(); batch],
            Positions::All => vec![(0..total).collect(); batch],
            Positions::Last => vec![vec![total - 1]; batch],
            Positions::At(rows) => {
                if rows.len() != batch {
                    bail!(
                        "positions given for {} rows, the batch has {batch}",
                        rows.len()
                    );
                }
                let width = rows.first().map_or(0, Vec::len);
                for (b, row) in rows.iter().enumerate() {
                    if row.len() != width {
                        bail!(
                            "positions row {b} has {} entries, row 0 has {width}",
                            row.len()
                        );
                    }
                    if let Some(&p) = row.iter().find(|&&p| p >= seq) {
                        bail!(
                            "position {p} in row {b} is out of range for a sequence of {seq} tokens"
                        );
                    }
                }
                rows.iter()
                    .map(|r| r.iter().map(|&p| p + virt).collect())
                    .collect()
            }
        })
    }
}

/// What a forward call should capture.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    pub logits: Positions,
    /// Output of each layer's self-attention block (after o_proj, before the residual add).
    pub attn: Positions,
}

/// Keys and values of every layer for the tokens processed so far, plus per-row bookkeeping.
#[derive(Debug, Clone)]
pub struct KvCache {
    /// Per layer `(keys, values)`, each `[batch, kv_heads, len, head_dim]` (after RoPE).
    pub(crate) layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
    /// Per row, whether each cached position is a real (attendable) entry.
    pub(crate) valid: Vec<Vec<bool>>,
    /// Per row, the position id of the next real token.
    pub(crate) next_pos: Vec<usize>,
    /// Whether prompt-tuning virtual tokens have been processed.
    pub(crate) prompt_done: bool,
    /// Made for one forward pass: its keys and values are not stored ([`KvCache::one_pass`]).
    pub(crate) one_pass: bool,
    /// A one-pass cache that has had its pass.
    pub(crate) spent: bool,
}

impl KvCache {
    pub(crate) fn empty(num_layers: usize, batch: usize) -> KvCache {
        KvCache {
            layers: vec![None; num_layers],
            valid: vec![Vec::new(); batch],
            next_pos: vec![0; batch],
            prompt_done: false,
            one_pass: false,
            spent: false,
        }
    }

    /// For a single forward pass whose keys and values are never read again (a training step): the
    /// decoder does not store them, so under autodiff a layer's rotated queries and keys need not be
    /// kept until the backward pass (the backward recomputes them from the projections; see
    /// [`fused::rotary_attention`](crate::fused::rotary_attention)). Prefix-tuning keys and values
    /// already in the cache are still attended to. A second forward pass with the cache is refused.
    pub fn one_pass(mut self) -> KvCache {
        self.one_pass = true;
        self
    }

    /// Number of cached positions (padding included).
    pub fn len(&self) -> usize {
        self.valid.first().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows in the cache.
    pub fn batch(&self) -> usize {
        self.valid.len()
    }
}

/// Result of a forward call.
#[derive(Debug, Clone)]
pub struct Output {
    /// `[batch, positions, vocab]` when logits were asked for.
    pub logits: Option<Tensor<3>>,
    /// Per layer `[batch, positions, hidden]`, empty when not asked for.
    pub attn: Vec<Tensor<3>>,
    /// Virtual tokens processed in this call (prompt tuning, first call), counted in `Positions::All`.
    pub virtual_tokens: usize,
}
