//! The KL VAE's encoder, built separately because candle's `AutoEncoderKL`
//! keeps its encoder private and samples the posterior with the CPU RNG,
//! which cannot be seeded. This one returns the posterior's mean and
//! log-variance so image-to-image can draw from it with our own seeded noise.

use candle_core::{Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, GroupNorm, VarBuilder};
use candle_transformers::models::stable_diffusion::unet_2d_blocks::{DownEncoderBlock2D, DownEncoderBlock2DConfig, UNetMidBlock2D, UNetMidBlock2DConfig};

use super::configs::VaeFile;
use crate::error::Result;

/// `vae.encoder` (+ `quant_conv`) of a diffusers `AutoencoderKL`.
pub struct VaeEncoder {
    conv_in: Conv2d,
    down: Vec<DownEncoderBlock2D>,
    mid: UNetMidBlock2D,
    norm_out: GroupNorm,
    conv_out: Conv2d,
    quant_conv: Option<Conv2d>,
}

impl VaeEncoder {
    /// Builds from the VAE's weights (`vb` at the VAE root), sized by its config.
    pub fn new(vb: VarBuilder, file: &VaeFile) -> Result<Self> {
        let enc = vb.pp("encoder");
        let ch = &file.block_out_channels;
        let pad1 = Conv2dConfig { padding: 1, ..Default::default() };
        let conv_in = candle_nn::conv2d(file.in_channels, ch[0], 3, pad1, enc.pp("conv_in"))?;
        let mut down = Vec::with_capacity(ch.len());
        for (i, &out) in ch.iter().enumerate() {
            let cfg = DownEncoderBlock2DConfig {
                num_layers: file.layers_per_block,
                resnet_eps: 1e-6,
                resnet_groups: file.norm_num_groups,
                add_downsample: i + 1 < ch.len(),
                downsample_padding: 0,
                ..Default::default()
            };
            let input = if i > 0 { ch[i - 1] } else { ch[0] };
            down.push(DownEncoderBlock2D::new(enc.pp(format!("down_blocks.{i}")), input, out, cfg)?);
        }
        let last = ch[ch.len() - 1];
        let mid_cfg =
            UNetMidBlock2DConfig { resnet_eps: 1e-6, output_scale_factor: 1.0, attn_num_head_channels: None, resnet_groups: Some(file.norm_num_groups), ..Default::default() };
        let mid = UNetMidBlock2D::new(enc.pp("mid_block"), last, None, mid_cfg)?;
        let norm_out = candle_nn::group_norm(file.norm_num_groups, last, 1e-6, enc.pp("conv_norm_out"))?;
        let conv_out = candle_nn::conv2d(last, 2 * file.latent_channels, 3, pad1, enc.pp("conv_out"))?;
        let quant_conv = if file.use_quant_conv {
            let c = 2 * file.latent_channels;
            Some(candle_nn::conv2d(c, c, 1, Default::default(), vb.pp("quant_conv"))?)
        } else {
            None
        };
        Ok(Self { conv_in, down, mid, norm_out, conv_out, quant_conv })
    }

    /// Posterior mean and log-variance, each `[B, C, h, w]`, of images `[B, 3, H, W]` in `[-1, 1]`.
    ///
    /// One image at a time: the mid block's attention is candle's, which mixes batch rows.
    pub fn moments(&self, images: &Tensor) -> Result<(Tensor, Tensor)> {
        let mut params = Vec::with_capacity(images.dim(0)?);
        for i in 0..images.dim(0)? {
            let mut xs = self.conv_in.forward(&images.narrow(0, i, 1)?)?;
            for block in &self.down {
                xs = block.forward(&xs)?;
            }
            xs = self.mid.forward(&xs, None)?;
            xs = self.conv_out.forward(&candle_nn::ops::silu(&self.norm_out.forward(&xs)?)?)?;
            if let Some(q) = &self.quant_conv {
                xs = q.forward(&xs)?;
            }
            params.push(xs);
        }
        let params = Tensor::cat(&params, 0)?;
        let c = params.dim(1)? / 2;
        Ok((params.narrow(1, 0, c)?, params.narrow(1, c, c)?))
    }
}
