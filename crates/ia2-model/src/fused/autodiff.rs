//! [`FusedOps`] under autodiff: each op runs its forward kernel on the inner backend and records a
//! backward step that calls the matching backward kernel. Gradients are registered only for inputs
//! that are tracked (frozen base weights get none, and cost nothing).

use super::{FusedKernels, FusedOps};
use burn::backend::Backend;
use burn::backend::TensorMetadata;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::{BoolTensor, FloatTensor};
use burn::tensor::{DType, FloatDType};

type Prim<B> = <B as burn::backend::BackendTypes>::FloatTensorPrimitive;

fn register<B: Backend>(grads: &mut Gradients, node: Option<NodeId>, grad: Prim<B>) {
    if let Some(id) = node {
        grads.register::<B>(id, grad);
    }
}

#[derive(Debug)]
struct RmsNormBackward;

impl<B: FusedKernels> Backward<B, 2> for RmsNormBackward {
    type State = (Prim<B>, Prim<B>, f64);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node, w_node] = ops.parents;
        let dy = grads.consume::<B>(&ops.node);
        let (x, w, eps) = ops.state;
        let (dx, dw) = B::rms_norm_backward(x, w, dy, eps, w_node.is_some());
        register::<B>(grads, x_node.map(|n| n.id), dx);
        if let Some(dw) = dw {
            register::<B>(grads, w_node.map(|n| n.id), dw);
        }
    }
}

#[derive(Debug)]
struct SiluMulBackward;

impl<B: FusedKernels> Backward<B, 2> for SiluMulBackward {
    type State = (Prim<B>, Prim<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [g_node, u_node] = ops.parents;
        let dy = grads.consume::<B>(&ops.node);
        let (g, u) = ops.state;
        let (dg, du) = B::silu_mul_backward(g, u, dy);
        register::<B>(grads, g_node.map(|n| n.id), dg);
        register::<B>(grads, u_node.map(|n| n.id), du);
    }
}

#[derive(Debug)]
struct RopeBackward;

impl<B: FusedKernels> Backward<B, 1> for RopeBackward {
    type State = (Prim<B>, Prim<B>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node] = ops.parents;
        let dy = grads.consume::<B>(&ops.node);
        let (cos, sin) = ops.state;
        register::<B>(grads, x_node.map(|n| n.id), B::rope(dy, cos, sin, true));
    }
}

#[derive(Debug)]
struct AttentionBackward;

impl<B: FusedKernels> Backward<B, 3> for AttentionBackward {
    /// q, k, v, the mask, the scale. The probabilities (`heads × queries × keys` per row, the largest
    /// activation of a layer at a few hundred tokens) are recomputed here rather than kept from the
    /// forward pass: one more `q kᵀ` and softmax per layer, a few per cent of a training step, for
    /// ≈ 11 MB per layer of a 4B model at 300 tokens held until the backward pass reaches it.
    type State = (Prim<B>, Prim<B>, Prim<B>, BoolTensor<B>, f64);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [q_node, k_node, v_node] = ops.parents;
        let dout = grads.consume::<B>(&ops.node);
        let (q, k, v, mask, scale) = ops.state;
        let (_, probs) = B::attention_with_probs(q.clone(), k.clone(), v.clone(), mask, scale);
        let (dq, dk, dv) = B::attention_backward(q, k, v, probs, dout, scale);
        register::<B>(grads, q_node.map(|n| n.id), dq);
        register::<B>(grads, k_node.map(|n| n.id), dk);
        register::<B>(grads, v_node.map(|n| n.id), dv);
    }
}

/// What [`RotaryAttentionBackward`] keeps: the queries and keys before their RMSNorm and rotation, the
/// values, and the constants of the three steps.
#[derive(Debug, Clone)]
struct RotaryAttentionState<B: FusedKernels> {
    q: Prim<B>,
    k: Prim<B>,
    v: Prim<B>,
    q_weight: Prim<B>,
    k_weight: Prim<B>,
    eps: f64,
    cos: Prim<B>,
    sin: Prim<B>,
    mask: BoolTensor<B>,
    scale: f64,
}

impl<B: FusedKernels> RotaryAttentionState<B> {
    fn rotate(&self, x: Prim<B>, weight: Prim<B>) -> Prim<B> {
        B::rotate_heads(x, weight, self.eps, self.cos.clone(), self.sin.clone())
    }

    fn unrotate(&self, x: Prim<B>, weight: Prim<B>, dy: Prim<B>) -> Prim<B> {
        B::rotate_heads_backward(x, weight, self.eps, self.cos.clone(), self.sin.clone(), dy)
    }

    /// The attention output and its probabilities.
    fn attend(&self) -> (Prim<B>, Prim<B>, Prim<B>, Prim<B>) {
        let q = self.rotate(self.q.clone(), self.q_weight.clone());
        let k = self.rotate(self.k.clone(), self.k_weight.clone());
        let (out, probs) = B::attention_with_probs(
            q.clone(),
            k.clone(),
            self.v.clone(),
            self.mask.clone(),
            self.scale,
        );
        (out, probs, q, k)
    }
}

#[derive(Debug)]
struct RotaryAttentionBackward;

impl<B: FusedKernels> Backward<B, 3> for RotaryAttentionBackward {
    /// The queries and keys before their norm and rotation: the rotated ones, which the composed path
    /// keeps beside them until the backward pass, are recomputed here (two RMSNorms and rotations per
    /// layer, elementwise), as are the probabilities (see [`AttentionBackward`]).
    type State = RotaryAttentionState<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [q_node, k_node, v_node] = ops.parents;
        let dout = grads.consume::<B>(&ops.node);
        let st = ops.state;
        let (_, probs, q, k) = st.attend();
        let (dq, dk, dv) = B::attention_backward(q, k, st.v.clone(), probs, dout, st.scale);
        if let Some(node) = q_node {
            let dq = st.unrotate(st.q.clone(), st.q_weight.clone(), dq);
            grads.register::<B>(node.id, dq);
        }
        if let Some(node) = k_node {
            let dk = st.unrotate(st.k.clone(), st.k_weight.clone(), dk);
            grads.register::<B>(node.id, dk);
        }
        register::<B>(grads, v_node.map(|n| n.id), dv);
    }
}

#[derive(Debug)]
struct GatedMlpBackward;

impl<B: FusedKernels> Backward<B, 1> for GatedMlpBackward {
    /// The input and the two frozen weights (held by the model anyway): the projections are recomputed.
    type State = (Prim<B>, Prim<B>, Prim<B>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node] = ops.parents;
        let dy = grads.consume::<B>(&ops.node);
        let (x, w_gate, w_up) = ops.state;
        let gate = B::frozen_linear(x.clone(), w_gate.clone());
        let up = B::frozen_linear(x, w_up.clone());
        let (dgate, dup) = B::silu_mul_backward(gate, up, dy);
        let dx = B::float_add(
            B::frozen_linear_backward(dgate, w_gate),
            B::frozen_linear_backward(dup, w_up),
        );
        register::<B>(grads, x_node.map(|n| n.id), dx);
    }
}

#[derive(Debug)]
struct FrozenLinearBackward;

impl<B: FusedKernels> Backward<B, 1> for FrozenLinearBackward {
    /// The weight, held by the model anyway: the input is not kept.
    type State = Prim<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node] = ops.parents;
        let dy = grads.consume::<B>(&ops.node);
        register::<B>(
            grads,
            x_node.map(|n| n.id),
            B::frozen_linear_backward(dy, ops.state),
        );
    }
}

impl<B: FusedKernels, C: CheckpointStrategy> FusedOps for Autodiff<B, C> {
    fn fused_rms_norm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        let guards = [x.node(), weight.node()];
        let (x, w) = (x.into_primitive(), weight.into_primitive());
        let y = B::rms_norm(x.clone(), w.clone(), eps);
        match RmsNormBackward
            .prepare::<C>(guards)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((x, w, eps), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn fused_silu_mul(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        let guards = [gate.node(), up.node()];
        let (g, u) = (gate.into_primitive(), up.into_primitive());
        let y = B::silu_mul(g.clone(), u.clone());
        match SiluMulBackward
            .prepare::<C>(guards)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((g, u), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn fused_rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let guards = [x.node()];
        let (cos, sin) = (cos.into_primitive(), sin.into_primitive());
        let y = B::rope(x.into_primitive(), cos.clone(), sin.clone(), false);
        match RopeBackward.prepare::<C>(guards).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((cos, sin), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask: BoolTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self> {
        let guards = [q.node(), k.node(), v.node()];
        let (q, k, v) = (q.into_primitive(), k.into_primitive(), v.into_primitive());
        let (out, _) =
            B::attention_with_probs(q.clone(), k.clone(), v.clone(), mask.clone(), scale);
        match AttentionBackward
            .prepare::<C>(guards)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((q, k, v, mask, scale), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

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
    ) -> FloatTensor<Self> {
        if q_weight.is_tracked() || k_weight.is_tracked() {
            // Norm weights that want their gradients are not frozen: the ops that give them one.
            let rotate = |x, w| {
                let normed = Self::fused_rms_norm(x, w, eps);
                let rotated = Self::fused_rope(normed, cos.clone(), sin.clone());
                Self::float_swap_dims(rotated, 1, 2)
            };
            let (q, k) = (rotate(q, q_weight), rotate(k, k_weight));
            return Self::fused_attention(q, k, v, mask, scale);
        }
        let guards = [q.node(), k.node(), v.node()];
        let state = RotaryAttentionState::<B> {
            q: q.into_primitive(),
            k: k.into_primitive(),
            v: v.into_primitive(),
            q_weight: q_weight.into_primitive(),
            k_weight: k_weight.into_primitive(),
            eps,
            cos: cos.into_primitive(),
            sin: sin.into_primitive(),
            mask,
            scale,
        };
        let (out, ..) = state.attend();
        match RotaryAttentionBackward
            .prepare::<C>(guards)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(state, out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    /// The frozen projection: the few-row kernel serves inference, where nothing is tracked.
    fn fused_linear_rows(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::fused_frozen_linear(x, weight)
    }

    fn fused_gated_mlp(
        x: FloatTensor<Self>,
        w_gate: FloatTensor<Self>,
        w_up: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        if w_gate.is_tracked() || w_up.is_tracked() {
            // Weights that want their gradients are not frozen: the ops that give them one.
            let gate = Self::fused_frozen_linear(x.clone(), w_gate);
            let up = Self::fused_frozen_linear(x, w_up);
            return Self::fused_silu_mul(gate, up);
        }
        let guards = [x.node()];
        let (x, wg, wu) = (
            x.into_primitive(),
            w_gate.into_primitive(),
            w_up.into_primitive(),
        );
        let gate = B::frozen_linear(x.clone(), wg.clone());
        let up = B::frozen_linear(x.clone(), wu.clone());
        let y = B::silu_mul(gate, up);
        match GatedMlpBackward
            .prepare::<C>(guards)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((x, wg, wu), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn fused_frozen_linear(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        if weight.is_tracked() {
            // A weight that wants its gradient is not frozen: autodiff's own ops, in f32.
            let weight = match weight.dtype() {
                DType::F32 => weight,
                _ => Self::float_cast(weight, FloatDType::F32),
            };
            return Self::float_matmul(x, Self::float_transpose(weight));
        }
        let guards = [x.node()];
        let w = weight.into_primitive();
        let y = B::frozen_linear(x.into_primitive(), w.clone());
        match FrozenLinearBackward
            .prepare::<C>(guards)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(w, y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}
