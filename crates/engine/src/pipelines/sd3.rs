//! Stable Diffusion 3 / 3.5 (large, medium, large-turbo) on our MMDiT
//! (`models/mmdit.rs`, candle's blocks with a corrected last block):
//! CLIP-L and CLIP-G penultimate states side by side, zero-padded to T5's
//! width and followed by T5's states; both CLIPs' projected pooled outputs;
//! a 16-channel VAE; FLOW_EULER on the scheduler's own shifted grid, as
//! `StableDiffusion3Pipeline` walks it; classifier-free guidance with
//! negative prompts.

pub mod keys;
mod load;

use std::path::Path;
use std::sync::Mutex;

use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::stable_diffusion::vae::AutoEncoderKL;
use candle_transformers::models::t5::{self, T5EncoderModel};
use imagegate_core::Sampler;
use load::{load_transformer, load_vae, mmdit_config};

use super::{BatchRequest, ImageRequest, blend, flow_img2img_latents, img2img_sigmas, init_latents, init_pixels, sample_posterior, split_batch};
use crate::error::{EngineError, Result};
use crate::loader::{PipelineKind, require_complete, weight_files};
use crate::lora::{self, LoraRef};
use crate::models::clip::{ClipTextConfig, ClipTextEncoder};
use crate::models::configs::{VaeFile, read_json};
use crate::models::mmdit::Mmdit;
use crate::models::vae_encoder::VaeEncoder;
use crate::samplers::flow_euler::{FlowShift, scheduler_flow_sigmas};
use crate::samplers::{Denoiser, NoiseSource, SampleArgs, StepHook, sampler_for};
use crate::tokenize::{ClipTokenizer, T5Tokenizer};

/// A loaded SD3 / SD3.5 pipeline.
pub struct Sd3Pipeline {
    clips: Vec<(ClipTokenizer, ClipTextEncoder)>,
    t5_tokenizer: T5Tokenizer,
    /// candle's T5 encoder needs `&mut self`.
    t5: Mutex<T5EncoderModel>,
    t5_dim: usize,
    /// Not `Send` (boxed blocks): the pipeline lives on the engine thread.
    model: Mmdit,
    vae: AutoEncoderKL,
    vae_encoder: VaeEncoder,
    vae_file: VaeFile,
    shift: FlowShift,
    /// The transformer's dtype: the engine's (f32 on a CPU, f16 on a GPU).
    dtype: DType,
    device: Device,
}

/// Conditioning for `B` items; with guidance `2B` rows, negatives first.
pub struct Sd3Context {
    /// `[B or 2B, 77 + L, T5 width]` (f16).
    context: Tensor,
    /// `[B or 2B, pooled L + G]` (f16).
    pooled: Tensor,
    /// Per-item guidance `[B, 1, 1, 1]`, `None` for the conditional pass only.
    guidance: Option<Tensor>,
}

impl Sd3Context {
    /// Text states `[B or 2B, 77 + L, T5 width]`, negatives first when guided.
    pub fn context(&self) -> &Tensor {
        &self.context
    }

    /// Pooled CLIP text `[B or 2B, L + G]`.
    pub fn pooled(&self) -> &Tensor {
        &self.pooled
    }
}

impl Sd3Pipeline {
    /// Loads a StableDiffusion3Pipeline folder (diffusers layout, or SAI's file at its root).
    pub fn load(folder: &Path, device: &Device, dtype: DType) -> Result<Self> {
        Self::load_with_loras(folder, device, dtype, &[])
    }

    /// [`Self::load`] with `loras` merged into the transformer and the two CLIP encoders.
    pub fn load_with_loras(folder: &Path, device: &Device, dtype: DType, loras: &[LoraRef]) -> Result<Self> {
        if require_complete(folder)? != PipelineKind::StableDiffusion3 {
            return Err(EngineError::invalid("model", format!("{} is not a StableDiffusion3Pipeline folder", folder.display())));
        }
        let files = |c: &str, stem: &str| weight_files(&folder.join(c), stem).ok_or_else(|| EngineError::bad_model(folder.join(c), "no weights"));
        let mut clips = Vec::new();
        for (suffix, component) in [("", lora::TEXT_ENCODER), ("_2", lora::TEXT_ENCODER_2)] {
            let cfg: ClipTextConfig = read_json(&folder.join(format!("text_encoder{suffix}/config.json")))?;
            let tok = ClipTokenizer::load(&folder.join(format!("tokenizer{suffix}")), cfg.max_position_embeddings)?;
            let vb = lora::var_builder(&files(&format!("text_encoder{suffix}"), "model")?, loras, component, dtype, device)?;
            clips.push((tok, ClipTextEncoder::new(vb, cfg)?));
        }
        let t5_cfg: t5::Config = read_json(&folder.join("text_encoder_3/config.json"))?;
        // T5 overflows in f16; bf16 keeps f32's range.
        let t5_dtype = if dtype == DType::F16 { DType::BF16 } else { dtype };
        let t5 = T5EncoderModel::load(lora::var_builder(&files("text_encoder_3", "model")?, &[], lora::TEXT_ENCODER_2, t5_dtype, device)?, &t5_cfg)?;
        // diffusers' default max_sequence_length for SD3 is 256.
        let t5_len = T5Tokenizer::model_max_length(&folder.join("tokenizer_3")).map_or(256, |n| n.min(256));
        let t5_tokenizer = T5Tokenizer::load(&folder.join("tokenizer_3"), t5_len)?;
        let tensors = load_transformer(folder, loras)?;
        let cfg = mmdit_config(&tensors)?;
        let model = Mmdit::new(&cfg, VarBuilder::from_tensors(tensors, dtype, device))?;
        let (vae_file, vae_vb) = load_vae(folder, device)?;
        let vae = AutoEncoderKL::new(vae_vb.clone(), vae_file.in_channels, vae_file.out_channels, vae_file.to_candle())?;
        let vae_encoder = VaeEncoder::new(vae_vb, &vae_file)?;
        let sched = folder.join("scheduler/scheduler_config.json");
        let shift = if sched.is_file() { read_json(&sched)? } else { FlowShift::constant(3.0) };
        tracing::info!(folder = %folder.display(), depth = cfg.depth, "loaded SD3 pipeline");
        Ok(Self { clips, t5_tokenizer, t5: Mutex::new(t5), t5_dim: t5_cfg.d_model, model, vae, vae_encoder, vae_file, shift, dtype, device: device.clone() })
    }

    /// Runs a batch; one `[3, H, W]` f32 image in `[0, 1]` per item.
    pub fn generate(&self, req: &BatchRequest, on_step: StepHook<'_>) -> Result<Vec<Tensor>> {
        if req.sampler != Sampler::FlowEuler {
            return Err(EngineError::invalid("sampler", format!("SD3 samples with FLOW_EULER only, not {}", req.sampler)));
        }
        super::refuse_masks(req, "SD3")?;
        let f = self.vae_file.downscale() * 2;
        if !req.width.is_multiple_of(f) || !req.height.is_multiple_of(f) || req.width == 0 || req.height == 0 {
            return Err(EngineError::invalid("size", format!("width and height must be positive multiples of {f} for SD3")));
        }
        let context = encode_prompt(self, &req.items)?;
        // StableDiffusion3Pipeline walks its scheduler's own grid (not
        // FLUX's linspace), so the same seed draws what diffusers draws.
        let mut sigmas = scheduler_flow_sigmas(req.steps, self.shift.shift_for(0), self.shift.num_train_timesteps);
        let mut noise = NoiseSource::new(&req.items.iter().map(|i| i.seed).collect::<Vec<_>>());
        let (h, w) = (req.height / self.vae_file.downscale(), req.width / self.vae_file.downscale());
        let latents = match req.strength {
            None => init_latents(&mut noise, [self.vae_file.latent_channels, h, w], 1.0, &self.device)?,
            Some(strength) => {
                sigmas = img2img_sigmas(&sigmas, strength);
                // Posterior noise first, then the latent noise, as for SD.
                let (mean, logvar) = self.vae_encoder.moments(&init_pixels(&req.items, &self.device)?)?;
                let f = &self.vae_file;
                let z0 = sample_posterior(&mean, &logvar, &mut noise, f.shift_factor.unwrap_or(0.0), f.scaling_factor)?;
                flow_img2img_latents(&z0, &mut noise, sigmas[0])?
            }
        };
        let sampler = sampler_for(Sampler::FlowEuler);
        let mut denoiser = Sd3Denoiser { pipe: self, context };
        let mut args = SampleArgs { denoiser: &mut denoiser, noise: &mut noise, on_step };
        let latents = sampler.sample(latents, &sigmas, &mut args)?;
        split_batch(&decode(self, &latents)?)
    }

    /// One transformer call on every row of `context` (no guidance
    /// combination): the velocity `[rows, C, h, w]` in f32. The denoiser
    /// combines its rows; tests compare it stage by stage with diffusers.
    pub fn velocity(&self, x: &Tensor, sigma: f64, context: &Sd3Context) -> Result<Tensor> {
        let rows = context.context.dim(0)?;
        // The SAI model is trained on timesteps sigma · 1000.
        let t = Tensor::full((sigma * 1000.0) as f32, rows, &self.device)?;
        Ok(self.model.forward(&x.to_dtype(self.dtype)?, &t, &context.pooled, &context.context)?.to_dtype(DType::F32)?)
    }

    /// One text's context `[77 + L, T5 width]` and pooled `[L + G]`, in f32.
    fn embed(&self, text: &str) -> Result<(Tensor, Tensor)> {
        let (mut states, mut pooled) = (Vec::new(), Vec::new());
        for (tok, clip) in &self.clips {
            let ids = tok.encode(text)?;
            let out = clip.forward(&Tensor::from_vec(ids.clone(), (1, ids.len()), &self.device)?)?;
            states.push(out.penultimate.get(0)?.to_dtype(DType::F32)?);
            pooled.push(out.pooled.get(0)?.to_dtype(DType::F32)?);
        }
        let clip = Tensor::cat(&states, D::Minus1)?;
        let pad = self.t5_dim.checked_sub(clip.dim(1)?).ok_or_else(|| EngineError::invalid("model", "CLIP states are wider than T5's"))?;
        let clip = clip.pad_with_zeros(D::Minus1, 0, pad)?;
        let ids = self.t5_tokenizer.encode(text)?;
        let ids = Tensor::from_vec(ids.clone(), (1, ids.len()), &self.device)?;
        let t5 = self.t5.lock().map_err(|_| EngineError::Stopped)?.forward(&ids)?.get(0)?.to_dtype(DType::F32)?;
        Ok((Tensor::cat(&[clip, t5], 0)?, Tensor::cat(&pooled, 0)?))
    }
}

fn blend_pair(parts: &[((Tensor, Tensor), f32)]) -> Result<(Tensor, Tensor)> {
    let a: Vec<(Tensor, f32)> = parts.iter().map(|((c, _), w)| (c.clone(), *w)).collect();
    let b: Vec<(Tensor, f32)> = parts.iter().map(|((_, p), w)| (p.clone(), *w)).collect();
    Ok((blend(&a)?, blend(&b)?))
}

/// Stage `encode_prompt`: weighted parts blended; with guidance, negatives
/// (negative-weight parts and the negative prompt, else `""`) come first.
pub fn encode_prompt(pipe: &Sd3Pipeline, items: &[ImageRequest]) -> Result<Sd3Context> {
    let guided = items.iter().any(|i| i.guidance > 1.0);
    let (mut pos, mut neg) = (Vec::new(), Vec::new());
    for item in items {
        let parts = item.prompt.iter().filter(|p| p.weight > 0.0).map(|p| Ok((pipe.embed(&p.text)?, p.weight))).collect::<Result<Vec<_>>>()?;
        pos.push(blend_pair(&parts)?);
        if guided {
            let mut negs = item.prompt.iter().filter(|p| p.weight < 0.0).map(|p| Ok((pipe.embed(&p.text)?, -p.weight))).collect::<Result<Vec<_>>>()?;
            if let Some(n) = item.negative.as_deref().filter(|n| !n.trim().is_empty()) {
                negs.push((pipe.embed(n)?, 1.0));
            }
            neg.push(if negs.is_empty() { pipe.embed("")? } else { blend_pair(&negs)? });
        }
    }
    let rows = [neg, pos].concat();
    let context = Tensor::stack(&rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(), 0)?.to_dtype(pipe.dtype)?;
    let pooled = Tensor::stack(&rows.iter().map(|r| r.1.clone()).collect::<Vec<_>>(), 0)?.to_dtype(pipe.dtype)?;
    let guidance = if guided {
        let g: Vec<f32> = items.iter().map(|i| i.guidance.max(1.0)).collect();
        Some(Tensor::from_vec(g, (items.len(), 1, 1, 1), &pipe.device)?)
    } else {
        None
    };
    Ok(Sd3Context { context, pooled, guidance })
}

/// Stage `decode`: latents `[B, 16, h, w]` → images `[B, 3, H, W]` in `[0, 1]`,
/// one at a time (candle's VAE attention mixes batch rows).
pub fn decode(pipe: &Sd3Pipeline, latents: &Tensor) -> Result<Tensor> {
    let f = &pipe.vae_file;
    let z = latents.affine(1.0 / f.scaling_factor, f.shift_factor.unwrap_or(0.0))?;
    let images = (0..z.dim(0)?).map(|i| pipe.vae.decode(&z.narrow(0, i, 1)?)).collect::<candle_core::Result<Vec<_>>>()?;
    Ok(Tensor::cat(&images, 0)?.to_dtype(DType::F32)?.affine(0.5, 0.5)?.clamp(0f32, 1f32)?)
}

/// MMDiT with guidance: it predicts the velocity, so `x0 = x - sigma · v`.
struct Sd3Denoiser<'a> {
    pipe: &'a Sd3Pipeline,
    context: Sd3Context,
}

impl Denoiser for Sd3Denoiser<'_> {
    fn denoise(&mut self, x: &Tensor, sigma: f64) -> Result<Tensor> {
        let c = &self.context;
        let input = if c.guidance.is_some() { Tensor::cat(&[x, x], 0)? } else { x.clone() };
        let v = self.pipe.velocity(&input, sigma, c)?;
        let v = match &c.guidance {
            None => v,
            Some(g) => {
                let b = x.dim(0)?;
                let (neg, pos) = (v.narrow(0, 0, b)?, v.narrow(0, b, b)?);
                (&neg + (&pos - &neg)?.broadcast_mul(g)?)?
            }
        };
        Ok((x - v.affine(sigma, 0.0)?)?)
    }
}
