//! The conditional UNet's top level, assembled from candle's public blocks.
//! candle's own `UNet2DConditionModel` has no added conditioning, which
//! SDXL needs (`addition_embed_type = "text_time"`: pooled text embedding
//! plus size/crop ids, added to the timestep embedding); this one builds
//! SD 1.x/2.x and SDXL UNets from the same `config.json` fields, with the
//! same tensor names (diffusers').

use candle_core::{Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, GroupNorm, VarBuilder};
use candle_transformers::models::stable_diffusion::embeddings::{TimestepEmbedding, Timesteps};
use candle_transformers::models::stable_diffusion::unet_2d_blocks::{
    CrossAttnDownBlock2D, CrossAttnDownBlock2DConfig, CrossAttnUpBlock2D, CrossAttnUpBlock2DConfig, DownBlock2D, DownBlock2DConfig,
    UNetMidBlock2DCrossAttn, UNetMidBlock2DCrossAttnConfig, UpBlock2D, UpBlock2DConfig,
};

use super::configs::UNetFile;
use crate::error::{EngineError, Result};

enum Down {
    Basic(DownBlock2D),
    CrossAttn(CrossAttnDownBlock2D),
}

enum Up {
    Basic(UpBlock2D),
    CrossAttn(CrossAttnUpBlock2D),
}

/// SDXL's added conditioning: `time_ids` through a sinusoidal projection,
/// concatenated with the pooled text embedding, then an MLP.
struct AddedCond {
    time_proj: Timesteps,
    embedding: TimestepEmbedding,
}

/// Extra inputs of an SDXL UNet.
pub struct Added<'a> {
    /// Pooled, projected text embedding, `[B, P]`.
    pub text_embeds: &'a Tensor,
    /// `[orig_h, orig_w, crop_top, crop_left, target_h, target_w]` per item, `[B, 6]`.
    pub time_ids: &'a Tensor,
}

/// A UNet2DConditionModel (SD 1.x, 2.x, SDXL).
pub struct UNet {
    conv_in: Conv2d,
    time_proj: Timesteps,
    time_embedding: TimestepEmbedding,
    added: Option<AddedCond>,
    down: Vec<Down>,
    mid: UNetMidBlock2DCrossAttn,
    up: Vec<Up>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl UNet {
    /// Builds the UNet `file` describes from `vb` (the `unet/` weights).
    pub fn new(vb: VarBuilder, file: &UNetFile) -> Result<Self> {
        let cfg = file.to_candle(std::path::Path::new("unet/config.json"))?;
        let n = cfg.blocks.len();
        let ch0 = cfg.blocks[0].out_channels;
        let last = cfg.blocks[n - 1];
        let temb = ch0 * 4;
        let pad1 = Conv2dConfig { padding: 1, ..Default::default() };
        let conv_in = candle_nn::conv2d(file.in_channels, ch0, 3, pad1, vb.pp("conv_in"))?;
        let time_proj = Timesteps::new(ch0, cfg.flip_sin_to_cos, cfg.freq_shift);
        let time_embedding = TimestepEmbedding::new(vb.pp("time_embedding"), ch0, temb)?;
        let added = match file.addition_embed_type.as_deref() {
            None => None,
            Some("text_time") => {
                let (dim, input) = file.addition_time_embed_dim.zip(file.projection_class_embeddings_input_dim).ok_or_else(|| {
                    EngineError::bad_model("unet/config.json", "text_time needs addition_time_embed_dim and projection_class_embeddings_input_dim")
                })?;
                Some(AddedCond {
                    time_proj: Timesteps::new(dim, cfg.flip_sin_to_cos, cfg.freq_shift),
                    embedding: TimestepEmbedding::new(vb.pp("add_embedding"), input, temb)?,
                })
            }
            Some(other) => return Err(EngineError::bad_model("unet/config.json", format!("addition_embed_type `{other}` is not supported"))),
        };
        let mut down = Vec::with_capacity(n);
        for (i, b) in cfg.blocks.iter().enumerate() {
            let in_ch = if i > 0 { cfg.blocks[i - 1].out_channels } else { ch0 };
            let db = DownBlock2DConfig {
                num_layers: cfg.layers_per_block,
                resnet_eps: cfg.norm_eps,
                resnet_groups: cfg.norm_num_groups,
                add_downsample: i < n - 1,
                downsample_padding: cfg.downsample_padding,
                ..Default::default()
            };
            let vbi = vb.pp(format!("down_blocks.{i}"));
            down.push(match b.use_cross_attn {
                Some(layers) => {
                    let c = CrossAttnDownBlock2DConfig {
                        downblock: db,
                        attn_num_head_channels: b.attention_head_dim,
                        cross_attention_dim: cfg.cross_attention_dim,
                        sliced_attention_size: None,
                        use_linear_projection: cfg.use_linear_projection,
                        transformer_layers_per_block: layers,
                    };
                    Down::CrossAttn(CrossAttnDownBlock2D::new(vbi, in_ch, b.out_channels, Some(temb), false, c)?)
                }
                None => Down::Basic(DownBlock2D::new(vbi, in_ch, b.out_channels, Some(temb), db)?),
            });
        }
        let mid_cfg = UNetMidBlock2DCrossAttnConfig {
            resnet_eps: cfg.norm_eps,
            output_scale_factor: cfg.mid_block_scale_factor,
            cross_attn_dim: cfg.cross_attention_dim,
            attn_num_head_channels: last.attention_head_dim,
            resnet_groups: Some(cfg.norm_num_groups),
            use_linear_projection: cfg.use_linear_projection,
            transformer_layers_per_block: last.use_cross_attn.unwrap_or(1),
            ..Default::default()
        };
        let mid = UNetMidBlock2DCrossAttn::new(vb.pp("mid_block"), last.out_channels, Some(temb), false, mid_cfg)?;
        let mut up = Vec::with_capacity(n);
        for i in 0..n {
            let b = cfg.blocks[n - 1 - i];
            let prev = if i > 0 { cfg.blocks[n - i].out_channels } else { last.out_channels };
            let in_ch = cfg.blocks[if i == n - 1 { 0 } else { n - i - 2 }].out_channels;
            let ub = UpBlock2DConfig {
                num_layers: cfg.layers_per_block + 1,
                resnet_eps: cfg.norm_eps,
                resnet_groups: cfg.norm_num_groups,
                add_upsample: i < n - 1,
                ..Default::default()
            };
            let vbi = vb.pp(format!("up_blocks.{i}"));
            up.push(match b.use_cross_attn {
                Some(layers) => {
                    let c = CrossAttnUpBlock2DConfig {
                        upblock: ub,
                        attn_num_head_channels: b.attention_head_dim,
                        cross_attention_dim: cfg.cross_attention_dim,
                        sliced_attention_size: None,
                        use_linear_projection: cfg.use_linear_projection,
                        transformer_layers_per_block: layers,
                    };
                    Up::CrossAttn(CrossAttnUpBlock2D::new(vbi, in_ch, prev, b.out_channels, Some(temb), false, c)?)
                }
                None => Up::Basic(UpBlock2D::new(vbi, in_ch, prev, b.out_channels, Some(temb), ub)?),
            });
        }
        let norm_out = candle_nn::group_norm(cfg.norm_num_groups, ch0, cfg.norm_eps, vb.pp("conv_norm_out"))?;
        let conv_out = candle_nn::conv2d(ch0, file.out_channels, 3, pad1, vb.pp("conv_out"))?;
        Ok(Self { conv_in, time_proj, time_embedding, added, down, mid, up, norm_out, conv_out })
    }

    /// Whether the UNet needs [`Added`] inputs (SDXL).
    pub fn needs_added(&self) -> bool {
        self.added.is_some()
    }

    /// Predicts from latents `[B, C, h, w]` at timestep `t` with text context `[B, S, D]`.
    pub fn forward(&self, xs: &Tensor, t: f64, context: &Tensor, added: Option<&Added<'_>>) -> Result<Tensor> {
        let (b, _, h, w) = xs.dims4()?;
        let factor = 1usize << (self.down.len() - 1);
        let odd_size = h % factor != 0 || w % factor != 0;
        // [B, 4 * ch0]
        let mut emb = self.time_embedding.forward(&self.time_proj.forward(&(Tensor::ones(b, xs.dtype(), xs.device())? * t)?)?)?;
        match (&self.added, added) {
            (Some(a), Some(inp)) => {
                // [B, 6] -> [B * 6, dim] -> [B, 6 * dim], then with the pooled text [B, P].
                let ids = a.time_proj.forward(&inp.time_ids.flatten_all()?.to_dtype(xs.dtype())?)?.reshape((b, ()))?;
                let cond = Tensor::cat(&[&inp.text_embeds.to_dtype(xs.dtype())?, &ids], 1)?;
                emb = (emb + a.embedding.forward(&cond)?)?;
            }
            (Some(_), None) => return Err(EngineError::invalid("model", "this UNet needs pooled text embeddings and time ids")),
            _ => {}
        }
        let mut xs = self.conv_in.forward(xs)?;
        let mut residuals = vec![xs.clone()];
        for block in &self.down {
            let (out, res) = match block {
                Down::Basic(d) => d.forward(&xs, Some(&emb))?,
                Down::CrossAttn(d) => d.forward(&xs, Some(&emb), Some(context))?,
            };
            residuals.extend(res);
            xs = out;
        }
        xs = self.mid.forward(&xs, Some(&emb), Some(context))?;
        for (i, block) in self.up.iter().enumerate() {
            let n_res = match block {
                Up::Basic(u) => u.resnets.len(),
                Up::CrossAttn(u) => u.upblock.resnets.len(),
            };
            let res = residuals.split_off(residuals.len() - n_res);
            // Odd latent sizes: upsample to the skip connection's size, not 2x.
            let size = match residuals.last() {
                Some(r) if odd_size && i < self.up.len() - 1 => Some((r.dim(2)?, r.dim(3)?)),
                _ => None,
            };
            xs = match block {
                Up::Basic(u) => u.forward(&xs, &res, Some(&emb), size)?,
                Up::CrossAttn(u) => u.forward(&xs, &res, Some(&emb), size, Some(context))?,
            };
        }
        let xs = candle_nn::ops::silu(&self.norm_out.forward(&xs)?)?;
        Ok(self.conv_out.forward(&xs)?)
    }
}
