//! Small statistics: mean ± population std, Pearson r, the MLE Gaussian of 2-D points.

use serde::{Deserialize, Serialize};

/// Mean, population standard deviation (ddof 0) and count of some values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanStd {
    pub mean: f64,
    pub std: f64,
    pub count: usize,
}

impl MeanStd {
    /// `None` for no values.
    pub fn of(values: &[f64]) -> Option<MeanStd> {
        let (mean, std) = ia2_eval::metrics::mean_std(values)?;
        Some(MeanStd {
            mean,
            std,
            count: values.len(),
        })
    }
}

/// Pearson correlation; `None` with fewer than 2 points or a constant coordinate.
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() || x.len() < 2 {
        return None;
    }
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx).powi(2);
        syy += (b - my).powi(2);
    }
    let d = (sxx * syy).sqrt();
    (d > 0.0).then(|| sxy / d)
}

/// A 2-D Gaussian: MLE mean and covariance (divided by n) plus `1e-6 I`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Gaussian2 {
    pub mean: [f64; 2],
    /// `[[sxx, sxy], [sxy, syy]]`.
    pub cov: [[f64; 2]; 2],
}

impl Gaussian2 {
    pub fn fit(points: &[(f64, f64)]) -> Option<Gaussian2> {
        if points.is_empty() {
            return None;
        }
        let n = points.len() as f64;
        let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
        let my = points.iter().map(|p| p.1).sum::<f64>() / n;
        let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
        for (x, y) in points {
            sxx += (x - mx).powi(2);
            sxy += (x - mx) * (y - my);
            syy += (y - my).powi(2);
        }
        Some(Gaussian2 {
            mean: [mx, my],
            cov: [[sxx / n + 1e-6, sxy / n], [sxy / n, syy / n + 1e-6]],
        })
    }

    /// The contour where the density is `level` times its peak: the ellipse
    /// `(p-μ)ᵀ Σ⁻¹ (p-μ) = -2 ln level`, as `points` points.
    pub fn contour(&self, level: f64, points: usize) -> Vec<(f64, f64)> {
        let m2 = -2.0 * level.ln();
        let [[a, b], [_, d]] = self.cov;
        // Eigen-decomposition of the symmetric 2×2 covariance.
        let tr = a + d;
        let det = a * d - b * b;
        let disc = ((tr * tr / 4.0) - det).max(0.0).sqrt();
        let (l1, l2) = (tr / 2.0 + disc, (tr / 2.0 - disc).max(0.0));
        let (v1x, v1y) = if b.abs() > 1e-300 {
            let (x, y) = (l1 - d, b);
            let n = (x * x + y * y).sqrt();
            (x / n, y / n)
        } else if a >= d {
            (1.0, 0.0)
        } else {
            (0.0, 1.0)
        };
        let (r1, r2) = ((m2 * l1).sqrt(), (m2 * l2).sqrt());
        (0..=points)
            .map(|i| {
                let t = 2.0 * std::f64::consts::PI * i as f64 / points as f64;
                let (u, v) = (r1 * t.cos(), r2 * t.sin());
                (
                    self.mean[0] + u * v1x - v * v1y,
                    self.mean[1] + u * v1y + v * v1x,
                )
            })
            .collect()
    }

    /// Density relative to the peak at `p`: `exp(-½ (p-μ)ᵀ Σ⁻¹ (p-μ))`.
    pub fn relative_density(&self, p: (f64, f64)) -> f64 {
        let [[a, b], [_, d]] = self.cov;
        let det = a * d - b * b;
        let (x, y) = (p.0 - self.mean[0], p.1 - self.mean[1]);
        let q = (d * x * x - 2.0 * b * x * y + a * y * y) / det;
        (-0.5 * q).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_std_is_population() {
        let m = MeanStd::of(&[1.0, 3.0]).unwrap();
        assert_eq!((m.mean, m.std, m.count), (2.0, 1.0, 2));
        assert!(MeanStd::of(&[]).is_none());
    }

    #[test]
    fn pearson_known_values() {
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]).unwrap() - 1.0).abs() < 1e-12);
        assert!((pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap() + 1.0).abs() < 1e-12);
        assert!(pearson(&[1.0, 1.0], &[1.0, 2.0]).is_none());
    }

    #[test]
    fn contour_points_have_the_requested_density() {
        let g = Gaussian2::fit(&[(0.0, 0.0), (1.0, 0.5), (2.0, 2.5), (0.5, 1.0)]).unwrap();
        for level in [0.5, 0.8, 0.95] {
            for p in g.contour(level, 16) {
                assert!((g.relative_density(p) - level).abs() < 1e-9);
            }
        }
    }
}
