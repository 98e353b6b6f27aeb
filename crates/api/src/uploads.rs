//! Multipart forms with image uploads (OpenAI's edits, Stability's
//! image-to-image): reading the parts, checking the images, and turning a
//! mask written in a dialect's convention into the engine's (a grey PNG,
//! white where it repaints, as diffusers reads masks).

use axum::extract::multipart::{Multipart, MultipartError, MultipartRejection};
use base64::Engine as _;
use imagegate_core::{AppError, ErrorCode};
use serde_json::{Value, json};

/// A form's parts: text fields in the order sent, and files by field name.
#[derive(Debug, Default)]
pub struct FormParts {
    /// `(name, text)` of every part without a file name.
    pub texts: Vec<(String, String)>,
    /// `(name, bytes)` of every file part.
    pub files: Vec<(String, Vec<u8>)>,
}

impl FormParts {
    /// The one file sent under any of `names`; a second is refused rather
    /// than silently dropped, naming `field`.
    pub fn single_file(&mut self, field: &str, names: &[&str]) -> Result<Option<Vec<u8>>, AppError> {
        let mut found = None;
        for (name, bytes) in std::mem::take(&mut self.files) {
            if !names.contains(&name.as_str()) {
                self.files.push((name, bytes));
            } else if found.replace(bytes).is_some() {
                return Err(AppError::invalid(field, "one file here; send the others as separate requests"));
            }
        }
        Ok(found)
    }

    /// Refuses any file not taken by [`FormParts::single_file`].
    pub fn no_other_files(&self, allowed: &str) -> Result<(), AppError> {
        match self.files.first() {
            Some((name, _)) => Err(AppError::invalid(name, format!("is a file; this form takes files only as {allowed}"))),
            None => Ok(()),
        }
    }
}

/// Reads every part of a multipart body; `what` says what the form needs,
/// for the error a non-multipart body gets.
pub async fn read_parts(multipart: Result<Multipart, MultipartRejection>, what: &str) -> Result<FormParts, AppError> {
    let mut multipart = multipart.map_err(|e| AppError::new(ErrorCode::InvalidRequest, format!("the body must be multipart/form-data with {what}: {e}")))?;
    let mut parts = FormParts::default();
    while let Some(field) = multipart.next_field().await.map_err(form_error)? {
        let name = field.name().unwrap_or_default().to_string();
        let is_file = field.file_name().is_some();
        let data = field.bytes().await.map_err(form_error)?;
        if is_file {
            parts.files.push((name, data.to_vec()));
        } else {
            let text = String::from_utf8(data.to_vec()).map_err(|_| AppError::invalid(&name, "is not UTF-8 text"))?;
            parts.texts.push((name, text));
        }
    }
    Ok(parts)
}

fn form_error(e: MultipartError) -> AppError {
    if e.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
        return AppError::new(ErrorCode::PayloadTooLarge, "request body is larger than the configured limit");
    }
    AppError::new(ErrorCode::InvalidRequest, format!("malformed multipart body: {}", e.body_text()))
}

/// A form field's text as a JSON number where it is one (a whole number
/// first), else as text, so that the request type reading it names the
/// field when it is not the number it wants.
pub fn number_or_text(text: String) -> Value {
    let t = text.trim();
    if let Ok(n) = t.parse::<u64>() {
        return n.into();
    }
    match t.parse::<f64>() {
        Ok(x) if x.is_finite() => json!(x),
        _ => Value::String(text),
    }
}

/// Decodes an uploaded image, naming `field` when it is not one.
pub fn decode_image(field: &str, bytes: &[u8]) -> Result<image::DynamicImage, AppError> {
    image::load_from_memory(bytes).map_err(|e| AppError::invalid(field, format!("not a PNG, JPEG or WebP image: {e}")))
}

/// An upload as a data URI with its own MIME type, as task specs carry images.
pub fn data_uri(bytes: &[u8]) -> String {
    let mime = image::guess_format(bytes).map_or("image/png", |f| f.to_mime_type());
    format!("data:{mime};base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Which pixels of a mask say "repaint".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskConvention {
    /// Transparent ones (alpha below half): OpenAI's edits, Stability's `INIT_IMAGE_ALPHA`.
    Transparent,
    /// White ones (half grey and up): the engine's, Stability's `MASK_IMAGE_WHITE`.
    White,
    /// Black ones: Stability's `MASK_IMAGE_BLACK`.
    Black,
}

/// `mask` (`width`×`height`, like the image it belongs to) as a grey PNG data
/// URI in the engine's convention; `field` is named in every refusal.
pub fn engine_mask(field: &str, mask: &image::DynamicImage, width: u32, height: u32, convention: MaskConvention) -> Result<String, AppError> {
    if (mask.width(), mask.height()) != (width, height) {
        return Err(AppError::invalid(field, format!("is {}x{}; it must be the image's size, {width}x{height}", mask.width(), mask.height())));
    }
    let repaint = |yes: bool| image::Luma([if yes { 255 } else { 0 }]);
    let grey = match convention {
        MaskConvention::Transparent => {
            let rgba = mask.to_rgba8();
            image::GrayImage::from_fn(width, height, |x, y| repaint(rgba.get_pixel(x, y)[3] < 128))
        }
        MaskConvention::White => mask.to_luma8(),
        MaskConvention::Black => {
            let luma = mask.to_luma8();
            image::GrayImage::from_fn(width, height, |x, y| repaint(luma.get_pixel(x, y)[0] < 128))
        }
    };
    let mut png = Vec::new();
    grey.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).map_err(|e| AppError::internal(format!("encoding the mask: {e}")))?;
    Ok(data_uri(&png))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(uri: &str) -> Vec<u8> {
        let b64 = uri.strip_prefix("data:image/png;base64,").unwrap();
        image::load_from_memory(&base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap().to_luma8().into_raw()
    }

    #[test]
    fn each_convention_marks_its_own_pixels_white() {
        let rgba: image::DynamicImage = image::RgbaImage::from_fn(2, 1, |x, _| if x == 0 { image::Rgba([255, 255, 255, 0]) } else { image::Rgba([0, 0, 0, 255]) }).into();
        assert_eq!(decoded(&engine_mask("m", &rgba, 2, 1, MaskConvention::Transparent).unwrap()), [255, 0]);
        let luma: image::DynamicImage = image::GrayImage::from_fn(2, 1, |x, _| image::Luma([if x == 0 { 255 } else { 0 }])).into();
        assert_eq!(decoded(&engine_mask("m", &luma, 2, 1, MaskConvention::White).unwrap()), [255, 0]);
        assert_eq!(decoded(&engine_mask("m", &luma, 2, 1, MaskConvention::Black).unwrap()), [0, 255]);
    }

    #[test]
    fn a_mask_of_another_size_names_the_field_and_both_sizes() {
        let e = engine_mask("mask_image", &image::GrayImage::new(3, 3).into(), 4, 4, MaskConvention::White).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("mask_image"));
        assert!(e.message.contains("3x3") && e.message.contains("4x4"), "{e}");
    }

    #[test]
    fn a_second_file_under_the_same_name_is_refused() {
        let mut parts = FormParts { texts: Vec::new(), files: vec![("image".into(), vec![1]), ("image[]".into(), vec![2]), ("mask".into(), vec![3])] };
        assert_eq!(parts.single_file("image", &["image", "image[]"]).unwrap_err().field.as_deref(), Some("image"));
        let mut parts = FormParts { texts: Vec::new(), files: vec![("image".into(), vec![1]), ("extra".into(), vec![3])] };
        assert_eq!(parts.single_file("image", &["image"]).unwrap(), Some(vec![1]));
        assert_eq!(parts.no_other_files("`image`").unwrap_err().field.as_deref(), Some("extra"));
    }
}
