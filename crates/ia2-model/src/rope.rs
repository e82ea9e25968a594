//! Rotary position embeddings, computed on the host for the exact positions of a batch.
//!
//! Matches transformers: inverse frequencies from the config (held in f32 as torch holds them), angles
//! `pos * inv_freq` in f32, `cos`/`sin` duplicated over both halves, `rotate_half` convention.

/// `cos` and `sin` tables of shape `[positions.len(), head_dim]` (row-major), both halves equal.
pub fn cos_sin(inv_freq: &[f32], positions: &[usize]) -> (Vec<f32>, Vec<f32>) {
    let half = inv_freq.len();
    let dim = 2 * half;
    let mut cos = vec![0f32; positions.len() * dim];
    let mut sin = vec![0f32; positions.len() * dim];
    for (row, &p) in positions.iter().enumerate() {
        for (i, &f) in inv_freq.iter().enumerate() {
            let angle = (p as f32 * f) as f64;
            let (s, c) = (angle.sin() as f32, angle.cos() as f32);
            for off in [0, half] {
                cos[row * dim + off + i] = c;
                sin[row * dim + off + i] = s;
            }
        }
    }
    (cos, sin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cos_sin_halves_are_duplicated() {
        let f: Vec<f32> = (0..4)
            .map(|i| 1.0 / 10000f32.powf(i as f32 / 4.0))
            .collect();
        let (c, s) = cos_sin(&f, &[0, 3]);
        assert_eq!(&c[0..8], &[1.0; 8]);
        assert_eq!(&s[0..8], &[0.0; 8]);
        assert_eq!(c[8], c[12]);
        assert_eq!(s[9], s[13]);
        assert!((s[8] - 3f32.sin()).abs() < 1e-6);
    }
}
