//! The UNet's down and up blocks (`DownBlock2D`, `CrossAttnDownBlock2D`,
//! `UpBlock2D`, `CrossAttnUpBlock2D`), built here rather than with candle's
//! constructors: candle 0.11.1's `DownBlock2D::new` / `UpBlock2D::new` build
//! their ResNets with `..Default::default()` and so always normalise with 32
//! groups, whatever `resnet_groups` says, while diffusers uses the config's
//! `norm_num_groups` (docs/parity.md). The ResNets, convs and transformers
//! are ours too (`resnet.rs`, `conv.rs`, `transformer2d.rs`), for their CPU
//! kernels, and so is the mid block that holds them.
//! Tensor names are diffusers' (`resnets.{i}`, `attentions.{i}`,
//! `downsamplers.0.conv`, `upsamplers.0.conv`).

use candle_core::{D, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::conv::Conv2d;
use super::resnet::{ResnetBlock, ResnetConfig};

use super::transformer2d::{Transformer2D, Transformer2DConfig};

/// Cross-attention settings of a `CrossAttn*Block2D`.
#[derive(Debug, Clone, Copy)]
pub struct CrossAttn {
    /// Attention heads (diffusers' `attention_head_dim`, which is a head count).
    pub heads: usize,
    /// Width of the text context.
    pub context_dim: usize,
    /// Transformer layers in each `SpatialTransformer`.
    pub layers: usize,
    /// Linear (SD 2.x, SDXL) rather than 1×1-conv projections.
    pub linear_projection: bool,
}

/// What the down and up blocks share.
#[derive(Debug, Clone, Copy)]
pub struct BlockConfig {
    /// ResNets in the block.
    pub layers: usize,
    /// GroupNorm groups of every ResNet and transformer norm in the block.
    pub groups: usize,
    /// GroupNorm epsilon.
    pub eps: f64,
    /// Width of the timestep embedding.
    pub temb: usize,
    /// `Some` for the cross-attention variants.
    pub cross: Option<CrossAttn>,
}

impl BlockConfig {
    fn resnet(&self, out_channels: usize) -> ResnetConfig {
        ResnetConfig { out_channels, temb_channels: self.temb, groups: self.groups, eps: self.eps, output_scale_factor: 1.0 }
    }

    /// The transformer settings of the block's cross-attention variant.
    fn transformer(&self) -> Option<Transformer2DConfig> {
        self.cross.map(|c| Transformer2DConfig { depth: c.layers, groups: self.groups, heads: c.heads, context_dim: c.context_dim, linear_projection: c.linear_projection })
    }

    /// One transformer per ResNet when the block has cross-attention.
    fn attentions(&self, vb: &VarBuilder, channels: usize) -> Result<Vec<Transformer2D>> {
        let Some(cfg) = self.transformer() else {
            return Ok(Vec::new());
        };
        let vb = vb.pp("attentions");
        (0..self.layers).map(|i| Transformer2D::new(vb.pp(i), channels, cfg)).collect()
    }
}

/// A down block: ResNets (each followed by a transformer in the
/// cross-attention variant), then an optional stride-2 conv.
pub struct DownBlock {
    resnets: Vec<ResnetBlock>,
    attentions: Vec<Transformer2D>,
    downsampler: Option<(Conv2d, usize)>,
}

impl DownBlock {
    /// Builds `down_blocks.{i}` from `vb`; `downsample` is `Some(padding)`
    /// for every block but the last.
    pub fn new(vb: VarBuilder, in_ch: usize, out_ch: usize, downsample: Option<usize>, cfg: BlockConfig) -> Result<Self> {
        let rcfg = cfg.resnet(out_ch);
        let resnets = (0..cfg.layers).map(|i| ResnetBlock::new(vb.pp("resnets").pp(i), if i == 0 { in_ch } else { out_ch }, rcfg)).collect::<Result<_>>()?;
        let attentions = cfg.attentions(&vb, out_ch)?;
        let downsampler = match downsample {
            Some(padding) => Some((Conv2d::new(vb.pp("downsamplers.0.conv"), out_ch, out_ch, 3, 2, padding)?, padding)),
            None => None,
        };
        Ok(Self { resnets, attentions, downsampler })
    }

    /// Returns the block's output and the states the up blocks take as skips.
    pub fn forward(&self, xs: &Tensor, temb: &Tensor, context: &Tensor) -> Result<(Tensor, Vec<Tensor>)> {
        let mut xs = xs.clone();
        let mut states = Vec::with_capacity(self.resnets.len() + 1);
        for (i, resnet) in self.resnets.iter().enumerate() {
            xs = resnet.forward(&xs, temb)?;
            if let Some(attn) = self.attentions.get(i) {
                xs = attn.forward(&xs, context)?;
            }
            states.push(xs.clone());
        }
        if let Some((conv, padding)) = &self.downsampler {
            // diffusers pads right/bottom by one when downsample_padding is 0.
            xs = if *padding == 0 { conv.forward(&xs.pad_with_zeros(D::Minus1, 0, 1)?.pad_with_zeros(D::Minus2, 0, 1)?)? } else { conv.forward(&xs)? };
            states.push(xs.clone());
        }
        Ok((xs, states))
    }
}

/// An up block: ResNets over the input concatenated with a skip state (each
/// followed by a transformer in the cross-attention variant), then an
/// optional nearest-neighbour upsample and conv.
pub struct UpBlock {
    resnets: Vec<ResnetBlock>,
    attentions: Vec<Transformer2D>,
    upsampler: Option<Conv2d>,
}

impl UpBlock {
    /// Builds `up_blocks.{i}` from `vb`: `prev_ch` comes from the block below,
    /// `skip_ch` is the width of the last skip state it takes.
    pub fn new(vb: VarBuilder, skip_ch: usize, prev_ch: usize, out_ch: usize, upsample: bool, cfg: BlockConfig) -> Result<Self> {
        let rcfg = cfg.resnet(out_ch);
        let resnets = (0..cfg.layers)
            .map(|i| {
                let skip = if i == cfg.layers - 1 { skip_ch } else { out_ch };
                let input = if i == 0 { prev_ch } else { out_ch };
                ResnetBlock::new(vb.pp("resnets").pp(i), input + skip, rcfg)
            })
            .collect::<Result<_>>()?;
        let attentions = cfg.attentions(&vb, out_ch)?;
        let upsampler = if upsample { Some(Conv2d::new(vb.pp("upsamplers.0.conv"), out_ch, out_ch, 3, 1, 1)?) } else { None };
        Ok(Self { resnets, attentions, upsampler })
    }

    /// How many skip states the block takes.
    pub fn skips(&self) -> usize {
        self.resnets.len()
    }

    /// `skips` in the order the down blocks pushed them (taken last first);
    /// `size` overrides the 2× upsample (odd latent sizes).
    pub fn forward(&self, xs: &Tensor, skips: &[Tensor], temb: &Tensor, size: Option<(usize, usize)>, context: &Tensor) -> Result<Tensor> {
        let mut xs = xs.clone();
        for (i, resnet) in self.resnets.iter().enumerate() {
            xs = Tensor::cat(&[&xs, &skips[skips.len() - i - 1]], 1)?.contiguous()?;
            xs = resnet.forward(&xs, temb)?;
            if let Some(attn) = self.attentions.get(i) {
                xs = attn.forward(&xs, context)?;
            }
        }
        match &self.upsampler {
            Some(conv) => {
                let (_, _, h, w) = xs.dims4()?;
                let (h, w) = size.unwrap_or((2 * h, 2 * w));
                conv.forward(&xs.upsample_nearest2d(h, w)?)
            }
            None => Ok(xs),
        }
    }
}

/// The mid block (`UNetMidBlock2DCrossAttn`): ResNet, transformer, ResNet.
pub struct MidBlock {
    first: ResnetBlock,
    attention: Transformer2D,
    second: ResnetBlock,
}

impl MidBlock {
    /// `cfg.cross` must be set: SD and SDXL mid blocks always attend.
    pub fn new(vb: VarBuilder, channels: usize, output_scale_factor: f64, cfg: BlockConfig) -> Result<Self> {
        let Some(transformer) = cfg.transformer() else {
            candle_core::bail!("the mid block needs cross-attention settings");
        };
        let rcfg = ResnetConfig { output_scale_factor, ..cfg.resnet(channels) };
        Ok(Self {
            first: ResnetBlock::new(vb.pp("resnets.0"), channels, rcfg)?,
            attention: Transformer2D::new(vb.pp("attentions.0"), channels, transformer)?,
            second: ResnetBlock::new(vb.pp("resnets.1"), channels, rcfg)?,
        })
    }

    pub fn forward(&self, xs: &Tensor, temb: &Tensor, context: &Tensor) -> Result<Tensor> {
        let xs = self.first.forward(xs, temb)?;
        let xs = self.attention.forward(&xs, context)?;
        self.second.forward(&xs, temb)
    }
}
