//! Host kernels of the frozen projection `y = x Wᵀ` with `W: [out, in]` held in f32, bf16 or f16, and
//! of its input gradient `dx = dy W`.
//!
//! # Numerics
//!
//! Activations, gradients and every accumulation are f32. A bf16 or f16 weight element is widened to
//! f32 exactly (every bf16 and f16 value is an f32 value), so the result equals that of an f32 run
//! whose weights are the bf16 / f16 values, up to the order of the f32 summation (gemm's blocking, and
//! for the backward pass the sum over weight tiles). The tests check both against a direct f64
//! computation from the rounded weights.
//!
//! # Memory and speed
//!
//! A half-precision weight is never materialised whole in f32. A product is split into tasks over the
//! rayon pool by blocks of `W` of about [`TASK_ELEMS`] elements (1 MiB of f32): rows of `W` (output
//! columns) in the forward pass, columns of `W` (input columns of `dx`) in the backward pass. Each task
//! widens its block into a buffer of its own thread, hands it to a single-threaded call of the same
//! `gemm` crate flex uses, and writes its own columns of the result. So each product is one parallel
//! region (few wake-ups of the pool's threads), each weight element is widened and packed once, by the
//! core that multiplies it, and every output element is one gemm sum over the whole inner dimension,
//! whatever the number of threads. A weight with far more outputs than inputs (the language-model head)
//! is summed in the backward pass over blocks of its rows instead (`backward_by_rows`). Up to
//! [`FEW_ROWS`] rows (decoding, the language-model head at a few positions) both passes read `W` once
//! instead: each task widens one row of `W` at a time into a small buffer and dots it with every input
//! row ([`linear_rows`]), or adds its multiples into a partial `dx` of its own (summed in a fixed order).
//! f32 weights are read in place, each product one gemm call threaded by gemm (with nothing to widen,
//! that is the faster split for them).
//!
//! Where [`widening::applies`] (AVX2, FMA and F16C, `inp` a multiple of eight), a half-precision weight
//! skips the f32 block and gemm altogether: the same tasks run the register-widening kernels of
//! [`widening`], which read the bf16 / f16 elements straight into the multiply-adds (their measurements
//! are in that module: faster than this path and than f32 weights through gemm at every size measured).
//! The backward blocks of those tasks are whole blocks of [`widening::COLUMN_BLOCK`] columns.
//!
//! Measured on the 2-core AVX2 machine of the project (release build, best of 15): one task per block
//! instead of gemm's own threading over widened 4 MiB tiles took bf16 products of 144 rows from
//! 73–104 to 108–139 GFLOP/s (`[144, 2048] × [1024, 2048]ᵀ`: 73 → 118) and of 600 rows from 129 to
//! 187 GFLOP/s, f32 from 135 to 169 (2 cores; about 190 at most); at the language-model head, 8 rows of a
//! `[151669, 1024]` weight, bf16 takes about half the time of f32 forward and backward, and the
//! peak memory of forward + backward grows by 10 MiB where the former per-call f32 copy took 586 MiB.

use super::kernels::{dot, multiversioned};
use super::widening;
use burn::tensor::{bf16, f16};
use rayon::prelude::*;

/// A weight's elements in row-major order, `[out, in]`, in the precision it is held in.
#[derive(Debug, Clone, Copy)]
pub enum Weights<'a> {
    F32(&'a [f32]),
    Bf16(&'a [bf16]),
    F16(&'a [f16]),
}

impl Weights<'_> {
    pub fn len(&self) -> usize {
        match self {
            Weights::F32(w) => w.len(),
            Weights::Bf16(w) => w.len(),
            Weights::F16(w) => w.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Elements `start..start + dst.len()` widened to f32 into `dst`, split across the rayon pool.
    fn widen_par(self, start: usize, dst: &mut [f32]) {
        dst.par_chunks_mut(WIDEN_PER_TASK)
            .enumerate()
            .for_each(|(i, d)| widen_task(self, start + i * WIDEN_PER_TASK, d));
    }
}

/// Elements widened per rayon task.
const WIDEN_PER_TASK: usize = 64 * 1024;

/// Rows of `W` per rayon task of [`linear_rows`].
const ROWS_PER_TASK: usize = 64;

/// Up to this many rows, both passes of a half-precision weight read it once ([`linear_rows`] and its
/// backward counterpart) instead of widening tiles for gemm.
pub const FEW_ROWS: usize = 16;

/// An f16 value widened to f32, exactly, without a table or a branch (so loops over it vectorize):
/// the exponent and mantissa bits shifted into f32 position give `value · 2⁻¹¹²` for normal and
/// subnormal values alike, one exact multiplication restores the scale, and infinities and NaNs keep
/// an all-ones exponent.
#[inline(always)]
pub fn f16_to_f32(h: f16) -> f32 {
    let h = h.to_bits() as u32;
    let sign = (h & 0x8000) << 16;
    let em = h & 0x7fff;
    // 2^112, the difference of the exponent biases (127 - 15).
    let scaled = f32::from_bits(em << 13) * f32::from_bits(0x7780_0000);
    let bits = if em >= 0x7c00 {
        (em << 13) | 0x7f80_0000
    } else {
        scaled.to_bits()
    };
    f32::from_bits(bits | sign)
}

/// A bf16 value widened to f32 (its upper 16 bits), exactly.
#[inline(always)]
pub fn bf16_to_f32(h: bf16) -> f32 {
    f32::from_bits((h.to_bits() as u32) << 16)
}

/// `dst[i] = W[start + i]` in f32.
#[inline(always)]
fn widen(w: Weights, start: usize, dst: &mut [f32]) {
    let end = start + dst.len();
    match w {
        Weights::F32(w) => dst.copy_from_slice(&w[start..end]),
        Weights::Bf16(w) => {
            for (d, &s) in dst.iter_mut().zip(&w[start..end]) {
                *d = bf16_to_f32(s);
            }
        }
        Weights::F16(w) => {
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("f16c") {
                // SAFETY: F16C was just detected.
                return unsafe { widen_f16c(&w[start..end], dst) };
            }
            for (d, &s) in dst.iter_mut().zip(&w[start..end]) {
                *d = f16_to_f32(s);
            }
        }
    }
}

/// f16 widened with the F16C conversion instruction (exact, as [`f16_to_f32`]), eight at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
fn widen_f16c(src: &[f16], dst: &mut [f32]) {
    use std::arch::x86_64::*;
    assert_eq!(src.len(), dst.len(), "widen: lengths");
    let n = src.len() / 8 * 8;
    for c in (0..n).step_by(8) {
        // SAFETY: reads eight f16 (16 bytes) at `c + 8 ≤ n ≤ len` of `src` and writes eight f32 of
        // `dst`, of the same length.
        unsafe {
            let h = _mm_loadu_si128(src.as_ptr().add(c).cast());
            _mm256_storeu_ps(dst.as_mut_ptr().add(c), _mm256_cvtph_ps(h));
        }
    }
    for (d, &s) in dst[n..].iter_mut().zip(&src[n..]) {
        *d = f16_to_f32(s);
    }
}

multiversioned! {
    /// One rayon task of [`Weights::widen_par`].
    fn widen_task(w: Weights, start: usize, dst: &mut [f32]) {
        widen(w, start, dst);
    }
}

/// Checks the lengths of one call: the left operand `[rows, cols]` and `W: [out, inp]`.
fn check(what: &str, lhs_len: usize, w: Weights, rows: usize, cols: usize, other: usize) {
    assert_eq!(
        lhs_len,
        rows * cols,
        "{what}: left operand is not [{rows}, {cols}]"
    );
    assert_eq!(
        w.len(),
        cols * other,
        "{what}: weight has {} elements, not {cols} × {other}",
        w.len()
    );
}

/// gemm's threading as flex chooses it: the rayon pool from 192³ multiply-adds, else one thread.
fn parallelism(m: usize, n: usize, k: usize) -> gemm::Parallelism {
    if m.saturating_mul(n).saturating_mul(k) >= 192 * 192 * 192 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    }
}

/// Rows of `W` per tile: `W` split into as few tiles of at most `tile_elems` elements (or one row) as
/// possible, of equal size (no sliver of a last tile).
fn tile_rows(tile_elems: usize, inp: usize, out: usize) -> usize {
    let max_rows = (tile_elems / inp.max(1)).clamp(1, out.max(1));
    let tiles = out.max(1).div_ceil(max_rows);
    out.max(1).div_ceil(tiles)
}

/// `y = x Wᵀ`: `x: [rows, inp]`, `W: [out, inp]` -> `y: [rows, out]`.
pub fn forward(x: &[f32], w: Weights, rows: usize, inp: usize, out: usize) -> Vec<f32> {
    forward_tiled(x, w, rows, inp, out, TASK_ELEMS)
}

fn forward_tiled(
    x: &[f32],
    w: Weights,
    rows: usize,
    inp: usize,
    out: usize,
    task_elems: usize,
) -> Vec<f32> {
    check("frozen_linear", x.len(), w, rows, inp, out);
    if rows == 0 || out == 0 || inp == 0 {
        return vec![0f32; rows * out];
    }
    if rows <= FEW_ROWS && !matches!(w, Weights::F32(_)) {
        return linear_rows(x, w, inp);
    }
    product(x, w, rows, inp, out, Pass::Forward, task_elems)
}

/// `dx = dy W`: `dy: [rows, out]`, `W: [out, inp]` -> `dx: [rows, inp]` (the input gradient of
/// [`forward`]; the weight is frozen and gets none).
pub fn backward(dy: &[f32], w: Weights, rows: usize, inp: usize, out: usize) -> Vec<f32> {
    backward_tiled(dy, w, rows, inp, out, TASK_ELEMS)
}

fn backward_tiled(
    dy: &[f32],
    w: Weights,
    rows: usize,
    inp: usize,
    out: usize,
    task_elems: usize,
) -> Vec<f32> {
    check("frozen_linear backward", dy.len(), w, rows, out, inp);
    if rows == 0 || out == 0 || inp == 0 {
        return vec![0f32; rows * inp];
    }
    if rows <= FEW_ROWS && !matches!(w, Weights::F32(_)) {
        return backward_rows(dy, w, rows, inp, out, BACKWARD_ROWS_PER_TASK);
    }
    if task_elems / out < MIN_WIDTH && !matches!(w, Weights::F32(_)) {
        // A column block of `W` would hold more than a task's elements (the language-model head, far
        // more outputs than inputs): sum over blocks of `W`'s rows instead.
        return backward_by_rows(dy, w, rows, inp, out, ROW_TILE_TASKS * task_elems);
    }
    product(dy, w, rows, inp, out, Pass::Backward, task_elems)
}

/// Which product of `W: [out, inp]` [`product`] computes.
#[derive(Clone, Copy, PartialEq)]
enum Pass {
    /// `x Wᵀ`: output columns = `W`'s rows, summed over `inp`.
    Forward,
    /// `dy W`: output columns = `W`'s columns, summed over `out`.
    Backward,
}

/// `lhs · Wᵀ` (forward, `lhs: [rows, inp]`) or `lhs · W` (backward, `lhs: [rows, out]`), by blocks of
/// output columns: each task takes the block of `W` that its columns read (rows of `W` forward, columns
/// backward) and writes those columns of the result. An f32 weight needs no widening: its product is
/// one gemm call, threaded by gemm itself, which is the faster split there.
fn product(
    lhs: &[f32],
    w: Weights,
    rows: usize,
    inp: usize,
    out: usize,
    pass: Pass,
    task_elems: usize,
) -> Vec<f32> {
    let (k, cols) = match pass {
        Pass::Forward => (inp, out),
        Pass::Backward => (out, inp),
    };
    let mut dst = Vec::<f32>::with_capacity(rows * cols);
    let shared = SharedOut(dst.as_mut_ptr());
    let width = match w {
        Weights::F32(_) => cols,
        _ => task_width(task_elems, k, cols, rows * inp * out),
    };
    if widening::applies(w, inp) {
        // Blocks of whole vectors of columns (backward), so each task's columns are its own.
        let width = match pass {
            Pass::Forward => width,
            Pass::Backward => width.next_multiple_of(widening::COLUMN_BLOCK).min(cols),
        };
        for_each_task(cols, width, |c0, n| {
            let to = widening::Dst {
                ptr: shared.at(0),
                stride: cols,
            };
            // SAFETY: `dst` has room for `[rows, cols]` and this task writes only its columns
            // `c0..c0 + n` (the kernels check the rest: `applies`, the lengths of `lhs` and `W`, and
            // that backward blocks start at multiples of `COLUMN_BLOCK`, as `width` makes them).
            unsafe {
                match pass {
                    Pass::Forward => widening::forward_block(lhs, rows, inp, w, c0, n, to),
                    Pass::Backward => widening::backward_block(lhs, rows, out, inp, w, c0, n, to),
                }
            }
        });
        // SAFETY: the tasks cover the columns `0..cols` of every row, so all `rows × cols` are written.
        unsafe { dst.set_len(rows * cols) };
        return dst;
    }
    let threading = gemm_threading(w, rows, cols, k);
    for_each_task(cols, width, |c0, n| {
        // `rhs[kk, j]` is `W[c0 + j, kk]` forward and `W[kk, c0 + j]` backward.
        let (block_rows, block_cols) = match pass {
            Pass::Forward => ((c0, n), (0, inp)),
            Pass::Backward => ((0, out), (c0, n)),
        };
        with_block(w, inp, block_rows, block_cols, |tile, stride| {
            let (rhs_cs, rhs_rs) = match pass {
                Pass::Forward => (stride, 1),
                Pass::Backward => (1, stride),
            };
            // SAFETY: `dst` has room for `rows × cols` elements and this task writes only its columns
            // `c0..c0 + n` (row stride `cols`); `lhs` is `[rows, k]`; `tile` holds the block of `W`
            // above, `stride` elements apart along the block's rows, as the strides say.
            unsafe {
                gemm::gemm(
                    rows,
                    n,
                    k,
                    shared.at(c0),
                    1,
                    cols as isize,
                    false,
                    lhs.as_ptr(),
                    1,
                    k as isize,
                    tile,
                    rhs_cs as isize,
                    rhs_rs as isize,
                    0f32,
                    1f32,
                    false,
                    false,
                    false,
                    threading,
                );
            }
        })
    });
    // SAFETY: the tasks cover the columns `0..cols` of every row, so all `rows × cols` are written.
    unsafe { dst.set_len(rows * cols) };
    dst
}

/// [`backward`] summed over blocks of `W`'s rows (`dx += dy[:, o0..o0 + k] · W[o0..o0 + k]`, each
/// block's product split across the pool by gemm), for weights with far more outputs than inputs.
fn backward_by_rows(
    dy: &[f32],
    w: Weights,
    rows: usize,
    inp: usize,
    out: usize,
    tile_elems: usize,
) -> Vec<f32> {
    let mut dx = vec![0f32; rows * inp];
    let run = |o0: usize, k: usize, tile: &[f32]| {
        // SAFETY: `dx` is `[rows, inp]`; `dy` is `[rows, out]` and its columns `o0..o0 + k` lie inside
        // it (row stride `out`); `tile` is `[k, inp]`, as the strides say.
        unsafe {
            gemm::gemm(
                rows,
                inp,
                k,
                dx.as_mut_ptr(),
                1,
                inp as isize,
                o0 > 0,
                dy.as_ptr().add(o0),
                1,
                out as isize,
                tile.as_ptr(),
                1,
                inp as isize,
                1f32,
                1f32,
                false,
                false,
                false,
                parallelism(rows, inp, k),
            );
        }
    };
    for_each_tile(w, inp, out, tile_elems, run);
    dx
}

/// Elements of `W` per task of the gemm passes: 1 MiB of f32. A task widens its block (when `W` is held
/// in half precision) into a buffer of its own thread, multiplies it on that thread right away, while
/// it is in that core's cache, and writes its own columns of the result: one parallel region per
/// product, each weight element widened and packed once.
pub const TASK_ELEMS: usize = 1 << 18;

/// [`backward_by_rows`] widens tiles of this many task budgets (4 MiB of f32: the tiles every product used
/// before the split into tasks, so the head's input gradient is summed as it was).
const ROW_TILE_TASKS: usize = 4;

/// The fewest rows or columns of `W` a task takes.
const MIN_WIDTH: usize = 16;

/// Below this many multiply-adds (flex's threshold for threading gemm) a product is one task.
const PARALLEL_WORK: usize = 192 * 192 * 192;

/// Rows (forward) or columns (backward) of `W` per task, for blocks whose other side is `len` long
/// out of `total`: about `task_elems` elements, and at least four tasks. It depends only on the
/// shapes, never on the number of threads (each output element's sum is the same either way).
fn task_width(task_elems: usize, len: usize, total: usize, work: usize) -> usize {
    if work < PARALLEL_WORK {
        return total;
    }
    (task_elems / len.max(1))
        .min(total.div_ceil(4))
        .max(MIN_WIDTH)
        .min(total)
}

/// Calls `task(start, n)` for the blocks `start..start + n` of `0..total` by `width`, across the rayon
/// pool (inline when there is one block).
fn for_each_task(total: usize, width: usize, task: impl Fn(usize, usize) + Sync) {
    let blocks = total.div_ceil(width);
    if blocks <= 1 {
        return task(0, total);
    }
    (0..blocks)
        .into_par_iter()
        .for_each(|b| task(b * width, width.min(total - b * width)));
}

/// gemm's own threading for one call: an f32 weight's product is one call split by gemm across the
/// pool as flex splits it ([`parallelism`]); a task of a half-precision one runs on its thread.
fn gemm_threading(w: Weights, m: usize, n: usize, k: usize) -> gemm::Parallelism {
    match w {
        Weights::F32(_) => parallelism(m, n, k),
        _ => gemm::Parallelism::None,
    }
}

/// The output of the tasks of one product: each writes its own columns through this pointer.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);

impl SharedOut {
    /// The element `i` of the buffer.
    fn at(self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}

// SAFETY: the tasks holding a `SharedOut` write disjoint elements of one live buffer.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

thread_local! {
    /// The widened block of the task running on this thread (reused, so no allocation per task).
    static BLOCK: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Calls `f(ptr, row_stride)` with the block `W[r0..r0 + nr, c0..c0 + nc]` in f32: an f32 weight where
/// it is held, a half-precision one widened into this thread's buffer.
fn with_block(
    w: Weights,
    inp: usize,
    (r0, nr): (usize, usize),
    (c0, nc): (usize, usize),
    f: impl FnOnce(*const f32, usize),
) {
    if let Weights::F32(ws) = w {
        return f(ws[r0 * inp + c0..].as_ptr(), inp);
    }
    BLOCK.with(|cell| {
        let mut buf = cell.borrow_mut();
        buf.resize(nr * nc, 0.0);
        widen_block(w, inp, r0, c0, nc, &mut buf);
        f(buf.as_ptr(), nc)
    })
}

multiversioned! {
    /// `buf[r · nc + c] = W[r0 + r, c0 + c]` in f32 for the rows of `buf`.
    fn widen_block(w: Weights, inp: usize, r0: usize, c0: usize, nc: usize, buf: &mut [f32]) {
        for (r, dst) in buf.chunks_exact_mut(nc).enumerate() {
            widen(w, (r0 + r) * inp + c0, dst);
        }
    }
}

/// Calls `run(o0, n, tile)` over `W: [out, inp]` by blocks of rows `o0..o0 + n`, `tile` holding them in
/// f32: an f32 weight in one block as it is held, a half-precision one widened block by block into one
/// reused buffer of at most `tile_elems` values.
fn for_each_tile(
    w: Weights,
    inp: usize,
    out: usize,
    tile_elems: usize,
    mut run: impl FnMut(usize, usize, &[f32]),
) {
    match w {
        Weights::F32(ws) => run(0, out, ws),
        _ => {
            let tile = tile_rows(tile_elems, inp, out);
            let mut buf = vec![0f32; tile * inp];
            for o0 in (0..out).step_by(tile) {
                let n = tile.min(out - o0);
                let b = &mut buf[..n * inp];
                w.widen_par(o0 * inp, b);
                run(o0, n, b);
            }
        }
    }
}

/// Rows of `W` per partial sum of [`backward_rows`]: fixed, so the order of the sums does not depend on
/// the number of threads.
const BACKWARD_ROWS_PER_TASK: usize = 2048;

/// [`backward`] for a few rows, reading `W` once: each task widens its block of `W`'s rows one row at a
/// time and adds `dy[r, o] · W[o]` into its own partial `dx` (a few KiB, in cache); the partial sums
/// are then added in block order.
fn backward_rows(
    dy: &[f32],
    w: Weights,
    rows: usize,
    inp: usize,
    out: usize,
    per_task: usize,
) -> Vec<f32> {
    let partials: Vec<Vec<f32>> = (0..out.div_ceil(per_task))
        .into_par_iter()
        .map(|t| {
            let first = t * per_task;
            let n = per_task.min(out - first);
            let mut part = vec![0f32; rows * inp];
            axpy_rows(&mut part, w, first, n, dy, out, inp);
            part
        })
        .collect();
    let mut dx = vec![0f32; rows * inp];
    for part in partials {
        add_into(&mut dx, &part);
    }
    dx
}

multiversioned! {
    /// `part[r] += dy[r, o] · W[o]` for `o` in `first..first + n`, every row `r`.
    fn axpy_rows(
        part: &mut [f32],
        w: Weights,
        first: usize,
        n: usize,
        dy: &[f32],
        out: usize,
        inp: usize,
    ) {
        let mut row = vec![0f32; inp];
        for o in first..first + n {
            let wo: &[f32] = match w {
                Weights::F32(ws) => &ws[o * inp..(o + 1) * inp],
                _ => {
                    widen(w, o * inp, &mut row);
                    &row
                }
            };
            for (r, pr) in part.chunks_exact_mut(inp).enumerate() {
                let g = dy[r * out + o];
                for (p, &v) in pr.iter_mut().zip(wo) {
                    *p += g * v;
                }
            }
        }
    }
}

multiversioned! {
    /// `dst += src`, elementwise.
    fn add_into(dst: &mut [f32], src: &[f32]) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d += s;
        }
    }
}

/// `y = x Wᵀ` for a few rows `x: [rows, inp]` and `W: [out, inp]` (the stored layout), reading `W` once.
///
/// Decoding one token per sequence is bound by reading the weights; gemm's packing for a skinny left
/// operand wastes a good part of the memory bandwidth. Here each task takes a block of `W`'s rows,
/// widens each row (when held in bf16 / f16) and dots it with every input row while it is in cache.
pub fn linear_rows(x: &[f32], w: Weights, inp: usize) -> Vec<f32> {
    assert!(inp > 0, "linear_rows: empty input rows");
    let rows = x.len() / inp;
    let out = w.len() / inp;
    // [out, rows] first (each task writes a contiguous block), transposed at the end when rows > 1.
    let mut yt = vec![0f32; out * rows];
    if rows == 0 {
        return yt;
    }
    yt.par_chunks_mut(ROWS_PER_TASK * rows)
        .enumerate()
        .for_each(|(i, ys)| dot_rows(ys, w, i * ROWS_PER_TASK, x, inp));
    if rows == 1 {
        return yt;
    }
    let mut y = vec![0f32; out * rows];
    for o in 0..out {
        for r in 0..rows {
            y[r * out + o] = yt[o * rows + r];
        }
    }
    y
}

multiversioned! {
    /// `ys[i * rows + r] = W[first + i] · x[r]` for a block of `W`'s rows.
    fn dot_rows(ys: &mut [f32], w: Weights, first: usize, x: &[f32], inp: usize) {
        let rows = x.len() / inp;
        let mut row = match w {
            Weights::F32(_) => Vec::new(),
            _ => vec![0f32; inp],
        };
        for (i, yo) in ys.chunks_exact_mut(rows).enumerate() {
            let start = (first + i) * inp;
            let wo: &[f32] = match w {
                Weights::F32(ws) => &ws[start..start + inp],
                _ => {
                    widen(w, start, &mut row);
                    &row
                }
            };
            // Four input rows at a time: four independent accumulator chains per load of `W`'s row
            // (one chain is bound by the latency of its additions).
            let mut ys4 = yo.chunks_exact_mut(4);
            let mut xs4 = x.chunks_exact(4 * inp);
            for (y, x4) in (&mut ys4).zip(&mut xs4) {
                y.copy_from_slice(&dot4(wo, x4, inp));
            }
            for (y, xr) in ys4.into_remainder().iter_mut().zip(xs4.remainder().chunks_exact(inp)) {
                *y = dot(wo, xr);
            }
        }
    }
}

/// `[w · x[0], …, w · x[3]]` for four rows `x: [4, inp]`, each summed exactly as [`dot`] sums it (so
/// results do not depend on how rows are grouped).
#[inline(always)]
fn dot4(w: &[f32], x: &[f32], inp: usize) -> [f32; 4] {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 was just detected.
        return unsafe { dot4_avx2(w, x, inp) };
    }
    let (x0, rest) = x.split_at(inp);
    let (x1, rest) = rest.split_at(inp);
    let (x2, x3) = rest.split_at(inp);
    [dot(w, x0), dot(w, x1), dot(w, x2), dot(w, x3)]
}

/// [`dot4`] with AVX2 intrinsics (the compiler does not vectorize four interleaved accumulators well):
/// lane `i` of each accumulator sums `w[c + i] · x[c + i]` over the chunks `c` of eight, a multiply
/// then an add, and the lanes are summed in order, as [`dot`] does.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dot4_avx2(w: &[f32], x: &[f32], inp: usize) -> [f32; 4] {
    use std::arch::x86_64::*;
    assert!(w.len() == inp && x.len() == 4 * inp, "dot4: lengths");
    let xs = [
        &x[..inp],
        &x[inp..2 * inp],
        &x[2 * inp..3 * inp],
        &x[3 * inp..],
    ];
    let n = inp / 8 * 8;
    let mut lanes = [[0f32; 8]; 4];
    // SAFETY: every load reads eight elements at `c + 8 ≤ n ≤ inp` of a slice of length `inp`; every
    // store writes eight elements of an `[f32; 8]`.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); 4];
        for c in (0..n).step_by(8) {
            let wv = _mm256_loadu_ps(w.as_ptr().add(c));
            for (a, xr) in acc.iter_mut().zip(xs) {
                *a = _mm256_add_ps(*a, _mm256_mul_ps(wv, _mm256_loadu_ps(xr.as_ptr().add(c))));
            }
        }
        for (l, a) in lanes.iter_mut().zip(acc) {
            _mm256_storeu_ps(l.as_mut_ptr(), a);
        }
    }
    let mut out = [0f32; 4];
    for ((o, l), xr) in out.iter_mut().zip(&lanes).zip(xs) {
        let tail: f32 = w[n..].iter().zip(&xr[n..]).map(|(a, b)| a * b).sum();
        *o = l.iter().sum::<f32>() + tail;
    }
    out
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Uniform values in `[-1, 1)` from a seeded LCG.
    pub(in crate::fused) fn data(n: usize, seed: u64) -> Vec<f32> {
        crate::fused::kernels::test_values(n, seed, 1.0)
    }

    /// The weight in each precision, and its values (the rounded ones) in f64.
    pub(in crate::fused) struct Held {
        pub f32: Vec<f32>,
        pub bf16: Vec<bf16>,
        pub f16: Vec<f16>,
    }

    impl Held {
        pub(in crate::fused) fn new(n: usize, seed: u64) -> Self {
            let f32 = data(n, seed);
            Held {
                bf16: f32.iter().map(|&v| bf16::from_f32(v)).collect(),
                f16: f32.iter().map(|&v| f16::from_f32(v)).collect(),
                f32,
            }
        }

        fn all(&self) -> [(Weights<'_>, Vec<f64>); 3] {
            [
                (
                    Weights::F32(&self.f32),
                    self.f32.iter().map(|&v| v as f64).collect(),
                ),
                (
                    Weights::Bf16(&self.bf16),
                    self.bf16.iter().map(|v| v.to_f64()).collect(),
                ),
                (
                    Weights::F16(&self.f16),
                    self.f16.iter().map(|v| v.to_f64()).collect(),
                ),
            ]
        }
    }

    /// `|got - want| ≤ 1e-5 · Σ|terms|` elementwise: f32 accumulation of `n` products errs by a few
    /// `√n · 2⁻²⁴` of the sum of their magnitudes; one wrong product errs by far more.
    fn close(what: &str, got: &[f32], want: &[(f64, f64)]) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (&g, &(v, mag))) in got.iter().zip(want).enumerate() {
            assert!(
                (g as f64 - v).abs() <= 1e-5 * mag + 1e-30,
                "{what}: element {i}: {g} vs {v} (Σ|terms| {mag})"
            );
        }
    }

    /// `(x Wᵀ, Σ|x||W|)` in f64.
    fn reference_forward(x: &[f32], w: &[f64], rows: usize, inp: usize) -> Vec<(f64, f64)> {
        let out = w.len() / inp;
        (0..rows * out)
            .map(|i| {
                let (r, o) = (i / out, i % out);
                (0..inp).fold((0.0, 0.0), |(s, m), j| {
                    let p = x[r * inp + j] as f64 * w[o * inp + j];
                    (s + p, m + p.abs())
                })
            })
            .collect()
    }

    /// `(dy W, Σ|dy||W|)` in f64.
    fn reference_backward(dy: &[f32], w: &[f64], rows: usize, inp: usize) -> Vec<(f64, f64)> {
        let out = w.len() / inp;
        (0..rows * inp)
            .map(|i| {
                let (r, j) = (i / inp, i % inp);
                (0..out).fold((0.0, 0.0), |(s, m), o| {
                    let p = dy[r * out + o] as f64 * w[o * inp + j];
                    (s + p, m + p.abs())
                })
            })
            .collect()
    }

    #[test]
    fn widening_is_exact_for_every_half_value() {
        for bits in 0..=u16::MAX {
            let h = f16::from_bits(bits);
            let (got, want) = (f16_to_f32(h), h.to_f32());
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "f16 {bits:#06x}: {got} vs {want}"
            );
            let b = bf16::from_bits(bits);
            let (got, want) = (bf16_to_f32(b), b.to_f32());
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "bf16 {bits:#06x}: {got} vs {want}"
            );
        }
        // And through the (vectorized) widening of a whole weight, odd length for the scalar tail.
        let all: Vec<u16> = (0..=u16::MAX).chain([0x3c00]).collect();
        let f16s: Vec<f16> = all.iter().map(|&b| f16::from_bits(b)).collect();
        let bf16s: Vec<bf16> = all.iter().map(|&b| bf16::from_bits(b)).collect();
        let mut dst = vec![0f32; all.len()];
        for (kind, w, exact) in [
            (
                "f16",
                Weights::F16(&f16s),
                f16s.iter().map(|v| v.to_f32()).collect::<Vec<_>>(),
            ),
            (
                "bf16",
                Weights::Bf16(&bf16s),
                bf16s.iter().map(|v| v.to_f32()).collect(),
            ),
        ] {
            w.widen_par(0, &mut dst);
            for (i, (g, e)) in dst.iter().zip(&exact).enumerate() {
                assert!(
                    g.to_bits() == e.to_bits() || (g.is_nan() && e.is_nan()),
                    "{kind} element {i}: {g} vs {e}"
                );
            }
        }
    }

    #[test]
    fn forward_and_backward_match_f64_over_tiles_and_odd_shapes() {
        // (rows, in, out, tile elements): tiles of a few rows with a ragged last one, one tile, few
        // rows (the reading-once kernel) and many.
        let cases = [
            (1, 70, 131, 1 << 20),
            (3, 70, 131, 5 * 70),
            (17, 33, 29, 4 * 33),
            (300, 70, 131, 7 * 70),
            (300, 9, 1, 1 << 20),
            (16, 1, 5, 2),
            // Widths that are whole vectors: the register-widening kernels on CPUs that have them,
            // over several tasks, and a backward pass longer than one of their blocks.
            (19, 24, 29, 3 * 24),
            (300, 64, 131, 7 * 64),
            (40, 16, 300, 20 * 300),
        ];
        for (rows, inp, out, tile) in cases {
            let held = Held::new(out * inp, (rows * 31 + inp) as u64);
            let x = data(rows * inp, 7 + rows as u64);
            let dy = data(rows * out, 11 + out as u64);
            for (w, w64) in held.all() {
                let kind = match w {
                    Weights::F32(_) => "f32",
                    Weights::Bf16(_) => "bf16",
                    Weights::F16(_) => "f16",
                };
                let what = format!("{kind} {rows}x{inp}x{out}");
                let y = forward_tiled(&x, w, rows, inp, out, tile);
                close(
                    &format!("{what} y"),
                    &y,
                    &reference_forward(&x, &w64, rows, inp),
                );
                let dx = backward_tiled(&dy, w, rows, inp, out, tile);
                close(
                    &format!("{what} dx"),
                    &dx,
                    &reference_backward(&dy, &w64, rows, inp),
                );
                if rows <= FEW_ROWS {
                    let dx = backward_rows(&dy, w, rows, inp, out, 7);
                    close(
                        &format!("{what} dx rows"),
                        &dx,
                        &reference_backward(&dy, &w64, rows, inp),
                    );
                    let y = linear_rows(&x, w, inp);
                    close(
                        &format!("{what} rows"),
                        &y,
                        &reference_forward(&x, &w64, rows, inp),
                    );
                }
            }
        }
    }

    #[test]
    fn half_weights_give_the_f32_results_of_their_values() {
        // The widening is exact, so the same products give bit-identical results whether the rounded
        // values are held in f32 or in half precision (over one tile: gemm's blocking, and so the
        // order of its sums, depends on the shape of each product). `inp` is not a multiple of eight,
        // so both take gemm; the register-widening kernels sum in their own order (`widening`).
        let (rows, inp, out) = (20, 37, 45);
        let held = Held::new(out * inp, 3);
        let x = data(rows * inp, 4);
        let dy = data(rows * out, 5);
        let as_f32: Vec<f32> = held.bf16.iter().map(|v| v.to_f32()).collect();
        let (half, full) = (Weights::Bf16(&held.bf16), Weights::F32(&as_f32));
        let same = |a: Vec<f32>, b: Vec<f32>, what: &str| {
            assert!(a == b, "{what}: bf16 and f32-held values differ")
        };
        same(
            forward_tiled(&x, half, rows, inp, out, out * inp),
            forward_tiled(&x, full, rows, inp, out, out * inp),
            "forward",
        );
        same(
            backward_tiled(&dy, half, rows, inp, out, out * inp),
            backward_tiled(&dy, full, rows, inp, out, out * inp),
            "backward",
        );
        same(
            linear_rows(&x[..3 * inp], half, inp),
            linear_rows(&x[..3 * inp], full, inp),
            "few rows",
        );
    }

    #[test]
    fn few_rows_are_summed_as_one_row_is() {
        // Rows grouped by four or left over: each output is exactly the single-row dot product.
        for inp in [5, 16, 29] {
            let w = data(3 * inp, 8);
            for rows in 1..=9 {
                let x = data(rows * inp, 9 + rows as u64);
                let y = linear_rows(&x, Weights::F32(&w), inp);
                for (i, &v) in y.iter().enumerate() {
                    let (r, o) = (i / 3, i % 3);
                    let want = dot(&w[o * inp..(o + 1) * inp], &x[r * inp..(r + 1) * inp]);
                    assert_eq!(
                        v.to_bits(),
                        want.to_bits(),
                        "in {inp} rows {rows} element {i}"
                    );
                }
            }
        }
    }

    #[test]
    fn empty_dimensions_give_zeros() {
        let w: Vec<f16> = Vec::new();
        assert_eq!(forward(&[], Weights::F16(&w), 0, 4, 0), Vec::<f32>::new());
        assert_eq!(
            forward(&[1.0; 6], Weights::F16(&w), 3, 2, 0),
            Vec::<f32>::new()
        );
        assert_eq!(backward(&[], Weights::F16(&w), 3, 2, 0), vec![0.0; 6]);
        assert_eq!(forward(&[], Weights::F16(&w), 3, 0, 4), vec![0.0; 12]);
    }
}
