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

use axum::extract::multipart::{Multipart, MultipartRejection};
use imagegate_core::{AppError, Catalog, Size};
use serde_json::{Map, Value, json};

use super::request::ImageRequest;
use crate::body::from_value;
use crate::uploads::{MaskConvention, data_uri, decode_image, engine_mask, number_or_text, read_parts};

/// Text fields that carry numbers; the form sends every field as text, the
/// shared request reads JSON types.
const NUMBERS: [&str; 6] = ["n", "batch_size", "num_inference_steps", "seed", "guidance_scale", "strength"];

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
    let mut parts = read_parts(multipart, "an `image` file and a `prompt`").await?;
    let image = parts.single_file("image", &["image", "image[]"])?;
    let mask = parts.single_file("mask", &["mask"])?;
    parts.no_other_files("`image` and `mask`")?;
    let mut fields: Map<String, Value> = parts.texts.into_iter().map(|(name, text)| (name.clone(), typed(&name, text))).collect();
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
    let picture = decode_image("image", &bytes)?;
    let mask = match mask {
        // OpenAI's convention where the mask has alpha; a mask without it is read the engine's way.
        Some(m) => {
            let m = decode_image("mask", &m)?;
            let convention = if m.color().has_alpha() { MaskConvention::Transparent } else { MaskConvention::White };
            Some(engine_mask("mask", &m, picture.width(), picture.height(), convention)?)
        }
        None => None,
    };
    fields.insert("image".into(), data_uri(&bytes).into());
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
    from_value(Value::Object(fields))
}

/// A form field's text as the JSON type the request reads; text that does
/// not parse stays text, so the request's error names the field.
fn typed(name: &str, text: String) -> Value {
    if NUMBERS.contains(&name) {
        return number_or_text(text);
    }
    match text.trim().parse::<bool>() {
        Ok(b) if name == "prompt_enhancement" => b.into(),
        _ => Value::String(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_text_becomes_the_json_types_and_bad_numbers_stay_text() {
        assert_eq!(typed("n", "2".into()), json!(2));
        assert_eq!(typed("strength", "0.5".into()), json!(0.5));
        assert_eq!(typed("strength", "NaN".into()), json!("NaN"));
        assert_eq!(typed("prompt_enhancement", "true".into()), json!(true));
        assert_eq!(typed("size", "1024x1024".into()), json!("1024x1024"));
    }
}
