//! Stable Diffusion 1.x / 2.x / SD-Turbo and SDXL / SDXL-Turbo: CLIP text
//! encoder(s), UNet (with SDXL's added conditioning), KL VAE, epsilon or
//! v-prediction, classifier-free guidance with negative prompts, every
//! sampler, batches of independently seeded images.

use std::path::Path;

use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::stable_diffusion::vae::AutoEncoderKL;
use imagegate_core::Sampler;

use super::{BatchRequest, img2img_sigmas, init_latents, init_pixels, schedule, split_batch};
use crate::checkpoint::LdmLayout;
use crate::error::{EngineError, Result};
use crate::loader::{PipelineKind, require_complete, weight_files};
use crate::lora::{self, Component, LoraRef};
use crate::models::clip::{ClipTextConfig, ClipTextEncoder};
use crate::models::configs::{UNetFile, VaeFile, read_json};
use crate::models::unet::UNet;
use crate::models::vae_encoder::VaeEncoder;
use crate::samplers::schedule::SchedulerConfig;
use crate::samplers::{NoiseSchedule, NoiseSource, SampleArgs, StepHook, sampler_for};
use crate::tokenize::ClipTokenizer;

pub mod conditioning;
mod inpaint;

use conditioning::SdDenoiser;
pub use conditioning::{Context, encode_prompt};

/// One text encoder with its tokenizer.
struct TextEncoder {
    tokenizer: ClipTokenizer,
    model: ClipTextEncoder,
}

/// A loaded SD 1.x/2.x or SDXL pipeline.
pub struct SdPipeline {
    /// One encoder (SD) or two (SDXL: CLIP ViT-L, then OpenCLIP bigG with projection).
    encoders: Vec<TextEncoder>,
    /// SDXL conditions on penultimate states of both encoders plus pooled text and size ids.
    xl: bool,
    /// SDXL's `force_zeros_for_empty_prompt`: no negative prompt means zero conditioning.
    zeros_for_empty_negative: bool,
    unet: UNet,
    unet_in_channels: usize,
    vae: AutoEncoderKL,
    vae_encoder: VaeEncoder,
    vae_file: VaeFile,
    schedule: NoiseSchedule,
    dtype: DType,
    device: Device,
}

fn load_vb(dir: &Path, stem: &str, load: &Load<'_>, component: Component) -> Result<VarBuilder<'static>> {
    let files = weight_files(dir, stem).ok_or_else(|| EngineError::MissingWeights {
        model: dir.parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        missing: format!("{stem}.safetensors"),
        looked_in: dir.display().to_string(),
    })?;
    match load.checkpoint {
        // `dir` is then the template's component folder: its files only name the tensors.
        Some((file, layout)) => {
            let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let part = lora::CheckpointPart { file, layout, name, template_files: &files };
            lora::checkpoint_var_builder(&part, load.loras, component, load.dtype, load.device)
        }
        None => lora::var_builder(&files, load.loras, component, load.dtype, load.device),
    }
}

/// How to load: where, at which precision, with which LoRAs merged, and
/// whether the weights come from a single-file checkpoint instead.
#[derive(Clone, Copy)]
struct Load<'a> {
    device: &'a Device,
    dtype: DType,
    loras: &'a [LoraRef],
    checkpoint: Option<(&'a Path, &'a LdmLayout)>,
}

fn load_encoder(folder: &Path, suffix: &str, load: &Load<'_>) -> Result<TextEncoder> {
    let cfg: ClipTextConfig = read_json(&folder.join(format!("text_encoder{suffix}/config.json")))?;
    let max_len = cfg.max_position_embeddings;
    let component = if suffix.is_empty() { lora::TEXT_ENCODER } else { lora::TEXT_ENCODER_2 };
    let model = ClipTextEncoder::new(load_vb(&folder.join(format!("text_encoder{suffix}")), "model", load, component)?, cfg)?;
    let tokenizer = ClipTokenizer::load(&folder.join(format!("tokenizer{suffix}")), max_len)?;
    Ok(TextEncoder { tokenizer, model })
}

impl SdPipeline {
    /// Loads every component of `folder` from its own `config.json`, at `dtype` on `device`.
    pub fn load(folder: &Path, device: &Device, dtype: DType) -> Result<Self> {
        Self::load_with_loras(folder, device, dtype, &[])
    }

    /// [`Self::load`] with `loras` merged into the UNet and text encoder weights.
    pub fn load_with_loras(folder: &Path, device: &Device, dtype: DType, loras: &[LoraRef]) -> Result<Self> {
        Self::load_from(folder, Load { device, dtype, loras, checkpoint: None })
    }

    /// Loads a single-file checkpoint (`file`, A1111/ComfyUI layout) with
    /// the architecture, tokenizers and scheduler of the diffusers folder
    /// `template` (same family), and `loras` merged.
    pub fn load_checkpoint(file: &Path, template: &Path, device: &Device, dtype: DType, loras: &[LoraRef]) -> Result<Self> {
        let layout = LdmLayout::from_template(template)?;
        Self::load_from(template, Load { device, dtype, loras, checkpoint: Some((file, &layout)) })
    }

    fn load_from(folder: &Path, load: Load<'_>) -> Result<Self> {
        let (device, dtype) = (load.device, load.dtype);
        let kind = require_complete(folder)?;
        let xl = match kind {
            PipelineKind::StableDiffusion => false,
            PipelineKind::StableDiffusionXl => true,
            other => return Err(EngineError::invalid("model", format!("{other:?} is not a Stable Diffusion UNet pipeline"))),
        };
        let mut encoders = vec![load_encoder(folder, "", &load)?];
        if xl {
            encoders.push(load_encoder(folder, "_2", &load)?);
        }
        let index: serde_json::Value = read_json(&folder.join("model_index.json"))?;
        let zeros_for_empty_negative = xl && index.get("force_zeros_for_empty_prompt").and_then(|v| v.as_bool()).unwrap_or(true);
        let unet_path = folder.join("unet/config.json");
        let unet_file: UNetFile = read_json(&unet_path)?;
        if xl != unet_file.addition_embed_type.is_some() {
            return Err(EngineError::bad_model(&unet_path, "SDXL pipelines need a text_time UNet, SD 1.x/2.x ones a plain UNet"));
        }
        let unet = UNet::new(load_vb(&folder.join("unet"), "diffusion_pytorch_model", &load, lora::UNET)?, &unet_file)?;
        let vae_file: VaeFile = read_json(&folder.join("vae/config.json"))?;
        // LoRAs do not touch the VAE (the UNET component matches none of its names).
        // The VAE always runs in f32: SDXL's overflows in f16 (diffusers'
        // `force_upcast`), and it is small next to the UNet.
        let vae_vb = load_vb(&folder.join("vae"), "diffusion_pytorch_model", &Load { loras: &[], dtype: DType::F32, ..load }, lora::UNET)?;
        let vae = AutoEncoderKL::new(vae_vb.clone(), vae_file.in_channels, vae_file.out_channels, vae_file.to_candle())?;
        let vae_encoder = VaeEncoder::new(vae_vb, &vae_file)?;
        let sched_path = folder.join("scheduler/scheduler_config.json");
        let sched_cfg = if sched_path.is_file() { SchedulerConfig::load(&sched_path)? } else { SchedulerConfig::default() };
        tracing::info!(folder = %folder.display(), ?kind, ?dtype, prediction = ?sched_cfg.prediction_type, "loaded pipeline");
        Ok(Self {
            encoders,
            xl,
            zeros_for_empty_negative,
            unet,
            unet_in_channels: unet_file.in_channels,
            vae,
            vae_encoder,
            vae_file,
            schedule: NoiseSchedule::new(sched_cfg),
            dtype,
            device: device.clone(),
        })
    }

    /// The training noise schedule.
    pub fn noise_schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }

    /// Runs a batch; returns one `[3, H, W]` f32 image in `[0, 1]` per item.
    pub fn generate(&self, req: &BatchRequest, on_step: StepHook<'_>) -> Result<Vec<Tensor>> {
        if req.sampler == Sampler::FlowEuler {
            return Err(EngineError::invalid("sampler", "FLOW_EULER is for flow-matching models (FLUX, SD 3.x)"));
        }
        let f = self.vae_file.downscale();
        if !req.width.is_multiple_of(f) || !req.height.is_multiple_of(f) || req.width == 0 || req.height == 0 {
            return Err(EngineError::invalid("size", format!("width and height must be positive multiples of {f}")));
        }
        let context = encode_prompt(self, &req.items, (req.height, req.width))?;
        let sampler = sampler_for(req.sampler);
        let mut sigmas = schedule(sampler.as_ref(), &self.schedule, req.steps, req.spacing);
        let seeds: Vec<u64> = req.items.iter().map(|i| i.seed).collect();
        let mut noise = NoiseSource::new(&seeds);
        let latent_channels = self.vae_file.latent_channels;
        let inpainting = inpaint::check(self.unet_in_channels, latent_channels, &req.items)?;
        let shape = [latent_channels, req.height / f, req.width / f];
        // Inpainting at full strength starts from pure noise, as diffusers'
        // pipeline does, rather than the init image at the top noise level.
        let strength = req.strength.filter(|s| !(inpainting && *s >= 1.0));
        let latents = match strength {
            None => init_latents(&mut noise, shape, sampler.init_noise_sigma(&sigmas), &self.device)?,
            Some(strength) => {
                sigmas = img2img_sigmas(&sigmas, strength);
                let z0 = encode_init_image(self, &init_pixels(&req.items, &self.device)?, &mut noise)?;
                // x = x0 + sigma * eps at the first noise level run (the VP form's
                // sqrt(ab) x0 + sqrt(1 - ab) eps, divided by sqrt(ab)).
                (&z0 + init_latents(&mut noise, shape, sigmas[0], &self.device)?)?
            }
        };
        let extra = match inpainting {
            true => Some(inpaint::conditioning(self, &req.items, &mut noise, shape[1], shape[2])?),
            false => None,
        };
        let mut denoiser = SdDenoiser::new(self, context, extra)?;
        let mut args = SampleArgs { denoiser: &mut denoiser, noise: &mut noise, on_step };
        let latents = sampler.sample(latents, &sigmas, &mut args)?;
        split_batch(&decode(&self.vae, &latents, self.vae_file.scaling_factor, DType::F32)?)
    }

    /// One text's conditioning: hidden states `[S, D]` and, for SDXL, the pooled embedding `[P]`, in f32.
    fn embed(&self, text: &str) -> Result<(Tensor, Option<Tensor>)> {
        let mut outs = Vec::with_capacity(self.encoders.len());
        for e in &self.encoders {
            let ids = e.tokenizer.encode(text)?;
            let ids = Tensor::from_vec(ids.clone(), (1, ids.len()), &self.device)?;
            outs.push(e.model.forward(&ids)?);
        }
        // Conditioning is blended in f32 whatever the weights' dtype.
        let f32 = |t: &Tensor| t.get(0).and_then(|t| t.to_dtype(DType::F32));
        if !self.xl {
            return Ok((f32(&outs[0].last_hidden)?, None));
        }
        // SDXL: penultimate states of both encoders side by side; pooled from the second.
        let hidden = Tensor::cat(&[f32(&outs[0].penultimate)?, f32(&outs[1].penultimate)?], D::Minus1)?;
        Ok((hidden, Some(f32(&outs[1].pooled)?)))
    }
}

/// Stage `encode_init_image` (image-to-image): images `[B, 3, H, W]` in
/// `[-1, 1]` → scaled latents `[B, C, h, w]`, sampling the VAE posterior
/// with each item's seeded noise (drawn before the latent noise).
pub fn encode_init_image(pipe: &SdPipeline, images: &Tensor, noise: &mut NoiseSource) -> Result<Tensor> {
    // The VAE is kept in f32 (see `load_with_loras`).
    let (mean, logvar) = pipe.vae_encoder.moments(&images.to_dtype(DType::F32)?)?;
    let std = logvar.affine(0.5, 0.0)?.exp()?;
    let z = (&mean + (std * noise.randn_like(&mean)?)?)?;
    Ok(z.affine(pipe.vae_file.scaling_factor, 0.0)?)
}

/// Stage `decode`: latents `[B, C, h, w]` → images `[B, 3, H, W]` in `[0, 1]`, f32.
///
/// One image at a time: candle 0.11.1's VAE mid-block attention mixes batch
/// items (measured: batch row 1 decoded off by 1.3 from the same latents
/// decoded alone; row 0 exact), and batching must not change an image.
pub fn decode(vae: &AutoEncoderKL, latents: &Tensor, scaling_factor: f64, dtype: DType) -> Result<Tensor> {
    let z = latents.affine(1.0 / scaling_factor, 0.0)?.to_dtype(dtype)?;
    let images = (0..z.dim(0)?).map(|i| vae.decode(&z.narrow(0, i, 1)?)).collect::<candle_core::Result<Vec<_>>>()?;
    let img = Tensor::cat(&images, 0)?.to_dtype(DType::F32)?;
    Ok(img.affine(0.5, 0.5)?.clamp(0f32, 1f32)?)
}
