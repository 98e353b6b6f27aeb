//! How many images fit in one forward batch. candle's attention
//! materialises every `tokens x tokens` score matrix, so activation memory
//! grows with the square of the latent area at the first attention block;
//! the estimate is calibrated on a measurement (engine-notes: a real SD 1.5
//! UNet with guidance peaks at about 17 GB at 512x512).

use std::path::Path;

use imagegate_core::backend::Job;

use crate::models::configs::{UNetFile, VaeFile, read_json};

/// Peak bytes per score-matrix byte, from the 17 GB SD 1.5 measurement
/// (2 rows x 8 heads x 4096² tokens x 4 bytes = 1.07 GB of scores).
const CALIBRATION: u64 = 16;

/// Estimated peak activation bytes of one image at `width` x `height`.
pub fn activation_bytes_per_image(unet: &UNetFile, vae: &VaeFile, width: u32, height: u32, guided: bool) -> u64 {
    let f = vae.downscale() as u64;
    let (h, w) = (u64::from(height) / f, u64::from(width) / f);
    // The first block with attention sees the most tokens.
    let Some(k) = unet.down_block_types.iter().position(|t| t.starts_with("CrossAttn")) else { return 0 };
    let heads = unet.num_attention_heads.as_ref().or(unet.attention_head_dim.as_ref()).and_then(|h| h.get(k)).unwrap_or(1) as u64;
    let tokens = (h >> k).max(1) * (w >> k).max(1);
    let rows = if guided { 2 } else { 1 };
    rows * heads * tokens * tokens * 4 * CALIBRATION
}

/// The most images per forward batch for `jobs` on the model in `folder`:
/// `max_batch`, lowered so the estimate stays within `budget` (at least 1).
pub fn batch_limit(folder: &Path, jobs: &[Job], budget: u64, max_batch: usize) -> usize {
    let (Ok(unet), Ok(vae)) = (read_json::<UNetFile>(&folder.join("unet/config.json")), read_json::<VaeFile>(&folder.join("vae/config.json"))) else {
        return max_batch;
    };
    let per_image = jobs
        .iter()
        .map(|j| activation_bytes_per_image(&unet, &vae, j.spec.size.width, j.spec.size.height, j.spec.guidance > 1.0))
        .max()
        .unwrap_or(0);
    if per_image == 0 {
        return max_batch;
    }
    usize::try_from(budget / per_image).unwrap_or(usize::MAX).clamp(1, max_batch.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sd15() -> (UNetFile, VaeFile) {
        let unet = serde_json::json!({
            "in_channels": 4, "out_channels": 4, "block_out_channels": [320, 640, 1280, 1280],
            "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
            "layers_per_block": 2, "attention_head_dim": 8, "cross_attention_dim": 768,
        });
        let vae = serde_json::json!({ "block_out_channels": [128, 256, 512, 512] });
        (serde_json::from_value(unet).unwrap(), serde_json::from_value(vae).unwrap())
    }

    #[test]
    fn sd15_at_512_with_guidance_matches_the_measured_peak() {
        let (unet, vae) = sd15();
        let gb = activation_bytes_per_image(&unet, &vae, 512, 512, true) as f64 / 1e9;
        assert!((gb - 17.2).abs() < 0.5, "{gb}");
        // Quadratic in area: a quarter of the pixels needs a sixteenth.
        let small = activation_bytes_per_image(&unet, &vae, 256, 256, true) as f64 / 1e9;
        assert!((gb / small - 16.0).abs() < 1e-9);
        assert!(activation_bytes_per_image(&unet, &vae, 512, 512, false) * 2 == activation_bytes_per_image(&unet, &vae, 512, 512, true));
    }
}
