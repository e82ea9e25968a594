//! Products with a half-precision weight widened in registers: `y = x Wᵀ` and `dx = dy W` for
//! `W: [out, inp]` held in bf16 or f16, f32 activations, on x86-64 with AVX2, FMA and F16C.
//!
//! [`frozen_linear`](mod@super::frozen_linear) otherwise widens a block of `W` into an f32 buffer and hands
//! it to gemm, which packs both operands again: at the 26–144 rows of a training batch or a dev
//! evaluation that copying, and gemm's 16-row panels over a few rows, cost as much as a third of the
//! product. Here the bf16 / f16 elements go from memory straight into vector registers (a widening
//! load and a shift, or one F16C conversion) and into the multiply-adds. With `L` lanes per vector
//! ([`lanes`]: 16 with AVX-512 and `inp` a multiple of 16, else 8 with AVX2):
//! - **forward**, `y[r, o] = Σ_p x[r, p] · W[o, p]`: a register tile of rows of `x` × rows of `W`
//!   ([`ROWS`] × [`OUTS`]; AVX-512 [`WIDE_ROWS`] × [`WIDE_OUTS`]), read in the layout they are stored
//!   in, multiplies `L` consecutive `p` at a time: each output accumulates `L` lane-wise partial sums
//!   (lane `l` a chain of fused multiply-adds over `p ≡ l mod L`, in order of `p`), which are then
//!   summed in a fixed order ([`hsum`], [`hsum16`]);
//! - **backward**, `dx[r, i] = Σ_o dy[r, o] · W[o, i]`: a register tile of rows of `dy` × vectors of
//!   `L` consecutive `i` ([`BACK_ROWS`] × [`VECS`]; AVX-512 [`WIDE_BACK_ROWS`] × [`WIDE_VECS`]), each
//!   element one fused multiply-add per `o`, in order of `o` from 0 (so both widths give the same
//!   bits); the weights are widened into a small packed strip first ([`STRIP`]), reused by every row
//!   tile.
//!
//! Every output element is summed the same way whatever the tile it falls in, the task split or the
//! number of threads, so results do not depend on either. The numerics are those of an f32 weight
//! holding the same values (every bf16 and f16 value is an f32 value), up to the order of the f32
//! summation: the tests pin the order of every tile shape of both widths bit for bit, and
//! [`frozen_linear`](mod@super::frozen_linear)'s compare both passes with a direct f64 computation.
//!
//! Measured on the project's 2-core AVX-512 machine (interleaved, medians of 21; f32 weights through
//! gemm for reference): `[144, 1024] × [3072, 1024]ᵀ` forward 5.9 ms (f32 9.1), backward 6.4 (8.6);
//! `[26, 1024] × [3072, 1024]ᵀ` forward 1.3 (3.8), backward 1.5 (4.5); `[563, 1024] × [2048, 1024]ᵀ`
//! forward 15.3 (19.2), backward 14.0 (18.2). The register tiles were chosen by measurement: the
//! compiler spills accumulators beyond about 16 (AVX2) or 20 (AVX-512) vectors, which cost 1.6×.
//!
//! The kernels need `inp` to be a multiple of eight ([`applies`]); other shapes, other CPUs and f32
//! weights take gemm.

use super::frozen_linear::Weights;

/// Rows of `x` in a forward register tile (AVX2).
pub const ROWS: usize = 4;
/// Rows of `W` (outputs) in a forward register tile (AVX2): 4 × 3 accumulators, 3 widened weight
/// vectors and one input vector fill the 16 vector registers.
pub const OUTS: usize = 3;
/// Rows of `dy` in a backward register tile (AVX2).
pub const BACK_ROWS: usize = 6;
/// Vectors of columns of `dx` in a backward register tile (AVX2): 6 × 2 accumulators, 2 weight
/// vectors and one broadcast (with 4 × 3, the compiler spills an accumulator every step).
pub const VECS: usize = 2;
/// Rows of `x` in a forward register tile with AVX-512 (16 lanes, 32 registers).
pub const WIDE_ROWS: usize = 3;
/// Rows of `W` in a forward register tile with AVX-512: 3 × 4 accumulators. Measured against 4 × 5,
/// 4 × 4, 4 × 3, 3 × 5, 3 × 6 and 2 × 6: the tiles of 20 accumulators or more ran 1.6× slower (the
/// compiler spills them), the others within a few per cent of each other.
pub const WIDE_OUTS: usize = 4;
/// Rows of `dy` in a backward register tile with AVX-512.
pub const WIDE_BACK_ROWS: usize = 4;
/// Vectors of 16 columns in a backward register tile with AVX-512: 4 × 4 accumulators (8 × 3, 6 × 2,
/// 4 × 3 and 6 × 3 measured within a few per cent).
pub const WIDE_VECS: usize = 4;
/// f32 values of a backward strip (12 KiB): a tile's vectors of columns over as many rows of `W` as
/// fit, widened; it stays in L1 while every row tile of `dy` passes over it.
pub const STRIP: usize = 3072;
/// Lanes of the narrowest vectors (AVX2); with AVX-512 and `inp` a multiple of 16, vectors of 16.
pub const LANES: usize = 8;
/// Columns of every backward block but the last: whole vectors of either width.
pub const COLUMN_BLOCK: usize = 16;

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
/// `dst` has room for `rows` rows of `dst.stride` elements, and no other thread reads or writes its
/// columns `o0..o0 + n` meanwhile. (Checked: [`applies`] holds for `w` and `inp`, `x` holds `rows ×
/// inp` elements, `W` the rows `o0..o0 + n`, and `dst.stride ≥ o0 + n`.)
pub unsafe fn forward_block(
    x: &[f32],
    rows: usize,
    inp: usize,
    w: Weights,
    o0: usize,
    n: usize,
    dst: Dst,
) {
    assert!(
        applies(w, inp)
            && x.len() >= rows * inp
            && w.len() >= (o0 + n) * inp
            && dst.stride >= o0 + n,
        "widening forward: shapes ({rows} × {inp}, weights for rows {o0}..{}) or CPU do not fit",
        o0 + n
    );
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
/// `dst` has room for `rows` rows of `dst.stride` elements, and no other thread reads or writes its
/// columns `i0..i0 + n` meanwhile. (Checked: [`applies`] holds for `w` and `inp`, `dy` holds `rows ×
/// out` elements and `W` `out × inp`, `dst.stride ≥ i0 + n`, `i0` is a multiple of [`COLUMN_BLOCK`]
/// and `n` of [`lanes`]`(inp)`, with `i0 + n ≤ inp`.)
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
    assert!(
        applies(w, inp) && dy.len() >= rows * out && w.len() >= out * inp && dst.stride >= i0 + n,
        "widening backward: shapes ({rows} × {out}, weights {out} × {inp}) or CPU do not fit"
    );
    assert!(
        i0.is_multiple_of(COLUMN_BLOCK) && n.is_multiple_of(lanes(inp)) && i0 + n <= inp,
        "widening backward: columns {i0}..{} are not whole blocks of {inp}",
        i0 + n
    );
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

/// The order in which [`forward_block`] sums the eight lane-wise partial sums of an output (AVX2):
/// lanes `l` and `l + 4` first, then those pairs two apart, then the last two (`((l0 + l4) + (l2 +
/// l6)) + ((l1 + l5) + (l3 + l7))`). The kernels' vector version does exactly this.
pub fn hsum(l: [f32; LANES]) -> f32 {
    let s4 = [l[0] + l[4], l[1] + l[5], l[2] + l[6], l[3] + l[7]];
    let s2 = [s4[0] + s4[2], s4[1] + s4[3]];
    s2[0] + s2[1]
}

/// The same with 16 lanes (AVX-512): lanes `l` and `l + 8` first, then [`hsum`].
pub fn hsum16(l: [f32; 2 * LANES]) -> f32 {
    hsum(std::array::from_fn(|i| l[i] + l[i + LANES]))
}

/// Lanes of the vectors the kernels use for this input width on this CPU (16 with AVX-512 and `inp`
/// a multiple of 16, else 8): each forward output is summed lane-wise in that many partial sums.
pub fn lanes(inp: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        x86::lanes(inp)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = inp;
        LANES
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{
        BACK_ROWS, Dst, OUTS, ROWS, STRIP, VECS, WIDE_BACK_ROWS, WIDE_OUTS, WIDE_ROWS, WIDE_VECS,
    };
    use std::arch::x86_64::*;

    /// The vector operations of the kernels, on 8-lane (AVX2) or 16-lane (AVX-512) registers. Every
    /// method is inlined into the `target_feature` entry points below, which enable what it uses.
    pub(super) trait Simd {
        type V: Copy;
        const LANES: usize;
        unsafe fn zero() -> Self::V;
        unsafe fn load(p: *const f32) -> Self::V;
        unsafe fn store(p: *mut f32, v: Self::V);
        /// `a · b + c`, fused.
        unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
        unsafe fn splat(p: *const f32) -> Self::V;
        /// `LANES` weights at `w` widened to f32: f16 by F16C, bf16 by zero-extension and a shift
        /// (the bf16 bits are the upper half of the f32 ones).
        unsafe fn widen<const F16: bool>(w: *const u16) -> Self::V;
        /// The lanes summed in the documented order ([`super::hsum`], [`super::hsum16`]).
        unsafe fn hsum(v: Self::V) -> f32;
    }

    /// AVX2 + FMA + F16C: 8 lanes.
    pub(super) struct Ymm;
    /// AVX-512 (F): 16 lanes.
    pub(super) struct Zmm;

    impl Simd for Ymm {
        type V = __m256;
        const LANES: usize = 8;
        #[inline(always)]
        unsafe fn zero() -> __m256 {
            unsafe { _mm256_setzero_ps() }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            // SAFETY (all methods): the caller guarantees the memory and the target features.
            unsafe { _mm256_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m256) {
            unsafe { _mm256_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        unsafe fn splat(p: *const f32) -> __m256 {
            unsafe { _mm256_broadcast_ss(&*p) }
        }
        #[inline(always)]
        unsafe fn widen<const F16: bool>(w: *const u16) -> __m256 {
            unsafe {
                let h = _mm_loadu_si128(w.cast());
                if F16 {
                    _mm256_cvtph_ps(h)
                } else {
                    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
                }
            }
        }
        #[inline(always)]
        unsafe fn hsum(a: __m256) -> f32 {
            unsafe {
                let s4 = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
                let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
                _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps::<1>(s2, s2)))
            }
        }
    }

    impl Simd for Zmm {
        type V = __m512;
        const LANES: usize = 16;
        #[inline(always)]
        unsafe fn zero() -> __m512 {
            unsafe { _mm512_setzero_ps() }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            unsafe { _mm512_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            unsafe { _mm512_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        unsafe fn splat(p: *const f32) -> __m512 {
            unsafe { _mm512_set1_ps(*p) }
        }
        #[inline(always)]
        unsafe fn widen<const F16: bool>(w: *const u16) -> __m512 {
            unsafe {
                let h = _mm256_loadu_si256(w.cast());
                if F16 {
                    _mm512_cvtph_ps(h)
                } else {
                    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
                }
            }
        }
        #[inline(always)]
        unsafe fn hsum(a: __m512) -> f32 {
            unsafe {
                // Lanes `l` and `l + 8` first, then the 8-lane order.
                let lo = _mm512_castps512_ps256(a);
                let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(a)));
                Ymm::hsum(_mm256_add_ps(lo, hi))
            }
        }
    }

    /// Whether the CPU has AVX-512 (F) for the 16-lane kernels.
    fn wide() -> bool {
        #[cfg(test)]
        if super::tests::NARROW.with(|n| n.get()) {
            return false;
        }
        std::arch::is_x86_feature_detected!("avx512f")
    }

    /// The 16-lane kernels for this input width: AVX-512 and `inp` a multiple of 16.
    pub(super) fn lanes(inp: usize) -> usize {
        if wide() && inp.is_multiple_of(Zmm::LANES) {
            Zmm::LANES
        } else {
            Ymm::LANES
        }
    }

    /// One forward register tile: rows `x[0..R]` (stride `inp`) times the weight rows `w[0..O]`,
    /// written at `y[r · stride + o]`.
    #[inline(always)]
    unsafe fn forward_tile<S: Simd, const R: usize, const O: usize, const F16: bool>(
        x: *const f32,
        w: *const u16,
        inp: usize,
        y: *mut f32,
        stride: usize,
    ) {
        // SAFETY: the caller guarantees `R` rows of `inp` inputs, `O` weight rows of `inp` and the
        // outputs, and the target features.
        unsafe {
            let mut acc = [[S::zero(); O]; R];
            let mut c = 0;
            while c < inp {
                let mut wv = [S::zero(); O];
                for (o, v) in wv.iter_mut().enumerate() {
                    *v = S::widen::<F16>(w.add(o * inp + c));
                }
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let xv = S::load(x.add(r * inp + c));
                    for (a, &v) in acc_r.iter_mut().zip(&wv) {
                        *a = S::fma(xv, v, *a);
                    }
                }
                c += S::LANES;
            }
            for (r, acc_r) in acc.iter().enumerate() {
                for (o, &a) in acc_r.iter().enumerate() {
                    *y.add(r * stride + o) = S::hsum(a);
                }
            }
        }
    }

    /// The forward tiles of `left ≤ RT` rows of one block of `O` weight rows.
    #[inline(always)]
    unsafe fn forward_rows<S: Simd, const RT: usize, const O: usize, const F16: bool>(
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
                1 => forward_tile::<S, 1, O, F16>(x, w, inp, y, stride),
                2 => forward_tile::<S, 2, O, F16>(x, w, inp, y, stride),
                3 => forward_tile::<S, 3, O, F16>(x, w, inp, y, stride),
                _ => forward_tile::<S, RT, O, F16>(x, w, inp, y, stride),
            }
        }
    }

    /// The forward pass of one block with tiles of `RT ≤ 4` rows × `OT ≤ 4` outputs.
    #[inline(always)]
    unsafe fn forward_with<S: Simd, const RT: usize, const OT: usize, const F16: bool>(
        x: &[f32],
        (rows, inp): (usize, usize),
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
                let s = dst.stride;
                let mut o = o0;
                while o < o0 + n {
                    let (wo, yo) = (w.add(o * inp), yr.add(o));
                    match (o0 + n - o).min(OT) {
                        1 => forward_rows::<S, RT, 1, F16>(xr, left, wo, inp, yo, s),
                        2 => forward_rows::<S, RT, 2, F16>(xr, left, wo, inp, yo, s),
                        l if l < OT && l == 3 => {
                            forward_rows::<S, RT, 3, F16>(xr, left, wo, inp, yo, s)
                        }
                        _ => forward_rows::<S, RT, OT, F16>(xr, left, wo, inp, yo, s),
                    }
                    o += OT;
                }
            }
        }
    }

    /// AVX2: tiles of [`ROWS`] × [`OUTS`] (16 vector registers).
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn forward_ymm<const F16: bool>(
        x: &[f32],
        shape: (usize, usize),
        w: *const u16,
        block: (usize, usize),
        dst: Dst,
    ) {
        // SAFETY: the caller's guarantees.
        unsafe { forward_with::<Ymm, ROWS, OUTS, F16>(x, shape, w, block, dst) }
    }

    /// AVX-512: 16 lanes, tiles of [`WIDE_ROWS`] × [`WIDE_OUTS`] (32 vector registers).
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    unsafe fn forward_zmm<const F16: bool>(
        x: &[f32],
        shape: (usize, usize),
        w: *const u16,
        block: (usize, usize),
        dst: Dst,
    ) {
        // SAFETY: the caller's guarantees.
        unsafe { forward_with::<Zmm, WIDE_ROWS, WIDE_OUTS, F16>(x, shape, w, block, dst) }
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
            if lanes(inp) == Zmm::LANES {
                forward_zmm::<F16>(x, (rows, inp), w, (o0, n), dst)
            } else {
                forward_ymm::<F16>(x, (rows, inp), w, (o0, n), dst)
            }
        }
    }

    /// One backward register tile: `dx[r, v] (+)= Σ_{o < k} dy[r, o] · strip[o, v]` for `R` rows of
    /// `dy` (stride `out`) and the `V` vectors of a packed strip (`[k, V · LANES]`, f32), starting
    /// from zero when `first`, else from what `dx` holds (the sum so far, in order of `o`).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn backward_tile<S: Simd, const R: usize, const V: usize>(
        dy: *const f32,
        out: usize,
        k: usize,
        first: bool,
        strip: *const f32,
        dx: *mut f32,
        stride: usize,
    ) {
        // SAFETY: the caller guarantees `R` rows of gradients (stride `out`) with `k` values, a strip
        // of `k × V` vectors, the outputs, and the target features.
        unsafe {
            let mut acc = [[S::zero(); V]; R];
            if !first {
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    for (v, a) in acc_r.iter_mut().enumerate() {
                        *a = S::load(dx.add(r * stride + v * S::LANES));
                    }
                }
            }
            for o in 0..k {
                let mut wv = [S::zero(); V];
                for (v, wv) in wv.iter_mut().enumerate() {
                    *wv = S::load(strip.add((o * V + v) * S::LANES));
                }
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let g = S::splat(dy.add(r * out + o));
                    for (a, &v) in acc_r.iter_mut().zip(&wv) {
                        *a = S::fma(g, v, *a);
                    }
                }
            }
            for (r, acc_r) in acc.iter().enumerate() {
                for (v, &a) in acc_r.iter().enumerate() {
                    S::store(dx.add(r * stride + v * S::LANES), a);
                }
            }
        }
    }

    /// Every row tile (of at most `RT ≤ 6` rows) of `dy` over one packed strip of `V` vectors and
    /// `k` rows of `W`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn backward_strip<S: Simd, const RT: usize, const V: usize>(
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
                let f = first;
                match (rows - r0).min(RT) {
                    1 => backward_tile::<S, 1, V>(g, out, k, f, strip, d, stride),
                    2 => backward_tile::<S, 2, V>(g, out, k, f, strip, d, stride),
                    3 => backward_tile::<S, 3, V>(g, out, k, f, strip, d, stride),
                    4 => backward_tile::<S, 4, V>(g, out, k, f, strip, d, stride),
                    5 => backward_tile::<S, 5, V>(g, out, k, f, strip, d, stride),
                    _ => backward_tile::<S, RT, V>(g, out, k, f, strip, d, stride),
                }
            }
        }
    }

    /// The backward pass of one block with register tiles of `RT` rows × `V ≤ 4` vectors.
    #[inline(always)]
    unsafe fn backward_with<S: Simd, const RT: usize, const V: usize, const F16: bool>(
        dy: &[f32],
        (rows, out, inp): (usize, usize, usize),
        w: *const u16,
        (i0, n): (usize, usize),
        dst: Dst,
    ) {
        // A strip of `V` vectors of columns over a block of rows of `W`, widened and packed
        // contiguously (rows of `W` lie a multiple of 4 KiB apart in memory, and would evict each
        // other from L1), then every row tile of `dy` passes over it; the tiles' sums go on from
        // where the previous block of rows left them.
        let mut strip = [0f32; STRIP];
        let block = STRIP / (V * S::LANES);
        let mut i = i0;
        while i < i0 + n {
            let vecs = ((i0 + n - i) / S::LANES).min(V);
            for o0 in (0..out).step_by(block) {
                let k = (out - o0).min(block);
                // SAFETY: the caller's guarantees; the strip holds `k × vecs ≤ STRIP / LANES`
                // vectors, and every pointer below stays inside `dy`, `W` and the destination's
                // columns `i..i + vecs · LANES`.
                unsafe {
                    for o in 0..k {
                        for v in 0..vecs {
                            let src = w.add((o0 + o) * inp + i + v * S::LANES);
                            let at = strip.as_mut_ptr().add((o * vecs + v) * S::LANES);
                            S::store(at, S::widen::<F16>(src));
                        }
                    }
                    let (g, sp, d) = (dy.as_ptr().add(o0), strip.as_ptr(), dst.ptr.add(i));
                    let (f, s) = (o0 == 0, dst.stride);
                    match vecs {
                        1 => backward_strip::<S, RT, 1>(g, rows, out, k, f, sp, d, s),
                        2 => backward_strip::<S, RT, 2>(g, rows, out, k, f, sp, d, s),
                        v if v < V && v == 3 => {
                            backward_strip::<S, RT, 3>(g, rows, out, k, f, sp, d, s)
                        }
                        _ => backward_strip::<S, RT, V>(g, rows, out, k, f, sp, d, s),
                    }
                }
            }
            i += V * S::LANES;
        }
    }

    /// AVX2: tiles of [`BACK_ROWS`] × [`VECS`].
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn backward_ymm<const F16: bool>(
        dy: &[f32],
        shape: (usize, usize, usize),
        w: *const u16,
        block: (usize, usize),
        dst: Dst,
    ) {
        // SAFETY: the caller's guarantees.
        unsafe { backward_with::<Ymm, BACK_ROWS, VECS, F16>(dy, shape, w, block, dst) }
    }

    /// AVX-512: 16 lanes, tiles of [`WIDE_BACK_ROWS`] × [`WIDE_VECS`].
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    unsafe fn backward_zmm<const F16: bool>(
        dy: &[f32],
        shape: (usize, usize, usize),
        w: *const u16,
        block: (usize, usize),
        dst: Dst,
    ) {
        // SAFETY: the caller's guarantees.
        unsafe { backward_with::<Zmm, WIDE_BACK_ROWS, WIDE_VECS, F16>(dy, shape, w, block, dst) }
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
        // SAFETY: the caller's guarantees (blocks of whole 16-lane vectors when `lanes` says 16),
        // and the features just detected.
        unsafe {
            if lanes(inp) == Zmm::LANES {
                backward_zmm::<F16>(dy, (rows, out, inp), w, (i0, n), dst)
            } else {
                backward_ymm::<F16>(dy, (rows, out, inp), w, (i0, n), dst)
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::fused::frozen_linear::tests::{Held, data};
    use burn::tensor::bf16;
    use std::cell::Cell;

    thread_local! {
        /// Set: the kernels called on this thread take their 8-lane AVX2 versions even where AVX-512
        /// is there (the tests call them on their own thread).
        pub static NARROW: Cell<bool> = const { Cell::new(false) };
    }

    /// The half-precision forms of a test weight (`frozen_linear`'s), with the f32 values each holds.
    fn halves(held: &Held) -> [(Weights<'_>, Vec<f32>); 2] {
        [
            (
                Weights::Bf16(&held.bf16),
                held.bf16.iter().map(|v| v.to_f32()).collect(),
            ),
            (
                Weights::F16(&held.f16),
                held.f16.iter().map(|v| v.to_f32()).collect(),
            ),
        ]
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
                .map(|s| s * COLUMN_BLOCK)
                .filter(|&s| s > 0 && s < inp),
        );
        bounds.push(inp);
        for b in bounds.windows(2) {
            // SAFETY: as above; the blocks are whole vectors of columns.
            unsafe { backward_block(dy, rows, out, inp, w, b[0], b[1] - b[0], dst) };
        }
        dx
    }

    /// The documented order of the forward sum, in scalar code: with `L` lanes, lane `l` is a chain
    /// of fused multiply-adds over `p ≡ l (mod L)` in order, the lanes summed by [`hsum`] /
    /// [`hsum16`].
    fn forward_order(x: &[f32], w: &[f32], lanes: usize) -> f32 {
        let mut acc = vec![0f32; lanes];
        for (xc, wc) in x.chunks_exact(lanes).zip(w.chunks_exact(lanes)) {
            for l in 0..lanes {
                acc[l] = xc[l].mul_add(wc[l], acc[l]);
            }
        }
        match lanes {
            8 => hsum(acc.try_into().unwrap()),
            _ => hsum16(acc.try_into().unwrap()),
        }
    }

    #[test]
    fn every_tile_shape_sums_in_the_documented_order() {
        if !supported() {
            return;
        }
        for narrow in [false, true] {
            NARROW.with(|n| n.set(narrow));
            tiles_sum_in_the_documented_order();
        }
        NARROW.with(|n| n.set(false));
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
            for (w, values) in halves(&held) {
                let y = forward(&x, rows, inp, w, &[]);
                for r in 0..rows {
                    for o in 0..out {
                        let want = forward_order(
                            &x[r * inp..(r + 1) * inp],
                            &values[o * inp..(o + 1) * inp],
                            lanes(inp),
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
        let (rows, inp, out) = (11, 96, 29);
        let held = Held::new(out * inp, 9);
        let x = data(rows * inp, 10);
        let dy = data(rows * out, 11);
        for (narrow, (w, _)) in [false, true]
            .into_iter()
            .flat_map(|n| halves(&held).map(|h| (n, h)))
        {
            NARROW.with(|n| n.set(narrow));
            let y = forward(&x, rows, inp, w, &[]);
            for splits in [&[1][..], &[2, 3, 17], &[5, 10, 15, 20, 25, 28]] {
                assert_eq!(
                    forward(&x, rows, inp, w, splits),
                    y,
                    "forward split at {splits:?}"
                );
            }
            let dx = backward(&dy, rows, inp, w, &[]);
            for splits in [&[1][..], &[2, 3], &[1, 2, 3, 4, 5], &[4]] {
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
        let w = vec![bf16::from_f32(1.0); 2 * LANES];
        let y = forward(&lanes, 1, LANES, Weights::Bf16(&w[..LANES]), &[]);
        assert_eq!(y[0].to_bits(), hsum(lanes).to_bits());
        let lanes16: [f32; 16] =
            std::array::from_fn(|i| lanes[i % 8] * if i < 8 { 1.0 } else { -0.75 });
        let y = forward(&lanes16, 1, 16, Weights::Bf16(&w), &[]);
        let want = match super::lanes(16) {
            16 => hsum16(lanes16),
            _ => hsum(std::array::from_fn(|i| {
                lanes16[i].mul_add(1.0, 0.0) + lanes16[i + 8]
            })),
        };
        assert_eq!(y[0].to_bits(), want.to_bits());
    }
}
