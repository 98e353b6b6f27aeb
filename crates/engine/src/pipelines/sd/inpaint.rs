//! Inpainting with SD inpaint checkpoints, as diffusers'
//! `StableDiffusionInpaintPipeline` does it: the UNet takes, beside the
//! latents, the mask at latent resolution and the latents of the init image
//! with the masked part blanked (`[latents, mask, masked]` on the channel
//! axis: 4 + 1 + 4 = 9 inputs for SD 1.x/2.x inpaint models).

use candle_core::{DType, Tensor};

use super::{SdPipeline, encode_init_image};
use crate::error::{EngineError, Result};
use crate::input::has_mask;
use crate::pipelines::{ImageRequest, init_pixels};
use crate::samplers::NoiseSource;

/// Whether a UNet with `unet_in` inputs over `latent` latent channels is an
/// inpainting one, and whether the request fits it.
pub(super) fn check(unet_in: usize, latent: usize, items: &[ImageRequest]) -> Result<bool> {
    let inpainting = unet_in == 2 * latent + 1;
    if !inpainting && unet_in != latent {
        return Err(EngineError::invalid("model", format!("a UNet with {unet_in} input channels over {latent} latent channels is neither a text-to-image nor an inpainting UNet")));
    }
    let masks = items.iter().filter(|i| has_mask(&i.init)).count();
    match (inpainting, masks) {
        (true, n) if n < items.len() => Err(EngineError::invalid("mask", "this is an inpainting model: every image needs an init image and a mask")),
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
    let (batch, _, height, width) = pixels.dims4()?;
    let mut mask = Vec::with_capacity(batch * height * width);
    for item in items {
        let m = item.init.as_ref().and_then(|p| p.mask.as_ref()).ok_or_else(|| EngineError::invalid("mask", "every image of an inpainting batch needs one"))?;
        mask.extend(m.iter().map(|&v| f32::from(v)));
    }
    let full = Tensor::from_vec(mask, (batch, 1, height, width), &pipe.device)?;
    // F.interpolate(mode="nearest"): latent (y, x) takes pixel (y·H/h, x·W/w).
    let pick = |n: usize, of: usize| Tensor::new((0..n).map(|i| (i * of / n) as u32).collect::<Vec<_>>().as_slice(), &pipe.device);
    let small = full.index_select(&pick(h, height)?, 2)?.index_select(&pick(w, width)?, 3)?;
    // Kept pixels stay, repainted ones become 0: image · (1 − mask).
    let masked = pixels.broadcast_mul(&full.affine(-1.0, 1.0)?)?;
    let masked_latents = encode_init_image(pipe, &masked, noise)?;
    Ok(Tensor::cat(&[&small, &masked_latents], 1)?.to_dtype(DType::F32)?)
}
