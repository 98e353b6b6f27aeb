//! Readers for diffusers' component `config.json`s, filling candle's public
//! config structs. Sizes always come from the files, never from constants,
//! so tiny test models and real checkpoints load through the same code.

use std::path::Path;

use candle_transformers::models::stable_diffusion::unet_2d::{BlockConfig, UNet2DConditionModelConfig};
use candle_transformers::models::stable_diffusion::vae::AutoEncoderKLConfig;
use serde::de::DeserializeOwned;

use crate::error::{EngineError, Result};

/// Reads and parses a JSON file, naming it in errors.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| EngineError::Io { path: path.display().to_string(), source })?;
    serde_json::from_str(&python_json_to_json(&text)).map_err(|e| EngineError::bad_model(path, e))
}

/// Python's `json.dumps` writes `NaN`, `Infinity` and `-Infinity`, which
/// JSON lacks; diffusers saves DPM-Solver's `lambda_min_clipped` as
/// `-Infinity`. They become `null` (outside strings), which no field the
/// engine reads holds.
fn python_json_to_json(text: &str) -> std::borrow::Cow<'_, str> {
    if !(text.contains("Infinity") || text.contains("NaN")) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            (in_string, escaped) = (escaped || c != '"', !escaped && c == '\\');
        } else if c == '"' {
            in_string = true;
        } else if let Some(token) = ["-Infinity", "Infinity", "NaN"].into_iter().find(|t| rest.starts_with(t)) {
            out.push_str("null");
            rest = &rest[token.len()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out.into()
}

/// A value diffusers writes either once or per block.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub enum PerBlock<T> {
    /// The same for every block.
    One(T),
    /// One per down block.
    Each(Vec<T>),
}

impl<T: Copy> PerBlock<T> {
    /// The value for block `i`.
    pub fn get(&self, i: usize) -> Option<T> {
        match self {
            Self::One(v) => Some(*v),
            Self::Each(v) => v.get(i).copied(),
        }
    }
}

/// `unet/config.json` (diffusers `UNet2DConditionModel`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct UNetFile {
    /// Latent channels in.
    pub in_channels: usize,
    /// Latent channels out.
    pub out_channels: usize,
    /// Channels per resolution.
    pub block_out_channels: Vec<usize>,
    /// `CrossAttnDownBlock2D` or `DownBlock2D` per resolution.
    pub down_block_types: Vec<String>,
    /// ResNets per down block.
    pub layers_per_block: usize,
    /// Heads (diffusers' historical misnomer; `num_attention_heads` wins when set).
    #[serde(default)]
    pub attention_head_dim: Option<PerBlock<usize>>,
    /// Heads per block.
    #[serde(default)]
    pub num_attention_heads: Option<PerBlock<usize>>,
    /// Text-embedding width.
    pub cross_attention_dim: usize,
    /// GroupNorm groups.
    #[serde(default = "default_groups")]
    pub norm_num_groups: usize,
    /// GroupNorm epsilon.
    #[serde(default = "default_norm_eps")]
    pub norm_eps: f64,
    /// Linear (SD 2.x, SDXL) or 1x1-conv projections in transformer blocks.
    #[serde(default)]
    pub use_linear_projection: bool,
    /// Timestep embedding layout.
    #[serde(default = "default_true")]
    pub flip_sin_to_cos: bool,
    /// Timestep embedding shift.
    #[serde(default)]
    pub freq_shift: f64,
    /// Transformer layers per attention block.
    #[serde(default)]
    pub transformer_layers_per_block: Option<PerBlock<usize>>,
    /// Padding of the downsampling convs.
    #[serde(default = "default_one")]
    pub downsample_padding: usize,
    /// Mid-block output scale.
    #[serde(default = "default_one_f")]
    pub mid_block_scale_factor: f64,
    /// Whether inputs are mapped from [0,1] to [-1,1].
    #[serde(default)]
    pub center_input_sample: bool,
    /// `text_time` for SDXL's added conditioning.
    #[serde(default)]
    pub addition_embed_type: Option<String>,
    /// Width of each time id's sinusoidal projection (SDXL: 256).
    #[serde(default)]
    pub addition_time_embed_dim: Option<usize>,
    /// Input width of the added-conditioning MLP (SDXL: 1280 + 6 * 256).
    #[serde(default)]
    pub projection_class_embeddings_input_dim: Option<usize>,
}

fn default_groups() -> usize {
    32
}
fn default_norm_eps() -> f64 {
    1e-5
}
fn default_true() -> bool {
    true
}
fn default_one() -> usize {
    1
}
fn default_one_f() -> f64 {
    1.0
}

impl UNetFile {
    /// candle's config for this file.
    pub fn to_candle(&self, path: &Path) -> Result<UNet2DConditionModelConfig> {
        let heads = self.num_attention_heads.as_ref().or(self.attention_head_dim.as_ref());
        if self.down_block_types.len() != self.block_out_channels.len() {
            return Err(EngineError::bad_model(path, "down_block_types and block_out_channels differ in length"));
        }
        let blocks = self
            .block_out_channels
            .iter()
            .zip(&self.down_block_types)
            .enumerate()
            .map(|(i, (&out_channels, kind))| {
                let layers = self.transformer_layers_per_block.as_ref().and_then(|t| t.get(i)).unwrap_or(1);
                let heads = heads.and_then(|h| h.get(i)).ok_or_else(|| EngineError::bad_model(path, format!("no attention heads for block {i}")))?;
                Ok(BlockConfig { out_channels, use_cross_attn: kind.starts_with("CrossAttn").then_some(layers), attention_head_dim: heads })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(UNet2DConditionModelConfig {
            center_input_sample: self.center_input_sample,
            flip_sin_to_cos: self.flip_sin_to_cos,
            freq_shift: self.freq_shift,
            blocks,
            layers_per_block: self.layers_per_block,
            downsample_padding: self.downsample_padding,
            mid_block_scale_factor: self.mid_block_scale_factor,
            norm_num_groups: self.norm_num_groups,
            norm_eps: self.norm_eps,
            cross_attention_dim: self.cross_attention_dim,
            sliced_attention_size: None,
            use_linear_projection: self.use_linear_projection,
        })
    }
}

/// `vae/config.json` (diffusers `AutoencoderKL`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct VaeFile {
    /// Image channels in.
    #[serde(default = "default_rgb")]
    pub in_channels: usize,
    /// Image channels out.
    #[serde(default = "default_rgb")]
    pub out_channels: usize,
    /// Channels per resolution.
    pub block_out_channels: Vec<usize>,
    /// ResNets per block.
    #[serde(default = "default_one")]
    pub layers_per_block: usize,
    /// Latent channels.
    #[serde(default = "default_latent")]
    pub latent_channels: usize,
    /// GroupNorm groups.
    #[serde(default = "default_groups")]
    pub norm_num_groups: usize,
    /// Latents are divided by this before decoding (SD 0.18215, SDXL 0.13025).
    #[serde(default = "default_scaling")]
    pub scaling_factor: f64,
    /// Subtracted before scaling when encoding, added back before decoding (FLUX 0.1159; SD none).
    #[serde(default)]
    pub shift_factor: Option<f64>,
    /// Whether `quant_conv` exists.
    #[serde(default = "default_true")]
    pub use_quant_conv: bool,
    /// Whether `post_quant_conv` exists.
    #[serde(default = "default_true")]
    pub use_post_quant_conv: bool,
}

fn default_rgb() -> usize {
    3
}
fn default_latent() -> usize {
    4
}
fn default_scaling() -> f64 {
    0.18215
}

impl VaeFile {
    /// candle's config for this file.
    pub fn to_candle(&self) -> AutoEncoderKLConfig {
        AutoEncoderKLConfig {
            block_out_channels: self.block_out_channels.clone(),
            layers_per_block: self.layers_per_block,
            latent_channels: self.latent_channels,
            norm_num_groups: self.norm_num_groups,
            use_quant_conv: self.use_quant_conv,
            use_post_quant_conv: self.use_post_quant_conv,
        }
    }

    /// How many times the VAE halves each side.
    pub fn downscale(&self) -> usize {
        1 << self.block_out_channels.len().saturating_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn python_json_extensions_read_as_null_outside_strings() {
        let text = r#"{"a": -Infinity, "b": "NaN -Infinity \"x\\", "c": [NaN, Infinity, 1.5], "d": "Infinity"}"#;
        let v: serde_json::Value = serde_json::from_str(&super::python_json_to_json(text)).unwrap();
        assert_eq!(v, json!({"a": null, "b": "NaN -Infinity \"x\\", "c": [null, null, 1.5], "d": "Infinity"}));
    }
}
