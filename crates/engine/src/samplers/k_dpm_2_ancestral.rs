//! K_DPM_2_ANCESTRAL: the DPM-2 midpoint step down to `sigma_down`, then
//! fresh seeded noise of size `sigma_up` (k-diffusion `sample_dpm_2_ancestral`).

use candle_core::Tensor;
use imagegate_core::Sampler;

use super::k_dpm_2::midpoint_step;
use super::{SampleArgs, SamplerImpl, ancestral_step, axpy, to_d};
use crate::error::Result;

/// Second-order ancestral sampler.
pub struct KDpm2Ancestral;

impl SamplerImpl for KDpm2Ancestral {
    fn kind(&self) -> Sampler {
        Sampler::KDpm2Ancestral
    }

    fn sample(&self, mut x: Tensor, sigmas: &[f64], args: &mut SampleArgs<'_>) -> Result<Tensor> {
        let n = sigmas.len() - 1;
        for i in 0..n {
            let (sigma, next) = (sigmas[i], sigmas[i + 1]);
            let denoised = args.denoiser.denoise(&x, sigma)?;
            let (down, up) = ancestral_step(sigma, next);
            let d = to_d(&x, &denoised, sigma)?;
            x = midpoint_step(&x, &d, sigma, down, args)?;
            if next > 0.0 {
                let z = args.noise.randn_like(&x)?;
                x = axpy(&x, &z, up)?;
            }
            (args.on_step)(i + 1, n)?;
        }
        Ok(x)
    }
}
