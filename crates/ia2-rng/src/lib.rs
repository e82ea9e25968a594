//! numpy-compatible random streams, bit-for-bit.
//!
//! * [`Generator`] reproduces `numpy.random.default_rng(seed)`: `SeedSequence` entropy hashing feeding a
//!   `PCG64` bit generator (128-bit LCG with XSL-RR output), numpy's buffered 32-bit draws and its masked
//!   rejection sampler for bounded integers. `Generator::permutation(n)` equals
//!   `np.random.default_rng(seed).permutation(n)`, which is what Hugging Face `Dataset.shuffle(seed=...)` uses.
//! * [`RandomState`] reproduces the legacy `numpy.random.RandomState(seed)`: MT19937 seeded with
//!   `init_genrand` (integer seeds) or `init_by_array` (array seeds), and the legacy `shuffle`, `permutation`,
//!   `choice(n, k, replace=False)`, `randint` and `random_sample`.
//!
//! Only the pieces the IA2 data pipeline needs are provided; every one is checked against vectors produced by
//! real numpy (see `tests/data/gen_vectors.py`).

mod mt19937;
mod pcg64;

pub use mt19937::RandomState;
pub use pcg64::{Generator, SeedSequence};

/// Smallest all-ones bit mask covering `max`.
fn gen_mask(max: u64) -> u64 {
    let mut mask = max;
    mask |= mask >> 1;
    mask |= mask >> 2;
    mask |= mask >> 4;
    mask |= mask >> 8;
    mask |= mask >> 16;
    mask |= mask >> 32;
    mask
}

/// The raw 32/64-bit streams both generators expose; numpy builds bounded draws and shuffles on them
/// the same way for `Generator` and the legacy `RandomState`.
trait Bits {
    fn next_u32(&mut self) -> u32;
    fn next_u64(&mut self) -> u64;
}

/// Uniform integer in `[0, max]` (numpy's `random_interval`: masked rejection, 32-bit draws when they suffice).
fn random_interval(rng: &mut impl Bits, max: u64) -> u64 {
    if max == 0 {
        return 0;
    }
    let mask = gen_mask(max);
    loop {
        let v = if max <= 0xffff_ffff {
            u64::from(rng.next_u32()) & mask
        } else {
            rng.next_u64() & mask
        };
        if v <= max {
            return v;
        }
    }
}

/// Fisher–Yates from the end, as numpy's 1-d `shuffle` (both generators).
fn shuffle<T>(rng: &mut impl Bits, x: &mut [T]) {
    for i in (1..x.len()).rev() {
        let j = random_interval(rng, i as u64) as usize;
        x.swap(i, j);
    }
}

/// A shuffled `0..n` (numpy's `permutation(n)` for both generators).
fn permutation(rng: &mut impl Bits, n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    shuffle(rng, &mut v);
    v
}
