//! Stage `encode_prompt` for SD-family pipelines and the guided denoiser:
//! weighted prompt parts are blended, the negative side gets negative-weight
//! parts and the negative prompt (SDXL: zeros when there is none), and the
//! UNet runs once on `[negatives; positives]` per step.

use candle_core::{DType, Tensor};

use super::SdPipeline;
use crate::error::Result;
use crate::models::unet::Added;
use crate::pipelines::{ImageRequest, blend};
use crate::samplers::Denoiser;
use crate::samplers::schedule::PredictionType;

/// Text conditioning for a batch of `B` items. With guidance every tensor
/// holds `2B` rows, negatives first.
pub struct Context {
    /// Hidden states `[B or 2B, S, D]`.
    embeddings: Tensor,
    /// SDXL pooled text `[B or 2B, P]`.
    pooled: Option<Tensor>,
    /// SDXL size/crop ids `[B or 2B, 6]`.
    time_ids: Option<Tensor>,
    /// Per-item guidance `[B, 1, 1, 1]`, or `None` to run the conditional pass only.
    guidance: Option<Tensor>,
}

/// Blends `(hidden, pooled)` pairs by weight.
fn blend_pair(parts: &[((Tensor, Option<Tensor>), f32)]) -> Result<(Tensor, Option<Tensor>)> {
    let hidden: Vec<(Tensor, f32)> = parts.iter().map(|((h, _), w)| (h.clone(), *w)).collect();
    let pooled: Option<Vec<(Tensor, f32)>> = parts.iter().map(|((_, p), w)| p.clone().map(|p| (p, *w))).collect();
    Ok((blend(&hidden)?, pooled.map(|p| blend(&p)).transpose()?))
}

impl Context {
    /// Hidden states `[B or 2B, S, D]`, negatives first when guided.
    pub fn embeddings(&self) -> &Tensor {
        &self.embeddings
    }

    /// SDXL's pooled text `[B or 2B, P]`.
    pub fn pooled(&self) -> Option<&Tensor> {
        self.pooled.as_ref()
    }
}

/// Stage `encode_prompt`: conditioning for each item at output size `(h, w)`.
pub fn encode_prompt(pipe: &SdPipeline, items: &[ImageRequest], (h, w): (usize, usize)) -> Result<Context> {
    let guided = items.iter().any(|i| i.guidance > 1.0);
    let mut pos = Vec::with_capacity(items.len());
    let mut neg = Vec::with_capacity(items.len());
    for item in items {
        let parts = item.prompt.iter().filter(|p| p.weight > 0.0).map(|p| Ok((pipe.embed(&p.text)?, p.weight))).collect::<Result<Vec<_>>>()?;
        let positive = blend_pair(&parts)?;
        if guided {
            let mut negs = item.prompt.iter().filter(|p| p.weight < 0.0).map(|p| Ok((pipe.embed(&p.text)?, -p.weight))).collect::<Result<Vec<_>>>()?;
            if let Some(n) = item.negative.as_deref().filter(|n| !n.trim().is_empty()) {
                negs.push((pipe.embed(n)?, 1.0));
            }
            neg.push(if !negs.is_empty() {
                blend_pair(&negs)?
            } else if pipe.zeros_for_empty_negative {
                (positive.0.zeros_like()?, positive.1.as_ref().map(|p| p.zeros_like()).transpose()?)
            } else {
                pipe.embed("")?
            });
        }
        pos.push(positive);
    }
    let rows: Vec<(Tensor, Option<Tensor>)> = [neg, pos].concat();
    let embeddings = Tensor::stack(&rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(), 0)?.to_dtype(pipe.dtype)?;
    let (pooled, time_ids) = if pipe.xl {
        let pooled: Option<Vec<Tensor>> = rows.iter().map(|r| r.1.clone()).collect();
        let pooled = pooled.map(|p| Tensor::stack(&p, 0)).transpose()?;
        // Original size, crop offset (0, 0), target size: all the requested size.
        let ids: Vec<f32> = (0..rows.len()).flat_map(|_| [h as f32, w as f32, 0.0, 0.0, h as f32, w as f32]).collect();
        (pooled, Some(Tensor::from_vec(ids, (rows.len(), 6), &pipe.device)?))
    } else {
        (None, None)
    };
    let guidance = if guided {
        // Items at or below 1 get exactly their conditional prediction.
        let g: Vec<f32> = items.iter().map(|i| i.guidance.max(1.0)).collect();
        Some(Tensor::from_vec(g, (items.len(), 1, 1, 1), &pipe.device)?)
    } else {
        None
    };
    Ok(Context { embeddings, pooled, time_ids, guidance })
}

/// The UNet with guidance and the k-diffusion input/output scalings.
pub(super) struct SdDenoiser<'a> {
    pipe: &'a SdPipeline,
    context: Context,
    /// Inputs the UNet takes after the latents (inpainting's mask and
    /// masked-image latents), in the weights' dtype.
    extra: Option<Tensor>,
}

impl<'a> SdDenoiser<'a> {
    /// A denoiser over `pipe`'s UNet with fixed conditioning.
    pub(super) fn new(pipe: &'a SdPipeline, context: Context, extra: Option<Tensor>) -> Result<Self> {
        let extra = extra.map(|e| e.to_dtype(pipe.dtype)).transpose()?;
        Ok(Self { pipe, context, extra })
    }
}

impl Denoiser for SdDenoiser<'_> {
    fn denoise(&mut self, x: &Tensor, sigma: f64) -> Result<Tensor> {
        let (pipe, ctx) = (self.pipe, &self.context);
        let b = x.dim(0)?;
        let c_in = 1.0 / (sigma * sigma + 1.0).sqrt();
        let t = pipe.schedule.sigma_to_t(sigma);
        // [B, C, h, w] at unit variance, in the weights' dtype.
        let x_in = x.affine(c_in, 0.0)?.to_dtype(pipe.dtype)?;
        let x_in = match &self.extra {
            Some(extra) => Tensor::cat(&[&x_in, extra], 1)?,
            None => x_in,
        };
        let added = match (&ctx.pooled, &ctx.time_ids) {
            (Some(text_embeds), Some(time_ids)) => Some(Added { text_embeds, time_ids }),
            _ => None,
        };
        let out = match &ctx.guidance {
            Some(g) => {
                let both = Tensor::cat(&[&x_in, &x_in], 0)?;
                let o = pipe.unet.forward(&both, t, &ctx.embeddings, added.as_ref())?.to_dtype(DType::F32)?;
                let (uncond, cond) = (o.narrow(0, 0, b)?, o.narrow(0, b, b)?);
                (&uncond + (&cond - &uncond)?.broadcast_mul(g)?)?
            }
            None => pipe.unet.forward(&x_in, t, &ctx.embeddings, added.as_ref())?.to_dtype(DType::F32)?,
        };
        Ok(match pipe.schedule.config.prediction_type {
            PredictionType::Epsilon => (x - out.affine(sigma, 0.0)?)?,
            // x0 = c_skip x + c_out v with c_skip = 1/(σ²+1), c_out = -σ/sqrt(σ²+1).
            PredictionType::VPrediction => (x.affine(1.0 / (sigma * sigma + 1.0), 0.0)? - out.affine(sigma * c_in, 0.0)?)?,
            PredictionType::Sample => out,
        })
    }
}
