//! `POST /v1/images/edits`: OpenAI's image edit. A multipart form carries
//! the image to edit (`image`, or `image[]` as the SDKs name a list), an
//! optional `mask` and the generation fields as text; it becomes an
//! image-to-image task (inpainting, with a mask) answered exactly as
//! `POST /v1/images/generations` answers.
//!
//! OpenAI's mask marks what to repaint by transparency (alpha zero) and
//! must be the image's size; the engine's mask is white where it repaints
//! (diffusers' convention). A mask with an alpha channel is read OpenAI's
//! way and one without it the engine's way, and either is stored as a
//! grey PNG in the engine's convention.

use axum::extract::multipart::{Multipart, MultipartError, MultipartRejection};
use base64::Engine as _;
use imagegate_core::{AppError, Catalog, ErrorCode, Size};
use serde_json::{Map, Value, json};

use super::request::ImageRequest;

/// Text fields that carry whole numbers and real numbers; the form sends
/// every field as text, the shared request reads JSON types.
const WHOLE: [&str; 4] = ["n", "batch_size", "num_inference_steps", "seed"];
const REAL: [&str; 2] = ["guidance_scale", "strength"];

/// A masked edit's strength when the form names none: the masked area is
/// repainted outright, as OpenAI's edits repaint it.
const EDIT_STRENGTH_WITH_MASK: f64 = 1.0;

/// The form, read and checked: the request as the JSON route would have
/// parsed it, with the image (and mask) as data URIs.
pub struct EditForm {
    /// The generation fields, `image` included.
    pub request: ImageRequest,
    /// The mask in the engine's convention, as a PNG data URI.
    pub mask: Option<String>,
}

/// Reads the multipart body.
pub async fn read_form(multipart: Result<Multipart, MultipartRejection>, catalog: &Catalog) -> Result<EditForm, AppError> {
    let mut multipart =
        multipart.map_err(|e| AppError::new(ErrorCode::InvalidRequest, format!("the body must be multipart/form-data with an `image` file and a `prompt`: {e}")))?;
    let mut fields = Map::new();
    let mut image: Option<Vec<u8>> = None;
    let mut mask: Option<Vec<u8>> = None;
    while let Some(field) = multipart.next_field().await.map_err(form_error)? {
        let name = field.name().unwrap_or_default().to_string();
        let is_file = field.file_name().is_some();
        let data = field.bytes().await.map_err(form_error)?;
        match (name.as_str(), is_file) {
            ("image" | "image[]", true) => {
                if image.is_some() {
                    return Err(AppError::invalid("image", "one image per edit here; send the others as separate requests"));
                }
                image = Some(data.to_vec());
            }
            ("mask", true) => mask = Some(data.to_vec()),
            (other, true) => return Err(AppError::invalid(other, "is a file; the form takes files only as `image` and `mask`")),
            (_, false) => {
                let text = String::from_utf8(data.to_vec()).map_err(|_| AppError::invalid(&name, "is not UTF-8 text"))?;
                fields.insert(name.clone(), typed(&name, text));
            }
        }
    }
    let Some(bytes) = image else {
        // An `image` sent as text (a URL or a data URI) is taken as the JSON route takes it.
        if fields.get("image").and_then(Value::as_str).is_some_and(|s| !s.trim().is_empty()) {
            if mask.is_some() {
                return Err(AppError::invalid("mask", "needs the image as a file, to be checked against it"));
            }
            return Ok(EditForm { request: parse_request(fields)?, mask: None });
        }
        return Err(AppError::invalid("image", "required: the image to edit, as a file"));
    };
    let picture = image::load_from_memory(&bytes).map_err(|e| AppError::invalid("image", format!("not a PNG, JPEG or WebP image: {e}")))?;
    let mime = image::guess_format(&bytes).map_or("image/png", |f| f.to_mime_type());
    let mask = mask.map(|m| engine_mask(&m, picture.width(), picture.height())).transpose()?;
    fields.insert("image".into(), format!("data:{mime};base64,{}", base64::engine::general_purpose::STANDARD.encode(&bytes)).into());
    if mask.is_some() && !fields.contains_key("strength") {
        fields.insert("strength".into(), json!(EDIT_STRENGTH_WITH_MASK));
    }
    // Without a size, the edit keeps the image's own where the model can make it.
    if !fields.contains_key("size") && !fields.contains_key("image_size") {
        let model = catalog.require(fields.get("model").and_then(Value::as_str).unwrap_or(catalog.default_model()))?;
        let own = Size::new(picture.width(), picture.height());
        if model.check_size("size", own).is_ok() {
            fields.insert("size".into(), own.to_string().into());
        }
    }
    Ok(EditForm { request: parse_request(fields)?, mask })
}

fn parse_request(fields: Map<String, Value>) -> Result<ImageRequest, AppError> {
    if !fields.contains_key("prompt") {
        return Err(AppError::invalid("prompt", "required: what the edit should make of the image"));
    }
    serde_path_to_error::deserialize(Value::Object(fields)).map_err(|e| {
        let path = e.path().to_string();
        AppError::invalid(&path, e.into_inner().to_string())
    })
}

/// A form field's text as the JSON type the request reads; text that does
/// not parse stays text, so the request's error names the field.
fn typed(name: &str, text: String) -> Value {
    let trimmed = text.trim();
    if WHOLE.contains(&name) {
        if let Ok(n) = trimmed.parse::<u64>() {
            return n.into();
        }
    } else if REAL.contains(&name) {
        if let Some(x) = trimmed.parse::<f64>().ok().filter(|x| x.is_finite()) {
            return json!(x);
        }
    } else if name == "prompt_enhancement"
        && let Ok(b) = trimmed.parse::<bool>()
    {
        return b.into();
    }
    Value::String(text)
}

fn form_error(e: MultipartError) -> AppError {
    if e.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
        return AppError::new(ErrorCode::PayloadTooLarge, "request body is larger than the configured limit");
    }
    AppError::new(ErrorCode::InvalidRequest, format!("malformed multipart body: {}", e.body_text()))
}

/// The mask as a grey PNG data URI, white where the engine repaints.
fn engine_mask(bytes: &[u8], width: u32, height: u32) -> Result<String, AppError> {
    let mask = image::load_from_memory(bytes).map_err(|e| AppError::invalid("mask", format!("not a PNG, JPEG or WebP image: {e}")))?;
    if (mask.width(), mask.height()) != (width, height) {
        return Err(AppError::invalid("mask", format!("is {}x{}; it must be the image's size, {width}x{height}", mask.width(), mask.height())));
    }
    let grey = if mask.color().has_alpha() {
        let rgba = mask.to_rgba8();
        image::GrayImage::from_fn(width, height, |x, y| image::Luma([if rgba.get_pixel(x, y)[3] < 128 { 255 } else { 0 }]))
    } else {
        mask.to_luma8()
    };
    let mut png = Vec::new();
    grey.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).map_err(|e| AppError::new(ErrorCode::Internal, format!("encoding the mask: {e}")))?;
    Ok(format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(&png)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(img: image::DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
        out
    }

    fn decoded(uri: &str) -> image::GrayImage {
        let b64 = uri.strip_prefix("data:image/png;base64,").unwrap();
        image::load_from_memory(&base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap().to_luma8()
    }

    #[test]
    fn a_transparent_area_becomes_white_and_an_opaque_one_black() {
        let rgba = image::RgbaImage::from_fn(4, 2, |x, _| image::Rgba([10, 10, 10, if x < 2 { 0 } else { 255 }]));
        let grey = decoded(&engine_mask(&png(rgba.into()), 4, 2).unwrap());
        assert_eq!(grey.into_raw(), [255, 255, 0, 0, 255, 255, 0, 0]);
    }

    #[test]
    fn a_mask_without_alpha_is_read_as_the_engine_reads_it() {
        let luma = image::GrayImage::from_fn(2, 1, |x, _| image::Luma([if x == 0 { 255 } else { 0 }]));
        assert_eq!(decoded(&engine_mask(&png(luma.into()), 2, 1).unwrap()).into_raw(), [255, 0]);
    }

    #[test]
    fn a_mask_of_another_size_names_both_sizes() {
        let e = engine_mask(&png(image::GrayImage::new(3, 3).into()), 4, 4).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("mask"));
        assert!(e.message.contains("3x3") && e.message.contains("4x4"), "{e}");
    }

    #[test]
    fn form_text_becomes_the_json_types_and_bad_numbers_stay_text() {
        assert_eq!(typed("n", "2".into()), json!(2));
        assert_eq!(typed("strength", "0.5".into()), json!(0.5));
        assert_eq!(typed("strength", "NaN".into()), json!("NaN"));
        assert_eq!(typed("prompt_enhancement", "true".into()), json!(true));
        assert_eq!(typed("size", "1024x1024".into()), json!("1024x1024"));
    }
}
