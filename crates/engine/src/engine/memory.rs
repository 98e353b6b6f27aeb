//! How many images fit in one forward batch. candle's attention
//! materialises every `tokens x tokens` score matrix, so activation memory
//! grows with the square of the latent area at the first attention block;
//! the estimate is calibrated on a measurement (engine-notes: a real SD 1.5
//! UNet with guidance peaks at about 17 GB at 512x512). FLUX and SD3 use the
//! same calibration on their joint attention (image + text tokens), unmeasured.

use std::path::Path;

use imagegate_core::backend::Job;

use crate::loader::PipelineKind;
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
    // A single-file checkpoint has its template's architecture.
    let folder = if folder.is_file() { crate::loader::checkpoint_template(folder).unwrap_or_default() } else { folder.to_path_buf() };
    let size = |j: &Job| (j.spec.size.width, j.spec.size.height, j.spec.guidance > 1.0);
    let per_image = match (read_json::<UNetFile>(&folder.join("unet/config.json")), read_json::<VaeFile>(&folder.join("vae/config.json"))) {
        (Ok(unet), Ok(vae)) => jobs
            .iter()
            .map(|j| {
                let (w, h, guided) = size(j);
                activation_bytes_per_image(&unet, &vae, w, h, guided)
            })
            .max(),
        _ => match crate::loader::read_kind(&folder) {
            Ok(kind @ (PipelineKind::Flux | PipelineKind::StableDiffusion3)) => {
                let t = Transformer::of(&folder, kind);
                jobs.iter().map(|j| t.bytes_per_image(size(j))).max()
            }
            _ => return max_batch,
        },
    };
    limit(per_image.unwrap_or(0), budget, max_batch)
}

/// What the joint-attention estimate of FLUX and SD3 needs.
struct Transformer {
    heads: u64,
    text_tokens: u64,
    /// SD3 runs negatives and positives together under guidance; FLUX has no second pass.
    cfg: bool,
}

impl Transformer {
    fn of(folder: &Path, kind: PipelineKind) -> Self {
        let cfg: serde_json::Value = read_json(&folder.join("transformer/config.json")).unwrap_or_default();
        let heads = cfg.get("num_attention_heads").and_then(|h| h.as_u64());
        match kind {
            // FLUX.1 has 24 heads; BFL files carry no config. T5 gives 512 tokens (dev).
            PipelineKind::Flux => Self { heads: heads.unwrap_or(24), text_tokens: 512, cfg: false },
            // SD3.5 large: 38 heads; 77 CLIP + 256 T5 tokens.
            _ => Self { heads: heads.unwrap_or(38), text_tokens: 333, cfg: true },
        }
    }

    /// Score-matrix bytes of one image (16× latent downscale after 2×2
    /// patches), scaled by the UNet calibration: not measured on these models.
    fn bytes_per_image(&self, (w, h, guided): (u32, u32, bool)) -> u64 {
        let tokens = (u64::from(w) / 16) * (u64::from(h) / 16) + self.text_tokens;
        let rows = if self.cfg && guided { 2 } else { 1 };
        rows * self.heads * tokens * tokens * 4 * CALIBRATION
    }
}

fn limit(per_image: u64, budget: u64, max_batch: usize) -> usize {
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
    fn flux_at_1024_fits_one_image_in_16_gib_and_sd3_guidance_doubles() {
        let flux = Transformer { heads: 24, text_tokens: 512, cfg: false };
        let one = flux.bytes_per_image((1024, 1024, true));
        assert_eq!(limit(one, 16 << 30, 4), 1);
        assert_eq!(limit(flux.bytes_per_image((256, 256, true)), 16 << 30, 4), 4);
        let sd3 = Transformer { heads: 38, text_tokens: 333, cfg: true };
        assert_eq!(sd3.bytes_per_image((512, 512, true)), 2 * sd3.bytes_per_image((512, 512, false)));
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
