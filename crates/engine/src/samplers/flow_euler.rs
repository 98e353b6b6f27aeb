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

/// `steps + 1` sigmas of diffusers' `FlowMatchEulerDiscreteScheduler` default
/// grid with a constant `shift` over `train_steps` training timesteps (the grid
/// `StableDiffusion3Pipeline` walks): `steps` values evenly spaced between the
/// shifted training extremes `1` and `shift(1 / train_steps)`, shifted again,
/// then 0. With shift 3 and 4 steps: 1, 0.858, 0.602, 0.0089, 0, where
/// [`flow_sigmas`] (FLUX's grid) gives 1, 0.9, 0.75, 0.5, 0.
pub fn scheduler_flow_sigmas(steps: usize, shift: f64, train_steps: usize) -> Vec<f64> {
    let shifted = |s: f64| shift * s / (1.0 + (shift - 1.0) * s);
    // The scheduler shifts its training sigmas once at construction and the
    // inference grid again in `set_timesteps`, so the inner points shift twice.
    let sigma_min = shifted(1.0 / train_steps.max(1) as f64);
    let mut s: Vec<f64> = linspace(1.0, sigma_min, steps).into_iter().map(shifted).collect();
    s.push(0.0);
    s
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

/// The time shift of a flow-matching model, from diffusers'
/// `FlowMatchEulerDiscreteScheduler` config: a constant `shift` (SD3: 3.0,
/// FLUX schnell: 1.0, off), or FLUX dev's shift that grows with the image's
/// token count, `exp(mu)` with `mu` linear in the sequence length.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
pub struct FlowShift {
    /// The constant shift.
    #[serde(default = "one")]
    pub shift: f64,
    /// Whether the shift depends on the image's token count.
    #[serde(default)]
    pub use_dynamic_shifting: bool,
    /// `mu` at `base_image_seq_len` tokens.
    #[serde(default = "half")]
    pub base_shift: f64,
    /// `mu` at `max_image_seq_len` tokens.
    #[serde(default = "max_shift")]
    pub max_shift: f64,
    /// Token count of `base_shift`.
    #[serde(default = "base_len")]
    pub base_image_seq_len: usize,
    /// Token count of `max_shift`.
    #[serde(default = "max_len")]
    pub max_image_seq_len: usize,
    /// Training timesteps: the scheduler's own grid ends at `1 / this`.
    #[serde(default = "train_steps")]
    pub num_train_timesteps: usize,
}

fn one() -> f64 {
    1.0
}
fn half() -> f64 {
    0.5
}
fn max_shift() -> f64 {
    1.15
}
fn base_len() -> usize {
    256
}
fn max_len() -> usize {
    4096
}
fn train_steps() -> usize {
    1000
}

impl FlowShift {
    /// A constant shift.
    pub fn constant(shift: f64) -> Self {
        Self {
            shift,
            use_dynamic_shifting: false,
            base_shift: half(),
            max_shift: max_shift(),
            base_image_seq_len: base_len(),
            max_image_seq_len: max_len(),
            num_train_timesteps: train_steps(),
        }
    }

    /// FLUX dev's resolution-dependent shift with diffusers' defaults.
    pub fn dynamic() -> Self {
        Self { use_dynamic_shifting: true, ..Self::constant(1.0) }
    }

    /// The shift for an image of `seq_len` latent tokens. The dynamic form
    /// `e^mu / (e^mu + 1/s - 1)` is the constant form with `shift = e^mu`.
    pub fn shift_for(&self, seq_len: usize) -> f64 {
        if !self.use_dynamic_shifting {
            return self.shift;
        }
        let (x1, x2) = (self.base_image_seq_len as f64, self.max_image_seq_len as f64);
        let m = (self.max_shift - self.base_shift) / (x2 - x1);
        let mu = self.base_shift + m * (seq_len as f64 - x1);
        mu.exp()
    }
}

#[cfg(test)]
mod shift_tests {
    use super::*;

    #[test]
    fn dynamic_shift_matches_the_exponential_time_shift() {
        let s = FlowShift::dynamic();
        // mu = 0.5 at 256 tokens and 1.15 at 4096.
        assert!((s.shift_for(256) - 0.5f64.exp()).abs() < 1e-12);
        assert!((s.shift_for(4096) - 1.15f64.exp()).abs() < 1e-12);
        let mu: f64 = 0.8;
        for (t, shifted) in linspace(1.0, 0.0, 5).into_iter().zip(flow_sigmas(4, mu.exp())) {
            let expected = if t == 0.0 { 0.0 } else { mu.exp() / (mu.exp() + 1.0 / t - 1.0) };
            assert!((shifted - expected).abs() < 1e-12, "{t}: {shifted} vs {expected}");
        }
    }
}
