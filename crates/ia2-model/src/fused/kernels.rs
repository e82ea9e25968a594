//! Host kernels of the fused operations, on contiguous row-major `f32` slices.
//!
//! Each kernel replaces a chain of 5–15 single-threaded elementwise burn ops (and as many
//! allocations) by one pass over the data, split across the rayon pool by rows. They are plain
//! functions so the tests can compare them with a direct computation in f64.
//!
//! The work of one rayon task is a function defined with `multiversioned!`: compiled twice, as
//! built (SSE2 on x86-64) and for AVX2 + FMA, and picked at run time. The arithmetic is the same
//! either way (Rust never fuses a multiply and an add on its own, and the kernels fix their summation
//! order), so results do not depend on the CPU; AVX2 doubles the lanes and the bytes in flight per
//! load, which decoding, bound by reading weights, needs most.

use rayon::prelude::*;

/// Defines `fn $name` with a portable body and an AVX2 + FMA build of the same body, chosen at run time.
macro_rules! multiversioned {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn portable($($arg: $ty),*) $(-> $ret)? $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            fn avx2($($arg: $ty),*) $(-> $ret)? {
                portable($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the features `avx2` is compiled for were just detected.
                return unsafe { avx2($($arg),*) };
            }
            portable($($arg),*)
        }
    };
}
pub(crate) use multiversioned;

/// Rows per rayon task: at least ~16k elements, so small tensors stay on one thread.
fn rows_per_task(row_len: usize) -> usize {
    (16 * 1024 / row_len.max(1)).max(1)
}

/// Elements per rayon task of the elementwise kernels.
const ELEMS_PER_TASK: usize = 16 * 1024;

/// `exp(x)` to about 2 ulp, written so that loops over it vectorize (no libm call, no branch).
///
/// Cephes' `expf`: `x = n ln2 + r` with `|r| ≤ ln2/2`, a degree-6 polynomial for `e^r`, and `2^n`
/// built in the exponent bits. Inputs are clamped to the finite range of f32.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds to the nearest integer without a `round` instruction.
    const SHIFT: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + SHIFT;
    let n = t - SHIFT;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    let bits = (t.to_bits() as i32 - SHIFT.to_bits() as i32 + 127) << 23;
    e * f32::from_bits(bits as u32)
}

/// Sum of a row with eight accumulators (vectorizes; error ~ the pairwise sum torch uses).
#[inline(always)]
fn sum8(iter: impl Iterator<Item = f32>) -> f32 {
    let mut acc = [0f32; 8];
    for (i, v) in iter.enumerate() {
        acc[i % 8] += v;
    }
    acc.iter().sum()
}

#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + ra.iter().zip(rb).map(|(x, y)| x * y).sum::<f32>()
}

/// `1 / sqrt(mean(x²) + eps)` of one row, as transformers computes it in f32.
#[inline(always)]
fn inv_rms(row: &[f32], eps: f32) -> f32 {
    let ms = dot(row, row) / row.len() as f32;
    1.0 / (ms + eps).sqrt()
}

// ---------------------------------------------------------------------------------------------------------
// RMSNorm

/// RMSNorm over rows of length `w.len()`: `y = w · x / sqrt(mean(x²) + eps)`.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let chunk = w.len() * rows_per_task(w.len());
    let mut y = vec![0f32; x.len()];
    y.par_chunks_mut(chunk)
        .zip(x.par_chunks(chunk))
        .for_each(|(ys, xs)| rms_norm_rows(ys, xs, w, eps));
    y
}

multiversioned! {
    fn rms_norm_rows(ys: &mut [f32], xs: &[f32], w: &[f32], eps: f32) {
        let n = w.len();
        for (yr, xr) in ys.chunks_exact_mut(n).zip(xs.chunks_exact(n)) {
            let r = inv_rms(xr, eps);
            for ((y, &x), &w) in yr.iter_mut().zip(xr).zip(w) {
                *y = w * (x * r);
            }
        }
    }
}

/// Gradients of [`rms_norm`]: `dx` always, `dw` (summed over rows) when asked for.
///
/// With `g = w ⊙ dy` and `r = 1/rms(x)`: `dx = r g − x r³ (g·x) / n`, `dw = Σ_rows dy ⊙ x r`.
/// The per-task partial sums of `dw` are added in task order, so `dw` does not depend on the threads.
pub fn rms_norm_backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    eps: f32,
    want_dw: bool,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let n = w.len();
    let chunk = n * rows_per_task(n);
    let mut dx = vec![0f32; x.len()];
    let dw_parts: Vec<Vec<f32>> = dx
        .par_chunks_mut(chunk)
        .zip(x.par_chunks(chunk).zip(dy.par_chunks(chunk)))
        .map(|(dxs, (xs, dys))| rms_norm_backward_rows(dxs, xs, dys, w, eps, want_dw))
        .collect();
    let dw = want_dw.then(|| {
        let mut dw = vec![0f32; n];
        for part in &dw_parts {
            for (a, b) in dw.iter_mut().zip(part) {
                *a += b;
            }
        }
        dw
    });
    (dx, dw)
}

multiversioned! {
    /// `dx` of a block of rows, and its partial `dw` (empty unless `want_dw`).
    fn rms_norm_backward_rows(
        dxs: &mut [f32],
        xs: &[f32],
        dys: &[f32],
        w: &[f32],
        eps: f32,
        want_dw: bool,
    ) -> Vec<f32> {
        let n = w.len();
        let mut dw = if want_dw { vec![0f32; n] } else { Vec::new() };
        let mut g = vec![0f32; n];
        for ((dxr, xr), dyr) in dxs
            .chunks_exact_mut(n)
            .zip(xs.chunks_exact(n))
            .zip(dys.chunks_exact(n))
        {
            let r = inv_rms(xr, eps);
            for ((g, &w), &dy) in g.iter_mut().zip(w).zip(dyr) {
                *g = w * dy;
            }
            let c = dot(&g, xr) * r * r * r / n as f32;
            for ((dx, &g), &x) in dxr.iter_mut().zip(&g).zip(xr) {
                *dx = r * g - c * x;
            }
            if want_dw {
                for ((dw, &dy), &x) in dw.iter_mut().zip(dyr).zip(xr) {
                    *dw += dy * x * r;
                }
            }
        }
        dw
    }
}

// ---------------------------------------------------------------------------------------------------------
// SiLU gating

/// `silu(g) ⊙ u` (the gated MLP of Llama and Qwen).
pub fn silu_mul(g: &[f32], u: &[f32]) -> Vec<f32> {
    let mut y = vec![0f32; g.len()];
    y.par_chunks_mut(ELEMS_PER_TASK)
        .zip(
            g.par_chunks(ELEMS_PER_TASK)
                .zip(u.par_chunks(ELEMS_PER_TASK)),
        )
        .for_each(|(ys, (gs, us))| silu_mul_chunk(ys, gs, us));
    y
}

multiversioned! {
    fn silu_mul_chunk(ys: &mut [f32], gs: &[f32], us: &[f32]) {
        for ((y, &g), &u) in ys.iter_mut().zip(gs).zip(us) {
            *y = g / (1.0 + exp(-g)) * u;
        }
    }
}

/// Gradients of [`silu_mul`]: `dg = dy u σ(g) (1 + g (1 − σ(g)))`, `du = dy g σ(g)`.
pub fn silu_mul_backward(g: &[f32], u: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut dg = vec![0f32; g.len()];
    let mut du = vec![0f32; g.len()];
    dg.par_chunks_mut(ELEMS_PER_TASK)
        .zip(du.par_chunks_mut(ELEMS_PER_TASK))
        .zip(
            g.par_chunks(ELEMS_PER_TASK)
                .zip(u.par_chunks(ELEMS_PER_TASK))
                .zip(dy.par_chunks(ELEMS_PER_TASK)),
        )
        .for_each(|((dgs, dus), ((gs, us), dys))| silu_mul_backward_chunk(dgs, dus, gs, us, dys));
    (dg, du)
}

multiversioned! {
    fn silu_mul_backward_chunk(dgs: &mut [f32], dus: &mut [f32], gs: &[f32], us: &[f32], dys: &[f32]) {
        for ((((dg, du), &g), &u), &dy) in dgs.iter_mut().zip(dus).zip(gs).zip(us).zip(dys) {
            let s = 1.0 / (1.0 + exp(-g));
            *dg = dy * u * s * (1.0 + g * (1.0 - s));
            *du = dy * g * s;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// RoPE

/// Rotary embedding of `x: [rows, heads, d]` with per-row tables `cos, sin: [rows, d]`:
/// `y = x ⊙ cos + rotate_half(x) ⊙ sin`, `rotate_half([x1, x2]) = [−x2, x1]`.
///
/// With `transpose` it applies the transposed map (`dx = dy ⊙ cos + rotate_halfᵀ(dy ⊙ sin)`), which is
/// the backward pass (and the inverse rotation).
pub fn rope(x: &[f32], cos: &[f32], sin: &[f32], d: usize, transpose: bool) -> Vec<f32> {
    let rows = cos.len() / d;
    let per_row = x.len() / rows;
    let task_rows = rows_per_task(per_row);
    let mut y = vec![0f32; x.len()];
    y.par_chunks_mut(per_row * task_rows)
        .zip(x.par_chunks(per_row * task_rows))
        .enumerate()
        .for_each(|(ti, (ys, xs))| {
            let tables = (ti * task_rows * d)..((ti + 1) * task_rows * d).min(cos.len());
            rope_rows(ys, xs, &cos[tables.clone()], &sin[tables], d, transpose)
        });
    y
}

multiversioned! {
    /// Rows `[heads, d]` of `x` with their own rows of the tables.
    fn rope_rows(ys: &mut [f32], xs: &[f32], cos: &[f32], sin: &[f32], d: usize, transpose: bool) {
        let half = d / 2;
        let per_row = xs.len() / (cos.len() / d);
        let rows = ys
            .chunks_exact_mut(per_row)
            .zip(xs.chunks_exact(per_row))
            .zip(cos.chunks_exact(d).zip(sin.chunks_exact(d)));
        for ((yr, xr), (c, s)) in rows {
            for (yh, xh) in yr.chunks_exact_mut(d).zip(xr.chunks_exact(d)) {
                let (x1, x2) = xh.split_at(half);
                let (y1, y2) = yh.split_at_mut(half);
                if transpose {
                    for i in 0..half {
                        y1[i] = x1[i] * c[i] + x2[i] * s[half + i];
                        y2[i] = x2[i] * c[half + i] - x1[i] * s[i];
                    }
                } else {
                    for i in 0..half {
                        y1[i] = x1[i] * c[i] - x2[i] * s[i];
                        y2[i] = x2[i] * c[half + i] + x1[i] * s[half + i];
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Attention softmax

/// Where each score row sits: rows are `[batch][kv head][group][query]`, the mask is
/// `[batch][query][key]` with nonzero meaning "masked".
#[derive(Debug, Clone, Copy)]
pub struct ScoreRows {
    /// Rows per batch element (`kv_heads · groups · queries`).
    pub per_batch: usize,
    /// Query positions per head.
    pub queries: usize,
    /// Key positions (the row length).
    pub keys: usize,
}

impl ScoreRows {
    #[inline(always)]
    fn mask_row<'a>(&self, mask: &'a [u8], row: usize) -> &'a [u8] {
        let (b, q) = (row / self.per_batch, row % self.queries);
        &mask[(b * self.queries + q) * self.keys..][..self.keys]
    }
}

/// In place: `scores ← softmax(scale · scores)` over each row, masked keys getting probability 0.
/// A row with every key masked gets all zeros (it has nothing to attend to); a NaN score among the
/// unmasked keys makes the whole row NaN, as torch's softmax does.
pub fn masked_softmax(scores: &mut [f32], mask: &[u8], rows: ScoreRows, scale: f32) {
    let task_rows = rows_per_task(rows.keys);
    scores
        .par_chunks_mut(rows.keys * task_rows)
        .enumerate()
        .for_each(|(ti, chunk)| softmax_rows(chunk, ti * task_rows, mask, rows, scale));
}

multiversioned! {
    /// The rows of `chunk`, the first of which is score row `row0`.
    fn softmax_rows(chunk: &mut [f32], row0: usize, mask: &[u8], rows: ScoreRows, scale: f32) {
        for (ri, row) in chunk.chunks_exact_mut(rows.keys).enumerate() {
            let m = rows.mask_row(mask, row0 + ri);
            let max = row
                .iter()
                .zip(m)
                .filter(|&(_, &m)| m == 0)
                .map(|(&s, _)| s * scale)
                .fold(f32::NEG_INFINITY, f32::max);
            if max == f32::NEG_INFINITY {
                // No finite score to attend to. NaN stays NaN (as in torch's softmax: an all-NaN row
                // comes from corrupt weights or inputs, which must not be hidden); a row with every key
                // masked gets zeros, as burn's composed attention gives (the decoder never builds one:
                // a query always sees itself).
                let nan = row.iter().zip(m).any(|(s, &m)| m == 0 && s.is_nan());
                row.fill(if nan { f32::NAN } else { 0.0 });
                continue;
            }
            for (s, &m) in row.iter_mut().zip(m) {
                let e = exp(*s * scale - max);
                *s = if m == 0 { e } else { 0.0 };
            }
            let inv = 1.0 / sum8(row.iter().copied());
            for s in row.iter_mut() {
                *s *= inv;
            }
        }
    }
}

/// In place: `dp ← scale · p ⊙ (dp − Σ_j p_j dp_j)`, the gradient of the scores of
/// [`masked_softmax`] from the gradient of its probabilities.
pub fn softmax_backward(dp: &mut [f32], p: &[f32], keys: usize, scale: f32) {
    let task = keys * rows_per_task(keys);
    dp.par_chunks_mut(task)
        .zip(p.par_chunks(task))
        .for_each(|(dps, ps)| softmax_backward_rows(dps, ps, keys, scale));
}

multiversioned! {
    fn softmax_backward_rows(dps: &mut [f32], ps: &[f32], keys: usize, scale: f32) {
        for (dr, pr) in dps.chunks_exact_mut(keys).zip(ps.chunks_exact(keys)) {
            let c = dot(dr, pr);
            for (d, &p) in dr.iter_mut().zip(pr) {
                *d = scale * p * (*d - c);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Few-row projections

/// `y = x Wᵀ` for a few rows `x: [rows, inp]` and `W: [out, inp]` (the stored layout), reading `W` once.
///
/// Decoding one token per sequence is bound by reading the weights; gemm's packing for a skinny left
/// operand wastes a good part of the memory bandwidth. Here each task takes a block of `W`'s rows and
/// dots each with every input row while it is in cache.
pub fn linear_rows(x: &[f32], w: &[f32], inp: usize) -> Vec<f32> {
    super::frozen_linear::linear_rows(x, super::frozen_linear::Weights::F32(w), inp)
}

/// Test inputs of the kernels' unit tests: `n` values uniform in `[-half_width, half_width)` from a seeded
/// LCG.
#[cfg(test)]
pub(crate) fn test_values(n: usize, seed: u64, half_width: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0) * half_width
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u64) -> Vec<f32> {
        test_values(n, seed, 2.0)
    }

    fn close(a: &[f32], b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len());
        for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x as f64 - y).abs() <= tol * (1.0 + y.abs()),
                "element {i}: {x} vs {y}"
            );
        }
    }

    #[test]
    fn linear_rows_matches_f64() {
        let (inp, out) = (70, 131);
        let w = data(out * inp, 12);
        for rows in [1, 3] {
            let x = data(rows * inp, 13 + rows as u64);
            let y = linear_rows(&x, &w, inp);
            let expect: Vec<f64> = (0..rows * out)
                .map(|i| {
                    let (r, o) = (i / out, i % out);
                    (0..inp)
                        .map(|j| x[r * inp + j] as f64 * w[o * inp + j] as f64)
                        .sum()
                })
                .collect();
            close(&y, &expect, 1e-5);
        }
    }

    #[test]
    fn exp_is_accurate_over_the_range_used() {
        let mut worst = 0f64;
        for i in -86_900..88_000 {
            let x = i as f32 * 1e-3;
            let rel = ((exp(x) as f64 - (x as f64).exp()) / (x as f64).exp()).abs();
            worst = worst.max(rel);
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp(-1e30), exp(-87.0));
        assert!(exp(1e30).is_finite());
    }

    #[test]
    fn rms_norm_and_its_gradient_match_f64() {
        let (rows, n, eps) = (37, 24, 1e-6f32);
        let (x, w, dy) = (data(rows * n, 1), data(n, 2), data(rows * n, 3));
        let y = rms_norm(&x, &w, eps);
        let (dx, dw) = rms_norm_backward(&x, &w, &dy, eps, true);
        let mut ey = vec![0f64; rows * n];
        let mut edx = vec![0f64; rows * n];
        let mut edw = vec![0f64; n];
        for r in 0..rows {
            let xr: Vec<f64> = x[r * n..][..n].iter().map(|&v| v as f64).collect();
            let ms = xr.iter().map(|v| v * v).sum::<f64>() / n as f64;
            let inv = 1.0 / (ms + eps as f64).sqrt();
            let g: Vec<f64> = (0..n).map(|i| w[i] as f64 * dy[r * n + i] as f64).collect();
            let gx: f64 = (0..n).map(|i| g[i] * xr[i]).sum();
            for i in 0..n {
                ey[r * n + i] = w[i] as f64 * xr[i] * inv;
                edx[r * n + i] = inv * g[i] - xr[i] * inv.powi(3) * gx / n as f64;
                edw[i] += dy[r * n + i] as f64 * xr[i] * inv;
            }
        }
        close(&y, &ey, 1e-5);
        close(&dx, &edx, 1e-4);
        close(&dw.unwrap(), &edw, 1e-4);
        assert!(rms_norm_backward(&x, &w, &dy, eps, false).1.is_none());
    }

    #[test]
    fn silu_mul_and_its_gradient_match_f64() {
        let n = 40_000;
        let (g, u, dy) = (data(n, 4), data(n, 5), data(n, 6));
        let y = silu_mul(&g, &u);
        let (dg, du) = silu_mul_backward(&g, &u, &dy);
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let ey: Vec<f64> = (0..n)
            .map(|i| g[i] as f64 * sig(g[i] as f64) * u[i] as f64)
            .collect();
        let edg: Vec<f64> = (0..n)
            .map(|i| {
                let (g, s) = (g[i] as f64, sig(g[i] as f64));
                dy[i] as f64 * u[i] as f64 * s * (1.0 + g * (1.0 - s))
            })
            .collect();
        let edu: Vec<f64> = (0..n)
            .map(|i| dy[i] as f64 * g[i] as f64 * sig(g[i] as f64))
            .collect();
        close(&y, &ey, 1e-5);
        close(&dg, &edg, 1e-5);
        close(&du, &edu, 1e-5);
    }

    #[test]
    fn rope_matches_the_formula_across_task_boundaries() {
        // 300 rows of 2 heads x 32: 256 rows per rayon task, so two tasks with their own table rows.
        let (rows, heads, d) = (300, 2, 32);
        let x = data(rows * heads * d, 20);
        let (cos, sin) = (data(rows * d, 21), data(rows * d, 22));
        for transpose in [false, true] {
            let y = rope(&x, &cos, &sin, d, transpose);
            let sign = if transpose { -1.0 } else { 1.0 };
            let mut expect = vec![0f64; x.len()];
            for r in 0..rows {
                for h in 0..heads {
                    let o = (r * heads + h) * d;
                    for i in 0..d {
                        // rotate_half(x)[i] = -x[i + d/2] (first half), x[i - d/2] (second half);
                        // its transpose moves sin to the partner's index with the opposite sign.
                        let (partner, rot_sign) = if i < d / 2 {
                            (i + d / 2, -1.0)
                        } else {
                            (i - d / 2, 1.0)
                        };
                        let sin_at = if transpose { partner } else { i };
                        expect[o + i] = x[o + i] as f64 * cos[r * d + i] as f64
                            + sign * rot_sign * x[o + partner] as f64 * sin[r * d + sin_at] as f64;
                    }
                }
            }
            close(&y, &expect, 1e-5);
        }
    }

    #[test]
    fn rope_transpose_is_the_adjoint_and_undoes_the_rotation() {
        let (rows, heads, d) = (5, 3, 8);
        let x = data(rows * heads * d, 7);
        let z = data(rows * heads * d, 8);
        let angles = data(rows * d / 2, 9);
        let mut cos = vec![0f32; rows * d];
        let mut sin = vec![0f32; rows * d];
        for r in 0..rows {
            for i in 0..d / 2 {
                let a = angles[r * d / 2 + i];
                for off in [0, d / 2] {
                    cos[r * d + off + i] = a.cos();
                    sin[r * d + off + i] = a.sin();
                }
            }
        }
        let y = rope(&x, &cos, &sin, d, false);
        // <rope(x), z> = <x, ropeᵀ(z)>
        let lhs: f64 = y.iter().zip(&z).map(|(a, b)| (a * b) as f64).sum();
        let zt = rope(&z, &cos, &sin, d, true);
        let rhs: f64 = x.iter().zip(&zt).map(|(a, b)| (a * b) as f64).sum();
        assert!((lhs - rhs).abs() < 1e-4, "{lhs} vs {rhs}");
        // A rotation: the transpose is its inverse.
        let back = rope(&y, &cos, &sin, d, true);
        close(
            &back,
            &x.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            1e-5,
        );
        // Direct formula for one element of the second half.
        let (r, h, i) = (2, 1, 1);
        let at = |v: &[f32], j: usize| v[(r * heads + h) * d + j];
        let expect = at(&x, d / 2 + i) * cos[r * d + i] + at(&x, i) * sin[r * d + i];
        assert!((at(&y, d / 2 + i) - expect).abs() < 1e-6);
    }

    #[test]
    fn masked_softmax_and_its_gradient_match_f64() {
        // 2 batch rows, 2 kv heads x 2 groups, 3 queries; 5 keys (one rayon task) and 4099 keys (4 rows
        // per task, so the mask rows of later tasks are looked up from their own first row).
        for t in [5, 4099] {
            check_masked_softmax(t);
        }
    }

    fn check_masked_softmax(t: usize) {
        let (b, heads, q) = (2, 4, 3);
        let rows = ScoreRows {
            per_batch: heads * q,
            queries: q,
            keys: t,
        };
        let scores = data(b * heads * q * t, 10);
        let mut mask = vec![0u8; b * q * t];
        for (i, m) in mask.iter_mut().enumerate() {
            *m = u8::from(i % 3 == 1);
        }
        mask[(q + 1) * t..(q + 2) * t].fill(1); // batch 1, query 1: everything masked
        let scale = 0.7f32;
        let mut p = scores.clone();
        masked_softmax(&mut p, &mask, rows, scale);
        let dp = data(p.len(), 11);
        let mut ds = dp.clone();
        softmax_backward(&mut ds, &p, t, scale);
        for row in 0..b * heads * q {
            let m = rows.mask_row(&mask, row);
            let s = &scores[row * t..][..t];
            let e: Vec<f64> = (0..t)
                .map(|j| {
                    if m[j] == 0 {
                        (s[j] as f64 * scale as f64).exp()
                    } else {
                        0.0
                    }
                })
                .collect();
            let z: f64 = e.iter().sum();
            let ep: Vec<f64> = e
                .iter()
                .map(|v| if z > 0.0 { v / z } else { 0.0 })
                .collect();
            close(&p[row * t..][..t], &ep, 1e-6);
            let g = &dp[row * t..][..t];
            let c: f64 = (0..t).map(|j| ep[j] * g[j] as f64).sum();
            let eds: Vec<f64> = (0..t)
                .map(|j| scale as f64 * ep[j] * (g[j] as f64 - c))
                .collect();
            close(&ds[row * t..][..t], &eds, 1e-5);
        }
        let dead = heads * q + 1; // batch 1, head 0, query 1
        assert!(p[dead * t..][..t].iter().all(|&v| v == 0.0));
    }

    /// NaN stays NaN: an all-NaN row and a row with one NaN among its unmasked keys give NaN
    /// probabilities (torch's softmax), a NaN under the mask is ignored, a fully masked row gives zeros.
    #[test]
    fn masked_softmax_keeps_nan() {
        let t = 4;
        let rows = ScoreRows {
            per_batch: 4,
            queries: 4,
            keys: t,
        };
        let nan = f32::NAN;
        #[rustfmt::skip]
        let scores = vec![
            nan, nan, nan, nan, // all NaN
            0.5, nan, 1.0, 2.0, // one NaN, unmasked
            0.5, nan, 1.0, 2.0, // one NaN, masked
            nan, nan, nan, nan, // all NaN, all masked
        ];
        #[rustfmt::skip]
        let mask = vec![
            0, 0, 0, 0,
            0, 0, 0, 0,
            0, 1, 0, 0,
            1, 1, 1, 1,
        ];
        let mut p = scores.clone();
        masked_softmax(&mut p, &mask, rows, 1.0);
        assert!(p[..8].iter().all(|v| v.is_nan()), "{:?}", &p[..8]);
        let z: f64 = [0.5f64, 1.0, 2.0].iter().map(|x| x.exp()).sum();
        close(
            &p[8..12],
            &[0.5f64.exp() / z, 0.0, 1f64.exp() / z, 2f64.exp() / z],
            1e-6,
        );
        assert_eq!(&p[12..], &[0.0; 4]);
    }
}
