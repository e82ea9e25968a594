//! [`FusedKernels`] and [`FusedOps`] on flex: host kernels on the tensors' storage, flex's gemm for the
//! matrix products of attention.

use super::frozen_linear::{self, Weights};
use super::kernels::{self, ScoreRows};
use super::{FusedKernels, FusedOps};
use burn::backend::Flex;
use burn::backend::tensor::BoolTensor;
use burn::tensor::{DType, Shape, TensorData, bf16, f16};
use burn_flex::FlexTensor;
use burn_flex::ops::matmul::matmul;
use std::borrow::Cow;

/// The elements of an f32 tensor in row-major order: borrowed when already contiguous (the usual case),
/// else one contiguous copy (the gradient of a transposed view, say), taken over without a second copy.
fn values(t: &FlexTensor) -> Cow<'_, [f32]> {
    assert_eq!(t.dtype(), DType::F32, "fused ops compute in f32");
    match t.as_slice::<f32>() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(
            t.to_contiguous()
                .into_data()
                .try_into_vec::<f32>()
                .expect("a contiguous f32 tensor converts to its values"),
        ),
    }
}

/// Runs `f` on a weight's elements in its own precision: borrowed when contiguous (loaded weights
/// are), else from one contiguous copy.
fn with_weights<R>(w: &FlexTensor, f: impl FnOnce(Weights<'_>) -> R) -> R {
    let copy;
    let w = if w.is_contiguous() {
        w
    } else {
        copy = w.to_contiguous();
        &copy
    };
    let whole = "a contiguous tensor has a slice";
    match w.dtype() {
        DType::F32 => f(Weights::F32(w.as_slice::<f32>().expect(whole))),
        DType::BF16 => f(Weights::Bf16(w.as_slice::<bf16>().expect(whole))),
        DType::F16 => f(Weights::F16(w.as_slice::<f16>().expect(whole))),
        other => panic!("frozen linear: weights in {other:?} are not supported (f32, bf16, f16)"),
    }
}

/// `(rows, in, out)` of `x: [rows, in]` times `W: [out, in]` transposed; panics when they do not fit.
fn linear_dims(what: &str, x: &FlexTensor, w: &FlexTensor) -> (usize, usize, usize) {
    let (xd, wd) = (dims(x), dims(w));
    assert!(
        xd.len() == 2 && wd.len() == 2 && xd[1] == wd[1],
        "{what}: x {xd:?} and weight {wd:?} do not fit"
    );
    (xd[0], xd[1], wd[0])
}

fn dims(t: &FlexTensor) -> Vec<usize> {
    t.layout().shape().iter().copied().collect()
}

fn tensor(data: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, shape))
}

fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

/// `[b, heads, s, d]` viewed as `[b, kv_heads, groups·s, d]` (heads are ordered group-major, as
/// transformers' `repeat_kv` assumes).
fn grouped(q: FlexTensor, kv_heads: usize) -> FlexTensor {
    let [b, h, s, d] = dims(&q)[..] else {
        panic!("attention: q must have rank 4")
    };
    contiguous(q).reshape(Shape::from(vec![b, kv_heads, h / kv_heads * s, d]))
}

impl FusedKernels for Flex {
    fn rms_norm(x: FlexTensor, weight: FlexTensor, eps: f64) -> FlexTensor {
        let y = kernels::rms_norm(&values(&x), &values(&weight), eps as f32);
        tensor(y, dims(&x))
    }

    fn rms_norm_backward(
        x: FlexTensor,
        weight: FlexTensor,
        dy: FlexTensor,
        eps: f64,
        want_dweight: bool,
    ) -> (FlexTensor, Option<FlexTensor>) {
        let (dx, dw) = kernels::rms_norm_backward(
            &values(&x),
            &values(&weight),
            &values(&dy),
            eps as f32,
            want_dweight,
        );
        (tensor(dx, dims(&x)), dw.map(|dw| tensor(dw, dims(&weight))))
    }

    fn silu_mul(gate: FlexTensor, up: FlexTensor) -> FlexTensor {
        assert_eq!(dims(&gate), dims(&up), "silu_mul: shapes differ");
        tensor(kernels::silu_mul(&values(&gate), &values(&up)), dims(&gate))
    }

    fn silu_mul_backward(
        gate: FlexTensor,
        up: FlexTensor,
        dy: FlexTensor,
    ) -> (FlexTensor, FlexTensor) {
        let (dg, du) = kernels::silu_mul_backward(&values(&gate), &values(&up), &values(&dy));
        (tensor(dg, dims(&gate)), tensor(du, dims(&up)))
    }

    fn rope(x: FlexTensor, cos: FlexTensor, sin: FlexTensor, transpose: bool) -> FlexTensor {
        let d = *dims(&x).last().expect("rope: x has no dimensions");
        let y = kernels::rope(&values(&x), &values(&cos), &values(&sin), d, transpose);
        tensor(y, dims(&x))
    }

    fn attention_with_probs(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        mask: BoolTensor<Flex>,
        scale: f64,
    ) -> (FlexTensor, FlexTensor) {
        let q_dims = dims(&q);
        let (kv_heads, s, t) = (dims(&k)[1], q_dims[2], dims(&k)[2]);
        let qg = grouped(q, kv_heads);
        let per_batch = dims(&qg)[1] * dims(&qg)[2];
        let mut probs = contiguous(matmul(qg, k.transpose(2, 3)));
        let mask = mask.to_contiguous();
        let rows = ScoreRows {
            per_batch,
            queries: s,
            keys: t,
        };
        kernels::masked_softmax(
            probs.storage_mut::<f32>(),
            mask.storage::<u8>(),
            rows,
            scale as f32,
        );
        let out = contiguous(matmul(probs.clone(), v)).reshape(Shape::from(q_dims));
        (out, probs)
    }

    fn frozen_linear(x: FlexTensor, weight: FlexTensor) -> FlexTensor {
        let (rows, inp, out) = linear_dims("frozen_linear", &x, &weight);
        if weight.dtype() == DType::F32 {
            // Exactly the products the composed `linear` runs (so f32 results do not change): `x Wᵀ`
            // through the transposed view, and `W x` for one row.
            return if rows == 1 {
                contiguous(matmul(weight, x.reshape(Shape::from(vec![inp, 1]))))
                    .reshape(Shape::from(vec![1, out]))
            } else {
                matmul(x, weight.transpose(0, 1))
            };
        }
        let y = with_weights(&weight, |w| {
            frozen_linear::forward(&values(&x), w, rows, inp, out)
        });
        tensor(y, vec![rows, out])
    }

    fn frozen_linear_backward(dy: FlexTensor, weight: FlexTensor) -> FlexTensor {
        let d = dims(&dy);
        assert!(d.len() == 2, "frozen_linear backward: dy {d:?} is not 2-D");
        let (rows, out) = (d[0], d[1]);
        let wd = dims(&weight);
        assert!(
            wd.len() == 2 && wd[0] == out,
            "frozen_linear backward: dy [{rows}, {out}] and weight {wd:?} do not fit"
        );
        let inp = wd[1];
        if weight.dtype() == DType::F32 {
            // The composed backward's products: `dy W`, and `Wᵀ dy` for one row.
            return if rows == 1 {
                contiguous(matmul(
                    weight.transpose(0, 1),
                    dy.reshape(Shape::from(vec![out, 1])),
                ))
                .reshape(Shape::from(vec![1, inp]))
            } else {
                matmul(dy, weight)
            };
        }
        let dx = with_weights(&weight, |w| {
            frozen_linear::backward(&values(&dy), w, rows, inp, out)
        });
        tensor(dx, vec![rows, inp])
    }

    fn attention_backward(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        probs: FlexTensor,
        dout: FlexTensor,
        scale: f64,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let q_dims = dims(&q);
        let kv_heads = dims(&k)[1];
        let t = dims(&k)[2];
        let (qg, dg) = (grouped(q, kv_heads), grouped(dout, kv_heads));
        let dv = matmul(probs.clone().transpose(2, 3), dg.clone());
        let mut ds = contiguous(matmul(dg, v.transpose(2, 3)));
        kernels::softmax_backward(ds.storage_mut::<f32>(), &values(&probs), t, scale as f32);
        let dq = contiguous(matmul(ds.clone(), k)).reshape(Shape::from(q_dims));
        let dk = matmul(ds.transpose(2, 3), qg);
        (dq, dk, dv)
    }
}

impl FusedOps for Flex {
    fn fused_rms_norm(x: FlexTensor, weight: FlexTensor, eps: f64) -> FlexTensor {
        <Flex as FusedKernels>::rms_norm(x, weight, eps)
    }

    fn fused_silu_mul(gate: FlexTensor, up: FlexTensor) -> FlexTensor {
        <Flex as FusedKernels>::silu_mul(gate, up)
    }

    fn fused_rope(x: FlexTensor, cos: FlexTensor, sin: FlexTensor) -> FlexTensor {
        <Flex as FusedKernels>::rope(x, cos, sin, false)
    }

    fn fused_attention(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        mask: BoolTensor<Flex>,
        scale: f64,
    ) -> FlexTensor {
        <Flex as FusedKernels>::attention_with_probs(q, k, v, mask, scale).0
    }

    fn fused_rotary_attention(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        q_weight: FlexTensor,
        k_weight: FlexTensor,
        eps: f64,
        cos: FlexTensor,
        sin: FlexTensor,
        mask: BoolTensor<Flex>,
        scale: f64,
    ) -> FlexTensor {
        let q = <Flex as FusedKernels>::rotate_heads(q, q_weight, eps, cos.clone(), sin.clone());
        let k = <Flex as FusedKernels>::rotate_heads(k, k_weight, eps, cos, sin);
        <Flex as FusedKernels>::attention_with_probs(q, k, v, mask, scale).0
    }

    fn fused_linear_rows(x: FlexTensor, weight: FlexTensor) -> FlexTensor {
        let (rows, inp, out) = linear_dims("linear_rows", &x, &weight);
        if rows == 0 || inp == 0 {
            return tensor(vec![0f32; rows * out], vec![rows, out]);
        }
        let y = with_weights(&weight, |w| frozen_linear::linear_rows(&values(&x), w, inp));
        tensor(y, vec![rows, out])
    }

    fn fused_frozen_linear(x: FlexTensor, weight: FlexTensor) -> FlexTensor {
        <Flex as FusedKernels>::frozen_linear(x, weight)
    }

    fn fused_gated_mlp(x: FlexTensor, w_gate: FlexTensor, w_up: FlexTensor) -> FlexTensor {
        let gate = <Flex as FusedKernels>::frozen_linear(x.clone(), w_gate);
        let up = <Flex as FusedKernels>::frozen_linear(x, w_up);
        <Flex as FusedKernels>::silu_mul(gate, up)
    }
}
