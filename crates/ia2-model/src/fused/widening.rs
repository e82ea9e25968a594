//! Products with a half-precision weight widened in registers: `y = x Wᵀ` and `dx = dy W` for
//! `W: [out, inp]` held in bf16 or f16, f32 activations, on x86-64 with AVX2, FMA and F16C.
//!
//! [`frozen_linear`](super::frozen_linear) otherwise widens a block of `W` into an f32 buffer and hands
//! it to gemm, which packs both operands again: at the 26–144 rows of a training batch or a dev
//! evaluation that copying, and gemm's 16-row panels over a few rows, cost as much as a third of the
//! product. Here the bf16 / f16 elements go from memory straight into vector registers (a widening
//! load and a shift, or one F16C conversion) and into the multiply-adds, read in the layout they are
//! stored in:
//! - **forward**, `y[r, o] = Σ_p x[r, p] · W[o, p]`: a register tile of [`ROWS`] rows of `x` × [`OUTS`]
//!   rows of `W` (with AVX-512's 32 registers, [`WIDE_OUTS`]) multiplies eight consecutive `p` at a
//!   time, each output accumulating eight lane-wise partial sums (a fused multiply-add per chunk of
//!   eight, in order of `p`), which are then summed in a fixed order ([`hsum`]);
//! - **backward**, `dx[r, i] = Σ_o dy[r, o] · W[o, i]`: a register tile of [`BACK_ROWS`] rows of `dy`
//!   × [`VECS`] vectors of eight consecutive `i` (with AVX-512, [`WIDE_ROWS`] × [`WIDE_VECS`]), each
//!   element one fused multiply-add per `o`, in order of `o` from 0; the weights are widened into a
//!   small packed strip first, reused by every row tile.
//!
//! Every output element is summed the same way whatever the tile it falls in, the task split or the
//! number of threads, so results do not depend on either. The numerics are those of an f32 weight
//! holding the same values (every bf16 and f16 value is an f32 value), up to the order of the f32
//! summation: the tests compare both passes with a direct f64 computation.
//!
//! The kernels need `inp` to be a multiple of eight ([`applies`]); other shapes, other CPUs and f32
//! weights take gemm.

use super::frozen_linear::Weights;

/// Rows of `x` in a forward register tile.
pub const ROWS: usize = 4;
/// Rows of `W` in a forward register tile where AVX-512's 32 vector registers are there: 4 × 5
/// accumulators (measured against 8 × 3, 6 × 3 and 5 × 4: 8 rows of `x` no longer stay in L1).
pub const WIDE_OUTS: usize = 5;
/// Rows of `dy` in a backward register tile where AVX-512's 32 vector registers are there.
pub const WIDE_ROWS: usize = 8;
/// Rows of `W` (outputs) in a forward register tile: 4 × 3 accumulators, 3 widened weight vectors
/// and one input vector fill the 16 vector registers of AVX2.
pub const OUTS: usize = 3;
/// Rows of `dy` in a backward register tile.
pub const BACK_ROWS: usize = 6;
/// Vectors of eight columns of `dx` in a backward register tile: 6 × 2 accumulators, 2 weight
/// vectors and one broadcast (with 4 × 3, the compiler spills an accumulator every step).
pub const VECS: usize = 2;
/// Vectors of columns in a backward register tile where AVX-512's 32 vector registers are there:
/// [`WIDE_ROWS`] × 3 accumulators.
pub const WIDE_VECS: usize = 3;
/// Rows of `W` per block of the backward pass: a strip of a tile's vectors of columns over this many
/// rows, widened (at most 12 KiB), stays in L1 while every row tile of `dy` passes over it.
pub const BLOCK: usize = 128;
/// Lanes of a vector.
pub const LANES: usize = 8;

/// Whether the kernels run for this weight and input width on this CPU: a half-precision weight,
/// `inp` a positive multiple of [`LANES`], and AVX2, FMA and F16C present.
pub fn applies(w: Weights, inp: usize) -> bool {
    if matches!(w, Weights::F32(_)) || inp == 0 || !inp.is_multiple_of(LANES) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The destination of one product: `[rows, stride]` row-major, of which each task writes its own
/// columns.
#[derive(Clone, Copy)]
pub struct Dst {
    pub ptr: *mut f32,
    pub stride: usize,
}

/// `y[r, o] = x[r] · W[o]` for every row `r` of `x: [rows, inp]` and the rows `o0..o0 + n` of `W`,
/// written at `dst[r, o]`.
///
/// # Safety
/// [`applies`] holds for `w` and `inp`; `x` holds `rows × inp` elements, `W` rows `o0..o0 + n` of
/// length `inp`; `dst` has room for `rows` rows of `dst.stride ≥ o0 + n` elements, and no other thread
/// reads or writes its columns `o0..o0 + n` meanwhile.
pub unsafe fn forward_block(
    x: &[f32],
    rows: usize,
    inp: usize,
    w: Weights,
    o0: usize,
    n: usize,
    dst: Dst,
) {
    debug_assert!(x.len() >= rows * inp && w.len() >= (o0 + n) * inp);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as the caller guarantees.
    unsafe {
        match w {
            Weights::Bf16(ws) => {
                x86::forward::<false>(x, rows, inp, ws.as_ptr().cast(), o0, n, dst)
            }
            Weights::F16(ws) => x86::forward::<true>(x, rows, inp, ws.as_ptr().cast(), o0, n, dst),
            Weights::F32(_) => unreachable!("f32 weights take gemm"),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("the kernels run on x86-64 only ({x:?}, {rows}, {inp}, {o0}, {n})");
}

/// `dx[r, i] = Σ_o dy[r, o] · W[o, i]` for every row `r` of `dy: [rows, out]` and the columns
/// `i0..i0 + n` of `W: [out, inp]`, written at `dst[r, i]`.
///
/// # Safety
/// [`applies`] holds for `w` and `inp`; `i0` and `n` are multiples of [`LANES`] with `i0 + n ≤ inp`;
/// `dy` holds `rows × out` elements and `W` `out × inp`; `dst` has room for `rows` rows of
/// `dst.stride ≥ i0 + n` elements, and no other thread reads or writes its columns `i0..i0 + n`
/// meanwhile.
#[allow(clippy::too_many_arguments)]
pub unsafe fn backward_block(
    dy: &[f32],
    rows: usize,
    out: usize,
    inp: usize,
    w: Weights,
    i0: usize,
    n: usize,
    dst: Dst,
) {
    debug_assert!(dy.len() >= rows * out && w.len() >= out * inp);
    debug_assert!(i0.is_multiple_of(LANES) && n.is_multiple_of(LANES) && i0 + n <= inp);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as the caller guarantees.
    unsafe {
        match w {
            Weights::Bf16(ws) => {
                x86::backward::<false>(dy, rows, out, inp, ws.as_ptr().cast(), i0, n, dst)
            }
            Weights::F16(ws) => {
                x86::backward::<true>(dy, rows, out, inp, ws.as_ptr().cast(), i0, n, dst)
            }
            Weights::F32(_) => unreachable!("f32 weights take gemm"),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("the kernels run on x86-64 only ({dy:?}, {rows}, {out}, {inp}, {i0}, {n})");
}

/// The order in which [`forward_block`] sums the eight lane-wise partial sums of an output: lanes
/// `l` and `l + 4` first, then those pairs two apart, then the last two (`((l0 + l4) + (l2 + l6)) +
/// ((l1 + l5) + (l3 + l7))`). The kernels' vector version does exactly this.
pub fn hsum(l: [f32; LANES]) -> f32 {
    let s4 = [l[0] + l[4], l[1] + l[5], l[2] + l[6], l[3] + l[7]];
    let s2 = [s4[0] + s4[2], s4[1] + s4[3]];
    s2[0] + s2[1]
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{BACK_ROWS, BLOCK, Dst, LANES, OUTS, ROWS, VECS, WIDE_OUTS, WIDE_ROWS, WIDE_VECS};
    use std::arch::x86_64::*;

    /// Eight weights at `w` widened to f32: f16 by F16C, bf16 by zero-extension and a shift (the bf16
    /// bits are the upper half of the f32 ones).
    #[inline(always)]
    unsafe fn load8<const F16: bool>(w: *const u16) -> __m256 {
        // SAFETY: the caller guarantees eight readable elements at `w`, and AVX2 / F16C.
        unsafe {
            let h = _mm_loadu_si128(w.cast());
            if F16 {
                _mm256_cvtph_ps(h)
            } else {
                _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
            }
        }
    }

    /// [`super::hsum`] of a vector's lanes.
    #[inline(always)]
    unsafe fn hsum(a: __m256) -> f32 {
        // SAFETY: AVX is present (the caller's target features).
        unsafe {
            let s4 = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
            let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
            _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps::<1>(s2, s2)))
        }
    }

    /// One forward register tile: rows `x[0..R]` (stride `inp`) times the weight rows `w[0..O]`,
    /// written at `y[r · stride + o]`.
    #[inline(always)]
    unsafe fn forward_tile<const R: usize, const O: usize, const F16: bool>(
        x: *const f32,
        w: *const u16,
        inp: usize,
        y: *mut f32,
        stride: usize,
    ) {
        // SAFETY: the caller guarantees `R` rows of `inp` inputs, `O` weight rows of `inp` and the
        // outputs, and the target features.
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); O]; R];
            let mut c = 0;
            while c < inp {
                let mut wv = [_mm256_setzero_ps(); O];
                for (o, v) in wv.iter_mut().enumerate() {
                    *v = load8::<F16>(w.add(o * inp + c));
                }
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let xv = _mm256_loadu_ps(x.add(r * inp + c));
                    for (a, &v) in acc_r.iter_mut().zip(&wv) {
                        *a = _mm256_fmadd_ps(xv, v, *a);
                    }
                }
                c += LANES;
            }
            for (r, acc_r) in acc.iter().enumerate() {
                for (o, &a) in acc_r.iter().enumerate() {
                    *y.add(r * stride + o) = hsum(a);
                }
            }
        }
    }

    /// The forward tiles of `left ≤ RT` rows of one block of `O ≤ OUTS` weight rows.
    #[inline(always)]
    unsafe fn forward_rows<const RT: usize, const O: usize, const F16: bool>(
        x: *const f32,
        left: usize,
        w: *const u16,
        inp: usize,
        y: *mut f32,
        stride: usize,
    ) {
        // SAFETY: as for `forward_tile`, with `left` rows.
        unsafe {
            match left {
                1 => forward_tile::<1, O, F16>(x, w, inp, y, stride),
                2 => forward_tile::<2, O, F16>(x, w, inp, y, stride),
                3 => forward_tile::<3, O, F16>(x, w, inp, y, stride),
                l if l < RT && l == 4 => forward_tile::<4, O, F16>(x, w, inp, y, stride),
                l if l < RT && l == 5 => forward_tile::<5, O, F16>(x, w, inp, y, stride),
                l if l < RT && l == 6 => forward_tile::<6, O, F16>(x, w, inp, y, stride),
                l if l < RT && l == 7 => forward_tile::<7, O, F16>(x, w, inp, y, stride),
                _ => forward_tile::<RT, O, F16>(x, w, inp, y, stride),
            }
        }
    }

    /// [`forward_with`] with the AVX2 register file (16 vectors): tiles of [`ROWS`] rows.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn forward_avx2<const F16: bool>(
        x: &[f32],
        rows: usize,
        inp: usize,
        w: *const u16,
        (o0, n): (usize, usize),
        dst: Dst,
    ) {
        // SAFETY: the caller's guarantees.
        unsafe { forward_with::<ROWS, OUTS, F16>(x, rows, inp, w, (o0, n), dst) }
    }

    /// [`forward_with`] with AVX-512's 32 vector registers (the same 8-lane instructions): tiles of
    /// [`ROWS`] × [`WIDE_OUTS`], so each row of `x` loaded serves more multiply-adds.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
    unsafe fn forward_avx512<const F16: bool>(
        x: &[f32],
        rows: usize,
        inp: usize,
        w: *const u16,
        (o0, n): (usize, usize),
        dst: Dst,
    ) {
        // SAFETY: the caller's guarantees.
        unsafe { forward_with::<ROWS, WIDE_OUTS, F16>(x, rows, inp, w, (o0, n), dst) }
    }

    pub(super) unsafe fn forward<const F16: bool>(
        x: &[f32],
        rows: usize,
        inp: usize,
        w: *const u16,
        o0: usize,
        n: usize,
        dst: Dst,
    ) {
        // SAFETY: the caller's guarantees, and the features just detected.
        unsafe {
            if wide() {
                forward_avx512::<F16>(x, rows, inp, w, (o0, n), dst)
            } else {
                forward_avx2::<F16>(x, rows, inp, w, (o0, n), dst)
            }
        }
    }

    /// Whether the CPU has AVX-512 (F and VL): 32 vector registers for the 8-lane kernels.
    fn wide() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
    }

    /// The forward pass of one block with row tiles of `RT` rows.
    #[inline(always)]
    unsafe fn forward_with<const RT: usize, const OT: usize, const F16: bool>(
        x: &[f32],
        rows: usize,
        inp: usize,
        w: *const u16,
        (o0, n): (usize, usize),
        dst: Dst,
    ) {
        // Rows outermost: a tile's rows of `x` stay in L1 while the block's weight rows stream from
        // L2, once per `RT` rows.
        for r0 in (0..rows).step_by(RT) {
            let left = (rows - r0).min(RT);
            // SAFETY: the caller's guarantees; every pointer below stays inside `x`, the block of `W`
            // and the destination's rows `r0..r0 + left`, columns `o0..o0 + n`.
            unsafe {
                let xr = x.as_ptr().add(r0 * inp);
                let yr = dst.ptr.add(r0 * dst.stride);
                let mut o = o0;
                while o < o0 + n {
                    let wo = w.add(o * inp);
                    let yo = yr.add(o);
                    match (o0 + n - o).min(OT) {
                        1 => forward_rows::<RT, 1, F16>(xr, left, wo, inp, yo, dst.stride),
                        2 => forward_rows::<RT, 2, F16>(xr, left, wo, inp, yo, dst.stride),
                        l if l < OT && l == 3 => {
                            forward_rows::<RT, 3, F16>(xr, left, wo, inp, yo, dst.stride)
                        }
                        l if l < OT && l == 4 => {
                            forward_rows::<RT, 4, F16>(xr, left, wo, inp, yo, dst.stride)
                        }
                        _ => forward_rows::<RT, OT, F16>(xr, left, wo, inp, yo, dst.stride),
                    }
                    o += OT;
                }
            }
        }
    }

    /// One backward register tile: `dx[r, 8v..8v + 8] (+)= Σ_{o < k} dy[r, o] · strip[o, 8v..8v + 8]`
    /// for `R` rows of `dy` (stride `out`) and the `V` vectors of a packed strip (`[k, 8V]`, f32),
    /// starting from zero when `first`, else from what `dx` holds (the sum so far, in order of `o`).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn backward_tile<const R: usize, const V: usize>(
        dy: *const f32,
        out: usize,
        k: usize,
        first: bool,
        strip: *const f32,
        dx: *mut f32,
        stride: usize,
    ) {
        // SAFETY: the caller guarantees `R` rows of gradients (stride `out`) with `k` values, a strip
        // of `k × 8V` values, the outputs, and the target features.
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); V]; R];
            if !first {
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    for (v, a) in acc_r.iter_mut().enumerate() {
                        *a = _mm256_loadu_ps(dx.add(r * stride + v * LANES));
                    }
                }
            }
            for o in 0..k {
                let mut wv = [_mm256_setzero_ps(); V];
                for (v, wv) in wv.iter_mut().enumerate() {
                    *wv = _mm256_loadu_ps(strip.add((o * V + v) * LANES));
                }
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let g = _mm256_broadcast_ss(&*dy.add(r * out + o));
                    for (a, &v) in acc_r.iter_mut().zip(&wv) {
                        *a = _mm256_fmadd_ps(g, v, *a);
                    }
                }
            }
            for (r, acc_r) in acc.iter().enumerate() {
                for (v, &a) in acc_r.iter().enumerate() {
                    _mm256_storeu_ps(dx.add(r * stride + v * LANES), a);
                }
            }
        }
    }

    /// Every row tile (of at most `RT` rows) of `dy` over one packed strip of `V` vectors and `k`
    /// rows of `W`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn backward_strip<const RT: usize, const V: usize>(
        dy: *const f32,
        rows: usize,
        out: usize,
        k: usize,
        first: bool,
        strip: *const f32,
        dx: *mut f32,
        stride: usize,
    ) {
        for r0 in (0..rows).step_by(RT) {
            // SAFETY: as for `backward_tile`, for the rows `r0..r0 + left` of `dy` and `dx`.
            unsafe {
                let (g, d) = (dy.add(r0 * out), dx.add(r0 * stride));
                match (rows - r0).min(RT) {
                    1 => backward_tile::<1, V>(g, out, k, first, strip, d, stride),
                    2 => backward_tile::<2, V>(g, out, k, first, strip, d, stride),
                    3 => backward_tile::<3, V>(g, out, k, first, strip, d, stride),
                    4 => backward_tile::<4, V>(g, out, k, first, strip, d, stride),
                    5 => backward_tile::<5, V>(g, out, k, first, strip, d, stride),
                    l if l < RT && l == 6 => {
                        backward_tile::<6, V>(g, out, k, first, strip, d, stride)
                    }
                    l if l < RT && l == 7 => {
                        backward_tile::<7, V>(g, out, k, first, strip, d, stride)
                    }
                    _ => backward_tile::<RT, V>(g, out, k, first, strip, d, stride),
                }
            }
        }
    }

    /// [`backward_with`] with the AVX2 register file: tiles of [`BACK_ROWS`] × [`VECS`].
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn backward_avx2<const F16: bool>(
        dy: &[f32],
        (rows, out, inp): (usize, usize, usize),
        w: *const u16,
        (i0, n): (usize, usize),
        dst: Dst,
    ) {
        // SAFETY: the caller's guarantees.
        unsafe { backward_with::<BACK_ROWS, VECS, F16>(dy, (rows, out, inp), w, (i0, n), dst) }
    }

    /// [`backward_with`] with AVX-512's 32 vector registers: tiles of [`WIDE_ROWS`] × [`WIDE_VECS`].
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
    unsafe fn backward_avx512<const F16: bool>(
        dy: &[f32],
        (rows, out, inp): (usize, usize, usize),
        w: *const u16,
        (i0, n): (usize, usize),
        dst: Dst,
    ) {
        // SAFETY: the caller's guarantees.
        unsafe { backward_with::<WIDE_ROWS, WIDE_VECS, F16>(dy, (rows, out, inp), w, (i0, n), dst) }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn backward<const F16: bool>(
        dy: &[f32],
        rows: usize,
        out: usize,
        inp: usize,
        w: *const u16,
        i0: usize,
        n: usize,
        dst: Dst,
    ) {
        // SAFETY: the caller's guarantees, and the features just detected.
        unsafe {
            if wide() {
                backward_avx512::<F16>(dy, (rows, out, inp), w, (i0, n), dst)
            } else {
                backward_avx2::<F16>(dy, (rows, out, inp), w, (i0, n), dst)
            }
        }
    }

    /// The backward pass of one block with register tiles of `RT` rows × `V` vectors.
    #[inline(always)]
    unsafe fn backward_with<const RT: usize, const V: usize, const F16: bool>(
        dy: &[f32],
        (rows, out, inp): (usize, usize, usize),
        w: *const u16,
        (i0, n): (usize, usize),
        dst: Dst,
    ) {
        // A strip of `V` vectors of columns over `BLOCK` rows of `W`, widened and packed contiguously
        // (rows of `W` lie a multiple of 4 KiB apart in memory, and would evict each other from L1),
        // then every row tile of `dy` passes over it; the tiles' sums go on from where the previous
        // block of rows left them.
        let mut strip = [0f32; BLOCK * WIDE_VECS * LANES];
        let mut i = i0;
        while i < i0 + n {
            let vecs = ((i0 + n - i) / LANES).min(V);
            for o0 in (0..out).step_by(BLOCK) {
                let k = (out - o0).min(BLOCK);
                // SAFETY: the caller's guarantees; the strip holds `k × vecs` vectors, and every
                // pointer below stays inside `dy`, `W` and the destination's columns `i..i + 8 vecs`.
                unsafe {
                    for o in 0..k {
                        for v in 0..vecs {
                            let src = w.add((o0 + o) * inp + i + v * LANES);
                            let at = strip.as_mut_ptr().add((o * vecs + v) * LANES);
                            _mm256_storeu_ps(at, load8::<F16>(src));
                        }
                    }
                    let (g, sp, d) = (dy.as_ptr().add(o0), strip.as_ptr(), dst.ptr.add(i));
                    let first = o0 == 0;
                    let s = dst.stride;
                    match vecs {
                        1 => backward_strip::<RT, 1>(g, rows, out, k, first, sp, d, s),
                        2 => backward_strip::<RT, 2>(g, rows, out, k, first, sp, d, s),
                        _ => backward_strip::<RT, V>(g, rows, out, k, first, sp, d, s),
                    }
                }
            }
            i += V * LANES;
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use burn::tensor::{bf16, f16};
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Set: the kernels take their AVX2 tiles even where AVX-512 is there (each output is summed the
    /// same either way, so other tests running meanwhile see the same results).
    pub static NARROW: AtomicBool = AtomicBool::new(false);

    fn data(n: usize, seed: u64) -> Vec<f32> {
        crate::fused::kernels::test_values(n, seed, 1.0)
    }

    /// A weight in bf16 and f16, and the f32 values each holds.
    struct Held {
        bf16: Vec<bf16>,
        f16: Vec<f16>,
    }

    impl Held {
        fn new(n: usize, seed: u64) -> Self {
            let v = data(n, seed);
            Held {
                bf16: v.iter().map(|&x| bf16::from_f32(x)).collect(),
                f16: v.iter().map(|&x| f16::from_f32(x)).collect(),
            }
        }

        fn all(&self) -> [(Weights<'_>, Vec<f32>); 2] {
            [
                (
                    Weights::Bf16(&self.bf16),
                    self.bf16.iter().map(|v| v.to_f32()).collect(),
                ),
                (
                    Weights::F16(&self.f16),
                    self.f16.iter().map(|v| v.to_f32()).collect(),
                ),
            ]
        }
    }

    fn supported() -> bool {
        let ok = applies(Weights::Bf16(&[]), 8);
        if !ok {
            eprintln!(
                "SKIPPED: this CPU lacks AVX2, FMA or F16C; the widening kernels never run here"
            );
        }
        ok
    }

    fn forward(x: &[f32], rows: usize, inp: usize, w: Weights, splits: &[usize]) -> Vec<f32> {
        let out = w.len() / inp;
        let mut y = vec![f32::NAN; rows * out];
        let dst = Dst {
            ptr: y.as_mut_ptr(),
            stride: out,
        };
        let mut bounds = vec![0];
        bounds.extend(splits.iter().copied().filter(|&s| s > 0 && s < out));
        bounds.push(out);
        for b in bounds.windows(2) {
            // SAFETY: `applies` holds (checked by `supported`), the shapes are as stated.
            unsafe { forward_block(x, rows, inp, w, b[0], b[1] - b[0], dst) };
        }
        y
    }

    fn backward(dy: &[f32], rows: usize, inp: usize, w: Weights, splits: &[usize]) -> Vec<f32> {
        let out = w.len() / inp;
        let mut dx = vec![f32::NAN; rows * inp];
        let dst = Dst {
            ptr: dx.as_mut_ptr(),
            stride: inp,
        };
        let mut bounds = vec![0];
        bounds.extend(
            splits
                .iter()
                .map(|s| s * LANES)
                .filter(|&s| s > 0 && s < inp),
        );
        bounds.push(inp);
        for b in bounds.windows(2) {
            // SAFETY: as above; the blocks are whole vectors of columns.
            unsafe { backward_block(dy, rows, out, inp, w, b[0], b[1] - b[0], dst) };
        }
        dx
    }

    /// The documented order of the forward sum, in scalar code: lane `l` is a chain of fused
    /// multiply-adds over `p ≡ l (mod 8)` in order, the lanes summed by [`hsum`].
    fn forward_order(x: &[f32], w: &[f32]) -> f32 {
        let mut lanes = [0f32; LANES];
        for (xc, wc) in x.chunks_exact(LANES).zip(w.chunks_exact(LANES)) {
            for l in 0..LANES {
                lanes[l] = xc[l].mul_add(wc[l], lanes[l]);
            }
        }
        hsum(lanes)
    }

    #[test]
    fn every_tile_shape_sums_in_the_documented_order() {
        if !supported() {
            return;
        }
        for narrow in [false, true] {
            NARROW.store(narrow, Ordering::Relaxed);
            tiles_sum_in_the_documented_order();
        }
        NARROW.store(false, Ordering::Relaxed);
    }

    fn tiles_sum_in_the_documented_order() {
        // Rows and outputs over every edge of the 4 × 3 and 4 × 5 forward and 6 × 2 and 8 × 3 backward tiles, and more
        // rows of `W` than a backward block holds.
        for (rows, inp, out) in [
            (13, 8, 7),
            (7, 24, 5),
            (1, 16, 1),
            (6, 40, 2),
            (9, 16, 300),
            (23, 16, 4),
        ] {
            let held = Held::new(out * inp, (rows * 7 + inp + out) as u64);
            let x = data(rows * inp, 3 + rows as u64);
            let dy = data(rows * out, 5 + out as u64);
            for (w, values) in held.all() {
                let y = forward(&x, rows, inp, w, &[]);
                for r in 0..rows {
                    for o in 0..out {
                        let want = forward_order(
                            &x[r * inp..(r + 1) * inp],
                            &values[o * inp..(o + 1) * inp],
                        );
                        assert_eq!(
                            y[r * out + o].to_bits(),
                            want.to_bits(),
                            "forward {rows}x{inp}x{out} [{r}, {o}]: {} vs {want}",
                            y[r * out + o]
                        );
                    }
                }
                let dx = backward(&dy, rows, inp, w, &[]);
                for r in 0..rows {
                    for i in 0..inp {
                        let want = (0..out).fold(0f32, |acc, o| {
                            dy[r * out + o].mul_add(values[o * inp + i], acc)
                        });
                        assert_eq!(
                            dx[r * inp + i].to_bits(),
                            want.to_bits(),
                            "backward {rows}x{inp}x{out} [{r}, {i}]: {} vs {want}",
                            dx[r * inp + i]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_the_split_into_tasks() {
        if !supported() {
            return;
        }
        let (rows, inp, out) = (11, 48, 29);
        let held = Held::new(out * inp, 9);
        let x = data(rows * inp, 10);
        let dy = data(rows * out, 11);
        for (w, _) in held.all() {
            let y = forward(&x, rows, inp, w, &[]);
            for splits in [&[1][..], &[2, 3, 17], &[5, 10, 15, 20, 25, 28]] {
                assert_eq!(
                    forward(&x, rows, inp, w, splits),
                    y,
                    "forward split at {splits:?}"
                );
            }
            let dx = backward(&dy, rows, inp, w, &[]);
            for splits in [&[1][..], &[2, 3], &[1, 2, 3, 4, 5]] {
                assert_eq!(
                    backward(&dy, rows, inp, w, splits),
                    dx,
                    "backward split at {splits:?} vectors"
                );
            }
        }
    }

    #[test]
    fn the_vector_sum_of_lanes_is_the_documented_one() {
        if !supported() {
            return;
        }
        // Lanes chosen so that every grouping of the sum rounds differently.
        let lanes = [1e8f32, 1.0, -1e8, 3.0, 0.5, 1e-3, 7.0, -2.5];
        let inp = LANES;
        let x = lanes.to_vec();
        let w = vec![bf16::from_f32(1.0); inp];
        let y = forward(&x, 1, inp, Weights::Bf16(&w), &[]);
        assert_eq!(y[0].to_bits(), hsum(lanes).to_bits());
    }
}
