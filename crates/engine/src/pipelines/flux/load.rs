//! Loading FLUX's parts from either layout: the transformer from
//! `transformer/` (diffusers names, mapped by [`super::keys`]) or a root
//! `flux1-*.safetensors` (BFL names), its config read off the tensor
//! shapes (BFL files carry none); the autoencoder from `vae/` (diffusers
//! `AutoencoderKL`) or a root `ae.safetensors` (BFL names).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::flux::autoencoder::{AutoEncoder, Config as AeConfig, Encoder};
use candle_transformers::models::flux::model::{Config, Flux};
use candle_transformers::models::stable_diffusion::vae::AutoEncoderKL;

use super::keys::{bfl_to_diffusers, diffusers_to_bfl, is_diffusers};
use crate::error::{EngineError, Result};
use crate::loader::{bfl_file, weight_files};
use crate::lora::{self, LoraRef};
use crate::models::configs::{VaeFile, read_json};
use crate::models::vae_encoder::VaeEncoder;
use crate::pipelines::sample_posterior;
use crate::samplers::NoiseSource;

/// The FLUX autoencoder in whichever layout the folder has; both run in f32.
pub enum FluxVae {
    /// diffusers `vae/` (16 latent channels, no quant convs), with its config.
    Diffusers(AutoEncoderKL, VaeEncoder, VaeFile),
    /// BFL `ae.safetensors`; scale and shift are applied inside candle's
    /// module when decoding, by us when encoding (candle's samples unseeded).
    Bfl(AutoEncoder, Encoder, AeConfig),
}

impl FluxVae {
    /// Images `[B, 3, H, W]` in `[-1, 1]` → latents `[B, C, h, w]` as the
    /// transformer sees them, the posterior sampled with seeded noise.
    pub fn encode(&self, images: &Tensor, noise: &mut NoiseSource) -> Result<Tensor> {
        match self {
            Self::Diffusers(_, enc, f) => {
                let (mean, logvar) = enc.moments(images)?;
                sample_posterior(&mean, &logvar, noise, f.shift_factor.unwrap_or(0.0), f.scaling_factor)
            }
            Self::Bfl(_, enc, cfg) => {
                let moments = images.apply(enc)?;
                let c = moments.dim(1)? / 2;
                sample_posterior(&moments.narrow(1, 0, c)?, &moments.narrow(1, c, c)?, noise, cfg.shift_factor, cfg.scale_factor)
            }
        }
    }

    /// How many times the autoencoder halves each side (8 in every released
    /// FLUX; read from its config like every other size).
    pub fn downscale(&self) -> usize {
        match self {
            Self::Diffusers(.., f) => f.downscale(),
            Self::Bfl(.., cfg) => 1 << cfg.ch_mult.len().saturating_sub(1),
        }
    }

    /// Latents `[1, C, h, w]` as the transformer sees them → image `[1, 3, H, W]` in `[-1, 1]`.
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Self::Diffusers(vae, _, file) => {
                let z = z.affine(1.0 / file.scaling_factor, file.shift_factor.unwrap_or(0.0))?;
                vae.decode(&z)?
            }
            Self::Bfl(ae, ..) => ae.decode(z)?,
        })
    }
}

fn missing(folder: &Path, what: &str) -> EngineError {
    EngineError::MissingWeights {
        model: folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        missing: what.to_string(),
        looked_in: folder.display().to_string(),
    }
}

fn load_all(files: &[PathBuf]) -> Result<HashMap<String, Tensor>> {
    let mut all = HashMap::new();
    for f in files {
        all.extend(candle_core::safetensors::load(f, &Device::Cpu)?);
    }
    Ok(all)
}

fn dim(t: &HashMap<String, Tensor>, name: &str, d: usize) -> Result<usize> {
    Ok(t.get(name).ok_or_else(|| EngineError::invalid("transformer", format!("no `{name}`")))?.dim(d)?)
}

fn count(t: &HashMap<String, Tensor>, prefix: &str) -> usize {
    t.keys().filter_map(|n| n.strip_prefix(prefix)?.split('.').next()?.parse::<usize>().ok()).map(|i| i + 1).max().unwrap_or(0)
}

/// The transformer's config from its (BFL-named) tensors; the rope axes
/// come from `transformer/config.json` when there is one, else BFL's
/// split of the head width (16, 56, 56 of 128).
fn flux_config(t: &HashMap<String, Tensor>, folder: &Path) -> Result<Config> {
    let hidden = dim(t, "img_in.weight", 0)?;
    let head_dim = dim(t, "double_blocks.0.img_attn.norm.query_norm.scale", 0)?;
    let axes_dim = match read_json::<serde_json::Value>(&folder.join("transformer/config.json")) {
        Ok(v) => v.get("axes_dims_rope").and_then(|a| serde_json::from_value(a.clone()).ok()),
        Err(_) => None,
    }
    .unwrap_or_else(|| vec![head_dim / 8, head_dim * 7 / 16, head_dim * 7 / 16]);
    Ok(Config {
        in_channels: dim(t, "img_in.weight", 1)?,
        vec_in_dim: dim(t, "vector_in.in_layer.weight", 1)?,
        context_in_dim: dim(t, "txt_in.weight", 1)?,
        hidden_size: hidden,
        mlp_ratio: dim(t, "double_blocks.0.img_mlp.0.weight", 0)? as f64 / hidden as f64,
        num_heads: hidden / head_dim,
        depth: count(t, "double_blocks."),
        depth_single_blocks: count(t, "single_blocks."),
        axes_dim,
        theta: 10_000,
        qkv_bias: t.contains_key("double_blocks.0.img_attn.qkv.bias"),
        guidance_embed: t.contains_key("guidance_in.in_layer.weight"),
    })
}

/// The transformer at `dtype`, and whether it embeds guidance (dev) or not (schnell).
pub fn load_transformer(folder: &Path, dtype: DType, device: &Device, loras: &[LoraRef]) -> Result<(Flux, Config)> {
    let files = match weight_files(&folder.join("transformer"), "diffusion_pytorch_model") {
        Some(f) => f,
        None => vec![bfl_file(folder, "transformer").ok_or_else(|| missing(folder, "transformer/diffusion_pytorch_model.safetensors or flux1-*.safetensors"))?],
    };
    // Read into memory: the diffusers layout must be re-fused anyway.
    let mut tensors = load_all(&files)?;
    if !loras.is_empty() {
        // diffusers/PEFT LoRAs address split q/k/v: merge them before fusing.
        let mut split = if is_diffusers(&tensors) { tensors } else { bfl_to_diffusers(&tensors)? };
        lora::merge_into(&mut split, loras, lora::TRANSFORMER)?;
        tensors = split;
    }
    if is_diffusers(&tensors) {
        tensors = diffusers_to_bfl(tensors)?;
    }
    // kohya FLUX LoRAs (`lora_unet_double_blocks_0_img_attn_qkv`) address BFL's fused names.
    lora::merge_into(&mut tensors, loras, lora::UNET)?;
    let cfg = flux_config(&tensors, folder)?;
    let vb = VarBuilder::from_tensors(tensors, dtype, device);
    Ok((Flux::new(&cfg, vb)?, cfg))
}

/// The autoencoder config of a BFL `ae.safetensors`, from its shapes.
fn ae_config(t: &HashMap<String, Tensor>, folder: &Path) -> Result<AeConfig> {
    let ch = dim(t, "encoder.conv_in.weight", 0)?;
    let levels = count(t, "encoder.down.");
    let ch_mult = (0..levels).map(|i| Ok(dim(t, &format!("encoder.down.{i}.block.0.conv1.weight"), 0)? / ch)).collect::<Result<Vec<_>>>()?;
    let file: Option<VaeFile> = read_json(&folder.join("vae/config.json")).ok();
    Ok(AeConfig {
        resolution: 256,
        in_channels: 3,
        ch,
        out_ch: 3,
        ch_mult,
        num_res_blocks: count(t, "encoder.down.0.block."),
        z_channels: dim(t, "decoder.conv_in.weight", 1)?,
        scale_factor: file.as_ref().map_or(0.3611, |f| f.scaling_factor),
        shift_factor: file.and_then(|f| f.shift_factor).unwrap_or(0.1159),
    })
}

/// The autoencoder (f32) and its latent channel count.
pub fn load_vae(folder: &Path, device: &Device) -> Result<(FluxVae, usize)> {
    let dir = folder.join("vae");
    if let Some(files) = weight_files(&dir, "diffusion_pytorch_model") {
        let file: VaeFile = read_json(&dir.join("config.json"))?;
        let vb = crate::lora::var_builder(&files, &[], crate::lora::UNET, DType::F32, device)?;
        let vae = AutoEncoderKL::new(vb.clone(), file.in_channels, file.out_channels, file.to_candle())?;
        let enc = VaeEncoder::new(vb, &file)?;
        let z = file.latent_channels;
        return Ok((FluxVae::Diffusers(vae, enc, file), z));
    }
    let path = bfl_file(folder, "vae").ok_or_else(|| missing(folder, "vae/diffusion_pytorch_model.safetensors or ae.safetensors"))?;
    let tensors = load_all(&[path])?;
    let cfg = ae_config(&tensors, folder)?;
    let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
    let (ae, enc) = (AutoEncoder::new(&cfg, vb.clone())?, Encoder::new(&cfg, vb.pp("encoder"))?);
    let z = cfg.z_channels;
    Ok((FluxVae::Bfl(ae, enc, cfg), z))
}
