//! The real rows of a left-padded batch: the decoder's per-token work (norms, projections, MLP, adapter
//! deltas) runs on them only.
//!
//! A left-padded batch `[b, t]` of sequences of different lengths holds `b·t` positions of which only
//! the unpadded ones are real. Everything but attention treats positions independently, so the residual
//! stream is kept *packed*, `[1, n, hidden]` with the `n` real positions in row-major order, and only the
//! attention inputs are spread into the padded layout `[b, t, ·]` (padding = zeros, masked out as keys;
//! a padding query attends to itself and returns zeros) and its output packed again. The projections, the
//! bulk of a forward and backward pass, then cost what the real tokens cost: a training step of four sst2
//! prompts of 10–36 tokens multiplies 91 rows instead of 144.
//!
//! Each real row's numbers are those of the padded computation: every packed operation is row-wise, and
//! the matrix products sum over the inner dimension in an order that does not depend on how many rows
//! there are (the tests compare padded and single-sequence passes). A batch without padding is left as it
//! is (`[b, t, hidden]`, no copies).

use burn::tensor::{Device, Int, Tensor, TensorData};

/// How the positions of one forward call map between the padded layout and the packed real rows.
#[derive(Debug, Clone)]
pub(crate) struct Rows {
    /// Batch rows and positions per row (virtual tokens included) of the padded layout.
    pub b: usize,
    pub t: usize,
    /// Real positions; `None` when every position is real (no packing).
    packed: Option<Packing>,
}

#[derive(Debug, Clone)]
struct Packing {
    /// Number of real positions.
    n: usize,
    /// Per padded position `row·t + i`, its packed index, or `n` (a zero row) for padding.
    slot: Vec<usize>,
    /// `[b·t]`: `slot` as a tensor.
    spread: Tensor<1, Int>,
    /// `[n]`: the padded index of each real position.
    gather: Tensor<1, Int>,
}

impl Rows {
    /// The layout of `b` rows of `t` positions, `valid[row·t + i]` telling the real ones.
    pub fn new(b: usize, t: usize, valid: &[bool], device: &Device) -> Rows {
        debug_assert_eq!(valid.len(), b * t);
        let n = valid.iter().filter(|&&v| v).count();
        if n == b * t {
            return Rows { b, t, packed: None };
        }
        let mut slot = Vec::with_capacity(b * t);
        let mut real = Vec::with_capacity(n);
        for (i, &v) in valid.iter().enumerate() {
            if v {
                slot.push(real.len());
                real.push(i as i64);
            } else {
                slot.push(n);
            }
        }
        let spread = Tensor::from_data(
            TensorData::new(slot.iter().map(|&s| s as i64).collect(), [b * t]),
            device,
        );
        let gather = Tensor::from_data(TensorData::new(real, [n]), device);
        Rows {
            b,
            t,
            packed: Some(Packing {
                n,
                slot,
                spread,
                gather,
            }),
        }
    }

    /// `[b, t, d]` in the padded layout -> the working layout (packed `[1, n, d]`, or as it is).
    pub fn pack(&self, x: Tensor<3>) -> Tensor<3> {
        match &self.packed {
            None => x,
            Some(p) => {
                let d = x.dims()[2];
                x.reshape([self.b * self.t, d])
                    .select(0, p.gather.clone())
                    .reshape([1, p.n, d])
            }
        }
    }

    /// The working layout -> `[b, t, d]`, padding positions zero.
    pub fn spread(&self, x: Tensor<3>) -> Tensor<3> {
        match &self.packed {
            None => x,
            Some(p) => {
                let d = x.dims()[2];
                with_zero_row(x, p.n, d)
                    .select(0, p.spread.clone())
                    .reshape([self.b, self.t, d])
            }
        }
    }

    /// The rows of the working layout at per-row positions of the padded layout -> `[b, p, d]`
    /// (a padding position reads zeros).
    pub fn gather(&self, x: Tensor<3>, positions: &[Vec<usize>], device: &Device) -> Tensor<3> {
        let d = x.dims()[2];
        let p = positions.first().map_or(0, Vec::len);
        let index = |row: usize, i: usize| row * self.t + i;
        let (source, flat): (Tensor<2>, Vec<i64>) = match &self.packed {
            None => (
                x.reshape([self.b * self.t, d]),
                positions
                    .iter()
                    .enumerate()
                    .flat_map(|(row, ps)| ps.iter().map(move |&i| index(row, i) as i64))
                    .collect(),
            ),
            Some(pk) => {
                let flat: Vec<usize> = positions
                    .iter()
                    .enumerate()
                    .flat_map(|(row, ps)| ps.iter().map(move |&i| pk.slot[index(row, i)]))
                    .collect();
                let source = if flat.contains(&pk.n) {
                    with_zero_row(x, pk.n, d)
                } else {
                    x.reshape([pk.n, d])
                };
                (source, flat.into_iter().map(|s| s as i64).collect())
            }
        };
        let idx = Tensor::<1, Int>::from_data(TensorData::new(flat, [self.b * p]), device);
        source.select(0, idx).reshape([self.b, p, d])
    }
}

/// `[1, n, d]` -> `[n + 1, d]` with a last row of zeros.
fn with_zero_row(x: Tensor<3>, n: usize, d: usize) -> Tensor<2> {
    let zero = Tensor::<2>::zeros([1, d], &x.device());
    Tensor::cat(vec![x.reshape([n, d]), zero], 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn values(t: Tensor<3>) -> (Vec<f32>, [usize; 3]) {
        let dims = t.dims();
        (
            t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap(),
            dims,
        )
    }

    /// Two rows of three positions, the first left-padded by two: position `row·3 + i` holds
    /// `[10·(row·3 + i), 10·(row·3 + i) + 1]`.
    fn padded() -> (Rows, Tensor<3>, Device) {
        let device = Device::default();
        let valid = [false, false, true, true, true, true];
        let x: Vec<f32> = (0..6)
            .flat_map(|p| [10.0 * p as f32, 10.0 * p as f32 + 1.0])
            .collect();
        let x = Tensor::<3>::from_data(TensorData::new(x, [2, 3, 2]), &device);
        (Rows::new(2, 3, &valid, &device), x, device)
    }

    #[test]
    fn packs_the_real_positions_in_order_and_spreads_them_back_with_zero_padding() {
        let (rows, x, _) = padded();
        let packed = rows.pack(x);
        assert_eq!(
            values(packed.clone()),
            (
                vec![20.0, 21.0, 30.0, 31.0, 40.0, 41.0, 50.0, 51.0],
                [1, 4, 2]
            )
        );
        assert_eq!(
            values(rows.spread(packed)),
            (
                vec![
                    0.0, 0.0, 0.0, 0.0, 20.0, 21.0, 30.0, 31.0, 40.0, 41.0, 50.0, 51.0
                ],
                [2, 3, 2]
            )
        );
    }

    #[test]
    fn gathers_padded_coordinates_from_the_packed_rows() {
        let (rows, x, device) = padded();
        let packed = rows.pack(x);
        // Row 0: its last position and a padding one; row 1: its first and last.
        let got = rows.gather(packed.clone(), &[vec![2, 0], vec![0, 2]], &device);
        assert_eq!(
            values(got),
            (
                vec![20.0, 21.0, 0.0, 0.0, 30.0, 31.0, 50.0, 51.0],
                [2, 2, 2]
            )
        );
        let last = rows.gather(packed, &[vec![2], vec![2]], &device);
        assert_eq!(values(last), (vec![20.0, 21.0, 50.0, 51.0], [2, 1, 2]));
    }

    #[test]
    fn a_batch_without_padding_is_left_as_it_is() {
        let device = Device::default();
        let x = Tensor::<3>::from_data(
            TensorData::new((0..12).map(|v| v as f32).collect(), [2, 3, 2]),
            &device,
        );
        let rows = Rows::new(2, 3, &[true; 6], &device);
        assert_eq!(values(rows.pack(x.clone())), values(x.clone()));
        assert_eq!(values(rows.spread(x.clone())), values(x.clone()));
        assert_eq!(
            values(rows.gather(x, &[vec![1], vec![2]], &device)),
            (vec![2.0, 3.0, 10.0, 11.0], [2, 1, 2])
        );
    }
}
