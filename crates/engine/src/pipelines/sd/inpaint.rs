//! Inpainting with SD inpaint checkpoints, as diffusers'
//! `StableDiffusionInpaintPipeline` does it: the UNet takes, beside the
//! latents, the mask at latent resolution and the latents of the init image
//! with the masked part blanked (`[latents, mask, masked]` on the channel
//! axis: 4 + 1 + 4 = 9 inputs for SD 1.x/2.x inpaint models).

use candle_core::{DType, Tensor};

use super::{SdPipeline, encode_init_image};
use crate::error::{EngineError, Result};
use crate::pipelines::{ImageRequest, init_pixels};
use crate::samplers::NoiseSource;

/// Whether a UNet with `unet_in` inputs over `latent` latent channels is an
/// inpainting one, and whether the request fits it.
pub(super) fn check(unet_in: usize, latent: usize, items: &[ImageRequest]) -> Result<bool> {
    let inpainting = unet_in == 2 * latent + 1;
    if !inpainting && unet_in != latent {
        return Err(EngineError::invalid("model", format!("a UNet with {unet_in} input channels over {latent} latent channels is neither a text-to-image nor an inpainting UNet")));
    }
    let masks = items.iter().filter(|i| i.init.as_ref().is_some_and(|p| p.mask.is_some())).count();
    match (inpainting, masks) {
        (true, n) if n < items.len() => {
            Err(EngineError::invalid("mask", "this is an inpainting model: every image needs an init image and a mask"))
        }
        (false, n) if n > 0 => Err(EngineError::invalid("mask", "masks need an inpainting checkpoint (a UNet with 2 × latent + 1 input channels)")),
        _ => Ok(inpainting),
    }
}

/// The UNet's extra inputs `[B, 1 + C, h, w]`: each item's mask, nearest
/// downsampled to `h × w`, then the scaled latents of its init image with
/// the masked pixels set to 0 (mid grey), the VAE posterior sampled with the
/// item's seeded noise.
pub(super) fn conditioning(pipe: &SdPipeline, items: &[ImageRequest], noise: &mut NoiseSource, h: usize, w: usize) -> Result<Tensor> {
    let pixels = init_pixels(items, &pipe.device)?;
    let (height, width) = (pixels.dim(2)?, pixels.dim(3)?);
    let masks = items
        .iter()
        .map(|i| {
            let mask = i.init.as_ref().and_then(|p| p.mask.as_ref()).ok_or_else(|| EngineError::invalid("mask", "missing"))?;
            let full = Tensor::from_vec(mask.iter().map(|&m| f32::from(m)).collect::<Vec<_>>(), (1, height, width), &pipe.device)?;
            // F.interpolate(mode="nearest"): latent (y, x) takes pixel (y·H/h, x·W/w).
            let rows: Vec<u32> = (0..h).map(|y| (y * height / h) as u32).collect();
            let cols: Vec<u32> = (0..w).map(|x| (x * width / w) as u32).collect();
            let rows = Tensor::new(rows.as_slice(), &pipe.device)?;
            let cols = Tensor::new(cols.as_slice(), &pipe.device)?;
            Ok((full.clone(), full.index_select(&rows, 1)?.index_select(&cols, 2)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let full = Tensor::stack(&masks.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>(), 0)?;
    let small = Tensor::stack(&masks.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>(), 0)?;
    // Kept pixels stay, repainted ones become 0: image · (1 − mask).
    let keep = full.affine(-1.0, 1.0)?;
    let masked = pixels.broadcast_mul(&keep)?;
    let masked_latents = encode_init_image(pipe, &masked, noise)?;
    Ok(Tensor::cat(&[&small, &masked_latents], 1)?.to_dtype(DType::F32)?)
}
