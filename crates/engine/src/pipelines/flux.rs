//! FLUX.1 schnell and dev on candle-transformers' `flux` model: CLIP-L's
//! pooled text and T5's hidden states condition a rectified-flow
//! transformer over latents packed into 2×2 patches; FLOW_EULER samples it.
//! schnell has no guidance embedding and no time shift; dev embeds the
//! guidance scale (no classifier-free second pass) and shifts time by the
//! image's token count. Both have no negative prompt: they are distilled.

pub mod keys;
pub mod load;

use std::path::Path;
use std::sync::Mutex;

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::flux::WithForward;
use candle_transformers::models::flux::model::Flux;
use candle_transformers::models::t5::{self, T5EncoderModel};
use imagegate_core::Sampler;

use super::{BatchRequest, ImageRequest, blend, flow_img2img_latents, img2img_sigmas, init_latents, init_pixels, split_batch};
use crate::error::{EngineError, Result};
use crate::loader::{PipelineKind, require_complete, weight_files};
use crate::lora::{self, LoraRef};
use crate::models::clip::{ClipTextConfig, ClipTextEncoder};
use crate::models::configs::read_json;
use crate::samplers::flow_euler::{FlowShift, flow_sigmas};
use crate::samplers::{Denoiser, NoiseSource, SampleArgs, SamplerImpl, StepHook, sampler_for};
use crate::tokenize::{ClipTokenizer, T5Tokenizer};
use load::{FluxVae, load_transformer, load_vae};

/// A loaded FLUX.1 pipeline.
pub struct FluxPipeline {
    clip_tokenizer: ClipTokenizer,
    clip: ClipTextEncoder,
    t5_tokenizer: T5Tokenizer,
    /// candle's T5 encoder needs `&mut self` (its position-bias cache).
    t5: Mutex<T5EncoderModel>,
    model: Flux,
    /// dev embeds the guidance scale; schnell has no such input.
    guidance_embed: bool,
    vae: FluxVae,
    latent_channels: usize,
    shift: FlowShift,
    dtype: DType,
    device: Device,
}

/// Text conditioning for a batch of `B` items.
pub struct FluxContext {
    /// T5 hidden states `[B, L, D]` (model dtype).
    txt: Tensor,
    /// Text position ids, all zero: `[B, L, 3]`.
    txt_ids: Tensor,
    /// CLIP pooled text `[B, P]` (model dtype).
    pooled: Tensor,
    /// dev's embedded guidance per item `[B]`; `None` for schnell.
    guidance: Option<Tensor>,
}

impl FluxContext {
    /// T5 hidden states `[B, L, D]`.
    pub fn txt(&self) -> &Tensor {
        &self.txt
    }

    /// CLIP pooled text `[B, P]`.
    pub fn pooled(&self) -> &Tensor {
        &self.pooled
    }
}

impl FluxPipeline {
    /// Loads a FluxPipeline folder (diffusers components, or BFL's
    /// `flux1-*.safetensors` / `ae.safetensors` at its root) at `dtype`.
    pub fn load(folder: &Path, device: &Device, dtype: DType) -> Result<Self> {
        Self::load_with_loras(folder, device, dtype, &[])
    }

    /// [`Self::load`] with `loras` merged into the transformer (diffusers/PEFT
    /// `transformer.…` keys or kohya `lora_unet_` keys on BFL names) and the
    /// text encoders (`text_encoder.…`, `lora_te1_…`).
    pub fn load_with_loras(folder: &Path, device: &Device, dtype: DType, loras: &[LoraRef]) -> Result<Self> {
        if require_complete(folder)? != PipelineKind::Flux {
            return Err(EngineError::invalid("model", format!("{} is not a FluxPipeline folder", folder.display())));
        }
        let files = |c: &str| weight_files(&folder.join(c), "model").ok_or_else(|| EngineError::bad_model(folder.join(c), "no weights"));
        let clip_cfg: ClipTextConfig = read_json(&folder.join("text_encoder/config.json"))?;
        let clip_tokenizer = ClipTokenizer::load(&folder.join("tokenizer"), clip_cfg.max_position_embeddings)?;
        let clip = ClipTextEncoder::new(lora::var_builder(&files("text_encoder")?, loras, lora::TEXT_ENCODER, dtype, device)?, clip_cfg)?;
        let t5_cfg: t5::Config = read_json(&folder.join("text_encoder_2/config.json"))?;
        // T5 overflows in f16 (its activations exceed 65504); bf16 keeps f32's range.
        let t5_dtype = if dtype == DType::F16 { DType::BF16 } else { dtype };
        let t5 = T5EncoderModel::load(lora::var_builder(&files("text_encoder_2")?, loras, lora::TEXT_ENCODER_2, t5_dtype, device)?, &t5_cfg)?;
        let (model, cfg) = load_transformer(folder, dtype, device, loras)?;
        // diffusers' default max_sequence_length: 256 for schnell, 512 for dev.
        let default_len = if cfg.guidance_embed { 512 } else { 256 };
        let t5_len = T5Tokenizer::model_max_length(&folder.join("tokenizer_2")).map_or(default_len, |n| n.min(default_len));
        let t5_tokenizer = T5Tokenizer::load(&folder.join("tokenizer_2"), t5_len)?;
        let (vae, latent_channels) = load_vae(folder, device)?;
        let sched = folder.join("scheduler/scheduler_config.json");
        let shift = if sched.is_file() {
            read_json(&sched)?
        } else if cfg.guidance_embed {
            FlowShift::dynamic()
        } else {
            FlowShift::constant(1.0)
        };
        tracing::info!(folder = %folder.display(), ?dtype, dev = cfg.guidance_embed, "loaded FLUX pipeline");
        Ok(Self { clip_tokenizer, clip, t5_tokenizer, t5: Mutex::new(t5), model, guidance_embed: cfg.guidance_embed, vae, latent_channels, shift, dtype, device: device.clone() })
    }

    /// Whether this is a guidance-embedding model (dev) rather than schnell.
    pub fn embeds_guidance(&self) -> bool {
        self.guidance_embed
    }

    /// Runs a batch; returns one `[3, H, W]` f32 image in `[0, 1]` per item.
    pub fn generate(&self, req: &BatchRequest, on_step: StepHook<'_>) -> Result<Vec<Tensor>> {
        if req.sampler != Sampler::FlowEuler {
            return Err(EngineError::invalid("sampler", format!("FLUX samples with FLOW_EULER only, not {}", req.sampler)));
        }
        super::refuse_masks(req, "FLUX")?;
        // The VAE's downscale (8×), then 2×2 patches.
        let f = self.vae.downscale();
        if !req.width.is_multiple_of(2 * f) || !req.height.is_multiple_of(2 * f) || req.width == 0 || req.height == 0 {
            return Err(EngineError::invalid("size", format!("width and height must be positive multiples of {} for FLUX", 2 * f)));
        }
        let (h, w) = (req.height / f, req.width / f);
        let context = encode_prompt(self, &req.items)?;
        let mut sigmas = schedule(&self.shift, req.steps, (h / 2) * (w / 2));
        let seeds: Vec<u64> = req.items.iter().map(|i| i.seed).collect();
        let mut noise = NoiseSource::new(&seeds);
        let sampler = sampler_for(Sampler::FlowEuler);
        let latents = match req.strength {
            None => init_latents(&mut noise, [self.latent_channels, h, w], sampler.init_noise_sigma(&sigmas), &self.device)?,
            Some(strength) => {
                sigmas = img2img_sigmas(&sigmas, strength);
                // Posterior noise is drawn before the latent noise, as for SD.
                let z0 = self.vae.encode(&init_pixels(&req.items, &self.device)?, &mut noise)?;
                flow_img2img_latents(&z0, &mut noise, sigmas[0])?
            }
        };
        let mut denoiser = FluxDenoiser { pipe: self, img_ids: img_ids(req.items.len(), h / 2, w / 2, &self.device)?.to_dtype(self.dtype)?, context };
        let mut args = SampleArgs { denoiser: &mut denoiser, noise: &mut noise, on_step };
        let latents = denoise(sampler.as_ref(), latents, &sigmas, &mut args)?;
        split_batch(&decode(&self.vae, &latents)?)
    }

    /// One text's T5 states `[L, D]` and CLIP pooled vector `[P]`, in f32.
    fn embed(&self, text: &str) -> Result<(Tensor, Tensor)> {
        let ids = self.clip_tokenizer.encode(text)?;
        let ids = Tensor::from_vec(ids.clone(), (1, ids.len()), &self.device)?;
        let pooled = self.clip.forward(&ids)?.pooled.get(0)?.to_dtype(DType::F32)?;
        let ids = self.t5_tokenizer.encode(text)?;
        let ids = Tensor::from_vec(ids.clone(), (1, ids.len()), &self.device)?;
        let mut t5 = self.t5.lock().map_err(|_| EngineError::Stopped)?;
        let states = t5.forward(&ids)?.get(0)?.to_dtype(DType::F32)?;
        Ok((states, pooled))
    }
}

/// Stage `encode_prompt`: weighted prompt parts blended into T5 states and
/// pooled CLIP text per item. Negative prompts have no effect on FLUX.1.
pub fn encode_prompt(pipe: &FluxPipeline, items: &[ImageRequest]) -> Result<FluxContext> {
    let (mut txt, mut pooled) = (Vec::new(), Vec::new());
    for item in items {
        let parts = item.prompt.iter().filter(|p| p.weight > 0.0).map(|p| Ok((pipe.embed(&p.text)?, p.weight))).collect::<Result<Vec<_>>>()?;
        txt.push(blend(&parts.iter().map(|((t, _), w)| (t.clone(), *w)).collect::<Vec<_>>())?);
        pooled.push(blend(&parts.iter().map(|((_, p), w)| (p.clone(), *w)).collect::<Vec<_>>())?);
    }
    let txt = Tensor::stack(&txt, 0)?.to_dtype(pipe.dtype)?;
    let (b, l, _) = txt.dims3()?;
    let txt_ids = Tensor::zeros((b, l, 3), pipe.dtype, &pipe.device)?;
    let pooled = Tensor::stack(&pooled, 0)?.to_dtype(pipe.dtype)?;
    let guidance = if pipe.guidance_embed {
        let g: Vec<f32> = items.iter().map(|i| i.guidance).collect();
        Some(Tensor::from_vec(g, b, &pipe.device)?.to_dtype(pipe.dtype)?)
    } else {
        None
    };
    Ok(FluxContext { txt, txt_ids, pooled, guidance })
}

/// Stage `schedule`: `steps + 1` flow sigmas from 1 to 0, shifted for an
/// image of `seq_len` latent tokens (no shift for schnell).
pub fn schedule(shift: &FlowShift, steps: usize, seq_len: usize) -> Vec<f64> {
    flow_sigmas(steps, shift.shift_for(seq_len))
}

/// Stage `denoise`: the sampler over the transformer.
pub fn denoise(sampler: &dyn SamplerImpl, latents: Tensor, sigmas: &[f64], args: &mut SampleArgs<'_>) -> Result<Tensor> {
    sampler.sample(latents, sigmas, args)
}

/// Stage `decode`: latents `[B, C, h, w]` → images `[B, 3, H, W]` in `[0, 1]`,
/// one image at a time (candle's VAE attention mixes batch rows).
pub fn decode(vae: &FluxVae, latents: &Tensor) -> Result<Tensor> {
    let images = (0..latents.dim(0)?).map(|i| vae.decode(&latents.narrow(0, i, 1)?)).collect::<Result<Vec<_>>>()?;
    Ok(Tensor::cat(&images, 0)?.to_dtype(DType::F32)?.affine(0.5, 0.5)?.clamp(0f32, 1f32)?)
}

/// Latents `[B, C, h, w]` → tokens `[B, (h/2)(w/2), 4C]`, each a 2×2 patch
/// flattened channel-major (`c, ph, pw`), as BFL and diffusers pack them.
pub fn pack_latents(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    Ok(x.reshape((b, c, h / 2, 2, w / 2, 2))?.permute((0, 2, 4, 1, 3, 5))?.reshape((b, (h / 2) * (w / 2), c * 4))?)
}

/// The inverse of [`pack_latents`]: `[B, (h/2)(w/2), 4C]` → `[B, C, h, w]`.
pub fn unpack_latents(x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let (b, _, c4) = x.dims3()?;
    Ok(x.reshape((b, h / 2, w / 2, c4 / 4, 2, 2))?.permute((0, 3, 1, 4, 2, 5))?.reshape((b, c4 / 4, h, w))?)
}

/// Image token positions `[B, rows·cols, 3]` (f32): `(0, row, col)` each.
fn img_ids(b: usize, rows: usize, cols: usize, device: &Device) -> Result<Tensor> {
    let ids: Vec<f32> = (0..rows).flat_map(|r| (0..cols).flat_map(move |c| [0.0, r as f32, c as f32])).collect();
    Ok(Tensor::from_vec(ids, (1, rows * cols, 3), device)?.repeat((b, 1, 1))?)
}

/// The transformer as a denoiser: it predicts the velocity `eps - x0`, so
/// `x0 = x - sigma · v`.
struct FluxDenoiser<'a> {
    pipe: &'a FluxPipeline,
    img_ids: Tensor,
    context: FluxContext,
}

impl Denoiser for FluxDenoiser<'_> {
    fn denoise(&mut self, x: &Tensor, sigma: f64) -> Result<Tensor> {
        let (b, _, h, w) = x.dims4()?;
        let p = self.pipe;
        let c = &self.context;
        let img = pack_latents(x)?.to_dtype(p.dtype)?;
        let t = Tensor::full(sigma as f32, b, &p.device)?.to_dtype(p.dtype)?;
        let v = p.model.forward(&img, &self.img_ids, &c.txt, &c.txt_ids, &t, &c.pooled, c.guidance.as_ref())?;
        let v = unpack_latents(&v.to_dtype(DType::F32)?, h, w)?;
        Ok((x - v.affine(sigma, 0.0)?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_latents_round_trips_and_groups_2x2_patches() {
        let x = Tensor::arange(0f32, 2.0 * 3.0 * 4.0 * 6.0, &Device::Cpu).unwrap().reshape((2, 3, 4, 6)).unwrap();
        let p = pack_latents(&x).unwrap();
        assert_eq!(p.dims(), &[2, 6, 12]);
        // Token 0 of item 0, channel 0: pixels (0,0), (0,1), (1,0), (1,1).
        let first: Vec<f32> = p.get(0).unwrap().get(0).unwrap().narrow(0, 0, 4).unwrap().to_vec1().unwrap();
        assert_eq!(first, vec![0.0, 1.0, 6.0, 7.0]);
        let back = unpack_latents(&p, 4, 6).unwrap();
        assert_eq!(back.flatten_all().unwrap().to_vec1::<f32>().unwrap(), x.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    }
}
