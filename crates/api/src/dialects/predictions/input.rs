//! The unified predictions `input` object and its conversion into a
//! `TaskSpec`: one wire type with every family's fields, validated by the
//! model's family; fields only an upstream provider understands go into
//! `spec.extras` unchanged.

use imagegate_core::size::parse_ratio;
use imagegate_core::spec::validate_prefix;
use imagegate_core::{AppError, Family, ImageFormat, InitImage, ModelEntry, PromptPart, Size, TaskSpec};
use serde_json::{Map, Value};

/// `{"input": {...}}`.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
pub struct PredictionRequest {
    /// The model family's own fields.
    pub input: PredictionInput,
}

/// Every family's input fields (see api.md §4); unknown ones are kept.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[allow(non_snake_case)]
pub struct PredictionInput {
    /// What to draw.
    pub prompt: String,
    /// Images to make (OpenAI, Qwen, local).
    pub n: Option<u32>,
    /// Imagen: images to make (1–4).
    pub numberOfImages: Option<u32>,
    /// `WxH`; Seedream also `1K`/`2K`/`4K`.
    pub size: Option<String>,
    /// FLUX `16:9`, Ideogram `2x1`, local models.
    pub aspect_ratio: Option<String>,
    /// Imagen's aspect ratio.
    pub aspectRatio: Option<String>,
    /// OpenAI quality (high/medium/low/auto).
    pub quality: Option<String>,
    /// What to avoid (local models).
    pub negative_prompt: Option<String>,
    /// Denoising steps (local models).
    pub steps: Option<u32>,
    /// Guidance (Qwen, iRAG, local models).
    pub guidance: Option<f64>,
    /// Seed.
    pub seed: Option<u64>,
    /// FLUX Kontext reference image (URL or base64).
    pub input_image: Option<String>,
    /// Qwen / iRAG reference image.
    pub refer_image: Option<String>,
    /// FLUX safety tolerance 0–6 (≤ 2 with a reference image).
    pub safety_tolerance: Option<u8>,
    /// `png`, `jpeg` or `webp`.
    pub output_format: Option<String>,
    /// `url` or `b64_json`.
    pub response_format: Option<String>,
    /// Ideogram: TURBO, DEFAULT or QUALITY.
    pub rendering_speed: Option<String>,
    /// Everything else (moderation, background, watermark, stream, …).
    #[serde(flatten)]
    #[schema(ignore)]
    pub extras: Map<String, Value>,
}

/// How the response should look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputOptions {
    /// Inline base64 items instead of URL items.
    pub b64_json: bool,
}

/// Which input dialect a model speaks, from its provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    OpenAi,
    Imagen,
    Flux,
    QwenOrIrag,
    Seedream,
    Ideogram,
    Local,
}

fn kind(model: &ModelEntry) -> Kind {
    if model.family != Family::Upstream {
        return Kind::Local;
    }
    match model.provider.as_deref() {
        Some("openai") => Kind::OpenAi,
        Some("google") => Kind::Imagen,
        Some("bfl") => Kind::Flux,
        Some("dashscope" | "qianfan") => Kind::QwenOrIrag,
        Some("volcengine") => Kind::Seedream,
        Some("ideogram") => Kind::Ideogram,
        _ => Kind::Local,
    }
}

fn field(name: &str) -> String {
    format!("input.{name}")
}

fn check_range<T: PartialOrd + std::fmt::Display>(name: &str, v: T, lo: T, hi: T) -> Result<T, AppError> {
    if v < lo || v > hi { Err(AppError::invalid(&field(name), format!("{v} is out of range; allowed {lo}–{hi}"))) } else { Ok(v) }
}

fn one_of<'a>(name: &str, v: &'a str, allowed: &[&str]) -> Result<&'a str, AppError> {
    if allowed.contains(&v) { Ok(v) } else { Err(AppError::invalid(&field(name), format!("`{v}` is not one of {}", allowed.join(", ")))) }
}

fn ratio_size(name: &str, raw: &str, model: &ModelEntry, lo: f64, hi: f64) -> Result<Size, AppError> {
    let (a, b) = parse_ratio(raw).ok_or_else(|| AppError::invalid(&field(name), format!("`{raw}` is not an aspect ratio like 16:9")))?;
    let r = f64::from(a) / f64::from(b);
    if r < lo - 1e-9 || r > hi + 1e-9 {
        return Err(AppError::invalid(&field(name), format!("`{raw}` is outside the allowed range 9:21 to 21:9")));
    }
    model.size_for_ratio(raw).ok_or_else(|| AppError::invalid(&field(name), "not an aspect ratio"))
}

fn wxh(name: &str, raw: &str, model: &ModelEntry) -> Result<Size, AppError> {
    let size: Size = raw.parse().map_err(|_| AppError::invalid(&field(name), format!("`{raw}` is not WxH; allowed: {}", model.sizes.describe())))?;
    model.check_size(&field(name), size)?;
    Ok(size)
}

impl PredictionInput {
    /// Validates for `model`'s family and converts.
    pub fn into_spec(self, model: &ModelEntry, random_seed: u64) -> Result<(TaskSpec, OutputOptions), AppError> {
        let k = kind(model);
        let text = self.prompt.trim();
        if text.is_empty() {
            return Err(AppError::invalid(&field("prompt"), "must not be empty"));
        }
        if text.chars().count() > model.max_prompt_chars {
            return Err(AppError::invalid(&field("prompt"), format!("at most {} characters", model.max_prompt_chars)));
        }
        let mut extras = self.extras;
        let count = match (k, self.numberOfImages, self.n) {
            (Kind::Imagen, Some(n), _) => check_range("numberOfImages", n, 1, 4)?,
            (_, _, Some(n)) => check_range("n", n, 1, 10)?,
            _ => 1,
        };
        let mut size = model.native_size();
        if let Some(q) = &self.quality {
            one_of("quality", q, &["high", "medium", "low", "auto", "standard", "hd"])?;
            extras.insert("quality".into(), q.clone().into());
        }
        if let Some(r) = self.aspectRatio.as_deref() {
            size = ratio_size("aspectRatio", one_of("aspectRatio", r, &["1:1", "3:4", "4:3", "9:16", "16:9"])?, model, 0.0, f64::MAX)?;
            extras.insert("aspectRatio".into(), r.into());
        }
        if let Some(r) = self.aspect_ratio.as_deref() {
            let (lo, hi) = if k == Kind::Flux { (9.0 / 21.0, 21.0 / 9.0) } else { (0.0, f64::MAX) };
            size = ratio_size("aspect_ratio", r, model, lo, hi)?;
            extras.insert("aspect_ratio".into(), r.into());
        }
        if let Some(s) = self.size.as_deref() {
            size = match (k, s.to_ascii_uppercase().as_str()) {
                (Kind::Seedream, "1K") => Size::new(1024, 1024),
                (Kind::Seedream, "2K") => Size::new(2048, 2048),
                (Kind::Seedream, "4K") => Size::new(4096, 4096),
                _ => wxh("size", s, model)?,
            };
            extras.insert("size".into(), s.into());
        }
        let reference = self.input_image.clone().or(self.refer_image.clone()).filter(|s| !s.trim().is_empty());
        if let Some(t) = self.safety_tolerance {
            let hi = if reference.is_some() { 2 } else { 6 };
            check_range("safety_tolerance", t, 0, hi)?;
            extras.insert("safety_tolerance".into(), t.into());
        }
        if let Some(r) = &self.rendering_speed {
            one_of("rendering_speed", r, &["TURBO", "DEFAULT", "QUALITY"])?;
            extras.insert("rendering_speed".into(), r.clone().into());
        }
        let b64_json = match self.response_format.as_deref() {
            None | Some("url") => false,
            Some("b64_json") => true,
            Some(other) => return Err(AppError::invalid(&field("response_format"), format!("`{other}` is not one of url, b64_json"))),
        };
        let output_format = match self.output_format.as_deref() {
            None => ImageFormat::Png,
            Some(f) => ImageFormat::parse(f).ok_or_else(|| AppError::invalid(&field("output_format"), format!("`{f}` is not one of png, jpeg, webp")))?,
        };
        let steps = match self.steps {
            Some(s) => check_range("steps", s, 1, model.max_steps)?,
            None => model.steps,
        };
        let guidance = match self.guidance {
            Some(g) if g.is_finite() => check_range("guidance", g, 0.0, 35.0)? as f32,
            Some(_) => return Err(AppError::invalid(&field("guidance"), "must be a number 0–35")),
            None => model.guidance,
        };
        let seed = self.seed.unwrap_or(random_seed % 4_294_967_296);
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
            init_image: reference.map(|source| InitImage { source, strength: 0.7, mask: None }),
            output_format,
            prefix: validate_prefix("prefix", "predictions")?,
            revised_prompt: None,
            extras,
        };
        Ok((spec, OutputOptions { b64_json }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imagegate_core::Catalog;
    use serde_json::json;

    fn convert(model: &str, input: Value) -> Result<TaskSpec, AppError> {
        let c = Catalog::builtin();
        let req: PredictionRequest = serde_json::from_value(json!({ "input": input })).unwrap();
        req.input.into_spec(c.resolve(model).unwrap(), 1).map(|(s, _)| s)
    }

    #[test]
    fn family_fields_reach_extras() {
        let s = convert("openai/gpt-image-1", json!({"prompt": "deer", "size": "1024x1024", "n": 1, "quality": "high", "moderation": "low", "background": "auto"})).unwrap();
        assert_eq!(s.extras["moderation"], "low");
        assert_eq!(s.extras["quality"], "high");
        let s = convert("doubao/doubao-seedream-4-0-250828", json!({"prompt": "x", "size": "2K", "watermark": true})).unwrap();
        assert_eq!(s.size, Size::new(2048, 2048));
    }

    #[test]
    fn flux_kontext_limits_are_named() {
        let e = convert("bfl/flux-kontext-max", json!({"prompt": "x", "aspect_ratio": "1:4"})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("input.aspect_ratio"));
        let e = convert("bfl/flux-kontext-max", json!({"prompt": "x", "safety_tolerance": 6, "input_image": "https://x/y.png"})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("input.safety_tolerance"));
        let e = convert("google/imagen-4.0-fast-generate-001", json!({"prompt": "x", "numberOfImages": 5})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("input.numberOfImages"));
    }
}
