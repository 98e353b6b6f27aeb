//! Init images for image-to-image: a data URI or bare base64 string (as a
//! dialect adapter passes it on) decoded and resized to the output size.
//! URLs are refused here: the engine has no network access, so whoever
//! accepts a URL must fetch it into a data URI first.

use base64::Engine as _;
use image::imageops::FilterType;

use crate::error::{EngineError, Result};

/// RGB8 pixels already at the output size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitPixels {
    /// Pixels across.
    pub width: usize,
    /// Pixels down.
    pub height: usize,
    /// Interleaved RGB rows, `width * height * 3` bytes.
    pub rgb: Vec<u8>,
    /// Inpainting mask, `width * height` bytes: 1 where the image is
    /// repainted, 0 where it is kept.
    pub mask: Option<Vec<u8>>,
}

/// Whether an image is inpainted: it has an init image with a mask.
pub fn has_mask(init: &Option<InitPixels>) -> bool {
    init.as_ref().is_some_and(|p| p.mask.is_some())
}

/// Decodes `source` (PNG, JPEG or WebP; data URI or base64) and resizes it to `width` x `height`.
pub fn decode_init_image(source: &str, width: usize, height: usize) -> Result<InitPixels> {
    let img = decode_image(source, "init_image")?;
    let rgb = image::imageops::resize(&img.to_rgb8(), width as u32, height as u32, FilterType::Lanczos3);
    Ok(InitPixels { width, height, rgb: rgb.into_raw(), mask: None })
}

/// Decodes an inpainting mask as diffusers' mask processor does: grey
/// levels, resized to `width` x `height` (Lanczos), then 1 from half grey up.
pub fn decode_mask(source: &str, width: usize, height: usize) -> Result<Vec<u8>> {
    let img = decode_image(source, "mask")?;
    let grey = image::imageops::resize(&img.to_luma8(), width as u32, height as u32, FilterType::Lanczos3);
    Ok(grey.into_raw().into_iter().map(|v| u8::from(v >= 128)).collect())
}

fn decode_image(source: &str, field: &'static str) -> Result<image::DynamicImage> {
    let s = source.trim();
    if s.starts_with("http://") || s.starts_with("https://") {
        return Err(EngineError::invalid(field, "the local engine takes init images as data URIs or base64, not URLs"));
    }
    let b64 = match s.strip_prefix("data:") {
        Some(rest) => rest.split_once(',').map(|(_, data)| data).ok_or_else(|| EngineError::invalid(field, "malformed data URI"))?,
        None => s,
    };
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64.trim()).map_err(|e| EngineError::invalid(field, format!("not valid base64: {e}")))?;
    image::load_from_memory(&bytes).map_err(|e| EngineError::invalid(field, format!("not a PNG, JPEG or WebP image: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8 * 10, y as u8 * 10, 128]));
        let mut out = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
        out
    }

    #[test]
    fn data_uris_and_bare_base64_decode_and_resize() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(png(8, 4));
        let a = decode_init_image(&format!("data:image/png;base64,{b64}"), 16, 8).unwrap();
        let b = decode_init_image(&b64, 16, 8).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.rgb.len(), 16 * 8 * 3);
    }

    #[test]
    fn urls_and_garbage_are_refused_by_field() {
        for bad in ["https://example.com/a.png", "data:image/png;base64", "!!!", "aGVsbG8="] {
            assert!(matches!(decode_init_image(bad, 8, 8), Err(EngineError::Invalid { field, .. }) if field == "init_image"), "{bad}");
        }
    }
}
