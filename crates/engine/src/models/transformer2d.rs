//! diffusers' `Transformer2DModel` as the SD and SDXL UNets use it (candle
//! calls it `SpatialTransformer`): GroupNorm, a 1×1-conv or linear
//! projection in, `BasicTransformerBlock`s (self-attention, cross-attention
//! on the text, GEGLU feed-forward, each after a LayerNorm), projection
//! out, residual. Same tensor names as diffusers.
//!
//! Ours rather than candle's for two reasons, both measured on the per-step
//! benchmark (docs/benchmarks.md): attention goes through
//! [`super::attention`] (fused on the CPU), and the GEGLU gate is the exact
//! erf GELU that diffusers uses (candle's block uses the tanh approximation,
//! through a scalar libm call per element).

use candle_core::{CpuStorage, CustomOp1, D, DType, Layout, Module, Result, Shape, Tensor, bail};
use candle_nn::{LayerNorm, Linear, VarBuilder};
use rayon::prelude::*;

use super::conv::Conv2d;
use super::resnet::GroupNorm;
use super::{attention, simd};

/// Tokens per feed-forward chunk (see `Block::forward`).
const FF_CHUNK_TOKENS: usize = 1024;

/// Settings of one `Transformer2DModel`.
#[derive(Debug, Clone, Copy)]
pub struct Transformer2DConfig {
    /// Transformer blocks (`transformer_layers_per_block`).
    pub depth: usize,
    /// GroupNorm groups of the input norm.
    pub groups: usize,
    /// Attention heads; the head width is `channels / heads`.
    pub heads: usize,
    /// Width of the text context.
    pub context_dim: usize,
    /// Linear (SD 2.x, SDXL) rather than 1×1-conv projections.
    pub linear_projection: bool,
}

/// Multi-head attention with diffusers' `to_q`/`to_k`/`to_v`/`to_out.0`.
struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
    scale: f64,
}

impl Attention {
    fn new(vb: VarBuilder, dim: usize, context_dim: usize, heads: usize) -> Result<Self> {
        Ok(Self {
            to_q: candle_nn::linear_no_bias(dim, dim, vb.pp("to_q"))?,
            to_k: candle_nn::linear_no_bias(context_dim, dim, vb.pp("to_k"))?,
            to_v: candle_nn::linear_no_bias(context_dim, dim, vb.pp("to_v"))?,
            to_out: candle_nn::linear(dim, dim, vb.pp("to_out.0"))?,
            heads,
            scale: 1.0 / ((dim / heads) as f64).sqrt(),
        })
    }

    /// Self-attention when `context` is `None`.
    fn forward(&self, xs: &Tensor, context: Option<&Tensor>) -> Result<Tensor> {
        let context = context.unwrap_or(xs);
        let q = self.to_q.forward(xs)?;
        let k = self.to_k.forward(context)?;
        let v = self.to_v.forward(context)?;
        self.to_out.forward(&attention::attention(&q, &k, &v, self.heads, self.scale)?)
    }
}

/// `BasicTransformerBlock` with its GEGLU feed-forward (`ff.net.0.proj`,
/// `ff.net.2`).
struct Block {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff_in: Linear,
    ff_out: Linear,
}

impl Block {
    fn new(vb: VarBuilder, dim: usize, cfg: &Transformer2DConfig) -> Result<Self> {
        let inner = 4 * dim;
        Ok(Self {
            norm1: candle_nn::layer_norm(dim, 1e-5, vb.pp("norm1"))?,
            attn1: Attention::new(vb.pp("attn1"), dim, dim, cfg.heads)?,
            norm2: candle_nn::layer_norm(dim, 1e-5, vb.pp("norm2"))?,
            attn2: Attention::new(vb.pp("attn2"), dim, cfg.context_dim, cfg.heads)?,
            norm3: candle_nn::layer_norm(dim, 1e-5, vb.pp("norm3"))?,
            ff_in: candle_nn::linear(dim, 2 * inner, vb.pp("ff.net.0.proj"))?,
            ff_out: candle_nn::linear(inner, dim, vb.pp("ff.net.2"))?,
        })
    }

    fn forward(&self, xs: &Tensor, context: &Tensor) -> Result<Tensor> {
        let xs = (self.attn1.forward(&self.norm1.forward(xs)?, None)? + xs)?;
        let xs = (self.attn2.forward(&self.norm2.forward(&xs)?, Some(context))? + xs)?;
        let normed = self.norm3.forward(&xs)?;
        // The feed-forward's inner states are 8× the block's width (84 MB
        // at SD 1.5's 64×64 level); in token chunks they stay small enough
        // for the allocator to reuse instead of fresh pages each call.
        let tokens = normed.dim(1)?;
        let chunks = (0..tokens)
            .step_by(FF_CHUNK_TOKENS)
            .map(|start| {
                let part = normed.narrow(1, start, FF_CHUNK_TOKENS.min(tokens - start))?;
                self.ff_out.forward(&geglu(&self.ff_in.forward(&part)?)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let ff = if chunks.len() == 1 { chunks.into_iter().next().expect("one chunk") } else { Tensor::cat(&chunks, 1)? };
        ff + xs
    }
}

enum Projection {
    Conv(Conv2d),
    Linear(Linear),
}

/// One `attentions.{i}` of a cross-attention down, mid or up block.
pub struct Transformer2D {
    norm: GroupNorm,
    proj_in: Projection,
    blocks: Vec<Block>,
    proj_out: Projection,
}

impl Transformer2D {
    pub fn new(vb: VarBuilder, channels: usize, cfg: Transformer2DConfig) -> Result<Self> {
        let projection = |name: &str| -> Result<Projection> {
            Ok(if cfg.linear_projection {
                Projection::Linear(candle_nn::linear(channels, channels, vb.pp(name))?)
            } else {
                Projection::Conv(Conv2d::new(vb.pp(name), channels, channels, 1, 1, 0)?)
            })
        };
        let blocks = (0..cfg.depth).map(|i| Block::new(vb.pp("transformer_blocks").pp(i), channels, &cfg)).collect::<Result<_>>()?;
        Ok(Self { norm: GroupNorm::new(vb.pp("norm"), cfg.groups, channels, 1e-6)?, proj_in: projection("proj_in")?, blocks, proj_out: projection("proj_out")? })
    }

    pub fn forward(&self, xs: &Tensor, context: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = xs.dims4()?;
        let normed = self.norm.forward(xs, false)?;
        // [B, C, H, W] → [B, H·W, C], projecting before or after the move.
        let tokens = |t: &Tensor| t.flatten_from(2)?.transpose(1, 2)?.contiguous();
        let mut hidden = match &self.proj_in {
            Projection::Conv(conv) => tokens(&conv.forward(&normed)?)?,
            Projection::Linear(linear) => linear.forward(&tokens(&normed)?)?,
        };
        for block in &self.blocks {
            hidden = block.forward(&hidden, context)?;
        }
        let image = |t: &Tensor| t.transpose(1, 2)?.reshape((b, c, h, w));
        let out = match &self.proj_out {
            Projection::Conv(conv) => conv.forward(&image(&hidden)?)?,
            Projection::Linear(linear) => image(&linear.forward(&hidden)?)?,
        };
        out + xs
    }
}

/// GEGLU's gate: the last dimension's first half times the exact GELU of
/// its second half.
fn geglu(xs: &Tensor) -> Result<Tensor> {
    if xs.device().is_cpu() && xs.dtype() == DType::F32 {
        return xs.contiguous()?.apply_op1_no_bwd(&GegluCpu);
    }
    let halves = xs.chunk(2, D::Minus1)?;
    &halves[0] * halves[1].gelu_erf()?
}

struct GegluCpu;

impl CustomOp1 for GegluCpu {
    fn name(&self) -> &'static str {
        "geglu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = simd::f32_data(storage, layout, self.name())?;
        let dims = layout.shape().dims();
        let width = dims[dims.len() - 1];
        if !width.is_multiple_of(2) {
            bail!("geglu: last dimension {width} is odd");
        }
        let half = width / 2;
        let mut out = vec![0f32; src.len() / 2];
        out.par_chunks_mut(half).zip(src.par_chunks_exact(width)).for_each(|(o, row)| {
            o.copy_from_slice(&row[..half]);
            simd::gelu_gate_in_place(o, &row[half..]);
        });
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("a non-scalar tensor") = half;
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn fused_geglu_matches_the_tensor_formula() {
        let x = Tensor::randn(0f32, 2.0, (2, 5, 14), &Device::Cpu).unwrap();
        let halves = x.chunk(2, D::Minus1).unwrap();
        let want = (&halves[0] * halves[1].gelu_erf().unwrap()).unwrap();
        let got = geglu(&x).unwrap();
        assert_eq!(got.dims(), &[2, 5, 7]);
        let err = simd::max_abs_diff(&got, &want);
        assert!(err < 1e-5, "max error {err}");
    }
}
