//! K_DPMPP_2M: DPM-Solver++(2M) (Lu et al. 2022), the multistep second-order
//! solver in log-sigma time, using the previous step's denoised estimate.

use candle_core::Tensor;
use imagegate_core::Sampler;

use super::{SampleArgs, SamplerImpl};
use crate::error::Result;

/// Second-order multistep deterministic sampler (one model call per step).
pub struct KDpmpp2m;

impl SamplerImpl for KDpmpp2m {
    fn kind(&self) -> Sampler {
        Sampler::KDpmpp2m
    }

    fn sample(&self, mut x: Tensor, sigmas: &[f64], args: &mut SampleArgs<'_>) -> Result<Tensor> {
        let n = sigmas.len() - 1;
        let mut old: Option<Tensor> = None;
        for i in 0..n {
            let (sigma, next) = (sigmas[i], sigmas[i + 1]);
            let denoised = args.denoiser.denoise(&x, sigma)?;
            if next == 0.0 {
                // exp(-h) -> 0: the update collapses onto the estimate.
                x = denoised.clone();
            } else {
                let h = sigma.ln() - next.ln();
                let corrected = match (&old, i) {
                    (Some(prev), i) if i > 0 => {
                        let h_last = sigmas[i - 1].ln() - sigma.ln();
                        let r = h_last / h;
                        // (1 + 1/2r) D_i - (1/2r) D_{i-1}
                        (denoised.affine(1.0 + 1.0 / (2.0 * r), 0.0)? - prev.affine(1.0 / (2.0 * r), 0.0)?)?
                    }
                    _ => denoised.clone(),
                };
                x = (x.affine(next / sigma, 0.0)? + corrected.affine(-(-h).exp_m1(), 0.0)?)?;
            }
            old = Some(denoised);
            (args.on_step)(i + 1, n)?;
        }
        Ok(x)
    }
}
