//! Stable Diffusion 1.x / 2.x (and SD-Turbo): CLIP text encoder, UNet,
//! KL VAE, epsilon or v-prediction, classifier-free guidance with negative
//! prompts, every sampler, batches of independently seeded images.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::stable_diffusion::unet_2d::UNet2DConditionModel;
use candle_transformers::models::stable_diffusion::vae::AutoEncoderKL;
use imagegate_core::Sampler;

use super::{BatchRequest, ImageRequest, blend, init_latents, schedule, split_batch};
use crate::error::{EngineError, Result};
use crate::loader::{missing_files, weight_files};
use crate::models::clip::{ClipTextConfig, ClipTextEncoder};
use crate::models::configs::{UNetFile, VaeFile, read_json};
use crate::samplers::schedule::{PredictionType, SchedulerConfig};
use crate::samplers::{Denoiser, NoiseSchedule, NoiseSource, SampleArgs, StepHook, sampler_for};
use crate::tokenize::ClipTokenizer;

/// A loaded SD 1.x/2.x pipeline.
pub struct SdPipeline {
    tokenizer: ClipTokenizer,
    text_encoder: ClipTextEncoder,
    unet: UNet2DConditionModel,
    unet_in_channels: usize,
    vae: AutoEncoderKL,
    vae_file: VaeFile,
    schedule: NoiseSchedule,
    dtype: DType,
    device: Device,
}

fn load_vb(dir: &Path, stem: &str, dtype: DType, device: &Device) -> Result<VarBuilder<'static>> {
    let files = weight_files(dir, stem).ok_or_else(|| EngineError::MissingWeights {
        model: dir.parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        missing: format!("{stem}.safetensors"),
        looked_in: dir.display().to_string(),
    })?;
    // SAFETY: the files are memory-mapped read-only; the engine never writes model folders.
    Ok(unsafe { VarBuilder::from_mmaped_safetensors(&files, dtype, device)? })
}

impl SdPipeline {
    /// Loads every component of `folder` from its own `config.json`, at `dtype` on `device`.
    pub fn load(folder: &Path, device: &Device, dtype: DType) -> Result<Self> {
        let missing = missing_files(folder);
        if !missing.is_empty() {
            return Err(EngineError::MissingWeights {
                model: folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                missing: missing.join(", "),
                looked_in: folder.display().to_string(),
            });
        }
        let te_cfg: ClipTextConfig = read_json(&folder.join("text_encoder/config.json"))?;
        let max_len = te_cfg.max_position_embeddings;
        let text_encoder = ClipTextEncoder::new(load_vb(&folder.join("text_encoder"), "model", dtype, device)?, te_cfg)?;
        let tokenizer = ClipTokenizer::load(&folder.join("tokenizer"), max_len)?;
        let unet_path = folder.join("unet/config.json");
        let unet_file: UNetFile = read_json(&unet_path)?;
        if unet_file.addition_embed_type.is_some() {
            return Err(EngineError::bad_model(&unet_path, "has added conditioning (SDXL); not an SD 1.x/2.x UNet"));
        }
        let unet_vb = load_vb(&folder.join("unet"), "diffusion_pytorch_model", dtype, device)?;
        let unet = UNet2DConditionModel::new(unet_vb, unet_file.in_channels, unet_file.out_channels, false, unet_file.to_candle(&unet_path)?)?;
        let vae_file: VaeFile = read_json(&folder.join("vae/config.json"))?;
        let vae_vb = load_vb(&folder.join("vae"), "diffusion_pytorch_model", dtype, device)?;
        let vae = AutoEncoderKL::new(vae_vb, vae_file.in_channels, vae_file.out_channels, vae_file.to_candle())?;
        let sched_path = folder.join("scheduler/scheduler_config.json");
        let sched_cfg = if sched_path.is_file() { SchedulerConfig::load(&sched_path)? } else { SchedulerConfig::default() };
        tracing::info!(folder = %folder.display(), ?dtype, prediction = ?sched_cfg.prediction_type, "loaded SD pipeline");
        Ok(Self {
            tokenizer,
            text_encoder,
            unet,
            unet_in_channels: unet_file.in_channels,
            vae,
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
        if req.width % f != 0 || req.height % f != 0 || req.width == 0 || req.height == 0 {
            return Err(EngineError::invalid("size", format!("width and height must be positive multiples of {f}")));
        }
        let context = encode_prompt(self, &req.items)?;
        let sampler = sampler_for(req.sampler);
        let sigmas = schedule(sampler.as_ref(), &self.schedule, req.steps, req.spacing);
        let seeds: Vec<u64> = req.items.iter().map(|i| i.seed).collect();
        let mut noise = NoiseSource::new(&seeds);
        let shape = [self.unet_in_channels, req.height / f, req.width / f];
        let latents = init_latents(&mut noise, shape, sampler.init_noise_sigma(&sigmas), &self.device)?;
        let mut denoiser = SdDenoiser { pipe: self, context };
        let mut args = SampleArgs { denoiser: &mut denoiser, noise: &mut noise, on_step };
        let latents = sampler.sample(latents, &sigmas, &mut args)?;
        split_batch(&decode(&self.vae, &latents, self.vae_file.scaling_factor, self.dtype)?)
    }
}

/// Text conditioning for a batch: `[B, S, D]` (no guidance) or, with
/// guidance, `[2B, S, D]` negatives first plus per-item scales `[B, 1, 1, 1]`.
pub struct Context {
    embeddings: Tensor,
    guidance: Option<Tensor>,
}

/// Stage `encode_prompt`: blends each item's weighted parts; the negative
/// side blends negative-weight parts and the negative prompt (or "").
pub fn encode_prompt(pipe: &SdPipeline, items: &[ImageRequest]) -> Result<Context> {
    let embed = |text: &str| -> Result<Tensor> {
        let ids = pipe.tokenizer.encode(text)?;
        let ids = Tensor::from_vec(ids.clone(), (1, ids.len()), &pipe.device)?;
        // [1, S, D] -> [S, D]
        Ok(pipe.text_encoder.forward(&ids)?.last_hidden.get(0)?)
    };
    let guided = items.iter().any(|i| i.guidance > 1.0);
    let mut pos = Vec::with_capacity(items.len());
    let mut neg = Vec::with_capacity(items.len());
    for item in items {
        let parts = item.prompt.iter().filter(|p| p.weight > 0.0).map(|p| Ok((embed(&p.text)?, p.weight))).collect::<Result<Vec<_>>>()?;
        pos.push(blend(&parts)?);
        if guided {
            let mut negs = item.prompt.iter().filter(|p| p.weight < 0.0).map(|p| Ok((embed(&p.text)?, -p.weight))).collect::<Result<Vec<_>>>()?;
            if let Some(n) = item.negative.as_deref().filter(|n| !n.trim().is_empty()) {
                negs.push((embed(n)?, 1.0));
            }
            if negs.is_empty() {
                negs.push((embed("")?, 1.0));
            }
            neg.push(blend(&negs)?);
        }
    }
    let embeddings = Tensor::stack(&[neg, pos].concat(), 0)?.to_dtype(pipe.dtype)?;
    let guidance = if guided {
        // Items at or below 1 get exactly their conditional prediction.
        let g: Vec<f32> = items.iter().map(|i| i.guidance.max(1.0)).collect();
        Some(Tensor::from_vec(g, (items.len(), 1, 1, 1), &pipe.device)?)
    } else {
        None
    };
    Ok(Context { embeddings, guidance })
}

/// The UNet with guidance and the k-diffusion input/output scalings.
struct SdDenoiser<'a> {
    pipe: &'a SdPipeline,
    context: Context,
}

impl Denoiser for SdDenoiser<'_> {
    fn denoise(&mut self, x: &Tensor, sigma: f64) -> Result<Tensor> {
        let pipe = self.pipe;
        let b = x.dim(0)?;
        let c_in = 1.0 / (sigma * sigma + 1.0).sqrt();
        let t = pipe.schedule.sigma_to_t(sigma);
        // [B, C, h, w] at unit variance, in the weights' dtype.
        let x_in = x.affine(c_in, 0.0)?.to_dtype(pipe.dtype)?;
        let out = match &self.context.guidance {
            Some(g) => {
                let both = Tensor::cat(&[&x_in, &x_in], 0)?;
                let o = pipe.unet.forward(&both, t, &self.context.embeddings)?.to_dtype(DType::F32)?;
                let (uncond, cond) = (o.narrow(0, 0, b)?, o.narrow(0, b, b)?);
                (&uncond + (&cond - &uncond)?.broadcast_mul(g)?)?
            }
            None => pipe.unet.forward(&x_in, t, &self.context.embeddings)?.to_dtype(DType::F32)?,
        };
        Ok(match pipe.schedule.config.prediction_type {
            PredictionType::Epsilon => (x - out.affine(sigma, 0.0)?)?,
            // x0 = c_skip x + c_out v with c_skip = 1/(σ²+1), c_out = -σ/sqrt(σ²+1).
            PredictionType::VPrediction => (x.affine(1.0 / (sigma * sigma + 1.0), 0.0)? - out.affine(sigma * c_in, 0.0)?)?,
            PredictionType::Sample => out,
        })
    }
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
