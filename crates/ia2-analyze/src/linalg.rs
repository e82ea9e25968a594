//! Column-space bases of LoRA `B` matrices and their overlap, in f64.

use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

/// Thresholds deciding whether a `B` has a meaningful basis.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RankTolerance {
    /// A singular value counts towards the effective rank when it exceeds `relative · σ_max`.
    pub relative: f64,
    /// A `B` whose largest singular value is at most this is (near) zero: no basis at all.
    pub absolute: f64,
}

impl Default for RankTolerance {
    fn default() -> Self {
        RankTolerance {
            relative: 1e-6,
            absolute: 1e-10,
        }
    }
}

/// Orthonormal basis of the column space of one `B` `[d_out, r]`.
#[derive(Debug, Clone)]
pub struct Basis {
    /// `[d_out, r]`: the first r left singular vectors (columns orthonormal).
    pub u: DMatrix<f64>,
    /// Singular values, descending.
    pub singular_values: Vec<f64>,
    /// Number of singular values above `relative · σ_max` (0 for a near-zero `B`).
    pub effective_rank: usize,
    /// The LoRA rank r (columns of `B`).
    pub rank: usize,
}

impl Basis {
    /// SVD of `b` (`rows × cols`, row-major f32, computed in f64).
    pub fn of(b: &[f32], rows: usize, cols: usize, tol: RankTolerance) -> Basis {
        assert_eq!(
            b.len(),
            rows * cols,
            "B has {} values, not {rows}×{cols}",
            b.len()
        );
        let m = DMatrix::<f64>::from_fn(rows, cols, |i, j| b[i * cols + j] as f64);
        let svd = m.svd(true, false);
        let u_all = svd.u.expect("U was requested");
        let mut order: Vec<usize> = (0..svd.singular_values.len()).collect();
        order.sort_by(|&a, &b| svd.singular_values[b].total_cmp(&svd.singular_values[a]));
        let singular_values: Vec<f64> = order.iter().map(|&i| svd.singular_values[i]).collect();
        let k = cols.min(rows);
        let u = DMatrix::<f64>::from_fn(rows, k, |i, j| u_all[(i, order[j])]);
        let smax = singular_values.first().copied().unwrap_or(0.0);
        let effective_rank = if smax <= tol.absolute || !smax.is_finite() {
            0
        } else {
            singular_values
                .iter()
                .filter(|&&s| s > tol.relative * smax)
                .count()
        };
        Basis {
            u,
            singular_values,
            effective_rank,
            rank: cols,
        }
    }

    /// Largest singular value.
    pub fn sigma_max(&self) -> f64 {
        self.singular_values.first().copied().unwrap_or(0.0)
    }

    /// Whether `B` is (near) zero.
    pub fn near_zero(&self) -> bool {
        self.effective_rank == 0
    }

    /// Whether the basis is unusable: near zero or rank-deficient (effective rank below r).
    pub fn flagged(&self) -> bool {
        self.effective_rank < self.rank.min(self.u.nrows())
    }
}

/// `‖U1ᵀU2‖²_F / r` with r the smaller of the two ranks: the mean squared cosine of the principal angles,
/// in [0, 1].
pub fn overlap(a: &Basis, b: &Basis) -> f64 {
    let r = a.u.ncols().min(b.u.ncols());
    if r == 0 {
        return f64::NAN;
    }
    let m = a.u.transpose() * &b.u;
    m.iter().map(|x| x * x).sum::<f64>() / r as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basis_is_orthonormal_and_spans_b() {
        // B = [[1, 2], [3, 4], [5, 6]]
        let b = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let basis = Basis::of(&b, 3, 2, RankTolerance::default());
        let utu = basis.u.transpose() * &basis.u;
        for i in 0..2 {
            for j in 0..2 {
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((utu[(i, j)] - want).abs() < 1e-12);
            }
        }
        assert_eq!(basis.effective_rank, 2);
        assert!(!basis.flagged());
        assert!(basis.singular_values[0] >= basis.singular_values[1]);
        // Projecting B onto the basis gives B back.
        let m = DMatrix::<f64>::from_row_slice(3, 2, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let proj = &basis.u * (basis.u.transpose() * &m);
        assert!((proj - m).abs().max() < 1e-12);
        assert!((overlap(&basis, &basis) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn zero_and_rank_one_matrices_are_flagged() {
        let zero = Basis::of(&[0.0; 6], 3, 2, RankTolerance::default());
        assert_eq!(zero.effective_rank, 0);
        assert!(zero.near_zero() && zero.flagged());
        let rank1 = Basis::of(
            &[1.0, 2.0, 2.0, 4.0, 3.0, 6.0],
            3,
            2,
            RankTolerance::default(),
        );
        assert_eq!(rank1.effective_rank, 1);
        assert!(rank1.flagged() && !rank1.near_zero());
    }
}
