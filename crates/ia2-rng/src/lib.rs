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
