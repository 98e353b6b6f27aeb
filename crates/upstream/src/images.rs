//! Turning what providers hand back (base64, data URIs, downloaded bytes)
//! into checked [`GeneratedImage`]s: only the header is decoded, enough to
//! know the format and the size without paying for a full decode.

use std::io::Cursor;

use base64::Engine as _;
use imagegate_core::{GeneratedImage, ImageFormat};

use crate::error::UpstreamError;

/// An image as an adapter received it, before it is fetched and checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RawImage {
    /// Bytes already in hand (decoded base64).
    Bytes {
        /// Encoded image.
        bytes: Vec<u8>,
        /// The seed the provider reported or was sent.
        seed: Option<u64>,
    },
    /// A (short-lived) provider URL to download now.
    Url {
        /// Where.
        url: String,
        /// The seed the provider reported or was sent.
        seed: Option<u64>,
    },
}

impl RawImage {
    /// A base64 (or data URI) payload.
    pub(crate) fn base64(b64: &str, seed: Option<u64>) -> Result<Self, UpstreamError> {
        Ok(Self::Bytes { bytes: decode_base64(b64)?, seed })
    }
}

/// Decodes base64, with or without a `data:image/...;base64,` prefix.
pub(crate) fn decode_base64(s: &str) -> Result<Vec<u8>, UpstreamError> {
    let payload = match s.split_once(";base64,") {
        Some((head, rest)) if head.starts_with("data:") => rest,
        _ => s,
    };
    // Some providers wrap base64 in lines. Most send it in one piece, and a
    // real image is megabytes of it, so it is copied without whitespace
    // only when it has some.
    let engine = base64::engine::general_purpose::STANDARD;
    let decoded = if payload.bytes().any(|b| b.is_ascii_whitespace()) {
        let cleaned: Vec<u8> = payload.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        engine.decode(cleaned)
    } else {
        engine.decode(payload)
    };
    decoded.map_err(|e| UpstreamError::BadResponse(format!("image is not valid base64: {e}")))
}

/// Reads format and dimensions from the image header.
pub(crate) fn inspect(bytes: &[u8]) -> Result<(ImageFormat, u32, u32), UpstreamError> {
    let guessed = image::guess_format(bytes).map_err(|e| UpstreamError::BadResponse(format!("result is not an image: {e}")))?;
    let format = match guessed {
        image::ImageFormat::Png => ImageFormat::Png,
        image::ImageFormat::Jpeg => ImageFormat::Jpeg,
        image::ImageFormat::WebP => ImageFormat::Webp,
        other => return Err(UpstreamError::BadResponse(format!("result is {other:?}, not png, jpeg or webp"))),
    };
    let (width, height) = image::ImageReader::with_format(Cursor::new(bytes), guessed)
        .into_dimensions()
        .map_err(|e| UpstreamError::BadResponse(format!("unreadable {} image: {e}", format.ext())))?;
    Ok((format, width, height))
}

/// Builds a checked image from bytes.
pub(crate) fn to_generated(bytes: Vec<u8>, seed: u64) -> Result<GeneratedImage, UpstreamError> {
    let (format, width, height) = inspect(&bytes)?;
    Ok(GeneratedImage { bytes, format, width, height, seed })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::new(w, h);
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).expect("encoding to memory cannot fail");
        out.into_inner()
    }

    #[test]
    fn reads_size_and_format_from_png() {
        let g = to_generated(png(3, 2), 9).unwrap();
        assert_eq!((g.format, g.width, g.height, g.seed), (ImageFormat::Png, 3, 2, 9));
    }

    #[test]
    fn data_uris_and_plain_base64_decode_alike() {
        let bytes = png(1, 1);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        assert_eq!(decode_base64(&b64).unwrap(), bytes);
        assert_eq!(decode_base64(&format!("data:image/png;base64,{b64}")).unwrap(), bytes);
        assert!(decode_base64("***").is_err());
        let wrapped: String = b64.as_bytes().chunks(20).map(|line| format!("{}\r\n", std::str::from_utf8(line).unwrap())).collect();
        assert_eq!(decode_base64(&format!(" {wrapped}\t")).unwrap(), bytes, "line breaks and blanks anywhere are ignored");
        assert!(decode_base64("iVBO\u{a0}Rw0K").is_err(), "a non-ASCII blank is not base64");
    }

    #[test]
    fn garbage_is_a_bad_response() {
        assert!(matches!(inspect(b"hello"), Err(UpstreamError::BadResponse(_))));
    }
}
