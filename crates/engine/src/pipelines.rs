//! Pipelines per model family. Each runs the named stages
//! `encode_prompt → init_latents → schedule → denoise → decode`, each a
//! plain function, over a batch of images that share size, steps and
//! sampler; `encode_image` (in [`crate::output`]) turns results into files.

pub mod flux;
pub mod sd;
pub mod sd3;

use candle_core::{DType, Device, Tensor};
use imagegate_core::{PromptPart, Sampler};

use crate::error::{EngineError, Result};
use crate::input::InitPixels;
use crate::samplers::{NoiseSchedule, NoiseSource, SamplerImpl, SigmaSpacing};

/// A loaded pipeline of any family the engine runs.
pub enum Pipeline {
    /// SD 1.x / 2.x / SDXL.
    Sd(Box<sd::SdPipeline>),
    /// FLUX.1 schnell / dev.
    Flux(Box<flux::FluxPipeline>),
    /// SD 3 / 3.5 (not `Send`: candle's MMDiT boxes its blocks).
    Sd3(Box<sd3::Sd3Pipeline>),
}

impl Pipeline {
    /// Loads the pipeline `folder`'s `model_index.json` names (or the
    /// single-file checkpoint `folder` is), with `loras` merged.
    pub fn load(folder: &std::path::Path, device: &Device, dtype: DType, loras: &[crate::lora::LoraRef]) -> Result<Self> {
        match crate::loader::read_kind(folder)? {
            crate::loader::PipelineKind::Flux => Ok(Self::Flux(Box::new(flux::FluxPipeline::load_with_loras(folder, device, dtype, loras)?))),
            crate::loader::PipelineKind::StableDiffusion3 => Ok(Self::Sd3(Box::new(sd3::Sd3Pipeline::load_with_loras(folder, device, dtype, loras)?))),
            _ if folder.is_file() => {
                crate::lora::check_components(loras, &[crate::lora::UNET, crate::lora::TEXT_ENCODER, crate::lora::TEXT_ENCODER_2])?;
                let template = crate::loader::checkpoint_template(folder)?;
                Ok(Self::Sd(Box::new(sd::SdPipeline::load_checkpoint(folder, &template, device, dtype, loras)?)))
            }
            _ => {
                crate::lora::check_components(loras, &[crate::lora::UNET, crate::lora::TEXT_ENCODER, crate::lora::TEXT_ENCODER_2])?;
                Ok(Self::Sd(Box::new(sd::SdPipeline::load_with_loras(folder, device, dtype, loras)?)))
            }
        }
    }

    /// Runs a batch; one `[3, H, W]` f32 image in `[0, 1]` per item.
    pub fn generate(&self, req: &BatchRequest, on_step: crate::samplers::StepHook<'_>) -> Result<Vec<Tensor>> {
        match self {
            Self::Sd(p) => p.generate(req, on_step),
            Self::Flux(p) => p.generate(req, on_step),
            Self::Sd3(p) => p.generate(req, on_step),
        }
    }
}

/// The sampler a family uses when a task names none.
pub fn default_sampler(kind: crate::loader::PipelineKind) -> Sampler {
    use crate::loader::PipelineKind::*;
    match kind {
        Flux | StableDiffusion3 => Sampler::FlowEuler,
        StableDiffusion | StableDiffusionXl => Sampler::KDpmpp2m,
    }
}

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
    /// The image to start from (image-to-image), at the output size.
    pub init: Option<InitPixels>,
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
    /// Image-to-image strength shared by the batch (every item then has an
    /// init image): the fraction of the schedule run, from 0 (keep) to 1.
    pub strength: Option<f32>,
}

/// Stage `schedule`: the sigmas the sampler will visit (`[steps + 1]`, ending at 0).
pub fn schedule(sampler: &dyn SamplerImpl, noise_schedule: &NoiseSchedule, steps: usize, spacing: SigmaSpacing) -> Vec<f64> {
    sampler.sigmas(noise_schedule, steps, spacing)
}

/// Stage `init_latents`: seeded unit noise scaled by `init_sigma`, `[B, C, h, w]` f32.
pub fn init_latents(noise: &mut NoiseSource, latent_shape: [usize; 3], init_sigma: f64, device: &Device) -> Result<Tensor> {
    Ok(noise.randn(&latent_shape, device)?.affine(init_sigma, 0.0)?)
}

/// The tail of `sigmas` an image-to-image run of `strength` walks: the last
/// `floor(steps * strength)` steps, as diffusers' img2img pipelines do.
pub fn img2img_sigmas(sigmas: &[f64], strength: f32) -> Vec<f64> {
    let steps = sigmas.len() - 1;
    let run = ((steps as f32 * strength.clamp(0.0, 1.0)).floor() as usize).min(steps);
    sigmas[steps - run..].to_vec()
}

/// Image-to-image start for flow-matching models: `x = (1 - s) z0 + s eps`
/// at `sigma`, the first noise level run; `z0` is `[B, C, h, w]` f32.
pub(crate) fn flow_img2img_latents(z0: &Tensor, noise: &mut NoiseSource, sigma: f64) -> Result<Tensor> {
    let eps = noise.randn_like(z0)?;
    Ok((z0.affine(1.0 - sigma, 0.0)? + eps.affine(sigma, 0.0)?)?)
}

/// Samples a VAE posterior `(mean, logvar)` with seeded noise, then shifts
/// and scales it into the latent space the model sees.
pub(crate) fn sample_posterior(mean: &Tensor, logvar: &Tensor, noise: &mut NoiseSource, shift: f64, scale: f64) -> Result<Tensor> {
    let std = logvar.affine(0.5, 0.0)?.exp()?;
    let z = (mean + (std * noise.randn_like(mean)?)?)?;
    Ok(z.affine(scale, -shift * scale)?)
}

/// Refuses inpainting masks in a pipeline that has no inpainting variant.
pub(crate) fn refuse_masks(req: &BatchRequest, family: &str) -> Result<()> {
    if req.items.iter().any(|i| crate::input::has_mask(&i.init)) {
        return Err(EngineError::invalid("mask", format!("{family} models do not inpaint here; masks need an SD inpainting checkpoint")));
    }
    Ok(())
}

/// Init images `[B, 3, H, W]` in `[-1, 1]` (f32).
pub(crate) fn init_pixels(items: &[ImageRequest], device: &Device) -> Result<Tensor> {
    let rows = items
        .iter()
        .map(|i| {
            let p = i.init.as_ref().ok_or_else(|| EngineError::invalid("init_image", "every image of an image-to-image batch needs one"))?;
            let t = Tensor::from_vec(p.rgb.clone(), (p.height, p.width, 3), device)?.permute((2, 0, 1))?.to_dtype(DType::F32)?;
            Ok(t.affine(2.0 / 255.0, -1.0)?)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::stack(&rows, 0)?)
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
    acc.ok_or_else(|| EngineError::invalid("prompt", "needs at least one part with a positive weight"))
}

/// Decoded images `[B, 3, H, W]` in `[0, 1]` → one `[3, H, W]` f32 tensor each.
pub(crate) fn split_batch(images: &Tensor) -> Result<Vec<Tensor>> {
    let b = images.dim(0)?;
    (0..b).map(|i| Ok(images.get(i)?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelines_without_inpainting_name_the_mask_field() {
        let init = crate::input::InitPixels { width: 1, height: 1, rgb: vec![0; 3], mask: Some(vec![1]) };
        let item = ImageRequest { prompt: Vec::new(), negative: None, guidance: 1.0, seed: 0, init: Some(init) };
        let mut req = BatchRequest { items: vec![item], width: 8, height: 8, steps: 1, sampler: Sampler::FlowEuler, spacing: Default::default(), strength: Some(1.0) };
        assert!(matches!(refuse_masks(&req, "FLUX"), Err(EngineError::Invalid { field, .. }) if field == "mask"));
        req.items[0].init.as_mut().unwrap().mask = None;
        assert!(refuse_masks(&req, "FLUX").is_ok());
    }

    #[test]
    fn img2img_runs_the_last_fraction_of_the_schedule() {
        let s = [9.0, 5.0, 2.0, 1.0, 0.0];
        assert_eq!(img2img_sigmas(&s, 1.0), s.to_vec());
        assert_eq!(img2img_sigmas(&s, 0.5), vec![2.0, 1.0, 0.0]);
        assert_eq!(img2img_sigmas(&s, 0.6), vec![2.0, 1.0, 0.0]);
        assert_eq!(img2img_sigmas(&s, 0.0), vec![0.0]);
    }
}
