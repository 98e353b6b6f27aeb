//! Stage `encode_image`: a `[3, H, W]` f32 image in `[0, 1]` becomes PNG
//! (with an A1111-style `parameters` text chunk, which tools such as
//! A1111, ComfyUI and civitai read), JPEG or WebP bytes.

use candle_core::{DType, Tensor};
use imagegate_core::{ImageFormat, Sampler};

use crate::error::{EngineError, Result};

/// What produced an image, written into the PNG `parameters` chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct Parameters {
    /// Positive prompt as drawn.
    pub prompt: String,
    /// Negative prompt, if any.
    pub negative: Option<String>,
    /// Steps.
    pub steps: u32,
    /// Sampler.
    pub sampler: Sampler,
    /// Whether Karras sigmas were used.
    pub karras: bool,
    /// Guidance scale.
    pub guidance: f32,
    /// The image's own seed.
    pub seed: u64,
    /// Pixels across.
    pub width: u32,
    /// Pixels down.
    pub height: u32,
    /// Model id.
    pub model: String,
    /// Image-to-image strength, if the image started from one.
    pub denoising_strength: Option<f32>,
}

/// A1111's display name for a sampler.
fn a1111_name(s: Sampler) -> &'static str {
    match s {
        Sampler::Ddim => "DDIM",
        Sampler::Ddpm => "DDPM",
        Sampler::KEuler => "Euler",
        Sampler::KEulerAncestral => "Euler a",
        Sampler::KHeun => "Heun",
        Sampler::KLms => "LMS",
        Sampler::KDpm2 => "DPM2",
        Sampler::KDpm2Ancestral => "DPM2 a",
        Sampler::KDpmpp2m => "DPM++ 2M",
        Sampler::KDpmpp2sAncestral => "DPM++ 2S a",
        Sampler::FlowEuler => "Euler (flow)",
    }
}

impl Parameters {
    /// The A1111 `parameters` text: prompt, `Negative prompt:` line, then settings.
    pub fn to_a1111(&self) -> String {
        let mut s = self.prompt.clone();
        if let Some(n) = self.negative.as_deref().filter(|n| !n.is_empty()) {
            s.push_str("\nNegative prompt: ");
            s.push_str(n);
        }
        let karras = if self.karras { " Karras" } else { "" };
        s.push_str(&format!(
            "\nSteps: {}, Sampler: {}{karras}, CFG scale: {}, Seed: {}, Size: {}x{}, Model: {}",
            self.steps,
            a1111_name(self.sampler),
            self.guidance,
            self.seed,
            self.width,
            self.height,
            self.model
        ));
        if let Some(d) = self.denoising_strength {
            s.push_str(&format!(", Denoising strength: {d}"));
        }
        s
    }
}

/// `[3, H, W]` f32 in `[0, 1]` → interleaved RGB8 rows.
pub fn to_rgb8(image: &Tensor) -> Result<(u32, u32, Vec<u8>)> {
    let (c, h, w) = image.dims3()?;
    if c != 3 {
        return Err(EngineError::Encode(format!("expected 3 channels, got {c}")));
    }
    let data = image.affine(255.0, 0.0)?.round()?.clamp(0f32, 255f32)?.permute((1, 2, 0))?.to_dtype(DType::U8)?.flatten_all()?.to_vec1::<u8>()?;
    Ok((w as u32, h as u32, data))
}

/// Stage `encode_image`: encodes one image in `format`; PNGs carry `params`.
pub fn encode_image(image: &Tensor, format: ImageFormat, params: &Parameters) -> Result<Vec<u8>> {
    let (w, h, rgb) = to_rgb8(image)?;
    encode_rgb8(w, h, rgb, format, params)
}

/// Encodes interleaved RGB8 rows (`w` by `h`) in `format`; PNGs carry `params`.
pub fn encode_rgb8(w: u32, h: u32, rgb: Vec<u8>, format: ImageFormat, params: &Parameters) -> Result<Vec<u8>> {
    let enc = |e: &dyn std::fmt::Display| EngineError::Encode(e.to_string());
    let mut out = Vec::new();
    match format {
        ImageFormat::Png => {
            let mut encoder = png::Encoder::new(&mut out, w, h);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            let text = params.to_a1111();
            // tEXt is Latin-1; anything else goes in an iTXt chunk (as PIL does).
            if text.chars().all(|c| (c as u32) < 256) {
                encoder.add_text_chunk("parameters".into(), text).map_err(|e| enc(&e))?;
            } else {
                encoder.add_itxt_chunk("parameters".into(), text).map_err(|e| enc(&e))?;
            }
            let mut writer = encoder.write_header().map_err(|e| enc(&e))?;
            writer.write_image_data(&rgb).map_err(|e| enc(&e))?;
            writer.finish().map_err(|e| enc(&e))?;
        }
        ImageFormat::Jpeg | ImageFormat::Webp => {
            let img = image::RgbImage::from_raw(w, h, rgb).ok_or_else(|| EngineError::Encode("buffer size mismatch".into()))?;
            let fmt = if format == ImageFormat::Jpeg { image::ImageFormat::Jpeg } else { image::ImageFormat::WebP };
            img.write_to(&mut std::io::Cursor::new(&mut out), fmt).map_err(|e| enc(&e))?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn params() -> Parameters {
        Parameters {
            prompt: "a cat".into(),
            negative: Some("blurry".into()),
            steps: 20,
            sampler: Sampler::KDpmpp2m,
            karras: true,
            guidance: 7.5,
            seed: 42,
            width: 4,
            height: 2,
            model: "tiny".into(),
            denoising_strength: None,
        }
    }

    #[test]
    fn a1111_text_has_prompt_negative_and_settings() {
        assert_eq!(params().to_a1111(), "a cat\nNegative prompt: blurry\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7.5, Seed: 42, Size: 4x2, Model: tiny");
    }

    #[test]
    fn png_round_trips_pixels_and_parameters() {
        let img = Tensor::rand(0f32, 1f32, (3, 2, 4), &Device::Cpu).unwrap();
        let bytes = encode_image(&img, ImageFormat::Png, &params()).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(&bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut buf).unwrap();
        let info = reader.info();
        assert_eq!((info.width, info.height), (4, 2));
        let text = info.uncompressed_latin1_text.iter().find(|t| t.keyword == "parameters").unwrap();
        assert_eq!(text.text, params().to_a1111());
        assert_eq!(buf, to_rgb8(&img).unwrap().2);
    }

    #[test]
    fn jpeg_and_webp_decode_to_the_requested_size() {
        let img = Tensor::rand(0f32, 1f32, (3, 8, 16), &Device::Cpu).unwrap();
        for f in [ImageFormat::Jpeg, ImageFormat::Webp] {
            let bytes = encode_image(&img, f, &params()).unwrap();
            let back = image::load_from_memory(&bytes).unwrap();
            assert_eq!((back.width(), back.height()), (16, 8), "{f:?}");
        }
    }
}
