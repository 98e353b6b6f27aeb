//! The CLIP text encoder (transformers' `CLIPTextModel` and
//! `CLIPTextModelWithProjection`), written here because candle's SD copy has
//! private config fields and its public one knows only quick-gelu, while
//! SD 2.x and SDXL's second encoder use gelu, and SDXL needs the
//! penultimate hidden state and the projected pooled output.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, Module, VarBuilder};

use crate::error::Result;

/// The MLP's nonlinearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default)]
pub enum HiddenAct {
    /// `x * sigmoid(1.702 x)` (OpenAI CLIP, SD 1.x).
    #[default]
    #[serde(rename = "quick_gelu")]
    QuickGelu,
    /// Exact (erf) gelu (OpenCLIP: SD 2.x, SDXL's second encoder).
    #[serde(rename = "gelu")]
    Gelu,
}

/// `text_encoder/config.json` fields the encoder needs.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ClipTextConfig {
    /// Token ids.
    pub vocab_size: usize,
    /// Width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Context length (77).
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    /// MLP activation.
    #[serde(default)]
    pub hidden_act: HiddenAct,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Width of the projected pooled output (`CLIPTextModelWithProjection`).
    #[serde(default)]
    pub projection_dim: Option<usize>,
    /// `CLIPTextModelWithProjection` has a `text_projection` (SDXL's second encoder).
    #[serde(default)]
    pub architectures: Vec<String>,
    /// The end-of-text id; pooling reads the first position holding it.
    #[serde(default = "default_eos")]
    pub eos_token_id: u32,
}

fn default_positions() -> usize {
    77
}
fn default_eps() -> f64 {
    1e-5
}
fn default_eos() -> u32 {
    2
}

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    ln1: LayerNorm,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

/// What one forward pass yields.
pub struct ClipOutput {
    /// After the final LayerNorm, `[B, S, D]`.
    pub last_hidden: Tensor,
    /// The second-to-last layer's output, before any norm, `[B, S, D]` (SDXL).
    pub penultimate: Tensor,
    /// The final-normed state at each sequence's first end-of-text token,
    /// through `text_projection` when the model has one, `[B, D or P]`.
    pub pooled: Tensor,
}

/// A CLIP text transformer.
pub struct ClipTextEncoder {
    config: ClipTextConfig,
    token_embedding: Embedding,
    position_embedding: Embedding,
    layers: Vec<Layer>,
    final_ln: LayerNorm,
    projection: Option<Linear>,
    device: Device,
}

impl ClipTextEncoder {
    /// Loads from weights named like transformers' (`text_model.…`); files
    /// written by transformers 5.x lack that prefix, so both are accepted.
    pub fn new(vb: VarBuilder, config: ClipTextConfig) -> Result<Self> {
        let tm = if vb.contains_tensor("embeddings.token_embedding.weight") { vb.clone() } else { vb.pp("text_model") };
        let (d, eps) = (config.hidden_size, config.layer_norm_eps);
        let emb = tm.pp("embeddings");
        let token_embedding = candle_nn::embedding(config.vocab_size, d, emb.pp("token_embedding"))?;
        let position_embedding = candle_nn::embedding(config.max_position_embeddings, d, emb.pp("position_embedding"))?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let l = tm.pp(format!("encoder.layers.{i}"));
                let a = l.pp("self_attn");
                Ok(Layer {
                    q: candle_nn::linear(d, d, a.pp("q_proj"))?,
                    k: candle_nn::linear(d, d, a.pp("k_proj"))?,
                    v: candle_nn::linear(d, d, a.pp("v_proj"))?,
                    out: candle_nn::linear(d, d, a.pp("out_proj"))?,
                    ln1: candle_nn::layer_norm(d, eps, l.pp("layer_norm1"))?,
                    ln2: candle_nn::layer_norm(d, eps, l.pp("layer_norm2"))?,
                    fc1: candle_nn::linear(d, config.intermediate_size, l.pp("mlp.fc1"))?,
                    fc2: candle_nn::linear(config.intermediate_size, d, l.pp("mlp.fc2"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let final_ln = candle_nn::layer_norm(d, eps, tm.pp("final_layer_norm"))?;
        let with_projection = config.architectures.iter().any(|a| a == "CLIPTextModelWithProjection");
        let projection = match config.projection_dim {
            Some(p) if with_projection => Some(candle_nn::linear_no_bias(d, p, vb.pp("text_projection"))?),
            _ => None,
        };
        Ok(Self { config, token_embedding, position_embedding, layers, final_ln, projection, device: vb.device().clone() })
    }

    /// The config it was built from.
    pub fn config(&self) -> &ClipTextConfig {
        &self.config
    }

    /// Encodes token ids `[B, S]` (u32).
    pub fn forward(&self, ids: &Tensor) -> Result<ClipOutput> {
        let (b, s) = ids.dims2()?;
        let positions = Tensor::arange(0u32, s as u32, &self.device)?.unsqueeze(0)?;
        let dtype = self.token_embedding.embeddings().dtype();
        // [B, S, D]
        let mut xs = self.token_embedding.forward(ids)?.broadcast_add(&self.position_embedding.forward(&positions)?)?;
        let mask = causal_mask(s, &self.device)?.to_dtype(DType::F32)?;
        let mut penultimate = xs.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            xs = self.layer_forward(layer, &xs, &mask)?;
            if i + 2 == self.layers.len() {
                penultimate = xs.clone();
            }
        }
        let last_hidden = self.final_ln.forward(&xs)?;
        // Pool at the first end-of-text token of each sequence. Configs saved by
        // older transformers say `eos_token_id: 2` (SD 1.x, SDXL); transformers
        // then pools at the first largest id, which is CLIP's end-of-text.
        let ids_v: Vec<Vec<u32>> = ids.to_vec2()?;
        let rows = ids_v
            .iter()
            .enumerate()
            .map(|(bi, row)| {
                let pos = if self.config.eos_token_id == 2 {
                    let max = row.iter().copied().max().unwrap_or(0);
                    row.iter().position(|&t| t == max)
                } else {
                    row.iter().position(|&t| t == self.config.eos_token_id)
                };
                last_hidden.get(bi)?.get(pos.unwrap_or(s - 1))
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let mut pooled = Tensor::stack(&rows, 0)?;
        if let Some(p) = &self.projection {
            pooled = p.forward(&pooled)?;
        }
        debug_assert_eq!(pooled.dim(0)?, b);
        Ok(ClipOutput { last_hidden: last_hidden.to_dtype(dtype)?, penultimate, pooled })
    }

    fn layer_forward(&self, l: &Layer, xs: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, s, d) = xs.dims3()?;
        let heads = self.config.num_attention_heads;
        let hd = d / heads;
        let h = l.ln1.forward(xs)?;
        // [B, S, D] -> [B, H, S, hd]
        let split = |t: Tensor| -> candle_core::Result<Tensor> { t.reshape((b, s, heads, hd))?.transpose(1, 2)?.contiguous()?.to_dtype(DType::F32) };
        let q = split((l.q.forward(&h)? * (hd as f64).powf(-0.5))?)?;
        let k = split(l.k.forward(&h)?)?;
        let v = split(l.v.forward(&h)?)?;
        // [B, H, S, S]
        let att = q.matmul(&k.transpose(2, 3)?.contiguous()?)?.broadcast_add(mask)?;
        let att = candle_nn::ops::softmax_last_dim(&att)?;
        let o = att.matmul(&v)?.to_dtype(xs.dtype())?.transpose(1, 2)?.reshape((b, s, d))?;
        let xs = (xs + l.out.forward(&o)?)?;
        let h = l.fc1.forward(&l.ln2.forward(&xs)?)?;
        let h = match self.config.hidden_act {
            HiddenAct::QuickGelu => (&h * candle_nn::ops::sigmoid(&(&h * 1.702)?)?)?,
            HiddenAct::Gelu => h.gelu_erf()?,
        };
        Ok((xs + l.fc2.forward(&h)?)?)
    }
}

/// `[S, S]` with 0 on and below the diagonal and a large negative above it.
fn causal_mask(s: usize, device: &Device) -> Result<Tensor> {
    let m: Vec<f32> = (0..s).flat_map(|i| (0..s).map(move |j| if j > i { f32::MIN } else { 0.0 })).collect();
    Ok(Tensor::from_vec(m, (s, s), device)?)
}
