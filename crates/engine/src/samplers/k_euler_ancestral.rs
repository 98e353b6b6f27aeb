//! K_EULER_ANCESTRAL: an Euler step down to `sigma_down`, then fresh seeded
//! noise of size `sigma_up` (k-diffusion `sample_euler_ancestral`, eta = 1).

use candle_core::Tensor;
use imagegate_core::Sampler;

use super::{SampleArgs, SamplerImpl, ancestral_step, axpy, to_d};
use crate::error::Result;

/// First-order ancestral sampler.
pub struct KEulerAncestral;

impl SamplerImpl for KEulerAncestral {
    fn kind(&self) -> Sampler {
        Sampler::KEulerAncestral
    }

    fn sample(&self, mut x: Tensor, sigmas: &[f64], args: &mut SampleArgs<'_>) -> Result<Tensor> {
        let n = sigmas.len() - 1;
        for i in 0..n {
            let (sigma, next) = (sigmas[i], sigmas[i + 1]);
            let denoised = args.denoiser.denoise(&x, sigma)?;
            let (down, up) = ancestral_step(sigma, next);
            let d = to_d(&x, &denoised, sigma)?;
            x = axpy(&x, &d, down - sigma)?;
            if next > 0.0 {
                let z = args.noise.randn_like(&x)?;
                x = axpy(&x, &z, up)?;
            }
            (args.on_step)(i + 1, n)?;
        }
        Ok(x)
    }
}
