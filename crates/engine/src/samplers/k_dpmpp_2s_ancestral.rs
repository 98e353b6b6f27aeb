//! K_DPMPP_2S_ANCESTRAL: DPM-Solver++(2S) single-step second-order update
//! down to `sigma_down`, then fresh seeded noise of size `sigma_up`
//! (k-diffusion `sample_dpmpp_2s_ancestral`, r = 1/2).

use candle_core::Tensor;
use imagegate_core::Sampler;

use super::{SampleArgs, SamplerImpl, ancestral_step, axpy, to_d};
use crate::error::Result;

/// Second-order ancestral sampler (two model calls per step).
pub struct KDpmpp2sAncestral;

impl SamplerImpl for KDpmpp2sAncestral {
    fn kind(&self) -> Sampler {
        Sampler::KDpmpp2sAncestral
    }

    fn sample(&self, mut x: Tensor, sigmas: &[f64], args: &mut SampleArgs<'_>) -> Result<Tensor> {
        let n = sigmas.len() - 1;
        for i in 0..n {
            let (sigma, next) = (sigmas[i], sigmas[i + 1]);
            let denoised = args.denoiser.denoise(&x, sigma)?;
            let (down, up) = ancestral_step(sigma, next);
            if down == 0.0 {
                let d = to_d(&x, &denoised, sigma)?;
                x = axpy(&x, &d, down - sigma)?;
            } else {
                // Log-sigma time t = -ln(sigma); midpoint s = t + h/2.
                let h = sigma.ln() - down.ln();
                let mid = (sigma.ln() - h / 2.0).exp();
                let x2 = (x.affine(mid / sigma, 0.0)? + denoised.affine(-(-h / 2.0).exp_m1(), 0.0)?)?;
                let denoised2 = args.denoiser.denoise(&x2, mid)?;
                x = (x.affine(down / sigma, 0.0)? + denoised2.affine(-(-h).exp_m1(), 0.0)?)?;
            }
            if next > 0.0 {
                let z = args.noise.randn_like(&x)?;
                x = axpy(&x, &z, up)?;
            }
            (args.on_step)(i + 1, n)?;
        }
        Ok(x)
    }
}
