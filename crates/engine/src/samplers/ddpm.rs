//! DDPM (Ho et al. 2020): ancestral sampling from the posterior
//! `q(x_prev | x_t, x0)` with the model's `x0` estimate, on diffusers'
//! "leading" timestep grid (per-step betas from the alpha-bars of the two
//! grid points, as diffusers' `DDPMScheduler` does with fewer steps).

use candle_core::Tensor;
use imagegate_core::Sampler;

use super::{NoiseSchedule, SampleArgs, SamplerImpl, SigmaSpacing};
use crate::error::Result;

/// The original ancestral sampler.
pub struct Ddpm;

impl SamplerImpl for Ddpm {
    fn kind(&self) -> Sampler {
        Sampler::Ddpm
    }

    fn sigmas(&self, schedule: &NoiseSchedule, steps: usize, spacing: SigmaSpacing) -> Vec<f64> {
        match spacing {
            SigmaSpacing::Default => schedule.leading_sigmas(steps),
            other => schedule.sigmas(steps, other),
        }
    }

    fn init_noise_sigma(&self, sigmas: &[f64]) -> f64 {
        sigmas.first().map_or(1.0, |s| (1.0 + s * s).sqrt())
    }

    fn sample(&self, mut x: Tensor, sigmas: &[f64], args: &mut SampleArgs<'_>) -> Result<Tensor> {
        let n = sigmas.len() - 1;
        for i in 0..n {
            let (sigma, next) = (sigmas[i], sigmas[i + 1]);
            let x0 = args.denoiser.denoise(&x, sigma)?;
            let (ab, ab_prev) = (NoiseSchedule::alpha_bar(sigma), NoiseSchedule::alpha_bar(next));
            let alpha = ab / ab_prev;
            let beta = 1.0 - alpha;
            // Posterior mean coefficients in alpha-bar form (Ho et al. eq. 7).
            let c_x0 = ab_prev.sqrt() * beta / (1.0 - ab);
            let c_xt = alpha.sqrt() * (1.0 - ab_prev) / (1.0 - ab);
            let variance = ((1.0 - ab_prev) / (1.0 - ab) * beta).max(0.0);
            // x_t in alpha-bar form is sqrt(ab) * x; the result is divided by sqrt(ab_prev).
            let scale = 1.0 / ab_prev.sqrt();
            let mut prev = (x0.affine(c_x0 * scale, 0.0)? + x.affine(c_xt * ab.sqrt() * scale, 0.0)?)?;
            if next > 0.0 && variance > 0.0 {
                let z = args.noise.randn_like(&prev)?;
                prev = (prev + z.affine(variance.sqrt() * scale, 0.0)?)?;
            }
            x = prev;
            (args.on_step)(i + 1, n)?;
        }
        Ok(x)
    }
}
