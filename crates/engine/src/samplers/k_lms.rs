//! K_LMS: the linear multistep method (k-diffusion `sample_lms`): the next
//! latents integrate the Lagrange polynomial through the last `order`
//! slopes over `[sigma_i, sigma_{i+1}]`. The integral is exact here
//! (polynomial arithmetic), where k-diffusion uses numerical quadrature.

use std::collections::VecDeque;

use candle_core::Tensor;
use imagegate_core::Sampler;

use super::{SampleArgs, SamplerImpl, axpy, to_d};
use crate::error::Result;

/// Multistep deterministic sampler of the given order (4 in A1111 and Stability).
pub struct KLms {
    /// How many past slopes to use.
    pub order: usize,
}

impl SamplerImpl for KLms {
    fn kind(&self) -> Sampler {
        Sampler::KLms
    }

    fn sample(&self, mut x: Tensor, sigmas: &[f64], args: &mut SampleArgs<'_>) -> Result<Tensor> {
        let n = sigmas.len() - 1;
        // Newest slope first.
        let mut ds: VecDeque<Tensor> = VecDeque::with_capacity(self.order);
        for i in 0..n {
            let sigma = sigmas[i];
            let denoised = args.denoiser.denoise(&x, sigma)?;
            ds.push_front(to_d(&x, &denoised, sigma)?);
            ds.truncate(self.order);
            let cur_order = ds.len();
            for (j, d) in ds.iter().enumerate() {
                x = axpy(&x, d, lms_coefficient(cur_order, sigmas, i, j))?;
            }
            (args.on_step)(i + 1, n)?;
        }
        Ok(x)
    }
}

/// `∫_{σ_i}^{σ_{i+1}} Π_{k≠j} (τ - σ_{i-k}) / (σ_{i-j} - σ_{i-k}) dτ` over `k < order`.
pub(crate) fn lms_coefficient(order: usize, sigmas: &[f64], i: usize, j: usize) -> f64 {
    // Polynomial coefficients, lowest degree first.
    let mut poly = vec![1.0];
    for k in (0..order).filter(|&k| k != j) {
        let (root, denom) = (sigmas[i - k], sigmas[i - j] - sigmas[i - k]);
        let mut next = vec![0.0; poly.len() + 1];
        for (p, c) in poly.iter().enumerate() {
            next[p + 1] += c / denom;
            next[p] -= c * root / denom;
        }
        poly = next;
    }
    let antiderivative = |t: f64| poly.iter().enumerate().map(|(p, c)| c * t.powi(p as i32 + 1) / (p + 1) as f64).sum::<f64>();
    antiderivative(sigmas[i + 1]) - antiderivative(sigmas[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_order_coefficient_is_the_step_length() {
        let s = [10.0, 4.0, 1.0, 0.0];
        assert!((lms_coefficient(1, &s, 1, 0) - (1.0 - 4.0)).abs() < 1e-12);
    }

    #[test]
    fn coefficients_sum_to_the_step_length() {
        // The Lagrange basis sums to 1, so the weights sum to sigma_{i+1} - sigma_i.
        let s = [14.0, 9.0, 5.0, 2.5, 1.0, 0.0];
        for order in 1..=4 {
            let i = 4;
            let sum: f64 = (0..order).map(|j| lms_coefficient(order, &s, i, j)).sum();
            assert!((sum - (s[i + 1] - s[i])).abs() < 1e-9, "order {order}: {sum}");
        }
    }
}
