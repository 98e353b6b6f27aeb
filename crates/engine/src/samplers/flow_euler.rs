//! FLOW_EULER: Euler on a rectified-flow ODE (FLUX, SD3). Latents are
//! `x = (1 - s) x0 + s eps` and the model's velocity is `eps - x0`, which
//! equals `(x - x0) / s`; the denoiser returns `x0`, so the velocity is
//! recovered from it. Sigmas run from 1 to 0, optionally time-shifted.

use candle_core::Tensor;
use imagegate_core::Sampler;

use super::schedule::linspace;
use super::{NoiseSchedule, SampleArgs, SamplerImpl, SigmaSpacing, axpy, to_d};
use crate::error::Result;

/// Euler for flow-matching models.
pub struct FlowEuler;

/// `steps + 1` flow sigmas from 1 to 0, with SD3/FLUX's time shift
/// `s' = shift * s / (1 + (shift - 1) s)` (shift 1 leaves them linear).
pub fn flow_sigmas(steps: usize, shift: f64) -> Vec<f64> {
    linspace(1.0, 0.0, steps + 1).into_iter().map(|s| shift * s / (1.0 + (shift - 1.0) * s)).collect()
}

impl SamplerImpl for FlowEuler {
    fn kind(&self) -> Sampler {
        Sampler::FlowEuler
    }

    fn sigmas(&self, _schedule: &NoiseSchedule, steps: usize, _spacing: SigmaSpacing) -> Vec<f64> {
        flow_sigmas(steps, 1.0)
    }

    fn init_noise_sigma(&self, _sigmas: &[f64]) -> f64 {
        // At s = 1 the latents are pure unit noise.
        1.0
    }

    fn sample(&self, mut x: Tensor, sigmas: &[f64], args: &mut SampleArgs<'_>) -> Result<Tensor> {
        let n = sigmas.len() - 1;
        for i in 0..n {
            let (sigma, next) = (sigmas[i], sigmas[i + 1]);
            let x0 = args.denoiser.denoise(&x, sigma)?;
            let velocity = to_d(&x, &x0, sigma)?;
            x = axpy(&x, &velocity, next - sigma)?;
            (args.on_step)(i + 1, n)?;
        }
        Ok(x)
    }
}
