//! Stability v1 image-to-image, sent as multipart forms:
//! `POST /v1/generation/{engine_id}/image-to-image` (an `init_image` file;
//! `init_image_mode` IMAGE_STRENGTH with `image_strength`, or STEP_SCHEDULE
//! with `step_schedule_start` and `step_schedule_end`) and
//! `.../image-to-image/masking` (`mask_source` MASK_IMAGE_WHITE,
//! MASK_IMAGE_BLACK or INIT_IMAGE_ALPHA, with a `mask_image` file for the
//! first two). Prompts come as `text_prompts[N][text]` and
//! `text_prompts[N][weight]`; every other field is text-to-image's, checked
//! by the same request type. The result is the init image's size, which
//! must be one the engine makes.

use std::collections::BTreeMap;

use axum::extract::multipart::{Multipart, MultipartRejection};
use imagegate_core::{AppError, InitImage, ModelEntry, TaskSpec};
use serde_json::{Map, Value, json};

use super::request::TextToImageRequest;
use crate::body::from_value;
use crate::uploads::{MaskConvention, data_uri, decode_image, engine_mask, number_or_text, read_parts};

/// Which of the two routes the form came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `image-to-image`: the whole image, as far as the strength allows.
    Strength,
    /// `image-to-image/masking`: only the masked area, repainted outright.
    Masking,
}

/// Stability's default `image_strength` (how much of the init image stays).
const DEFAULT_IMAGE_STRENGTH: f64 = 0.35;
/// Stability's default `step_schedule_start` (the share of the schedule run).
const DEFAULT_STEP_SCHEDULE_START: f64 = 0.65;
/// Text fields that carry numbers in text-to-image's JSON body.
const NUMBERS: [&str; 4] = ["cfg_scale", "samples", "seed", "steps"];

/// Reads the form posted to `route` for `engine` into a task spec.
pub async fn read_form(multipart: Result<Multipart, MultipartRejection>, engine: &ModelEntry, route: Route, random_seed: u64) -> Result<TaskSpec, AppError> {
    let mut parts = read_parts(multipart, "an `init_image` file and `text_prompts[0][text]`").await?;
    let init = parts.single_file("init_image", &["init_image"])?.ok_or_else(|| AppError::invalid("init_image", "required: the image to start from, as a file"))?;
    let mask = parts.single_file("mask_image", &["mask_image"])?;
    parts.no_other_files("`init_image` and `mask_image`")?;
    let mut body = Map::new();
    let mut prompts: BTreeMap<usize, Map<String, Value>> = BTreeMap::new();
    let mut own: BTreeMap<String, String> = BTreeMap::new();
    for (name, text) in parts.texts {
        if let Some((index, key)) = prompt_part(&name) {
            let value = if key == "weight" { number_or_text(text) } else { Value::String(text) };
            prompts.entry(index).or_default().insert(key.to_string(), value);
            continue;
        }
        match name.as_str() {
            "init_image_mode" | "image_strength" | "step_schedule_start" | "step_schedule_end" | "mask_source" => {
                own.insert(name, text);
            }
            "width" | "height" => return Err(AppError::invalid(&name, "is the init image's here; resize the init image to change it")),
            "extras" => {
                let extras: Map<String, Value> = serde_json::from_str(&text).map_err(|e| AppError::invalid("extras", format!("must be a JSON object: {e}")))?;
                body.insert(name, extras.into());
            }
            n if NUMBERS.contains(&n) => {
                body.insert(name, number_or_text(text));
            }
            _ => {
                body.insert(name, text.into());
            }
        }
    }
    let picture = decode_image("init_image", &init)?;
    body.insert("text_prompts".into(), prompts.into_values().map(Value::Object).collect::<Vec<_>>().into());
    body.insert("width".into(), json!(picture.width()));
    body.insert("height".into(), json!(picture.height()));
    let request: TextToImageRequest = from_value(Value::Object(body))?;
    let mut spec = request.into_spec(engine, random_seed).map_err(|e| match e.field.as_deref() {
        Some("width" | "height") => AppError::invalid("init_image", format!("is {}x{}, the size the result takes; {}", picture.width(), picture.height(), e.message)),
        _ => e,
    })?;
    let (strength, mask) = match route {
        Route::Strength => {
            if mask.is_some() {
                return Err(AppError::invalid("mask_image", "this route takes no mask; send it to .../image-to-image/masking"));
            }
            (strength(&own, &mut spec)?, None)
        }
        Route::Masking => (1.0, Some(masking(&own, mask, &picture)?)),
    };
    spec.init_image = Some(InitImage { source: data_uri(&init), strength, mask });
    Ok(spec)
}

/// `text_prompts[3][text]` → (3, "text").
fn prompt_part(name: &str) -> Option<(usize, &str)> {
    let rest = name.strip_prefix("text_prompts[")?;
    let (index, rest) = rest.split_once("][")?;
    let key = rest.strip_suffix(']')?;
    matches!(key, "text" | "weight").then_some(())?;
    Some((index.parse().ok()?, key))
}

fn fraction(own: &BTreeMap<String, String>, field: &str, default: f64) -> Result<f64, AppError> {
    let Some(text) = own.get(field) else { return Ok(default) };
    match text.trim().parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err(AppError::invalid(field, format!("`{text}` is not a number from 0 to 1"))),
    }
}

/// The engine's strength (the share of the schedule run over the init image).
fn strength(own: &BTreeMap<String, String>, spec: &mut TaskSpec) -> Result<f32, AppError> {
    match own.get("init_image_mode").map(String::as_str).unwrap_or("IMAGE_STRENGTH") {
        // Stability's image_strength is how much of the image stays: the complement.
        "IMAGE_STRENGTH" => Ok((1.0 - fraction(own, "image_strength", DEFAULT_IMAGE_STRENGTH)?) as f32),
        "STEP_SCHEDULE" => {
            let start = fraction(own, "step_schedule_start", DEFAULT_STEP_SCHEDULE_START)?;
            if own.contains_key("step_schedule_end") {
                // Local engines run the schedule to its end; upstream engines get it.
                spec.extras.insert("step_schedule_end".into(), json!(fraction(own, "step_schedule_end", 0.0)?));
            }
            Ok(start as f32)
        }
        other => Err(AppError::invalid("init_image_mode", format!("`{other}` is not one of IMAGE_STRENGTH, STEP_SCHEDULE"))),
    }
}

/// The mask the form describes, in the engine's convention.
fn masking(own: &BTreeMap<String, String>, mask: Option<Vec<u8>>, picture: &image::DynamicImage) -> Result<String, AppError> {
    let source = own.get("mask_source").ok_or_else(|| AppError::invalid("mask_source", "required: one of MASK_IMAGE_WHITE, MASK_IMAGE_BLACK, INIT_IMAGE_ALPHA"))?;
    let (w, h) = (picture.width(), picture.height());
    let from_file = |convention| -> Result<String, AppError> {
        let bytes = mask.as_deref().ok_or_else(|| AppError::invalid("mask_image", format!("required with mask_source {source}")))?;
        engine_mask("mask_image", &decode_image("mask_image", bytes)?, w, h, convention)
    };
    match source.as_str() {
        "MASK_IMAGE_WHITE" => from_file(MaskConvention::White),
        "MASK_IMAGE_BLACK" => from_file(MaskConvention::Black),
        "INIT_IMAGE_ALPHA" if picture.color().has_alpha() => engine_mask("init_image", picture, w, h, MaskConvention::Transparent),
        "INIT_IMAGE_ALPHA" => Err(AppError::invalid("init_image", "has no alpha channel for mask_source INIT_IMAGE_ALPHA to read")),
        other => Err(AppError::invalid("mask_source", format!("`{other}` is not one of MASK_IMAGE_WHITE, MASK_IMAGE_BLACK, INIT_IMAGE_ALPHA"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_parts_are_read_by_index_and_key() {
        assert_eq!(prompt_part("text_prompts[0][text]"), Some((0, "text")));
        assert_eq!(prompt_part("text_prompts[12][weight]"), Some((12, "weight")));
        assert_eq!(prompt_part("text_prompts[x][text]"), None);
        assert_eq!(prompt_part("text_prompts[0][colour]"), None);
        assert_eq!(prompt_part("cfg_scale"), None);
    }

    #[test]
    fn strengths_follow_stabilitys_meaning() {
        let own = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
        let mut spec = TaskSpec::simple("m", "p", imagegate_core::Size::new(512, 512));
        assert!((strength(&own(&[]), &mut spec).unwrap() - 0.65).abs() < 1e-6, "default image_strength 0.35 keeps 35%");
        assert!((strength(&own(&[("image_strength", "0.9")]), &mut spec).unwrap() - 0.1).abs() < 1e-6);
        let s = strength(&own(&[("init_image_mode", "STEP_SCHEDULE"), ("step_schedule_start", "0.4"), ("step_schedule_end", "0.1")]), &mut spec).unwrap();
        assert!((s - 0.4).abs() < 1e-6);
        assert_eq!(spec.extras["step_schedule_end"], json!(0.1));
        assert_eq!(strength(&own(&[("image_strength", "1.5")]), &mut spec).unwrap_err().field.as_deref(), Some("image_strength"));
        assert_eq!(strength(&own(&[("init_image_mode", "BOTH")]), &mut spec).unwrap_err().field.as_deref(), Some("init_image_mode"));
    }
}
