//! K_DPM_2: the DPM-Solver-2 midpoint method in k-diffusion's form
//! (`sample_dpm_2`): a half step to the log-midpoint sigma, then the full
//! step with the midpoint's slope; the last step to 0 is Euler.

use candle_core::Tensor;
use imagegate_core::Sampler;

use super::{SampleArgs, SamplerImpl, axpy, to_d};
use crate::error::Result;

/// Second-order deterministic sampler.
pub struct KDpm2;

impl SamplerImpl for KDpm2 {
    fn kind(&self) -> Sampler {
        Sampler::KDpm2
    }

    fn sample(&self, mut x: Tensor, sigmas: &[f64], args: &mut SampleArgs<'_>) -> Result<Tensor> {
        let n = sigmas.len() - 1;
        for i in 0..n {
            let (sigma, next) = (sigmas[i], sigmas[i + 1]);
            let denoised = args.denoiser.denoise(&x, sigma)?;
            let d = to_d(&x, &denoised, sigma)?;
            x = midpoint_step(&x, &d, sigma, next, args)?;
            (args.on_step)(i + 1, n)?;
        }
        Ok(x)
    }
}

/// From `x` at `sigma` with slope `d`, the DPM-2 step to `target`
/// (shared with the ancestral variant, which targets `sigma_down`).
pub(crate) fn midpoint_step(x: &Tensor, d: &Tensor, sigma: f64, target: f64, args: &mut SampleArgs<'_>) -> Result<Tensor> {
    if target == 0.0 {
        return axpy(x, d, target - sigma);
    }
    let mid = ((sigma.ln() + target.ln()) / 2.0).exp();
    let x2 = axpy(x, d, mid - sigma)?;
    let denoised2 = args.denoiser.denoise(&x2, mid)?;
    let d2 = to_d(&x2, &denoised2, mid)?;
    axpy(x, &d2, target - sigma)
}
