//! Single-file SD 1.x / 2.x / SDXL checkpoints as A1111 and ComfyUI share
//! them (`model.diffusion_model.*`, `first_stage_model.*`,
//! `cond_stage_model.*` or `conditioner.embedders.*`). Each diffusers
//! tensor name the loaders request is mapped to its name in the file
//! ([`LdmLayout::source`]); the architecture, tokenizers and scheduler come
//! from a diffusers folder of the same family (the *template*), since a
//! checkpoint carries none of them.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::loader::{DiscoveredModel, PipelineKind};
use crate::models::clip::{ClipTextConfig, HiddenAct};
use crate::models::configs::{UNetFile, VaeFile, read_json};

/// Where a diffusers tensor lives in a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// The tensor's name in the file.
    pub name: String,
    /// Rows `(start, len)` of dim 0 (OpenCLIP fuses q, k and v).
    pub rows: Option<(usize, usize)>,
    /// Stored transposed (OpenCLIP's `text_projection`).
    pub transpose: bool,
}

impl Source {
    fn plain(name: String) -> Option<Self> {
        Some(Self { name, rows: None, transpose: false })
    }
}

/// The shape facts the name mapping needs, read from the template's configs.
#[derive(Debug, Clone)]
pub struct LdmLayout {
    /// SDXL (two text encoders under `conditioner.embedders`).
    pub xl: bool,
    /// SD 2.x: the text encoder is OpenCLIP under `cond_stage_model.model`.
    pub openclip_text_encoder: bool,
    layers_per_block: usize,
    /// Whether down block `i` has attention.
    attn: Vec<bool>,
    vae_levels: usize,
    te_width: usize,
    te2_width: usize,
}

impl LdmLayout {
    /// The layout of checkpoints made for `template`'s architecture.
    pub fn from_template(template: &Path) -> Result<Self> {
        let unet: UNetFile = read_json(&template.join("unet/config.json"))?;
        let vae: VaeFile = read_json(&template.join("vae/config.json"))?;
        let te: ClipTextConfig = read_json(&template.join("text_encoder/config.json"))?;
        let xl = unet.addition_embed_type.is_some();
        let te2_width = if xl { read_json::<ClipTextConfig>(&template.join("text_encoder_2/config.json"))?.hidden_size } else { 0 };
        Ok(Self {
            xl,
            openclip_text_encoder: !xl && matches!(te.hidden_act, HiddenAct::Gelu),
            layers_per_block: unet.layers_per_block,
            attn: unet.down_block_types.iter().map(|t| t.starts_with("CrossAttn")).collect(),
            vae_levels: vae.block_out_channels.len(),
            te_width: te.hidden_size,
            te2_width,
        })
    }

    /// The layout of a file holding only an LDM-named VAE of `levels`
    /// resolutions (SAI's SD3 single files).
    pub fn vae_only(levels: usize) -> Self {
        Self { xl: false, openclip_text_encoder: false, layers_per_block: 0, attn: Vec::new(), vae_levels: levels, te_width: 0, te2_width: 0 }
    }

    /// The checkpoint tensor holding diffusers `component`'s tensor `name`.
    pub fn source(&self, component: &str, name: &str) -> Option<Source> {
        match component {
            "unet" => self.unet(name).and_then(|n| Source::plain(format!("model.diffusion_model.{n}"))),
            "vae" => vae(name, self.vae_levels).and_then(|n| Source::plain(format!("first_stage_model.{n}"))),
            "text_encoder" if self.xl => Source::plain(format!("conditioner.embedders.0.transformer.{name}")),
            "text_encoder" if self.openclip_text_encoder => openclip("cond_stage_model.model.", name, self.te_width),
            "text_encoder" => Source::plain(format!("cond_stage_model.transformer.{name}")),
            "text_encoder_2" if self.xl => openclip("conditioner.embedders.1.model.", name, self.te2_width),
            _ => None,
        }
    }

    fn unet(&self, name: &str) -> Option<String> {
        let l = self.layers_per_block;
        let n = self.attn.len();
        let (head, rest) = split_block(name)?;
        Some(match head.as_slice() {
            ["conv_in"] => format!("input_blocks.0.0.{rest}"),
            ["time_embedding", "linear_1"] => format!("time_embed.0.{rest}"),
            ["time_embedding", "linear_2"] => format!("time_embed.2.{rest}"),
            ["add_embedding", "linear_1"] => format!("label_emb.0.0.{rest}"),
            ["add_embedding", "linear_2"] => format!("label_emb.0.2.{rest}"),
            ["conv_norm_out"] => format!("out.0.{rest}"),
            ["conv_out"] => format!("out.2.{rest}"),
            ["down_blocks", i, "resnets", j] => format!("input_blocks.{}.0.{}", 1 + num(i)? * (l + 1) + num(j)?, resnet(&rest)),
            ["down_blocks", i, "attentions", j] => format!("input_blocks.{}.1.{rest}", 1 + num(i)? * (l + 1) + num(j)?),
            ["down_blocks", i, "downsamplers", "0"] => format!("input_blocks.{}.0.{}", 1 + num(i)? * (l + 1) + l, rest.replacen("conv.", "op.", 1)),
            ["mid_block", "resnets", k] => format!("middle_block.{}.{}", 2 * num(k)?, resnet(&rest)),
            ["mid_block", "attentions", "0"] => format!("middle_block.1.{rest}"),
            ["up_blocks", i, "resnets", j] => format!("output_blocks.{}.0.{}", num(i)? * (l + 1) + num(j)?, resnet(&rest)),
            ["up_blocks", i, "attentions", j] => format!("output_blocks.{}.1.{rest}", num(i)? * (l + 1) + num(j)?),
            ["up_blocks", i, "upsamplers", "0"] => {
                // Up block i mirrors down block n-1-i; its upsampler follows the attention if any.
                let slot = if *self.attn.get(n.checked_sub(1 + num(i)?)?)? { 2 } else { 1 };
                format!("output_blocks.{}.{slot}.{rest}", num(i)? * (l + 1) + l)
            }
            _ => return None,
        })
    }
}

/// Splits a diffusers name into its block path and the rest: `down_blocks.1.resnets.0.conv1.weight`
/// → `(["down_blocks", "1", "resnets", "0"], "conv1.weight")`.
fn split_block(name: &str) -> Option<(Vec<&str>, String)> {
    let parts: Vec<&str> = name.split('.').collect();
    let depth = match parts.first()? {
        &"down_blocks" | &"up_blocks" => 4,
        &"mid_block" => 3,
        &"time_embedding" | &"add_embedding" => 2,
        _ => 1,
    };
    (parts.len() > depth).then(|| (parts[..depth].to_vec(), parts[depth..].join(".")))
}

fn num(s: &str) -> Option<usize> {
    s.parse().ok()
}

/// A UNet resnet's diffusers parameter path → LDM's.
fn resnet(rest: &str) -> String {
    let (m, p) = rest.split_once('.').unwrap_or((rest, ""));
    let m = match m {
        "norm1" => "in_layers.0",
        "conv1" => "in_layers.2",
        "time_emb_proj" => "emb_layers.1",
        "norm2" => "out_layers.0",
        "conv2" => "out_layers.3",
        "conv_shortcut" => "skip_connection",
        other => other,
    };
    format!("{m}.{p}")
}

/// A VAE tensor name → LDM's (decoder levels are numbered from the bottom).
fn vae(name: &str, levels: usize) -> Option<String> {
    let (side, rest) = name.split_once('.')?;
    let parts: Vec<&str> = rest.split('.').collect();
    let tail = |k: usize| parts[k..].join(".");
    let body = match parts.as_slice() {
        ["conv_norm_out", ..] => format!("norm_out.{}", tail(1)),
        ["down_blocks", i, "resnets", j, ..] => format!("down.{i}.block.{j}.{}", tail(4).replace("conv_shortcut", "nin_shortcut")),
        ["down_blocks", i, "downsamplers", "0", ..] => format!("down.{i}.downsample.{}", tail(4)),
        ["up_blocks", i, "resnets", j, ..] => format!("up.{}.block.{j}.{}", levels.checked_sub(1 + num(i)?)?, tail(4).replace("conv_shortcut", "nin_shortcut")),
        ["up_blocks", i, "upsamplers", "0", ..] => format!("up.{}.upsample.{}", levels.checked_sub(1 + num(i)?)?, tail(4)),
        ["mid_block", "resnets", k, ..] => format!("mid.block_{}.{}", num(k)? + 1, tail(3)),
        ["mid_block", "attentions", "0", m, ..] => {
            let (m, skip) = match *m {
                "group_norm" => ("norm", 4),
                "to_q" | "query" => ("q", 4),
                "to_k" | "key" => ("k", 4),
                "to_v" | "value" => ("v", 4),
                "proj_attn" => ("proj_out", 4),
                "to_out" => ("proj_out", 5),
                _ => return None,
            };
            format!("mid.attn_1.{m}.{}", tail(skip))
        }
        _ => rest.to_string(),
    };
    match side {
        "encoder" | "decoder" => Some(format!("{side}.{body}")),
        // quant_conv.weight, post_quant_conv.bias, …
        _ => Some(name.to_string()),
    }
}

/// An HF CLIP text-model name → OpenCLIP's under `prefix` (`width`-wide q/k/v fused).
fn openclip(prefix: &str, name: &str, width: usize) -> Option<Source> {
    let at = |n: String| Source::plain(format!("{prefix}{n}"));
    if name == "text_projection.weight" {
        return Some(Source { name: format!("{prefix}text_projection"), rows: None, transpose: true });
    }
    let name = name.strip_prefix("text_model.")?;
    match name {
        "embeddings.token_embedding.weight" => return at("token_embedding.weight".into()),
        "embeddings.position_embedding.weight" => return at("positional_embedding".into()),
        _ => {}
    }
    if let Some(p) = name.strip_prefix("final_layer_norm.") {
        return at(format!("ln_final.{p}"));
    }
    let rest = name.strip_prefix("encoder.layers.")?;
    let (i, rest) = rest.split_once('.')?;
    let block = format!("{prefix}transformer.resblocks.{i}.");
    let (m, p) = rest.rsplit_once('.')?;
    let fused = |k: usize| Some(Source { name: format!("{block}attn.in_proj_{p}"), rows: Some((k * width, width)), transpose: false });
    let m = match m {
        "self_attn.q_proj" => return fused(0),
        "self_attn.k_proj" => return fused(1),
        "self_attn.v_proj" => return fused(2),
        "self_attn.out_proj" => "attn.out_proj",
        "layer_norm1" => "ln_1",
        "layer_norm2" => "ln_2",
        "mlp.fc1" => "mlp.c_fc",
        "mlp.fc2" => "mlp.c_proj",
        _ => return None,
    };
    Source::plain(format!("{block}{m}.{p}"))
}

/// The family of a checkpoint from its tensor names, if it is an SD/SDXL one.
pub fn checkpoint_kind(file: &Path) -> Option<PipelineKind> {
    // SAFETY: mapped read-only to list names; the engine never writes model files.
    let st = unsafe { candle_core::safetensors::MmapedSafetensors::new(file) }.ok()?;
    let names: Vec<String> = st.tensors().into_iter().map(|(n, _)| n).collect();
    // A UNet: SD3 and FLUX single files also use `model.diffusion_model.` but have no input blocks.
    if !names.iter().any(|n| n.starts_with("model.diffusion_model.input_blocks.")) {
        return None;
    }
    Some(if names.iter().any(|n| n.starts_with("conditioner.embedders.1.")) { PipelineKind::StableDiffusionXl } else { PipelineKind::StableDiffusion })
}

/// The template for a checkpoint of `kind`: the first complete diffusers
/// folder of that kind among `models` (by id).
pub fn template_for(models: &[DiscoveredModel], kind: PipelineKind) -> Option<PathBuf> {
    models.iter().filter(|m| m.kind == Some(kind) && m.missing.is_empty() && m.path.is_dir()).map(|m| m.path.clone()).next()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> LdmLayout {
        LdmLayout { xl: false, openclip_text_encoder: false, layers_per_block: 2, attn: vec![true, true, true, false], vae_levels: 4, te_width: 768, te2_width: 0 }
    }

    #[test]
    fn sd15_names_map_as_the_ldm_layout_numbers_them() {
        let l = layout();
        let unet = |n: &str| l.source("unet", n).map(|s| s.name);
        assert_eq!(unet("conv_in.weight").as_deref(), Some("model.diffusion_model.input_blocks.0.0.weight"));
        assert_eq!(unet("down_blocks.1.resnets.1.conv1.weight").as_deref(), Some("model.diffusion_model.input_blocks.5.0.in_layers.2.weight"));
        assert_eq!(unet("down_blocks.2.downsamplers.0.conv.bias").as_deref(), Some("model.diffusion_model.input_blocks.9.0.op.bias"));
        assert_eq!(unet("up_blocks.0.upsamplers.0.conv.weight").as_deref(), Some("model.diffusion_model.output_blocks.2.1.conv.weight"));
        assert_eq!(unet("up_blocks.1.upsamplers.0.conv.weight").as_deref(), Some("model.diffusion_model.output_blocks.5.2.conv.weight"));
        assert_eq!(unet("mid_block.resnets.1.time_emb_proj.weight").as_deref(), Some("model.diffusion_model.middle_block.2.emb_layers.1.weight"));
        let vae = |n: &str| l.source("vae", n).map(|s| s.name);
        assert_eq!(vae("decoder.up_blocks.0.resnets.2.conv_shortcut.weight").as_deref(), Some("first_stage_model.decoder.up.3.block.2.nin_shortcut.weight"));
        assert_eq!(vae("encoder.mid_block.attentions.0.to_out.0.weight").as_deref(), Some("first_stage_model.encoder.mid.attn_1.proj_out.weight"));
        assert_eq!(vae("post_quant_conv.weight").as_deref(), Some("first_stage_model.post_quant_conv.weight"));
        let g = openclip("p.", "text_model.encoder.layers.3.self_attn.k_proj.weight", 8).unwrap();
        assert_eq!((g.name.as_str(), g.rows), ("p.transformer.resblocks.3.attn.in_proj_weight", Some((8, 8))));
    }
}
