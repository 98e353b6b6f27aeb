//! K_EULER: Euler's method on the probability-flow ODE (Karras et al. 2022, alg. 2 without churn).

use candle_core::Tensor;
use imagegate_core::Sampler;

use super::{SampleArgs, SamplerImpl, axpy, to_d};
use crate::error::Result;

/// First-order deterministic sampler.
pub struct KEuler;

impl SamplerImpl for KEuler {
    fn kind(&self) -> Sampler {
        Sampler::KEuler
    }

    fn sample(&self, mut x: Tensor, sigmas: &[f64], args: &mut SampleArgs<'_>) -> Result<Tensor> {
        let n = sigmas.len() - 1;
        for i in 0..n {
            let (sigma, next) = (sigmas[i], sigmas[i + 1]);
            let denoised = args.denoiser.denoise(&x, sigma)?;
            let d = to_d(&x, &denoised, sigma)?;
            x = axpy(&x, &d, next - sigma)?;
            (args.on_step)(i + 1, n)?;
        }
        Ok(x)
    }
}
