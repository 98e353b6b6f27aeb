//! The discrete training noise schedule of an SD-style model (betas →
//! alpha-bars → sigmas), conversion between timesteps and sigmas, and the
//! sigma sequences samplers walk (k-diffusion spacing, Karras, DDPM-style
//! "leading" timesteps).

use std::path::Path;

use crate::error::Result;

/// How training betas grow with the timestep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    /// `beta = linspace(sqrt(start), sqrt(end))²` (every SD model).
    #[default]
    ScaledLinear,
    /// `beta = linspace(start, end)`.
    Linear,
    /// The squared-cosine schedule of improved DDPM.
    SquaredcosCapV2,
}

/// What the network predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PredictionType {
    /// The added noise (SD 1.x, SD 2.x base, SDXL).
    #[default]
    Epsilon,
    /// `v = alpha * eps - sigma_vp * x0` (SD 2.x 768).
    VPrediction,
    /// The clean sample itself.
    Sample,
}

/// The fields of `scheduler/scheduler_config.json` the engine uses.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct SchedulerConfig {
    /// Training timesteps.
    #[serde(default = "default_train_steps")]
    pub num_train_timesteps: usize,
    /// First beta.
    #[serde(default = "default_beta_start")]
    pub beta_start: f64,
    /// Last beta.
    #[serde(default = "default_beta_end")]
    pub beta_end: f64,
    /// Beta curve.
    #[serde(default)]
    pub beta_schedule: BetaSchedule,
    /// What the UNet predicts.
    #[serde(default)]
    pub prediction_type: PredictionType,
    /// Added to "leading" timesteps (1 for SD).
    #[serde(default)]
    pub steps_offset: usize,
    /// Whether DDIM's last step ends at alpha-bar 1 (sigma 0) rather than at
    /// `alphas_cumprod[0]`. SD 1.x/2.x ship `false`; absent means diffusers'
    /// class default, `true`.
    #[serde(default = "default_true")]
    pub set_alpha_to_one: bool,
}

fn default_true() -> bool {
    true
}

fn default_train_steps() -> usize {
    1000
}
fn default_beta_start() -> f64 {
    0.00085
}
fn default_beta_end() -> f64 {
    0.012
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            num_train_timesteps: 1000,
            beta_start: 0.00085,
            beta_end: 0.012,
            beta_schedule: BetaSchedule::ScaledLinear,
            prediction_type: PredictionType::Epsilon,
            steps_offset: 1,
            set_alpha_to_one: true,
        }
    }
}

impl SchedulerConfig {
    /// Reads a `scheduler_config.json`.
    pub fn load(path: &Path) -> Result<Self> {
        crate::models::configs::read_json(path)
    }
}

/// How a sampler's sigmas are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SigmaSpacing {
    /// The sampler's own spacing (k-diffusion: timesteps evenly spaced
    /// from last to first; DDIM/DDPM: diffusers' "leading" timesteps).
    #[default]
    Default,
    /// Karras et al. (2022), rho = 7, between the schedule's extreme sigmas.
    Karras,
}

/// The training schedule: alpha-bars and sigmas per timestep.
#[derive(Debug, Clone)]
pub struct NoiseSchedule {
    /// The config it came from.
    pub config: SchedulerConfig,
    /// `prod(1 - beta)` per timestep, `[T]`.
    pub alphas_cumprod: Vec<f64>,
    /// `ln(sqrt((1 - ab) / ab))` per timestep, `[T]`, increasing.
    log_sigmas: Vec<f64>,
}

impl NoiseSchedule {
    /// Builds the schedule a config describes.
    pub fn new(config: SchedulerConfig) -> Self {
        let n = config.num_train_timesteps.max(2);
        let betas: Vec<f64> = match config.beta_schedule {
            BetaSchedule::ScaledLinear => linspace(config.beta_start.sqrt(), config.beta_end.sqrt(), n).into_iter().map(|b| b * b).collect(),
            BetaSchedule::Linear => linspace(config.beta_start, config.beta_end, n),
            BetaSchedule::SquaredcosCapV2 => {
                // Floating-point division throughout (candle's version divides integers).
                let alpha_bar = |t: f64| ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2).cos().powi(2);
                (0..n).map(|i| (1.0 - alpha_bar((i + 1) as f64 / n as f64) / alpha_bar(i as f64 / n as f64)).min(0.999)).collect()
            }
        };
        let mut acc = 1.0;
        let alphas_cumprod: Vec<f64> = betas
            .iter()
            .map(|b| {
                acc *= 1.0 - b;
                acc
            })
            .collect();
        let log_sigmas = alphas_cumprod.iter().map(|&ab| ((1.0 - ab) / ab).sqrt().ln()).collect();
        Self { config, alphas_cumprod, log_sigmas }
    }

    /// Training timesteps.
    pub fn len(&self) -> usize {
        self.alphas_cumprod.len()
    }

    /// Whether the schedule is empty (never: `new` keeps at least two steps).
    pub fn is_empty(&self) -> bool {
        self.alphas_cumprod.is_empty()
    }

    /// Smallest training sigma.
    pub fn sigma_min(&self) -> f64 {
        self.log_sigmas[0].exp()
    }

    /// Largest training sigma.
    pub fn sigma_max(&self) -> f64 {
        self.log_sigmas[self.len() - 1].exp()
    }

    /// The sigma of fractional timestep `t`, interpolating log-sigmas.
    pub fn t_to_sigma(&self, t: f64) -> f64 {
        let t = t.clamp(0.0, (self.len() - 1) as f64);
        let lo = t.floor() as usize;
        let hi = (lo + 1).min(self.len() - 1);
        let w = t - lo as f64;
        ((1.0 - w) * self.log_sigmas[lo] + w * self.log_sigmas[hi]).exp()
    }

    /// The fractional timestep of `sigma` (inverse of [`Self::t_to_sigma`]).
    pub fn sigma_to_t(&self, sigma: f64) -> f64 {
        let ls = sigma.max(1e-10).ln();
        let n = self.len();
        // Last index whose log-sigma is <= ls, kept so that `lo + 1` exists.
        let lo = self.log_sigmas.iter().rposition(|&l| l <= ls).unwrap_or(0).min(n - 2);
        let (a, b) = (self.log_sigmas[lo], self.log_sigmas[lo + 1]);
        let w = ((ls - a) / (b - a)).clamp(0.0, 1.0);
        lo as f64 + w
    }

    /// Alpha-bar at noise level `sigma` (`1 / (1 + sigma²)`).
    pub fn alpha_bar(sigma: f64) -> f64 {
        1.0 / (1.0 + sigma * sigma)
    }

    /// k-diffusion's sigmas: `steps` timesteps evenly spaced from the last to
    /// the first, then 0 (`[steps + 1]`).
    pub fn sigmas(&self, steps: usize, spacing: SigmaSpacing) -> Vec<f64> {
        match spacing {
            SigmaSpacing::Karras => self.karras_sigmas(steps),
            SigmaSpacing::Default => {
                let last = (self.len() - 1) as f64;
                let mut s: Vec<f64> = linspace(last, 0.0, steps).into_iter().map(|t| self.t_to_sigma(t)).collect();
                s.push(0.0);
                s
            }
        }
    }

    /// Karras sigmas (rho = 7) between the schedule's extremes, then 0.
    pub fn karras_sigmas(&self, steps: usize) -> Vec<f64> {
        let rho = 7.0;
        let (min_inv, max_inv) = (self.sigma_min().powf(1.0 / rho), self.sigma_max().powf(1.0 / rho));
        let mut s: Vec<f64> = linspace(0.0, 1.0, steps).into_iter().map(|r| (max_inv + r * (min_inv - max_inv)).powf(rho)).collect();
        s.push(0.0);
        s
    }

    /// diffusers' "leading" timesteps (`i * T / steps + offset`, descending)
    /// as sigmas, then 0: the grid DDIM and DDPM step on.
    pub fn leading_sigmas(&self, steps: usize) -> Vec<f64> {
        let ratio = self.len() / steps.max(1);
        let mut s: Vec<f64> = (0..steps).rev().map(|i| self.t_to_sigma(((i * ratio + self.config.steps_offset).min(self.len() - 1)) as f64)).collect();
        s.push(0.0);
        s
    }
}

/// `n` evenly spaced values from `a` to `b` inclusive (`[a]` when `n == 1`).
pub fn linspace(a: f64, b: f64, n: usize) -> Vec<f64> {
    match n {
        0 => Vec::new(),
        1 => vec![a],
        _ => (0..n).map(|i| a + (b - a) * i as f64 / (n - 1) as f64).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sd_schedule_matches_known_sigmas() {
        let s = NoiseSchedule::new(SchedulerConfig::default());
        // The published SD 1.x extremes (k-diffusion prints these).
        assert!((s.sigma_min() - 0.0292).abs() < 1e-3, "{}", s.sigma_min());
        assert!((s.sigma_max() - 14.6146).abs() < 1e-3, "{}", s.sigma_max());
    }

    #[test]
    fn timestep_and_sigma_round_trip() {
        let s = NoiseSchedule::new(SchedulerConfig::default());
        for t in [0.0, 1.5, 17.25, 500.0, 998.9, 999.0] {
            let back = s.sigma_to_t(s.t_to_sigma(t));
            assert!((back - t).abs() < 1e-6, "{t} -> {back}");
        }
    }

    #[test]
    fn karras_sigmas_span_the_schedule_and_end_at_zero() {
        let s = NoiseSchedule::new(SchedulerConfig::default());
        let k = s.karras_sigmas(10);
        assert_eq!(k.len(), 11);
        assert!((k[0] - s.sigma_max()).abs() < 1e-9);
        assert!((k[9] - s.sigma_min()).abs() < 1e-9);
        assert_eq!(k[10], 0.0);
        assert!(k.windows(2).all(|w| w[0] > w[1]));
    }

    #[test]
    fn set_alpha_to_one_defaults_to_diffusers_class_default() {
        let absent: SchedulerConfig = serde_json::from_str("{}").unwrap();
        assert!(absent.set_alpha_to_one);
        let sd15: SchedulerConfig = serde_json::from_str(r#"{"set_alpha_to_one": false}"#).unwrap();
        assert!(!sd15.set_alpha_to_one);
    }

    #[test]
    fn leading_timesteps_follow_diffusers() {
        let s = NoiseSchedule::new(SchedulerConfig::default());
        let l = s.leading_sigmas(4);
        // diffusers: [751, 501, 251, 1] for 4 steps, offset 1.
        for (sigma, t) in l.iter().zip([751.0, 501.0, 251.0, 1.0]) {
            assert!((s.sigma_to_t(*sigma) - t).abs() < 1e-6);
        }
    }
}
