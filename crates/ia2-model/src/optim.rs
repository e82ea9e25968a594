//! Gradient accumulation, global-norm clipping and Adam for a list of trainable tensors (an adapter's, or
//! every weight of a model being pretrained).
//!
//! Gradients are pulled out of burn's `Gradients` after each backward pass into flat tensors on the plain
//! (non-autodiff) device and summed there, so several examples can be accumulated into one optimizer step
//! without keeping their graphs alive. A trainable tensor without a gradient, or with a non-finite one, is an
//! error: a silently missing gradient would mean a silently frozen parameter.

use crate::adapter::{AdapterTensor, AdapterTensorMut};
use anyhow::{Context, Result, ensure};
use burn::tensor::{Gradients, Tensor};

/// Adam hyper-parameters (PyTorch's `torch.optim.Adam` defaults except the learning rate).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl AdamConfig {
    pub fn with_lr(lr: f64) -> AdamConfig {
        AdamConfig {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// Sums of per-tensor gradients over the examples of one optimizer step.
#[derive(Debug, Default)]
pub struct GradAccumulator {
    sums: Vec<Option<Tensor<1>>>,
    /// Examples (backward passes) accumulated since the last reset.
    pub examples: usize,
}

fn flat_grad<const D: usize>(t: &Tensor<D>, grads: &mut Gradients, i: usize) -> Result<Tensor<1>> {
    let dims = t.dims();
    let n = dims.iter().product::<usize>();
    Ok(t.grad_remove(grads)
        .with_context(|| {
            format!("trainable tensor {i} {dims:?} got no gradient from the backward pass")
        })?
        .reshape([n]))
}

impl GradAccumulator {
    pub fn new() -> GradAccumulator {
        GradAccumulator::default()
    }

    /// Adds `scale ×` the gradient of every tensor in `params` (same order every call). Fails when one of
    /// them has no gradient or a non-finite one.
    pub fn add(
        &mut self,
        params: &[AdapterTensor<'_>],
        grads: &mut Gradients,
        scale: f64,
    ) -> Result<()> {
        if self.sums.is_empty() {
            self.sums.resize_with(params.len(), || None);
        }
        ensure!(
            self.sums.len() == params.len(),
            "gradient accumulator holds {} tensors, got {}",
            self.sums.len(),
            params.len()
        );
        for (i, p) in params.iter().enumerate() {
            let g = match p {
                AdapterTensor::D1(t) => flat_grad(t, grads, i)?,
                AdapterTensor::D2(t) => flat_grad(t, grads, i)?,
            };
            let g = if scale == 1.0 { g } else { g.mul_scalar(scale) };
            self.sums[i] = Some(match self.sums[i].take() {
                Some(s) => s + g,
                None => g,
            });
        }
        self.examples += 1;
        Ok(())
    }

    /// Global L2 norm of the accumulated gradients (checked finite).
    pub fn global_norm(&self) -> Result<f64> {
        let mut sq = 0.0f64;
        for (i, g) in self.sums.iter().enumerate() {
            let g = g
                .as_ref()
                .with_context(|| format!("no gradient accumulated for tensor {i}"))?;
            let s = g.clone().square().sum().into_scalar::<f32>() as f64;
            ensure!(
                s.is_finite(),
                "gradient of trainable tensor {i} is not finite"
            );
            sq += s;
        }
        Ok(sq.sqrt())
    }

    /// Scales the gradients down so their global norm is at most `max_norm` (`clip_grad_norm_`).
    /// Returns the norm before clipping.
    pub fn clip(&mut self, max_norm: f64) -> Result<f64> {
        let norm = self.global_norm()?;
        // torch: clip_coef = max_norm / (norm + 1e-6), applied only when below 1.
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            for g in self.sums.iter_mut().flatten() {
                *g = g.clone().mul_scalar(coef);
            }
        }
        Ok(norm)
    }

    /// Takes the accumulated gradients, leaving the accumulator empty.
    fn take(&mut self) -> Vec<Option<Tensor<1>>> {
        self.examples = 0;
        std::mem::take(&mut self.sums)
    }
}

struct Moments {
    m: Tensor<1>,
    v: Tensor<1>,
}

/// Adam (not AdamW: no weight decay), bias-corrected, as `torch.optim.Adam`.
pub struct Adam {
    pub config: AdamConfig,
    t: i32,
    moments: Vec<Option<Moments>>,
}

impl Adam {
    pub fn new(config: AdamConfig) -> Adam {
        Adam {
            config,
            t: 0,
            moments: Vec::new(),
        }
    }

    /// Optimizer steps taken.
    pub fn steps(&self) -> i32 {
        self.t
    }

    /// One update of every tensor in `params` from the accumulated gradients (which are consumed). The
    /// updated tensors are marked trainable again (autodiff device, `require_grad`).
    pub fn step(
        &mut self,
        params: Vec<AdapterTensorMut<'_>>,
        accum: &mut GradAccumulator,
    ) -> Result<()> {
        let grads = accum.take();
        ensure!(
            grads.len() == params.len(),
            "{} gradients for {} trainable tensors",
            grads.len(),
            params.len()
        );
        self.t += 1;
        self.moments.resize_with(params.len(), || None);
        for (i, (p, g)) in params.into_iter().zip(grads).enumerate() {
            let g = g.with_context(|| format!("no gradient for trainable tensor {i}"))?;
            match p {
                AdapterTensorMut::D1(p) => self.update(p, g, i),
                AdapterTensorMut::D2(p) => self.update(p, g, i),
            }
        }
        Ok(())
    }

    fn update<const D: usize>(&mut self, p: &mut Tensor<D>, g: Tensor<1>, i: usize) {
        let AdamConfig {
            lr,
            beta1: b1,
            beta2: b2,
            eps,
        } = self.config;
        let Moments { m, v } = match self.moments[i].take() {
            Some(Moments { m, v }) => Moments {
                m: m.mul_scalar(b1) + g.clone().mul_scalar(1.0 - b1),
                v: v.mul_scalar(b2) + g.square().mul_scalar(1.0 - b2),
            },
            None => Moments {
                m: g.clone().mul_scalar(1.0 - b1),
                v: g.square().mul_scalar(1.0 - b2),
            },
        };
        let bc1 = 1.0 - b1.powi(self.t);
        let bc2 = 1.0 - b2.powi(self.t);
        // torch: p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)
        let update = m
            .clone()
            .div(v.clone().sqrt().div_scalar(bc2.sqrt()).add_scalar(eps))
            .mul_scalar(lr / bc1);
        let dims = p.dims();
        let n = dims.iter().product::<usize>();
        let new = p.clone().without_autodiff().reshape([n]) - update;
        *p = new.reshape(dims).autodiff().require_grad();
        self.moments[i] = Some(Moments { m, v });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    /// Adam on f(x) = Σ (x - c)² against a hand-rolled scalar implementation of torch's update.
    #[test]
    fn adam_matches_the_scalar_update_and_clipping_scales_the_norm() {
        let device = Device::default().autodiff();
        let c = [1.0f32, -2.0, 0.5];
        let mut x = Tensor::<1>::from_data(TensorData::new(vec![0.0f32, 0.0, 0.0], [3]), &device)
            .require_grad();
        let mut adam = Adam::new(AdamConfig::with_lr(0.1));
        let mut acc = GradAccumulator::new();
        let (mut xs, mut m, mut v) = ([0.0f64; 3], [0.0f64; 3], [0.0f64; 3]);
        for t in 1..=5 {
            let target = Tensor::<1>::from_data(TensorData::new(c.to_vec(), [3]), &device);
            let loss = (x.clone() - target).square().sum();
            let mut grads = loss.backward();
            acc.add(&[AdapterTensor::D1(&x)], &mut grads, 0.5).unwrap();
            adam.step(vec![AdapterTensorMut::D1(&mut x)], &mut acc)
                .unwrap();
            for i in 0..3 {
                let g = 0.5 * 2.0 * (xs[i] - c[i] as f64);
                m[i] = 0.9 * m[i] + 0.1 * g;
                v[i] = 0.999 * v[i] + 0.001 * g * g;
                let mh = m[i] / (1.0 - 0.9f64.powi(t));
                let vh = v[i] / (1.0 - 0.999f64.powi(t));
                xs[i] -= 0.1 * mh / (vh.sqrt() + 1e-8);
            }
        }
        let got = x.into_data().try_to_vec::<f32>().unwrap();
        for i in 0..3 {
            assert!((got[i] as f64 - xs[i]).abs() < 1e-5, "{got:?} vs {xs:?}");
        }

        let y =
            Tensor::<1>::from_data(TensorData::new(vec![3.0f32, 4.0], [2]), &device).require_grad();
        let mut grads = y.clone().square().sum().backward(); // gradient (6, 8), norm 10
        let mut acc = GradAccumulator::new();
        acc.add(&[AdapterTensor::D1(&y)], &mut grads, 1.0).unwrap();
        assert!((acc.clip(5.0).unwrap() - 10.0).abs() < 1e-4);
        assert!((acc.global_norm().unwrap() - 5.0).abs() < 1e-3);
    }

    #[test]
    fn a_tensor_without_gradient_is_an_error() {
        let device = Device::default().autodiff();
        let a = Tensor::<1>::from_data(TensorData::new(vec![1.0f32], [1]), &device).require_grad();
        let b = Tensor::<1>::from_data(TensorData::new(vec![1.0f32], [1]), &device).require_grad();
        let mut grads = a.clone().sum().backward();
        let mut acc = GradAccumulator::new();
        let err = acc
            .add(
                &[AdapterTensor::D1(&a), AdapterTensor::D1(&b)],
                &mut grads,
                1.0,
            )
            .unwrap_err();
        assert!(format!("{err:#}").contains("tensor 1"), "{err:#}");
    }
}
