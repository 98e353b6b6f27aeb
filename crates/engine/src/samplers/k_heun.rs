//! K_HEUN: Heun's second-order method (Karras et al. 2022, alg. 2 without
//! churn); the last step, to sigma 0, is plain Euler.

use candle_core::Tensor;
use imagegate_core::Sampler;

use super::{SampleArgs, SamplerImpl, axpy, to_d};
use crate::error::Result;

/// Second-order deterministic sampler (two model calls per step).
pub struct KHeun;

impl SamplerImpl for KHeun {
    fn kind(&self) -> Sampler {
        Sampler::KHeun
    }

    fn sample(&self, mut x: Tensor, sigmas: &[f64], args: &mut SampleArgs<'_>) -> Result<Tensor> {
        let n = sigmas.len() - 1;
        for i in 0..n {
            let (sigma, next) = (sigmas[i], sigmas[i + 1]);
            let denoised = args.denoiser.denoise(&x, sigma)?;
            let d = to_d(&x, &denoised, sigma)?;
            let dt = next - sigma;
            if next == 0.0 {
                x = axpy(&x, &d, dt)?;
            } else {
                let x2 = axpy(&x, &d, dt)?;
                let denoised2 = args.denoiser.denoise(&x2, next)?;
                let d2 = to_d(&x2, &denoised2, next)?;
                // Average of the slopes at both ends.
                let d_prime = (d + d2)?.affine(0.5, 0.0)?;
                x = axpy(&x, &d_prime, dt)?;
            }
            (args.on_step)(i + 1, n)?;
        }
        Ok(x)
    }
}
