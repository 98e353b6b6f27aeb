//! Tiny models with random weights in the real diffusers on-disk layout
//! (`model_index.json`, one folder per component with `config.json` and
//! safetensors, a CLIP BPE tokenizer), for tests here and in other crates.
//! Tensor names are exactly those the loaders request, because the
//! fixture builds each network once over a recording `VarMap` and saves
//! what it recorded; every tensor (biases and norms too) is then redrawn
//! from a seeded RNG so files are reproducible and comparisons not blind.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use candle_transformers::models::stable_diffusion::vae::AutoEncoderKL;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};
use serde_json::json;

use crate::error::{EngineError, Result};
use crate::models::clip::{ClipTextConfig, ClipTextEncoder};
use crate::models::configs::{UNetFile, VaeFile};
use crate::models::unet::UNet;
use crate::tokenize::{BOS, EOS, build_clip_tokenizer};

mod checkpoint;
mod flux;
mod lora;
mod sd3;
mod sdxl;

pub use checkpoint::{write_checkpoint, write_sai_file};
pub use flux::{FluxVariant, TinyFlux, write_tiny_flux, write_tiny_flux_lora};
pub use lora::{LoraLayout, write_tiny_lora};
pub use sd3::{TinySd3, write_tiny_sd3, write_tiny_sd3_with};
pub use sdxl::{TinySdxl, write_tiny_sdxl, write_tiny_sdxl_with};

/// Which SD generation the fixture imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TinySdVariant {
    /// SD 1.x: quick-gelu CLIP, conv projections, pad with end-of-text.
    Sd15,
    /// SD 2.x: gelu CLIP, linear projections, pad with `!`.
    Sd21,
}

/// What tiny SD pipeline to write.
#[derive(Debug, Clone)]
pub struct TinySd {
    /// The generation imitated.
    pub variant: TinySdVariant,
    /// `epsilon` or `v_prediction`.
    pub prediction_type: &'static str,
    /// Weight dtype on disk (F32, F16 or BF16).
    pub dtype: DType,
    /// Seed of the weights.
    pub seed: u64,
    /// Narrower (8/16-channel) UNet with attention only at half the latent
    /// resolution, and a thin 16x VAE ([`vae_channels`]): fast enough on a
    /// CPU for the full sizes clients ask for (512 px and up), where the
    /// default fixture costs seconds per step and per decode.
    pub lean: bool,
    /// An inpainting pipeline (`StableDiffusionInpaintPipeline`, a UNet
    /// with 9 inputs: latents, mask, masked-image latents).
    pub inpaint: bool,
}

impl Default for TinySd {
    fn default() -> Self {
        Self { variant: TinySdVariant::Sd15, prediction_type: "epsilon", dtype: DType::F32, seed: 0, lean: false, inpaint: false }
    }
}

/// VAE block widths. Four levels (8x downscale) as in every released
/// model; `lean` fixtures have five 4-channel levels (16x, and one ResNet
/// per block, 4 GroupNorm groups): the latent, and with it every
/// attention's token count, shrinks fourfold, and the full-resolution
/// decoder layers, which dominate a CPU run at 1024 px, are as thin as a
/// GroupNorm allows. The pipelines read the downscale from
/// `vae/config.json`, so they run either unchanged.
pub(crate) fn vae_channels(lean: bool) -> Vec<usize> {
    if lean { vec![4; 5] } else { vec![16, 16, 32, 32] }
}

/// `down_block_types`/`up_block_types` for a VAE of `levels` blocks.
pub(crate) fn vae_blocks(levels: usize) -> (Vec<&'static str>, Vec<&'static str>) {
    (vec!["DownEncoderBlock2D"; levels], vec!["UpDecoderBlock2D"; levels])
}

/// Words the tiny vocabulary has merges for (anything else tokenises by byte).
pub(crate) const WORDS: [&str; 12] = ["a", "photo", "of", "cat", "dog", "red", "blue", "the", "painting", "sky", "in", "night"];

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EngineError + '_ {
    move |source| EngineError::Io { path: path.display().to_string(), source }
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    // Serialising a `Value` cannot fail.
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    std::fs::write(path, text).map_err(io(path))
}

/// Writes a tiny SD 1.x/2.x pipeline folder at `dir` (created if needed).
pub fn write_tiny_sd(dir: &Path, opts: &TinySd) -> Result<()> {
    for sub in ["unet", "vae", "text_encoder", "tokenizer", "scheduler"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(io(dir))?;
    }
    let sd21 = opts.variant == TinySdVariant::Sd21;
    write_json(
        &dir.join("model_index.json"),
        &json!({
            "_class_name": if opts.inpaint { "StableDiffusionInpaintPipeline" } else { "StableDiffusionPipeline" },
            "_diffusers_version": "0.31.0",
            "scheduler": ["diffusers", "PNDMScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
        }),
    )?;
    write_json(
        &dir.join("scheduler/scheduler_config.json"),
        &json!({
            "_class_name": "PNDMScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
            "beta_schedule": "scaled_linear", "prediction_type": opts.prediction_type, "steps_offset": 1,
            "set_alpha_to_one": false, "skip_prk_steps": true,
        }),
    )?;
    let vocab_len = write_tokenizer(&dir.join("tokenizer"), if sd21 { "!" } else { EOS })?;
    let hidden = 32;
    let clip = json!({
        "architectures": ["CLIPTextModel"], "vocab_size": vocab_len, "hidden_size": hidden, "intermediate_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 77,
        "hidden_act": if sd21 { "gelu" } else { "quick_gelu" }, "layer_norm_eps": 1e-5,
        "projection_dim": hidden, "bos_token_id": vocab_len - 2, "eos_token_id": vocab_len - 1, "pad_token_id": 1,
    });
    write_json(&dir.join("text_encoder/config.json"), &clip)?;
    let (channels, down, up, heads) = if opts.lean {
        (json!([8, 16]), json!(["DownBlock2D", "CrossAttnDownBlock2D"]), json!(["CrossAttnUpBlock2D", "UpBlock2D"]), json!([1, 2]))
    } else {
        let heads = if sd21 { json!([2, 4]) } else { json!(2) };
        (json!([32, 64]), json!(["CrossAttnDownBlock2D", "DownBlock2D"]), json!(["UpBlock2D", "CrossAttnUpBlock2D"]), heads)
    };
    let unet = json!({
        "_class_name": "UNet2DConditionModel", "in_channels": if opts.inpaint { 9 } else { 4 }, "out_channels": 4, "sample_size": 8,
        "block_out_channels": channels, "down_block_types": down, "up_block_types": up, "layers_per_block": 1,
        "attention_head_dim": heads, "cross_attention_dim": hidden,
        "norm_num_groups": 8, "norm_eps": 1e-5, "use_linear_projection": sd21, "flip_sin_to_cos": true, "freq_shift": 0,
    });
    write_json(&dir.join("unet/config.json"), &unet)?;
    let vae_widths = vae_channels(opts.lean);
    let (vae_down, vae_up) = vae_blocks(vae_widths.len());
    let vae = json!({
        "_class_name": "AutoencoderKL", "in_channels": 3, "out_channels": 3, "latent_channels": 4,
        "block_out_channels": vae_widths, "layers_per_block": if opts.lean { 0 } else { 1 }, "norm_num_groups": if opts.lean { 4 } else { 8 },
        "scaling_factor": 0.18215, "sample_size": 64,
        "down_block_types": vae_down, "up_block_types": vae_up,
    });
    write_json(&dir.join("vae/config.json"), &vae)?;

    let mut rng = StdRng::seed_from_u64(opts.seed);
    let clip_cfg: ClipTextConfig = serde_json::from_value(clip).map_err(|e| EngineError::bad_model(dir, e))?;
    save_random(&dir.join("text_encoder/model.safetensors"), opts.dtype, &mut rng, |vb| ClipTextEncoder::new(vb, clip_cfg).map(drop))?;
    write_unet_and_vae(dir, unet, vae, opts.dtype, &mut rng)
}

/// Saves random UNet and VAE weights for the given configs.
fn write_unet_and_vae(dir: &Path, unet: serde_json::Value, vae: serde_json::Value, dtype: DType, rng: &mut StdRng) -> Result<()> {
    let unet_file: UNetFile = serde_json::from_value(unet).map_err(|e| EngineError::bad_model(dir, e))?;
    save_random(&dir.join("unet/diffusion_pytorch_model.safetensors"), dtype, rng, |vb| UNet::new(vb, &unet_file).map(drop))?;
    let vae_file: VaeFile = serde_json::from_value(vae).map_err(|e| EngineError::bad_model(dir, e))?;
    save_random(&dir.join("vae/diffusion_pytorch_model.safetensors"), dtype, rng, |vb| {
        AutoEncoderKL::new(vb, vae_file.in_channels, vae_file.out_channels, vae_file.to_candle()).map(drop).map_err(Into::into)
    })
}

/// Builds a network over a recording `VarMap`, redraws every tensor from
/// `rng` (in name order, so files are reproducible) and saves them.
fn save_random(path: &Path, dtype: DType, rng: &mut StdRng, build: impl FnOnce(VarBuilder) -> Result<()>) -> Result<()> {
    let out = random_tensors(dtype, rng, &[], build)?;
    candle_core::safetensors::save(&out, path)?;
    Ok(())
}

/// The tensors a network requests, redrawn from `rng` in name order: small
/// random biases, norm weights (and RMS `scale`s) near 1, the rest scaled by
/// fan-in.
/// `prefill` names tensors created before `build` runs, for networks that
/// only load optional parts they find (`contains_tensor`).
fn random_tensors(dtype: DType, rng: &mut StdRng, prefill: &[(String, usize)], build: impl FnOnce(VarBuilder) -> Result<()>) -> Result<HashMap<String, Tensor>> {
    let varmap = VarMap::new();
    for (name, len) in prefill {
        varmap.get(*len, name, candle_nn::Init::Const(1.0), DType::F32, &Device::Cpu)?;
    }
    build(VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu))?;
    let data = varmap.data().lock().map_err(|_| EngineError::Stopped)?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut out = HashMap::new();
    for name in names {
        let shape = data[name].as_tensor().dims().to_vec();
        let n: usize = shape.iter().product();
        let fan_in: usize = shape.iter().skip(1).product::<usize>().max(1);
        let (scale, offset) = if name.ends_with("bias") {
            (0.05, 0.0)
        } else if (name.contains("norm") && name.ends_with("weight")) || name.ends_with("norm.scale") {
            (0.1, 1.0)
        } else {
            (1.0 / (fan_in as f64).sqrt(), 0.0)
        };
        let values: Vec<f32> = (0..n)
            .map(|_| {
                let z: f64 = StandardNormal.sample(rng);
                (offset + scale * z) as f32
            })
            .collect();
        out.insert(name.clone(), Tensor::from_vec(values, shape, &Device::Cpu)?.to_dtype(dtype)?);
    }
    Ok(out)
}

/// Writes `vocab.json`, `merges.txt`, `tokenizer.json` and
/// `tokenizer_config.json` for a small CLIP-style BPE; returns the vocab size.
fn write_tokenizer(dir: &Path, pad_token: &str) -> Result<usize> {
    // GPT-2/CLIP byte-to-unicode table: printable bytes map to themselves.
    let mut chars: Vec<char> = (33u32..=126).chain(161..=172).chain(174..=255).filter_map(char::from_u32).collect();
    let mut extra = 0;
    for b in 0u32..256 {
        if !(33..=126).contains(&b) && !(161..=172).contains(&b) && !(174..=255).contains(&b) {
            chars.push(char::from_u32(256 + extra).unwrap_or('?'));
            extra += 1;
        }
    }
    let mut vocab: Vec<String> = chars.iter().map(|c| c.to_string()).collect();
    vocab.extend(chars.iter().map(|c| format!("{c}</w>")));
    let mut merges: Vec<(String, String)> = Vec::new();
    for word in WORDS {
        let mut parts: Vec<String> = word.chars().map(|c| c.to_string()).collect();
        if let Some(last) = parts.last_mut() {
            last.push_str("</w>");
        }
        while parts.len() > 1 {
            let merged = format!("{}{}", parts[0], parts[1]);
            if !merges.iter().any(|(a, b)| *a == parts[0] && *b == parts[1]) {
                merges.push((parts[0].clone(), parts[1].clone()));
                vocab.push(merged.clone());
            }
            parts.splice(0..2, [merged]);
        }
    }
    vocab.push(BOS.to_string());
    vocab.push(EOS.to_string());
    let map: serde_json::Map<String, serde_json::Value> = vocab.iter().enumerate().map(|(i, t)| (t.clone(), json!(i))).collect();
    write_json(&dir.join("vocab.json"), &serde_json::Value::Object(map))?;
    let merges_text = std::iter::once("#version: 0.2".to_string()).chain(merges.iter().map(|(a, b)| format!("{a} {b}"))).collect::<Vec<_>>().join("\n");
    let merges_path = dir.join("merges.txt");
    std::fs::write(&merges_path, merges_text + "\n").map_err(io(&merges_path))?;
    let tok = build_clip_tokenizer(&dir.join("vocab.json"), &merges_path)?;
    let json_path = dir.join("tokenizer.json");
    tok.save(&json_path, true).map_err(|e| EngineError::Tokenizer(e.to_string()))?;
    write_json(&dir.join("tokenizer_config.json"), &json!({ "bos_token": BOS, "eos_token": EOS, "pad_token": pad_token, "unk_token": EOS, "model_max_length": 77 }))?;
    Ok(vocab.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensors(path: &Path) -> HashMap<String, Tensor> {
        candle_core::safetensors::load(path, &Device::Cpu).unwrap()
    }

    #[test]
    fn fixture_weights_are_seeded_and_biases_and_norms_are_random() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write_tiny_sd(a.path(), &TinySd::default()).unwrap();
        write_tiny_sd(b.path(), &TinySd::default()).unwrap();
        let file = "unet/diffusion_pytorch_model.safetensors";
        assert_eq!(std::fs::read(a.path().join(file)).unwrap(), std::fs::read(b.path().join(file)).unwrap());
        let unet = tensors(&a.path().join(file));
        let bias = unet["conv_in.bias"].to_vec1::<f32>().unwrap();
        assert!(bias.iter().any(|&x| x != 0.0));
        let norm = unet["conv_norm_out.weight"].to_vec1::<f32>().unwrap();
        assert!(norm.iter().any(|&x| (x - 1.0).abs() > 1e-3));
        let clip = tensors(&a.path().join("text_encoder/model.safetensors"));
        assert!(clip.contains_key("text_model.embeddings.token_embedding.weight"));
    }

    #[test]
    fn fixture_dtype_is_the_dtype_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny_sd(dir.path(), &TinySd { dtype: DType::BF16, ..TinySd::default() }).unwrap();
        let vae = tensors(&dir.path().join("vae/diffusion_pytorch_model.safetensors"));
        assert!(vae.values().all(|t| t.dtype() == DType::BF16));
    }
}
