//! Length statistics with numpy's semantics: `max`, `np.percentile(x, 95)` (default linear method), `min`,
//! `np.mean`, `np.median`, `np.std` (population, ddof=0). Sums use numpy's pairwise summation so that results
//! agree with numpy to the last bit in the common cases.

use serde::{Deserialize, Serialize};

/// Summary of a list of lengths.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LengthStats {
    pub max: usize,
    pub p95: f64,
    pub min: usize,
    pub mean: f64,
    pub median: f64,
    pub std: f64,
    pub count: usize,
}

impl LengthStats {
    /// `None` for an empty list (numpy would raise / return nan).
    pub fn of(values: &[usize]) -> Option<LengthStats> {
        if values.is_empty() {
            return None;
        }
        let mut sorted: Vec<f64> = values.iter().map(|&v| v as f64).collect();
        sorted.sort_by(f64::total_cmp);
        let x: Vec<f64> = values.iter().map(|&v| v as f64).collect();
        let mean = mean(&x);
        let dev: Vec<f64> = x.iter().map(|v| (v - mean) * (v - mean)).collect();
        Some(LengthStats {
            max: *values.iter().max().unwrap(),
            p95: percentile_sorted(&sorted, 95.0),
            min: *values.iter().min().unwrap(),
            mean,
            median: percentile_sorted(&sorted, 50.0),
            std: (pairwise_sum(&dev) / dev.len() as f64).sqrt(),
            count: values.len(),
        })
    }
}

/// numpy's `pairwise_sum` for doubles (blocks of 128 with 8 accumulators).
pub fn pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut res = 0.0;
        for v in a {
            res += v;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - (n % 8) {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&a[..n2]) + pairwise_sum(&a[n2..])
    }
}

/// `np.mean`.
pub fn mean(x: &[f64]) -> f64 {
    pairwise_sum(x) / x.len() as f64
}

/// `np.percentile(x, q)` with the default linear method, on already sorted values.
pub fn percentile_sorted(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    assert!(n > 0, "percentile of an empty list");
    let q = q / 100.0;
    // numpy: virtual index = n*q + (alpha + q*(1 - alpha - beta) - 1) with alpha = beta = 1.
    let (alpha, beta) = (1.0f64, 1.0f64);
    let vi = n as f64 * q + (alpha + q * (1.0 - alpha - beta) - 1.0);
    if vi >= (n - 1) as f64 {
        return sorted[n - 1];
    }
    if vi < 0.0 {
        return sorted[0];
    }
    let prev = vi.floor();
    let gamma = vi - prev;
    let a = sorted[prev as usize];
    let b = sorted[prev as usize + 1];
    // numpy `_lerp`: a + (b-a)*t, or b - (b-a)*(1-t) when t >= 0.5.
    let diff = b - a;
    if gamma >= 0.5 {
        b - diff * (1.0 - gamma)
    } else {
        a + diff * gamma
    }
}

/// Characters as Python's `len(str)` counts them (code points).
pub fn char_len(s: &str) -> usize {
    s.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy_small() {
        // np.percentile([1,2,3,4,5], 95) = 4.8; median = 3
        let s = LengthStats::of(&[5, 1, 4, 2, 3]).unwrap();
        assert!((s.p95 - 4.8).abs() < 1e-12);
        assert_eq!(s.median, 3.0);
        assert_eq!(s.mean, 3.0);
        assert!((s.std - 2f64.sqrt()).abs() < 1e-12);
        let s = LengthStats::of(&[1, 2, 3, 4]).unwrap();
        assert_eq!(s.median, 2.5);
        assert!((s.p95 - 3.85).abs() < 1e-12);
        let s = LengthStats::of(&[7]).unwrap();
        assert_eq!((s.max, s.min, s.p95, s.std), (7, 7, 7.0, 0.0));
    }
}
