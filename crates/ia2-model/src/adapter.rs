//! Adapters as the forward pass sees them: LoRA, IA3, prompt tuning, prefix tuning.
//!
//! Tensors here keep PEFT's layouts (LoRA `A: [r, in]`, `B: [out, r]`, like the decoder's `[out, in]`
//! weights); PEFT file naming, configuration and merging live in `ia2-adapters`. Trainable tensors are
//! ordinary tensors on an autodiff device marked `require_grad`; the frozen base weights never are, so
//! backward computes no weight gradient for them.

use crate::config::Proj;
use burn::tensor::Tensor;

/// `y = x Wᵀ + scaling · (x Aᵀ) Bᵀ` with `A: [r, in]` (PEFT's `lora_A.weight`) and `B: [out, r]`
/// (PEFT's `lora_B.weight`).
#[derive(Debug, Clone)]
pub struct LoraPair {
    pub a: Tensor<2>,
    pub b: Tensor<2>,
}

/// IA3 vector for one projection: scales the input (feed-forward modules, `[in]`; PEFT's `ia3_l` is
/// `[1, in]`) or the output (`[out]`; PEFT's `ia3_l` is `[out, 1]`).
#[derive(Debug, Clone)]
pub struct Ia3Vector {
    pub scale: Tensor<1>,
    pub on_input: bool,
}

/// One adapter attached to the decoder.
#[derive(Debug, Clone)]
pub enum Adapter {
    Lora {
        scaling: f64,
        /// Indexed `[layer * 7 + proj]`.
        pairs: Vec<Option<LoraPair>>,
    },
    Ia3 {
        /// Indexed `[layer * 7 + proj]`.
        vectors: Vec<Option<Ia3Vector>>,
    },
    /// `[num_virtual_tokens, hidden]` embeddings prepended to the input embeddings.
    Prompt { embeddings: Tensor<2> },
    /// `[num_virtual_tokens, layers * 2 * kv_heads * head_dim]`: per layer, keys then values, prepended to
    /// the attention cache (no projection), exactly PEFT's `prompt_embeddings` layout.
    Prefix { embeddings: Tensor<2> },
}

/// Index of a projection in the per-module adapter vectors.
pub fn slot(layer: usize, proj: Proj) -> usize {
    layer * Proj::ALL.len() + proj.index()
}

impl Adapter {
    /// Number of virtual tokens (prompt and prefix tuning), else 0.
    pub fn num_virtual_tokens(&self) -> usize {
        match self {
            Adapter::Prompt { embeddings } | Adapter::Prefix { embeddings } => embeddings.dims()[0],
            _ => 0,
        }
    }

    /// Every tensor of this adapter, in a fixed order (what an optimizer updates).
    pub fn tensors(&self) -> Vec<AdapterTensor<'_>> {
        let mut out = Vec::new();
        match self {
            Adapter::Lora { pairs, .. } => {
                for pair in pairs.iter().flatten() {
                    out.push(AdapterTensor::D2(&pair.a));
                    out.push(AdapterTensor::D2(&pair.b));
                }
            }
            Adapter::Ia3 { vectors } => {
                for v in vectors.iter().flatten() {
                    out.push(AdapterTensor::D1(&v.scale));
                }
            }
            Adapter::Prompt { embeddings } | Adapter::Prefix { embeddings } => {
                out.push(AdapterTensor::D2(embeddings))
            }
        }
        out
    }

    /// Mutable access to every tensor, same order as [`Adapter::tensors`].
    pub fn tensors_mut(&mut self) -> Vec<AdapterTensorMut<'_>> {
        let mut out = Vec::new();
        match self {
            Adapter::Lora { pairs, .. } => {
                for pair in pairs.iter_mut().flatten() {
                    out.push(AdapterTensorMut::D2(&mut pair.a));
                    out.push(AdapterTensorMut::D2(&mut pair.b));
                }
            }
            Adapter::Ia3 { vectors } => {
                for v in vectors.iter_mut().flatten() {
                    out.push(AdapterTensorMut::D1(&mut v.scale));
                }
            }
            Adapter::Prompt { embeddings } | Adapter::Prefix { embeddings } => {
                out.push(AdapterTensorMut::D2(embeddings))
            }
        }
        out
    }

    /// Marks every tensor trainable (moves it to the autodiff device and requires gradients).
    pub fn require_grad(&mut self) {
        for t in self.tensors_mut() {
            match t {
                AdapterTensorMut::D1(t) => *t = t.clone().autodiff().require_grad(),
                AdapterTensorMut::D2(t) => *t = t.clone().autodiff().require_grad(),
            }
        }
    }

    /// Drops autodiff from every tensor (inference).
    pub fn without_autodiff(&mut self) {
        for t in self.tensors_mut() {
            match t {
                AdapterTensorMut::D1(t) => *t = t.clone().without_autodiff(),
                AdapterTensorMut::D2(t) => *t = t.clone().without_autodiff(),
            }
        }
    }
}

/// A borrowed adapter tensor of rank 1 or 2.
pub enum AdapterTensor<'a> {
    D1(&'a Tensor<1>),
    D2(&'a Tensor<2>),
}

/// A mutably borrowed adapter tensor of rank 1 or 2.
pub enum AdapterTensorMut<'a> {
    D1(&'a mut Tensor<1>),
    D2(&'a mut Tensor<2>),
}
