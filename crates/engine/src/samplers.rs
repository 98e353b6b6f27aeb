//! Samplers: one [`SamplerImpl`] trait, one file per sampler.
//!
//! Everything works in the k-diffusion ("variance exploding") formulation:
//! a latent `x` at noise level `sigma` is `x0 + sigma * eps`, and the model
//! is wrapped as a [`Denoiser`] that returns its estimate of `x0`. DDIM and
//! DDPM convert to and from their alpha-bar ("variance preserving") form
//! inside their own step, flow-matching Euler uses `x = (1 - s) x0 + s eps`.
//! All noise comes from a seeded [`NoiseSource`] so seeds reproduce exactly.

pub mod ddim;
pub mod ddpm;
pub mod flow_euler;
pub mod k_dpm_2;
pub mod k_dpm_2_ancestral;
pub mod k_dpmpp_2m;
pub mod k_dpmpp_2s_ancestral;
pub mod k_euler;
pub mod k_euler_ancestral;
pub mod k_heun;
pub mod k_lms;
pub mod noise;
pub mod schedule;
#[cfg(test)]
mod tests;

use candle_core::Tensor;
use imagegate_core::Sampler;

pub use noise::NoiseSource;
pub use schedule::{NoiseSchedule, SigmaSpacing};

use crate::error::Result;

/// A model wrapped to predict the clean sample.
pub trait Denoiser {
    /// The estimate of `x0` for latents `x` (`[B, C, H, W]`, f32) at noise level `sigma`.
    fn denoise(&mut self, x: &Tensor, sigma: f64) -> Result<Tensor>;
}

/// Called after each step with (steps done, steps in all); an `Err` stops sampling.
pub type StepHook<'a> = &'a mut dyn FnMut(usize, usize) -> Result<()>;

/// What a sampler needs besides the latents.
pub struct SampleArgs<'a> {
    /// The model.
    pub denoiser: &'a mut dyn Denoiser,
    /// Fresh noise for ancestral steps, one seeded stream per batch item.
    pub noise: &'a mut NoiseSource,
    /// Progress and cancellation.
    pub on_step: StepHook<'a>,
}

/// One sampling algorithm.
pub trait SamplerImpl: Send + Sync {
    /// The Stability name this implements.
    fn kind(&self) -> Sampler;

    /// The noise levels visited for `steps` steps, from the start down to 0.
    fn sigmas(&self, schedule: &NoiseSchedule, steps: usize, spacing: SigmaSpacing) -> Vec<f64> {
        schedule.sigmas(steps, spacing)
    }

    /// What unit noise is scaled by to make the starting latents.
    fn init_noise_sigma(&self, sigmas: &[f64]) -> f64 {
        sigmas.first().copied().unwrap_or(1.0)
    }

    /// Runs every step, returning the final latents (`x0`).
    fn sample(&self, x: Tensor, sigmas: &[f64], args: &mut SampleArgs<'_>) -> Result<Tensor>;
}

/// The implementation of a named sampler.
pub fn sampler_for(kind: Sampler) -> Box<dyn SamplerImpl> {
    match kind {
        Sampler::Ddim => Box::new(ddim::Ddim { eta: 0.0 }),
        Sampler::Ddpm => Box::new(ddpm::Ddpm),
        Sampler::KEuler => Box::new(k_euler::KEuler),
        Sampler::KEulerAncestral => Box::new(k_euler_ancestral::KEulerAncestral),
        Sampler::KHeun => Box::new(k_heun::KHeun),
        Sampler::KLms => Box::new(k_lms::KLms { order: 4 }),
        Sampler::KDpm2 => Box::new(k_dpm_2::KDpm2),
        Sampler::KDpm2Ancestral => Box::new(k_dpm_2_ancestral::KDpm2Ancestral),
        Sampler::KDpmpp2m => Box::new(k_dpmpp_2m::KDpmpp2m),
        Sampler::KDpmpp2sAncestral => Box::new(k_dpmpp_2s_ancestral::KDpmpp2sAncestral),
        Sampler::FlowEuler => Box::new(flow_euler::FlowEuler),
    }
}

/// `a + b * s`, the update almost every step is made of.
pub(crate) fn axpy(a: &Tensor, b: &Tensor, s: f64) -> Result<Tensor> {
    Ok((a + b.affine(s, 0.0)?)?)
}

/// The derivative `(x - x0) / sigma` of the probability-flow ODE.
pub(crate) fn to_d(x: &Tensor, denoised: &Tensor, sigma: f64) -> Result<Tensor> {
    Ok((x - denoised)?.affine(1.0 / sigma, 0.0)?)
}

/// Splits the step `sigma -> sigma_next` into a deterministic part down to
/// `sigma_down` and fresh noise of size `sigma_up` (k-diffusion's
/// `get_ancestral_step` with eta = 1).
pub(crate) fn ancestral_step(sigma: f64, sigma_next: f64) -> (f64, f64) {
    if sigma_next <= 0.0 {
        return (0.0, 0.0);
    }
    let up = (sigma_next * sigma_next * (sigma * sigma - sigma_next * sigma_next) / (sigma * sigma)).sqrt().min(sigma_next);
    let down = (sigma_next * sigma_next - up * up).max(0.0).sqrt();
    (down, up)
}
