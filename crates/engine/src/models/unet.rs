//! The conditional UNet's top level, assembled from candle's public blocks.
//! candle's own `UNet2DConditionModel` has no added conditioning, which
//! SDXL needs (`addition_embed_type = "text_time"`: pooled text embedding
//! plus size/crop ids, added to the timestep embedding); this one builds
//! SD 1.x/2.x and SDXL UNets from the same `config.json` fields, with the
//! same tensor names (diffusers'). The down/up blocks are our own
//! (`unet_blocks.rs`) so their ResNets use the configured `norm_num_groups`.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::stable_diffusion::embeddings::{TimestepEmbedding, Timesteps};
use candle_transformers::models::stable_diffusion::unet_2d::BlockConfig as Block;

use super::configs::UNetFile;
use super::conv::Conv2d;
use super::resnet::GroupNorm;
use super::unet_blocks::{BlockConfig, CrossAttn, DownBlock, MidBlock, UpBlock};
use crate::error::{EngineError, Result};

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
    down: Vec<DownBlock>,
    mid: MidBlock,
    up: Vec<UpBlock>,
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
        let conv_in = Conv2d::new(vb.pp("conv_in"), file.in_channels, ch0, 3, 1, 1)?;
        let time_proj = Timesteps::new(ch0, cfg.flip_sin_to_cos, cfg.freq_shift);
        let time_embedding = TimestepEmbedding::new(vb.pp("time_embedding"), ch0, temb)?;
        let added = match file.addition_embed_type.as_deref() {
            None => None,
            Some("text_time") => {
                let (dim, input) = file
                    .addition_time_embed_dim
                    .zip(file.projection_class_embeddings_input_dim)
                    .ok_or_else(|| EngineError::bad_model("unet/config.json", "text_time needs addition_time_embed_dim and projection_class_embeddings_input_dim"))?;
                Some(AddedCond { time_proj: Timesteps::new(dim, cfg.flip_sin_to_cos, cfg.freq_shift), embedding: TimestepEmbedding::new(vb.pp("add_embedding"), input, temb)? })
            }
            Some(other) => return Err(EngineError::bad_model("unet/config.json", format!("addition_embed_type `{other}` is not supported"))),
        };
        let block_cfg = |b: &Block, layers| BlockConfig {
            layers,
            groups: cfg.norm_num_groups,
            eps: cfg.norm_eps,
            temb,
            cross: b.use_cross_attn.map(|layers| CrossAttn {
                heads: b.attention_head_dim,
                context_dim: cfg.cross_attention_dim,
                layers,
                linear_projection: cfg.use_linear_projection,
            }),
        };
        let mut down = Vec::with_capacity(n);
        for (i, b) in cfg.blocks.iter().enumerate() {
            let in_ch = if i > 0 { cfg.blocks[i - 1].out_channels } else { ch0 };
            let pad = (i < n - 1).then_some(cfg.downsample_padding);
            down.push(DownBlock::new(vb.pp(format!("down_blocks.{i}")), in_ch, b.out_channels, pad, block_cfg(b, cfg.layers_per_block))?);
        }
        // The mid block attends whether or not the last down block does.
        let mid_cross = Block { use_cross_attn: Some(last.use_cross_attn.unwrap_or(1)), ..last };
        let mid = MidBlock::new(vb.pp("mid_block"), last.out_channels, cfg.mid_block_scale_factor, block_cfg(&mid_cross, 1))?;
        let mut up = Vec::with_capacity(n);
        for i in 0..n {
            let b = &cfg.blocks[n - 1 - i];
            let prev = if i > 0 { cfg.blocks[n - i].out_channels } else { last.out_channels };
            let skip = cfg.blocks[if i == n - 1 { 0 } else { n - i - 2 }].out_channels;
            let bc = block_cfg(b, cfg.layers_per_block + 1);
            up.push(UpBlock::new(vb.pp(format!("up_blocks.{i}")), skip, prev, b.out_channels, i < n - 1, bc)?);
        }
        let norm_out = GroupNorm::new(vb.pp("conv_norm_out"), cfg.norm_num_groups, ch0, cfg.norm_eps)?;
        let conv_out = Conv2d::new(vb.pp("conv_out"), ch0, file.out_channels, 3, 1, 1)?;
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
            let (out, res) = block.forward(&xs, &emb, context)?;
            residuals.extend(res);
            xs = out;
        }
        xs = self.mid.forward(&xs, &emb, context)?;
        for (i, block) in self.up.iter().enumerate() {
            let res = residuals.split_off(residuals.len() - block.skips());
            // Odd latent sizes: upsample to the skip connection's size, not 2x.
            let size = match residuals.last() {
                Some(r) if odd_size && i < self.up.len() - 1 => Some((r.dim(2)?, r.dim(3)?)),
                _ => None,
            };
            xs = block.forward(&xs, &res, &emb, size, context)?;
        }
        let xs = self.norm_out.forward(&xs, true)?;
        Ok(self.conv_out.forward(&xs)?)
    }
}
