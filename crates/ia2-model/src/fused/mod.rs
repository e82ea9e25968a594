//! Fused operations of the decoder, with hand-written backward passes, for the flex CPU backend.
//!
//! Composed from burn's tensor ops, RMSNorm, SiLU-gating, RoPE and masked softmax attention are each
//! a chain of single-threaded elementwise kernels forward and again backward; on the reference
//! training step of `ia2 bench` they took about as long as all the matrix products. Here each is one
//! multi-threaded pass ([`kernels`]), registered as a burn backend extension with an autodiff
//! implementation, so gradients flow through them like through any burn op (the tests compare both
//! values and gradients with the composed versions).
//!
//! Attention keeps grouped kv heads grouped: queries are viewed as `[batch, kv_heads, groups·queries,
//! head_dim]`, so one matrix product per kv head serves its whole query group, nothing is repeated, and
//! the key/value gradients come out summed over the group. Under autodiff it keeps `q`, `k` and `v`
//! and recomputes the probabilities in the backward pass; [`rotary_attention`] also takes Qwen3's
//! queries and keys before their per-head norm and rotation and recomputes those, so a training step
//! holds each once.
//!
//! Frozen projections ([`frozen_linear`](fn@frozen_linear), [`linear_rows`]) read their weight in the
//! precision it is held in, f32, bf16 or f16: a half-precision weight is widened to f32 exactly, a tile
//! of rows at a time, and multiplied with f32 accumulation, so the results are those of an f32 weight
//! holding the same values up to summation order, at half the weight memory. The backward pass keeps
//! only the weight (no copy of the input) and gives the input its gradient; see the module
//! [`frozen_linear`](mod@frozen_linear).
//!
//! Other backends (CUDA) run the composed ops; [`available`] and [`weight_supported`] say which path a
//! tensor takes.

mod autodiff;
mod flex;
pub mod frozen_linear;
pub mod kernels;
pub mod widening;

use burn::backend::tensor::{BoolTensor, FloatTensor};
use burn::backend::{Backend, Dispatch, DispatchDevice, backend_extension};
use burn::tensor::{Bool, DType, Tensor};

/// The fused operations as a burn backend extension (flex, and autodiff over flex).
#[backend_extension(Flex, Autodiff)]
pub trait FusedOps: Backend {
    /// RMSNorm over the last dimension: `weight · x / sqrt(mean(x²) + eps)`.
    fn fused_rms_norm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self>;

    /// `silu(gate) ⊙ up`.
    fn fused_silu_mul(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self>;

    /// Rotary embedding of `x: [batch, seq, heads, head_dim]` with `cos, sin: [batch, seq, head_dim]`.
    fn fused_rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// `softmax(scale · q kᵀ, masked) v` for `q: [b, heads, s, d]`, `k, v: [b, kv_heads, t, d]` and
    /// `mask: [b, s, t]` (true = may not attend); returns `[b, heads, s, d]`.
    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask: BoolTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self>;

    /// [`fused_attention`](FusedOps::fused_attention) of queries and keys given before their per-head
    /// RMSNorm and rotation (Qwen3's `q_norm`, `k_norm`): `q: [b, s, heads, d]`, `k: [b, t, kv_heads,
    /// d]` (the projections' layout), `v: [b, kv_heads, t, d]`, norm weights `[d]`, `cos, sin: [b, s,
    /// d]` (`t = s`: no cached keys); returns `[b, heads, s, d]`. Under autodiff only the inputs are
    /// kept: the normed, rotated queries and keys are recomputed in the backward pass. Values and
    /// gradients are those of the composed `attention(swap(rope(rms_norm(q))), swap(rope(rms_norm(k))),
    /// v)`, bit for bit.
    #[allow(clippy::too_many_arguments)]
    fn fused_rotary_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        q_weight: FloatTensor<Self>,
        k_weight: FloatTensor<Self>,
        eps: f64,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        mask: BoolTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self>;

    /// `x Wᵀ` for a few rows `x: [rows, in]` and a weight in its stored layout `W: [out, in]`
    /// (f32, bf16 or f16).
    fn fused_linear_rows(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `x Wᵀ` for `x: [rows, in]` (f32) and a frozen weight `W: [out, in]` in f32, bf16 or f16: the
    /// backward pass gives `x` the gradient `dy W` and keeps only `W` (no weight gradient; a tracked
    /// weight takes the composed path instead).
    fn fused_frozen_linear(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `silu(x W_gateᵀ) ⊙ (x W_upᵀ)` for `x: [rows, in]` and frozen weights `[inter, in]` (f32, bf16 or
    /// f16). Under autodiff only `x` is kept: the backward recomputes both projections (see
    /// [`gated_mlp_recomputed`]).
    fn fused_gated_mlp(
        x: FloatTensor<Self>,
        w_gate: FloatTensor<Self>,
        w_up: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// The kernels behind [`FusedOps`] on a concrete backend: forward passes that also return what their
/// backward needs, and the backward passes. The autodiff implementation is written against this.
pub trait FusedKernels: Backend {
    fn rms_norm(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f64) -> FloatTensor<Self>;
    /// `(dx, dweight if want_dweight)`.
    fn rms_norm_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        eps: f64,
        want_dweight: bool,
    ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>);
    fn silu_mul(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `(dgate, dup)`.
    fn silu_mul_backward(
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
        dy: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
    /// The rotation, or with `transpose` its transpose (the backward pass).
    fn rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        transpose: bool,
    ) -> FloatTensor<Self>;
    /// `(output, probabilities [b, kv_heads, groups·s, t])`.
    fn attention_with_probs(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask: BoolTensor<Self>,
        scale: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
    /// `x Wᵀ` for `x: [rows, in]`, `W: [out, in]` (f32, bf16 or f16).
    fn frozen_linear(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `dy W` for `dy: [rows, out]`: the input gradient of [`FusedKernels::frozen_linear`].
    fn frozen_linear_backward(
        dy: FloatTensor<Self>,
        weight: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// `(dq, dk, dv)` from the forward's inputs, its probabilities and the output gradient.
    fn attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        probs: FloatTensor<Self>,
        dout: FloatTensor<Self>,
        scale: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// Per-head RMSNorm and rotation of `x: [b, s, heads, d]`, returned in the attention layout
    /// `[b, heads, s, d]`: the steps of [`FusedOps::fused_rotary_attention`], here once for its
    /// forward pass and the backward's recomputation, so both give the same values.
    fn rotate_heads(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        eps: f64,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let normed = Self::rms_norm(x, weight, eps);
        Self::float_swap_dims(Self::rope(normed, cos, sin, false), 1, 2)
    }

    /// The gradient of [`FusedKernels::rotate_heads`]'s input `x` from that of its output `dy`.
    fn rotate_heads_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        eps: f64,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        dy: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let dy = Self::rope(Self::float_swap_dims(dy, 1, 2), cos, sin, true);
        Self::rms_norm_backward(x, weight, dy, eps, false).0
    }
}

/// Whether `t` takes the fused path: f32 on the flex backend (with or without autodiff).
pub fn available<const D: usize>(t: &Tensor<D>) -> bool {
    t.dtype() == DType::F32
        && matches!(
            t.device().as_dispatch().clone().inner(),
            DispatchDevice::Flex(_)
        )
}

/// Whether a weight can be read by [`frozen_linear`](fn@frozen_linear) and [`linear_rows`]: held in f32, bf16 or f16 on
/// the flex backend.
pub fn weight_supported<const D: usize>(w: &Tensor<D>) -> bool {
    matches!(w.dtype(), DType::F32 | DType::BF16 | DType::F16)
        && matches!(
            w.device().as_dispatch().clone().inner(),
            DispatchDevice::Flex(_)
        )
}

pub fn rms_norm<const D: usize>(x: Tensor<D>, weight: Tensor<1>, eps: f64) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_rms_norm(
        x.into_dispatch(),
        weight.into_dispatch(),
        eps,
    ))
}

pub fn silu_mul<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_silu_mul(
        gate.into_dispatch(),
        up.into_dispatch(),
    ))
}

pub fn rope(x: Tensor<4>, cos: Tensor<3>, sin: Tensor<3>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_rope(
        x.into_dispatch(),
        cos.into_dispatch(),
        sin.into_dispatch(),
    ))
}

/// `x Wᵀ` for `x: [rows, in]` and `W: [out, in]` (f32, bf16 or f16), reading `W` once (decoding a few
/// sequences). Inference only: under autodiff it runs [`frozen_linear`](fn@frozen_linear).
pub fn linear_rows(x: Tensor<2>, weight: Tensor<2>) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_linear_rows(
        x.into_dispatch(),
        weight.into_dispatch(),
    ))
}

/// Attention of queries and keys given before their per-head RMSNorm and RoPE (see
/// [`FusedOps::fused_rotary_attention`]; `norm_weights`: those of `q_norm` and `k_norm`): under autodiff a layer keeps `q` and `k` once instead of also
/// keeping their normed, rotated copies until the backward pass (≈ 0.22 GB less for a 4B model at 300
/// tokens); the backward pass recomputes the two norms and rotations.
#[allow(clippy::too_many_arguments)]
pub fn rotary_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    norm_weights: (Tensor<1>, Tensor<1>),
    eps: f64,
    cos: Tensor<3>,
    sin: Tensor<3>,
    mask: Tensor<3, Bool>,
    scale: f64,
) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_rotary_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        norm_weights.0.into_dispatch(),
        norm_weights.1.into_dispatch(),
        eps,
        cos.into_dispatch(),
        sin.into_dispatch(),
        mask.into_dispatch(),
        scale,
    ))
}

/// `x Wᵀ` for `x: [rows, in]` (f32) and a frozen weight `W: [out, in]` held in f32, bf16 or f16 (see
/// [`weight_supported`]), in its stored layout. Computes in f32 without materialising a half-precision
/// weight in f32 (the module [`frozen_linear`](mod@self::frozen_linear) states the numerics); under autodiff `x` gets the
/// gradient `dy W`, and only `W` is kept for it.
pub fn frozen_linear(x: Tensor<2>, weight: Tensor<2>) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_frozen_linear(
        x.into_dispatch(),
        weight.into_dispatch(),
    ))
}

/// `silu(x W_gateᵀ) ⊙ (x W_upᵀ)` for `x: [rows, in]` and frozen (not trained) weights `[inter, in]`, with
/// the two projections recomputed in the backward pass instead of kept: a layer's MLP then holds only its
/// input until the backward pass (`rows × in` instead of `2 × rows × inter` values; ≈ 0.8 GB less for a
/// 4B model at 300 tokens) for two more matrix products per layer in the backward pass. Values and
/// gradients are those of `silu_mul(frozen_linear(x, W_gate), frozen_linear(x, W_up))`, bit for bit.
pub fn gated_mlp_recomputed(x: Tensor<2>, w_gate: Tensor<2>, w_up: Tensor<2>) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_gated_mlp(
        x.into_dispatch(),
        w_gate.into_dispatch(),
        w_up.into_dispatch(),
    ))
}

pub fn attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    mask: Tensor<3, Bool>,
    scale: f64,
) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        mask.into_dispatch(),
        scale,
    ))
}
