//! Legacy `numpy.random.RandomState`: MT19937.

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// Legacy `numpy.random.RandomState(seed)` (MT19937).
#[derive(Debug, Clone)]
pub struct RandomState {
    mt: Box<[u32; N]>,
    pos: usize,
}

impl RandomState {
    /// `RandomState(seed)` for an integer seed (`init_genrand`).
    pub fn new(seed: u32) -> Self {
        let mut mt = Box::new([0u32; N]);
        mt[0] = seed;
        for i in 1..N {
            mt[i] = 1_812_433_253u32
                .wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        Self { mt, pos: N }
    }

    /// `RandomState(seed)` for an array seed such as `RandomState([1, 2, 3])` (`init_by_array`).
    pub fn from_array(key: &[u32]) -> Self {
        let mut s = Self::new(19_650_218);
        let mt = &mut s.mt;
        let (mut i, mut j) = (1usize, 0usize);
        let len = key.len().max(1);
        for _ in 0..N.max(key.len()) {
            let prev = mt[i - 1] ^ (mt[i - 1] >> 30);
            mt[i] = (mt[i] ^ prev.wrapping_mul(1_664_525))
                .wrapping_add(key.get(j).copied().unwrap_or(0))
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
            if j >= len {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            let prev = mt[i - 1] ^ (mt[i - 1] >> 30);
            mt[i] = (mt[i] ^ prev.wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
        }
        mt[0] = 0x8000_0000;
        s.pos = N;
        s
    }

    fn generate(&mut self) {
        let mt = &mut self.mt;
        for k in 0..N {
            let y = (mt[k] & UPPER_MASK) | (mt[(k + 1) % N] & LOWER_MASK);
            let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
            mt[k] = mt[(k + M) % N] ^ (y >> 1) ^ mag;
        }
        self.pos = 0;
    }

    /// Next tempered 32-bit output (`genrand_int32`).
    pub fn next_u32(&mut self) -> u32 {
        if self.pos >= N {
            self.generate();
        }
        let mut y = self.mt[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// Two 32-bit outputs, the first in the high half (numpy's `mt19937_next64`).
    pub fn next_u64(&mut self) -> u64 {
        let hi = u64::from(self.next_u32());
        (hi << 32) | u64::from(self.next_u32())
    }

    /// `random_sample()`: a double in `[0, 1)` from two outputs (27 + 26 bits).
    pub fn random_sample(&mut self) -> f64 {
        let a = f64::from(self.next_u32() >> 5);
        let b = f64::from(self.next_u32() >> 6);
        (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }

    /// Uniform integer in `[0, max]` (numpy's `random_interval`, masked rejection).
    pub fn random_interval(&mut self, max: u64) -> u64 {
        crate::random_interval(self, max)
    }

    /// Legacy `shuffle(x)` of a 1-d sequence: Fisher–Yates from the end.
    pub fn shuffle<T>(&mut self, x: &mut [T]) {
        crate::shuffle(self, x)
    }

    /// Legacy `permutation(n)`: a shuffled `0..n`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        crate::permutation(self, n)
    }

    /// Legacy `choice(n, k, replace=False)` (no `p`): the first `k` entries of `permutation(n)`.
    ///
    /// # Panics
    /// If `k > n` (numpy raises `ValueError`).
    pub fn choice_without_replacement(&mut self, n: usize, k: usize) -> Vec<usize> {
        assert!(
            k <= n,
            "cannot take a larger sample ({k}) than population ({n}) without replacement"
        );
        let mut p = self.permutation(n);
        p.truncate(k);
        p
    }

    /// Legacy `randint(low, high)` (default `int64` dtype): uniform in `[low, high)` by masked rejection.
    ///
    /// # Panics
    /// If `low >= high` (numpy raises `ValueError`).
    pub fn randint(&mut self, low: i64, high: i64) -> i64 {
        assert!(low < high, "randint: low ({low}) >= high ({high})");
        let rng = (high as i128 - 1 - low as i128) as u64;
        let off = low;
        if rng == 0 {
            return off;
        }
        let v = if rng <= 0xffff_ffff {
            if rng == 0xffff_ffff {
                u64::from(self.next_u32())
            } else {
                let mask = crate::gen_mask(rng);
                loop {
                    let v = u64::from(self.next_u32()) & mask;
                    if v <= rng {
                        break v;
                    }
                }
            }
        } else if rng == u64::MAX {
            self.next_u64()
        } else {
            let mask = crate::gen_mask(rng);
            loop {
                let v = self.next_u64() & mask;
                if v <= rng {
                    break v;
                }
            }
        };
        off.wrapping_add(v as i64)
    }
}

impl crate::Bits for RandomState {
    fn next_u32(&mut self) -> u32 {
        RandomState::next_u32(self)
    }
    fn next_u64(&mut self) -> u64 {
        RandomState::next_u64(self)
    }
}
