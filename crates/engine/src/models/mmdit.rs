//! SD3's MMDiT, assembled from candle-transformers' public pieces with our
//! own last joint block.
//!
//! In the last block the context stream only makes q/k/v for the joint
//! attention. SD 3.5 checkpoints normalise that q and k with RMS norms
//! (`joint_blocks.{last}.context_block.attn.ln_q`/`ln_k`, diffusers'
//! `norm_added_q`/`norm_added_k`), and diffusers applies them; candle
//! 0.11.1's `ContextQkvOnlyJointBlock` builds its projections without them,
//! so every SD 3.5 image was off (one transformer call of the parity fixture
//! moved by rel 0.13, exactly what dropping those norms in diffusers does;
//! docs/parity.md). The timestep embedder is ours too: candle's always
//! emits f16, which tied the whole transformer to f16; ours follows the
//! weights' dtype (f32 on a CPU). The other blocks, embedders and the final
//! layer are candle's own.

use candle_core::{D, DType, Module, Result, Tensor};
use candle_nn::{Linear, RmsNorm, VarBuilder};
use candle_transformers::models::mmdit::blocks::{DiTBlock, FinalLayer, JointBlock, LayerNormNoAffine, MMDiTJointBlock, MMDiTXJointBlock};
use candle_transformers::models::mmdit::embedding::{PatchEmbedder, PositionEmbedder, Unpatchifier, VectorEmbedder};
use candle_transformers::models::mmdit::model::Config;
use candle_transformers::models::mmdit::projections::Qkv;

/// The SD3 / SD 3.5 transformer in SAI's tensor layout.
pub struct Mmdit {
    patch: PatchEmbedder,
    positions: PositionEmbedder,
    timestep: TimestepEmbedder,
    pooled: VectorEmbedder,
    context_in: Linear,
    blocks: Vec<Box<dyn JointBlock>>,
    last: LastJointBlock,
    final_layer: FinalLayer,
    unpatchifier: Unpatchifier,
}

impl Mmdit {
    /// Builds the model; SD3 ties the head count to the depth (64-wide heads).
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let hidden = cfg.head_size * cfg.depth;
        let heads = cfg.depth;
        let mut blocks: Vec<Box<dyn JointBlock>> = Vec::with_capacity(cfg.depth.saturating_sub(1));
        for i in 0..cfg.depth.saturating_sub(1) {
            let pp = format!("joint_blocks.{i}");
            // SD 3.5 medium's blocks with a second image self-attention.
            blocks.push(if vb.contains_tensor(&format!("{pp}.x_block.attn2.qkv.weight")) {
                Box::new(MMDiTXJointBlock::new(hidden, heads, false, vb.pp(&pp))?)
            } else {
                Box::new(MMDiTJointBlock::new(hidden, heads, false, vb.pp(&pp))?)
            });
        }
        Ok(Self {
            patch: PatchEmbedder::new(cfg.patch_size, cfg.in_channels, hidden, vb.pp("x_embedder"))?,
            positions: PositionEmbedder::new(hidden, cfg.patch_size, cfg.pos_embed_max_size, vb.clone())?,
            timestep: TimestepEmbedder::new(hidden, cfg.frequency_embedding_size, vb.pp("t_embedder"))?,
            pooled: VectorEmbedder::new(cfg.adm_in_channels, hidden, vb.pp("y_embedder"))?,
            context_in: candle_nn::linear(cfg.context_embed_size, hidden, vb.pp("context_embedder"))?,
            blocks,
            last: LastJointBlock::new(hidden, heads, vb.pp(format!("joint_blocks.{}", cfg.depth.saturating_sub(1))))?,
            final_layer: FinalLayer::new(hidden, cfg.patch_size, cfg.out_channels, vb.pp("final_layer"))?,
            unpatchifier: Unpatchifier::new(cfg.patch_size, cfg.out_channels)?,
        })
    }

    /// The velocity for latents `x` `[B, C, H, W]` at timesteps `t` `[B]`
    /// (sigma · 1000), pooled text `y` and text states `context`.
    pub fn forward(&self, x: &Tensor, t: &Tensor, y: &Tensor, context: &Tensor) -> Result<Tensor> {
        let (h, w) = (x.dim(D::Minus2)?, x.dim(D::Minus1)?);
        let mut xs = self.patch.forward(x)?.broadcast_add(&self.positions.get_cropped_pos_embed(h, w)?)?;
        let c = (self.timestep.forward(t, xs.dtype())? + self.pooled.forward(y)?)?;
        let mut context = self.context_in.forward(context)?;
        for block in &self.blocks {
            (context, xs) = block.forward(&context, &xs, &c)?;
        }
        let xs = self.last.forward(&context, &xs, &c)?;
        let xs = self.final_layer.forward(&xs, &c)?;
        self.unpatchifier.unpatchify(&xs, h, w)?.narrow(2, 0, h)?.narrow(3, 0, w)
    }
}

/// Timesteps `[B]` (f32) → sinusoidal features (cos half first, periods up
/// to 10,000, as SD3 was trained) → a two-layer SiLU MLP in the model's dtype.
struct TimestepEmbedder {
    fc1: Linear,
    fc2: Linear,
    features: usize,
}

impl TimestepEmbedder {
    fn new(hidden: usize, features: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self { fc1: candle_nn::linear(features, hidden, vb.pp("mlp.0"))?, fc2: candle_nn::linear(hidden, hidden, vb.pp("mlp.2"))?, features })
    }

    fn forward(&self, t: &Tensor, dtype: DType) -> Result<Tensor> {
        let half = self.features / 2;
        let freqs = (Tensor::arange(0u32, half as u32, t.device())?.to_dtype(DType::F32)? * (-(10_000f64.ln()) / half as f64))?.exp()?;
        let args = t.to_dtype(DType::F32)?.unsqueeze(1)?.broadcast_mul(&freqs.unsqueeze(0)?)?;
        let features = Tensor::cat(&[args.cos()?, args.sin()?], 1)?.to_dtype(dtype)?;
        self.fc2.forward(&candle_nn::ops::silu(&self.fc1.forward(&features)?)?)
    }
}

/// The last joint block: a full image block, and a context stream whose
/// outputs nobody reads, so it only makes the keys (RMS-normalised when the
/// checkpoint has `ln_k`) and values the image tokens attend to. Its
/// queries, and so `ln_q`, would only shape those unread outputs.
struct LastJointBlock {
    x_block: DiTBlock,
    context_modulation: Linear,
    context_qkv: Linear,
    context_ln_k: Option<RmsNorm>,
    heads: usize,
    head_dim: usize,
}

impl LastJointBlock {
    fn new(hidden: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        let head_dim = hidden / heads;
        let ctx = vb.pp("context_block");
        let context_ln_k = if ctx.contains_tensor("attn.ln_k.weight") { Some(candle_nn::rms_norm(head_dim, 1e-6, ctx.pp("attn.ln_k"))?) } else { None };
        Ok(Self {
            x_block: DiTBlock::new(hidden, heads, vb.pp("x_block"))?,
            // Two modulations (shift, scale): the stream ends at attention.
            context_modulation: candle_nn::linear(hidden, 2 * hidden, ctx.pp("adaLN_modulation.1"))?,
            context_qkv: candle_nn::linear(hidden, 3 * hidden, ctx.pp("attn.qkv"))?,
            context_ln_k,
            heads,
            head_dim,
        })
    }

    /// The context's keys and values, `[B, heads, S_ctx, head_dim]` each.
    fn context_kv(&self, context: &Tensor, c: &Tensor) -> Result<(Tensor, Tensor)> {
        let m = self.context_modulation.forward(&candle_nn::ops::silu(c)?)?.chunk(2, D::Minus1)?;
        let (shift, scale) = (m[0].unsqueeze(1)?, m[1].unsqueeze(1)?);
        let normed = LayerNormNoAffine::new(1e-6).forward(context)?;
        let modulated = shift.broadcast_add(&normed.broadcast_mul(&(scale + 1.0)?)?)?;
        let (b, s, _) = modulated.dims3()?;
        // SAI's fused projection is q, k, v one after another, each `heads × head_dim`.
        let qkv = self.context_qkv.forward(&modulated)?.reshape((b, s, 3, self.heads, self.head_dim))?;
        let mut k = qkv.get_on_dim(2, 1)?;
        if let Some(ln_k) = &self.context_ln_k {
            k = ln_k.forward(&k)?;
        }
        Ok((k.transpose(1, 2)?.contiguous()?, qkv.get_on_dim(2, 2)?.transpose(1, 2)?.contiguous()?))
    }

    fn forward(&self, context: &Tensor, x: &Tensor, c: &Tensor) -> Result<Tensor> {
        let (ctx_k, ctx_v) = self.context_kv(context, c)?;
        let (xq, interm) = self.x_block.pre_attention(x, c)?;
        let x_attn = self.image_attention(&xq, &ctx_k, &ctx_v)?;
        self.x_block.post_attention(&x_attn, x, &interm)
    }

    /// The image tokens' attention over context and image keys together:
    /// `[B, S_x, hidden]`.
    fn image_attention(&self, x: &Qkv, ctx_k: &Tensor, ctx_v: &Tensor) -> Result<Tensor> {
        let (b, s_x, _) = x.q.dims3()?;
        let heads = |t: &Tensor| t.reshape((b, s_x, self.heads, self.head_dim))?.transpose(1, 2)?.contiguous();
        let q = heads(&x.q)?;
        let k = Tensor::cat(&[ctx_k, &heads(&x.k)?], 2)?;
        let v = Tensor::cat(&[ctx_v, &heads(&x.v)?], 2)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        // Scores in f32: f16 softmax over long sequences loses the small weights.
        let scores = (q.to_dtype(DType::F32)?.matmul(&k.to_dtype(DType::F32)?.t()?)? * scale)?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(v.dtype())?;
        weights.matmul(&v)?.transpose(1, 2)?.reshape((b, s_x, ()))
    }
}
