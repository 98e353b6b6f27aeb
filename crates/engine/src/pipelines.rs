//! Pipelines per model family. Each runs the named stages
//! `encode_prompt → init_latents → schedule → denoise → decode`, each a
//! plain function, over a batch of images that share size, steps and
//! sampler; `encode_image` (in [`crate::output`]) turns results into files.

pub mod sd;

use candle_core::{DType, Device, Tensor};
use imagegate_core::{PromptPart, Sampler};

use crate::error::Result;
use crate::samplers::{NoiseSchedule, NoiseSource, SamplerImpl, SigmaSpacing};

/// One image of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRequest {
    /// Weighted prompt parts; negative weights count towards the negative prompt.
    pub prompt: Vec<PromptPart>,
    /// Negative prompt.
    pub negative: Option<String>,
    /// Classifier-free guidance scale (≤ 1 disables guidance).
    pub guidance: f32,
    /// This image's seed.
    pub seed: u64,
}

/// Images that run together: same size, steps and sampler.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRequest {
    /// The images, in order.
    pub items: Vec<ImageRequest>,
    /// Pixels across.
    pub width: usize,
    /// Pixels down.
    pub height: usize,
    /// Denoising steps.
    pub steps: usize,
    /// Sampler.
    pub sampler: Sampler,
    /// Sigma spacing.
    pub spacing: SigmaSpacing,
}

/// Stage `schedule`: the sigmas the sampler will visit (`[steps + 1]`, ending at 0).
pub fn schedule(sampler: &dyn SamplerImpl, noise_schedule: &NoiseSchedule, steps: usize, spacing: SigmaSpacing) -> Vec<f64> {
    sampler.sigmas(noise_schedule, steps, spacing)
}

/// Stage `init_latents`: seeded unit noise scaled by `init_sigma`, `[B, C, h, w]` f32.
pub fn init_latents(noise: &mut NoiseSource, latent_shape: [usize; 3], init_sigma: f64, device: &Device) -> Result<Tensor> {
    Ok(noise.randn(&latent_shape, device)?.affine(init_sigma, 0.0)?)
}

/// Blends `[N, S, D]` embeddings of texts into one `[S, D]` row by weight.
pub(crate) fn blend(rows: &[(Tensor, f32)]) -> Result<Tensor> {
    let total: f32 = rows.iter().map(|(_, w)| w).sum();
    let mut acc: Option<Tensor> = None;
    for (t, w) in rows {
        let scaled = t.to_dtype(DType::F32)?.affine(f64::from(*w / total), 0.0)?;
        acc = Some(match acc {
            None => scaled,
            Some(a) => (a + scaled)?,
        });
    }
    acc.ok_or_else(|| crate::error::EngineError::invalid("prompt", "needs at least one part with a positive weight"))
}

/// Decoded images `[B, 3, H, W]` in `[0, 1]` → one `[3, H, W]` f32 tensor each.
pub(crate) fn split_batch(images: &Tensor) -> Result<Vec<Tensor>> {
    let b = images.dim(0)?;
    (0..b).map(|i| Ok(images.get(i)?)).collect()
}
