//! Pure metric functions: probabilities, entropies, label-set decisions, calibration, agreement.
//!
//! Conventions (documented differences from the seed are marked *fix*):
//! - Entropies are natural-log, `-Σ p ln p` with `0 ln 0 = 0` (the seed added `1e-10` inside the log).
//! - Top-k statistics renormalise the k full-softmax probabilities to sum to 1.
//! - Label-set statistics renormalise the labels' first-sub-token probabilities to sum to 1 (*fix*: the
//!   seed applied a second softmax to values that were already probabilities).
//! - ECE: examples sorted by confidence (stable: ties keep example order), `n_bins` equal-count bins of
//!   `n / n_bins` examples, the last bin taking the remainder (so with fewer than `n_bins` examples there
//!   is a single bin), `Σ |bin|/n · |accuracy(bin) − mean confidence(bin)|`; as the seed.
//! - Standard deviations are population standard deviations (`numpy.std`).

use serde::{Deserialize, Serialize};

/// Number of equal-count bins of the expected calibration error.
pub const ECE_BINS: usize = 15;

/// `softmax(logits)` computed in f64 (max-subtracted).
pub fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = f64::from(logits.iter().copied().fold(f32::NEG_INFINITY, f32::max));
    let exps: Vec<f64> = logits.iter().map(|&l| (f64::from(l) - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// Indices of the `k` largest values, largest first; ties keep the lower index first (as `argmax`).
pub fn top_k(values: &[f64], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    let k = k.min(values.len());
    // Partial selection would be faster; vocabularies are small enough that a sort is not the bottleneck
    // next to the forward pass.
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// `p / Σ p`; a zero (or non-finite) total gives the uniform distribution.
pub fn renormalize(p: &[f64]) -> Vec<f64> {
    let sum: f64 = p.iter().sum();
    if !(sum.is_finite() && sum > 0.0) {
        return vec![1.0 / p.len() as f64; p.len()];
    }
    p.iter().map(|x| x / sum).collect()
}

/// Natural-log entropy of a distribution, `0 ln 0 = 0`.
pub fn entropy(p: &[f64]) -> f64 {
    -p.iter()
        .filter(|&&x| x > 0.0)
        .map(|&x| x * x.ln())
        .sum::<f64>()
}

/// Confidence, entropy and uncertainty of a distribution after renormalisation: confidence = the largest
/// renormalised probability (for top-k probabilities sorted descending, the top-1), uncertainty =
/// `1 − confidence`.
pub use ia2_runs::DistStats;

/// [`DistStats`] of `p` renormalised.
pub fn dist_stats(p: &[f64]) -> DistStats {
    let q = renormalize(p);
    let confidence = q.iter().copied().fold(0.0, f64::max);
    DistStats {
        confidence,
        entropy: entropy(&q),
        uncertainty: 1.0 - confidence,
    }
}

/// Label-set decision: the gold label is correct when its probability is at least every other label's
/// (ties count as correct, as the seed). `false` when the gold label is not in the set.
pub fn label_set_correct(label_probs: &[f64], gold: Option<usize>) -> bool {
    match gold {
        Some(g) if g < label_probs.len() => label_probs.iter().all(|&p| label_probs[g] >= p),
        _ => false,
    }
}

/// Expected calibration error with `n_bins` equal-count bins (see the module notes). 0 for no examples.
pub fn ece(confidences: &[f64], correct: &[bool], n_bins: usize) -> f64 {
    assert_eq!(
        confidences.len(),
        correct.len(),
        "one correctness flag per confidence"
    );
    let n = confidences.len();
    if n == 0 || n_bins == 0 {
        return 0.0;
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| confidences[a].total_cmp(&confidences[b]));
    let bin_size = n / n_bins;
    let mut total = 0.0;
    for bin in 0..n_bins {
        let start = bin * bin_size;
        let end = if bin + 1 < n_bins {
            (bin + 1) * bin_size
        } else {
            n
        };
        if start >= end {
            continue;
        }
        let members = &order[start..end];
        let len = members.len() as f64;
        let acc = members.iter().filter(|&&i| correct[i]).count() as f64 / len;
        let conf = members.iter().map(|&i| confidences[i]).sum::<f64>() / len;
        total += len / n as f64 * (acc - conf).abs();
    }
    total
}

/// Mean and population standard deviation; `None` for no values.
pub fn mean_std(values: &[f64]) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    Some((mean, var.sqrt()))
}

/// `100 · hits / total` (0 for no examples).
pub fn percent(hits: usize, total: usize) -> f64 {
    if total == 0 {
        0.0
    } else {
        100.0 * hits as f64 / total as f64
    }
}

/// Agreement between the two modes over the same examples.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Agreement {
    /// Examples compared (every example: both modes always run).
    pub comparable_examples: usize,
    /// Examples whose two answers are equal (two missing answers count as equal).
    pub agreements: usize,
    pub both_correct: usize,
    pub both_incorrect: usize,
    pub only_icl_correct: usize,
    pub only_without_icl_correct: usize,
}

impl Agreement {
    pub fn agreement_rate(&self) -> f64 {
        percent(self.agreements, self.comparable_examples)
    }
}

/// Agreement of per-example `(answer, correct)` pairs with and without ICL (same order, same length).
pub fn agreement(
    with_icl: &[(Option<&str>, bool)],
    without_icl: &[(Option<&str>, bool)],
) -> Agreement {
    assert_eq!(
        with_icl.len(),
        without_icl.len(),
        "both modes evaluate the same examples"
    );
    let mut a = Agreement {
        comparable_examples: with_icl.len(),
        ..Agreement::default()
    };
    for (w, o) in with_icl.iter().zip(without_icl) {
        if w.0 == o.0 {
            a.agreements += 1;
        }
        match (w.1, o.1) {
            (true, true) => a.both_correct += 1,
            (false, false) => a.both_incorrect += 1,
            (true, false) => a.only_icl_correct += 1,
            (false, true) => a.only_without_icl_correct += 1,
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_is_shift_invariant_and_sums_to_one() {
        let p = softmax(&[1.0, 2.0, 3.0]);
        let q = softmax(&[1001.0, 1002.0, 1003.0]);
        for (a, b) in p.iter().zip(&q) {
            assert!((a - b).abs() < 1e-12);
        }
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // e^1 / (e^1 + e^2 + e^3)
        let e = std::f64::consts::E;
        assert!((p[0] - e / (e + e * e + e * e * e)).abs() < 1e-12);
    }

    #[test]
    fn top_k_breaks_ties_by_index() {
        assert_eq!(top_k(&[0.1, 0.4, 0.4, 0.1], 3), vec![1, 2, 0]);
        assert_eq!(top_k(&[0.5], 10), vec![0]);
    }
}
