//! Loading SD3's transformer and VAE from either layout: diffusers
//! folders (`transformer/` mapped onto SAI names by [`super::keys`], `vae/`)
//! or SAI's single file at the folder root; LoRAs merge into the
//! transformer on the way; the MMDiT config is read off tensor shapes.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::mmdit::model::Config;

use super::keys;
use crate::checkpoint::LdmLayout;
use crate::error::{EngineError, Result};
use crate::loader::{sai_file, weight_files};
use crate::lora::{self, LoraRef};
use crate::models::configs::{VaeFile, read_json};

fn count(t: &HashMap<String, Tensor>, prefix: &str) -> usize {
    t.keys().filter_map(|n| n.strip_prefix(prefix)?.split('.').next()?.parse::<usize>().ok()).map(|i| i + 1).max().unwrap_or(0)
}

/// MMDiT's config from its SAI-named tensors.
pub(super) fn mmdit_config(t: &HashMap<String, Tensor>) -> Result<Config> {
    let get = |n: &str| t.get(n).ok_or_else(|| EngineError::invalid("transformer", format!("no `{n}`")));
    let patch = get("x_embedder.proj.weight")?;
    let (hidden, in_channels, patch_size) = (patch.dim(0)?, patch.dim(1)?, patch.dim(2)?);
    let depth = count(t, "joint_blocks.");
    let positions = get("pos_embed")?.dim(1)?;
    Ok(Config {
        patch_size,
        in_channels,
        out_channels: get("final_layer.linear.weight")?.dim(0)? / (patch_size * patch_size),
        depth,
        // SD3 ties heads to depth: hidden = 64 · depth with 64-wide heads.
        head_size: hidden / depth.max(1),
        adm_in_channels: get("y_embedder.mlp.0.weight")?.dim(1)?,
        pos_embed_max_size: (positions as f64).sqrt().round() as usize,
        context_embed_size: get("context_embedder.weight")?.dim(1)?,
        frequency_embedding_size: get("t_embedder.mlp.0.weight")?.dim(1)?,
    })
}

/// The transformer's tensors under SAI names: from `transformer/` (mapped)
/// or from the root SAI file (`model.diffusion_model.` stripped).
/// `loras` merge as for FLUX: diffusers/PEFT keys into the split weights,
/// kohya `lora_unet_` keys into SAI's fused names.
pub(super) fn load_transformer(folder: &Path, loras: &[LoraRef]) -> Result<HashMap<String, Tensor>> {
    let mut tensors = read_transformer(folder)?;
    if !loras.is_empty() {
        let mut split = if keys::is_diffusers(&tensors) { tensors } else { keys::sai_to_diffusers(&tensors)? };
        lora::merge_into(&mut split, loras, lora::TRANSFORMER)?;
        tensors = split;
    }
    if keys::is_diffusers(&tensors) {
        tensors = keys::diffusers_to_sai(tensors)?;
    }
    lora::merge_into(&mut tensors, loras, lora::UNET)?;
    Ok(tensors)
}

fn read_transformer(folder: &Path) -> Result<HashMap<String, Tensor>> {
    let mut tensors = HashMap::new();
    if let Some(files) = weight_files(&folder.join("transformer"), "diffusion_pytorch_model") {
        for f in files {
            tensors.extend(candle_core::safetensors::load(&f, &Device::Cpu)?);
        }
        return Ok(tensors);
    }
    let file = sai_file(folder, "transformer").ok_or_else(|| EngineError::bad_model(folder, "no transformer weights"))?;
    // SAFETY: mapped read-only; the engine never writes model files.
    let st = unsafe { candle_core::safetensors::MmapedSafetensors::new(&file)? };
    for (name, _) in st.tensors() {
        if let Some(short) = name.strip_prefix("model.diffusion_model.") {
            tensors.insert(short.to_string(), st.load(&name, &Device::Cpu)?);
        }
    }
    Ok(tensors)
}

/// The VAE's config and weights: `vae/`, or the root SAI file's
/// `first_stage_model.*` (LDM names) with `vae/config.json` or SD3's defaults.
pub(super) fn load_vae(folder: &Path, device: &Device) -> Result<(VaeFile, VarBuilder<'static>)> {
    let config = folder.join("vae/config.json");
    let file: VaeFile = if config.is_file() {
        read_json(&config)?
    } else {
        serde_json::from_value(serde_json::json!({
            "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "latent_channels": 16, "norm_num_groups": 32,
            "scaling_factor": 1.5305, "shift_factor": 0.0609, "use_quant_conv": false, "use_post_quant_conv": false,
        }))
        .map_err(|e| EngineError::bad_model(folder, e))?
    };
    if let Some(files) = weight_files(&folder.join("vae"), "diffusion_pytorch_model") {
        return Ok((file, lora::var_builder(&files, &[], lora::UNET, DType::F32, device)?));
    }
    let sai = sai_file(folder, "vae").ok_or_else(|| EngineError::bad_model(folder, "no VAE weights"))?;
    let layout = LdmLayout::vae_only(file.block_out_channels.len());
    let part = lora::CheckpointPart { file: &sai, layout: &layout, name: "vae", template_files: &[] };
    let vb = lora::checkpoint_var_builder(&part, &[], lora::UNET, DType::F32, device)?;
    Ok((file, vb))
}
