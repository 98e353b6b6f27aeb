//! The OpenAI Images / SiliconFlow request (one path, the union of both
//! shapes) and its conversion into a `TaskSpec`.

use imagegate_core::spec::validate_prefix;
use imagegate_core::{AppError, Catalog, ImageFormat, InitImage, ModelEntry, PromptPart, Size, TaskSpec, prompt};

/// Largest seed SiliconFlow documents (seeds are u64, but clients expect this bound).
pub const MAX_SEED: u64 = 9_999_999_999;

/// `POST /v1/images/generations` body, OpenAI and SiliconFlow fields together.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
pub struct ImageRequest {
    /// Model id or alias (default from the catalog).
    pub model: Option<String>,
    /// What to draw.
    pub prompt: String,
    /// OpenAI: images to make (1–10).
    pub n: Option<u32>,
    /// SiliconFlow: images to make (1–4).
    pub batch_size: Option<u32>,
    /// OpenAI: `WxH` or `auto`.
    pub size: Option<String>,
    /// SiliconFlow: `WxH`.
    pub image_size: Option<String>,
    /// OpenAI: quality tier, passed to upstream models.
    pub quality: Option<String>,
    /// `url` or `b64_json`.
    pub response_format: Option<String>,
    /// `png`, `jpeg` or `webp`.
    pub output_format: Option<String>,
    /// What to avoid.
    pub negative_prompt: Option<String>,
    /// Denoising steps.
    pub num_inference_steps: Option<u32>,
    /// Guidance scale.
    pub guidance_scale: Option<f64>,
    /// Rewrite the prompt before generating.
    #[serde(default)]
    pub prompt_enhancement: bool,
    /// Seed, 0–9999999999.
    pub seed: Option<u64>,
    /// Reference image (URL or data URI) for image-to-image.
    pub image: Option<String>,
    /// How far from the reference image to go (0–1, default 0.7).
    pub strength: Option<f64>,
    /// Everything else (`background`, `moderation`, `style`, `user`,
    /// `safety_tolerance`, …): passed through to upstream providers.
    #[serde(flatten)]
    #[schema(ignore)]
    pub extras: serde_json::Map<String, serde_json::Value>,
}

/// How the response should look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseOptions {
    /// Inline base64 as well as URLs.
    pub b64_json: bool,
}

const QUALITIES: [&str; 6] = ["standard", "hd", "high", "medium", "low", "auto"];

fn check_range<T: PartialOrd + std::fmt::Display>(field: &str, v: T, lo: T, hi: T) -> Result<T, AppError> {
    if v < lo || v > hi { Err(AppError::invalid(field, format!("{v} is out of range; allowed {lo}–{hi}"))) } else { Ok(v) }
}

fn parse_size(field: &str, raw: &str, model: &ModelEntry) -> Result<Size, AppError> {
    if raw.eq_ignore_ascii_case("auto") {
        return Ok(model.native_size());
    }
    let size: Size = raw.parse().map_err(|_| AppError::invalid(field, format!("`{raw}` is not WxH; allowed: {}", model.sizes.describe())))?;
    model.check_size(field, size)?;
    Ok(size)
}

impl ImageRequest {
    /// Validates and converts into a spec for a catalog model.
    pub fn into_spec(self, catalog: &Catalog, random_seed: u64) -> Result<(TaskSpec, ResponseOptions), AppError> {
        let model = catalog.require(self.model.as_deref().unwrap_or(catalog.default_model()))?;
        let text = self.prompt.trim();
        if text.is_empty() {
            return Err(AppError::invalid("prompt", "must not be empty"));
        }
        if text.chars().count() > model.max_prompt_chars {
            return Err(AppError::invalid("prompt", format!("at most {} characters", model.max_prompt_chars)));
        }
        let count = match (self.n, self.batch_size) {
            (Some(n), _) => check_range("n", n, 1, 10)?,
            (None, Some(b)) => check_range("batch_size", b, 1, 4)?,
            (None, None) => 1,
        };
        let size = match (&self.image_size, &self.size) {
            (Some(s), _) => parse_size("image_size", s, model)?,
            (None, Some(s)) => parse_size("size", s, model)?,
            (None, None) => model.native_size(),
        };
        let steps = match self.num_inference_steps {
            Some(s) => check_range("num_inference_steps", s, 1, model.max_steps)?,
            None => model.steps,
        };
        let guidance = match self.guidance_scale {
            Some(g) if g.is_finite() => check_range("guidance_scale", g, 0.0, 35.0)? as f32,
            Some(_) => return Err(AppError::invalid("guidance_scale", "must be a number 0–35")),
            None => model.guidance,
        };
        let seed = match self.seed {
            Some(s) => check_range("seed", s, 0, MAX_SEED)?,
            None => random_seed % (MAX_SEED + 1),
        };
        let b64_json = match self.response_format.as_deref() {
            None => model.id.starts_with("gpt-image"),
            Some("url") => false,
            Some("b64_json") => true,
            Some(other) => return Err(AppError::invalid("response_format", format!("`{other}` is not one of url, b64_json"))),
        };
        let output_format = match self.output_format.as_deref() {
            None => ImageFormat::Png,
            Some(f) => ImageFormat::parse(f).ok_or_else(|| AppError::invalid("output_format", format!("`{f}` is not one of png, jpeg, webp")))?,
        };
        let mut extras = self.extras;
        if let Some(q) = self.quality {
            if !QUALITIES.contains(&q.as_str()) {
                return Err(AppError::invalid("quality", format!("`{q}` is not one of {}", QUALITIES.join(", "))));
            }
            extras.insert("quality".into(), q.into());
        }
        let init_image = match self.image {
            Some(source) if !source.trim().is_empty() => {
                let strength = check_range("strength", self.strength.unwrap_or(0.7), 0.0, 1.0)? as f32;
                Some(InitImage { source, strength, mask: None })
            }
            _ => None,
        };
        let spec = TaskSpec {
            model: model.id.clone(),
            prompt: vec![PromptPart { text: text.to_string(), weight: 1.0 }],
            negative_prompt: self.negative_prompt.filter(|n| !n.trim().is_empty()),
            size,
            count,
            steps,
            guidance,
            sampler: model.sampler,
            seed,
            loras: Vec::new(),
            init_image,
            output_format,
            prefix: validate_prefix("prefix", "images")?,
            revised_prompt: self.prompt_enhancement.then(|| prompt::enhance(text)),
            extras,
        };
        Ok((spec, ResponseOptions { b64_json }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: serde_json::Value) -> ImageRequest {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn siliconflow_seed_body_converts() {
        let c = Catalog::builtin();
        let r = req(serde_json::json!({"model": "FLUX.1-schnell", "prompt": "an island", "image_size": "1024x1024", "prompt_enhancement": true, "seed": 9_999_999_999u64}));
        let (spec, opts) = r.into_spec(&c, 5).unwrap();
        assert_eq!(spec.size, Size::new(1024, 1024));
        assert_eq!(spec.seed, 9_999_999_999);
        assert!(spec.revised_prompt.unwrap().starts_with("an island,"));
        assert!(!opts.b64_json);
    }

    #[test]
    fn out_of_range_fields_are_named() {
        let c = Catalog::builtin();
        for (body, field) in [
            (serde_json::json!({"prompt": "x", "seed": 10_000_000_000u64}), "seed"),
            (serde_json::json!({"prompt": "x", "image_size": "1000x1000"}), "image_size"),
            (serde_json::json!({"prompt": "x", "n": 11}), "n"),
            (serde_json::json!({"prompt": "x", "batch_size": 5}), "batch_size"),
            (serde_json::json!({"prompt": "x", "response_format": "gif"}), "response_format"),
            (serde_json::json!({"prompt": " "}), "prompt"),
            (serde_json::json!({"prompt": "x", "guidance_scale": 36}), "guidance_scale"),
        ] {
            let e = req(body).into_spec(&c, 0).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field));
        }
    }

    #[test]
    fn gpt_image_defaults_to_base64() {
        let c = Catalog::builtin();
        let (_, o) = req(serde_json::json!({"model": "gpt-image-1", "prompt": "x"})).into_spec(&c, 0).unwrap();
        assert!(o.b64_json);
    }
}
