//! DDIM (Song et al. 2020). The step is written in alpha-bar form: from the
//! current latents and the model's `x0` estimate, recover `eps`, then
//! `x_prev = sqrt(ab_prev) x0 + sqrt(1 - ab_prev - s²) eps + s z` with
//! `s = eta * sqrt((1 - ab_prev) / (1 - ab)) * sqrt(1 - ab / ab_prev)`,
//! converted back to the sigma form the other samplers share. DDIM walks
//! diffusers' "leading" timestep grid and finishes at alpha-bar 1, or, when
//! the scheduler config says `set_alpha_to_one: false` (SD 1.x/2.x ship
//! that), at `alphas_cumprod[0]` as diffusers and CompVis' DDIM do.

use candle_core::Tensor;
use imagegate_core::Sampler;

use super::{NoiseSchedule, SampleArgs, SamplerImpl, SigmaSpacing};
use crate::error::Result;

/// DDIM with stochasticity `eta` (0: deterministic, as Stability's DDIM).
pub struct Ddim {
    /// 0 is the deterministic DDIM; 1 matches DDPM's variance.
    pub eta: f64,
}

impl SamplerImpl for Ddim {
    fn kind(&self) -> Sampler {
        Sampler::Ddim
    }

    fn sigmas(&self, schedule: &NoiseSchedule, steps: usize, spacing: SigmaSpacing) -> Vec<f64> {
        match spacing {
            SigmaSpacing::Default => {
                let mut s = schedule.leading_sigmas(steps);
                if !schedule.config.set_alpha_to_one {
                    // diffusers' `final_alpha_cumprod = alphas_cumprod[0]`.
                    *s.last_mut().expect("leading_sigmas ends with sigma 0") = schedule.t_to_sigma(0.0);
                }
                s
            }
            other => schedule.sigmas(steps, other),
        }
    }

    fn init_noise_sigma(&self, sigmas: &[f64]) -> f64 {
        // Unit-variance noise in alpha-bar form is sqrt(1 + sigma²) in sigma form.
        sigmas.first().map_or(1.0, |s| (1.0 + s * s).sqrt())
    }

    fn sample(&self, mut x: Tensor, sigmas: &[f64], args: &mut SampleArgs<'_>) -> Result<Tensor> {
        let n = sigmas.len() - 1;
        for i in 0..n {
            let (sigma, next) = (sigmas[i], sigmas[i + 1]);
            let x0 = args.denoiser.denoise(&x, sigma)?;
            let (ab, ab_prev) = (NoiseSchedule::alpha_bar(sigma), NoiseSchedule::alpha_bar(next));
            // x = x0 + sigma * eps in sigma form.
            let eps = (&x - &x0)?.affine(1.0 / sigma, 0.0)?;
            let s = self.eta * ((1.0 - ab_prev) / (1.0 - ab) * (1.0 - ab / ab_prev)).max(0.0).sqrt();
            let dir = (1.0 - ab_prev - s * s).max(0.0).sqrt();
            // Dividing the alpha-bar form by sqrt(ab_prev) gives the sigma form.
            let scale = 1.0 / ab_prev.sqrt();
            let mut prev = (&x0 + eps.affine(dir * scale, 0.0)?)?;
            if s > 0.0 {
                let z = args.noise.randn_like(&prev)?;
                prev = (prev + z.affine(s * scale, 0.0)?)?;
            }
            x = prev;
            (args.on_step)(i + 1, n)?;
        }
        // Ending above sigma 0 (set_alpha_to_one false), diffusers decodes the
        // alpha-bar-form latent `sqrt(ab) x0 + sqrt(1 - ab) eps`, which is the
        // sigma form times sqrt(ab); return that so the pipelines decode it too.
        match sigmas.last() {
            Some(&last) if last > 0.0 => Ok(x.affine(NoiseSchedule::alpha_bar(last).sqrt(), 0.0)?),
            _ => Ok(x),
        }
    }
}
