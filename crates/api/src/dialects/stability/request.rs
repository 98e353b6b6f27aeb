//! The Stability v1 text-to-image body and its conversion into a `TaskSpec`:
//! every documented parameter with its range, and the engine's size rule
//! (which the catalog encodes per engine).

use imagegate_core::spec::validate_prefix;
use imagegate_core::style::{style_preset, style_preset_names};
use imagegate_core::{AppError, ImageFormat, ModelEntry, PromptPart, Sampler, Size, TaskSpec};

/// Largest seed Stability accepts (a u32; 0 means "pick one").
pub const MAX_SEED: u64 = 4_294_967_295;
/// Longest `text` of one prompt.
pub const MAX_TEXT_CHARS: usize = 2000;
/// Stability's `clip_guidance_preset` values (accepted and passed on; local
/// engines have no CLIP guidance).
pub const CLIP_GUIDANCE_PRESETS: [&str; 7] = ["FAST_BLUE", "FAST_GREEN", "NONE", "SIMPLE", "SLOW", "SLOWER", "SLOWEST"];

/// One weighted prompt; a negative weight makes it a negative prompt.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
pub struct TextPrompt {
    /// The prompt itself (≤ 2000 characters).
    pub text: String,
    /// Weight (default 1).
    pub weight: Option<f32>,
}

/// `POST /v1/generation/{engine_id}/text-to-image` body.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
pub struct TextToImageRequest {
    /// Pixels down (default 512, ≥128, multiple of 64).
    pub height: Option<u32>,
    /// Pixels across (default 512, ≥128, multiple of 64).
    pub width: Option<u32>,
    /// At least one prompt.
    pub text_prompts: Vec<TextPrompt>,
    /// Guidance, 0–35 (default 7).
    pub cfg_scale: Option<f64>,
    /// CLIP guidance preset (default NONE).
    pub clip_guidance_preset: Option<String>,
    /// Sampler name (default: the engine's).
    pub sampler: Option<String>,
    /// Images to make, 1–10 (default 1).
    pub samples: Option<u32>,
    /// Seed, 0–4294967295 (0: random).
    pub seed: Option<u64>,
    /// Steps, 10–50 (default 30).
    pub steps: Option<u32>,
    /// One of the documented style presets.
    pub style_preset: Option<String>,
    /// Experimental parameters, passed on to upstream engines.
    #[schema(value_type = Option<Object>)]
    pub extras: Option<serde_json::Map<String, serde_json::Value>>,
}

fn check_range<T: PartialOrd + std::fmt::Display>(field: &str, v: T, lo: T, hi: T) -> Result<T, AppError> {
    if v < lo || v > hi { Err(AppError::invalid(field, format!("{v} is out of range; allowed {lo}–{hi}"))) } else { Ok(v) }
}

fn check_side(field: &str, v: u32) -> Result<u32, AppError> {
    if v < 128 || !v.is_multiple_of(64) {
        return Err(AppError::invalid(field, format!("{v} is not allowed; at least 128 and a multiple of 64")));
    }
    Ok(v)
}

impl TextToImageRequest {
    /// Validates against `engine` and converts; `random_seed` is used when
    /// the seed is 0 or omitted.
    pub fn into_spec(self, engine: &ModelEntry, random_seed: u64) -> Result<TaskSpec, AppError> {
        let width = check_side("width", self.width.unwrap_or(512))?;
        let height = check_side("height", self.height.unwrap_or(512))?;
        let size = Size::new(width, height);
        if !engine.sizes.allows(size) {
            let field = engine.sizes.side_at_fault(size);
            return Err(AppError::invalid(field, format!("{size} is not available for engine {}; allowed: {}", engine.id, engine.sizes.describe())));
        }
        if self.text_prompts.is_empty() {
            return Err(AppError::invalid("text_prompts", "at least one prompt is required"));
        }
        let mut positive = Vec::new();
        let mut negative = Vec::new();
        for (i, p) in self.text_prompts.iter().enumerate() {
            let field = format!("text_prompts[{i}].text");
            if p.text.trim().is_empty() {
                return Err(AppError::invalid(&field, "must not be empty"));
            }
            if p.text.chars().count() > MAX_TEXT_CHARS {
                return Err(AppError::invalid(&field, format!("at most {MAX_TEXT_CHARS} characters")));
            }
            let weight = p.weight.unwrap_or(1.0);
            if !weight.is_finite() {
                return Err(AppError::invalid(&format!("text_prompts[{i}].weight"), "must be a finite number"));
            }
            if weight < 0.0 { negative.push(p.text.trim().to_string()) } else { positive.push(PromptPart { text: p.text.trim().to_string(), weight }) }
        }
        if positive.is_empty() {
            return Err(AppError::invalid("text_prompts", "at least one prompt needs a weight of 0 or more"));
        }
        let guidance = match self.cfg_scale {
            Some(g) if g.is_finite() => check_range("cfg_scale", g, 0.0, 35.0)? as f32,
            Some(_) => return Err(AppError::invalid("cfg_scale", "must be a number 0–35")),
            None => 7.0,
        };
        let mut extras = self.extras.unwrap_or_default();
        if let Some(c) = self.clip_guidance_preset {
            if !CLIP_GUIDANCE_PRESETS.contains(&c.as_str()) {
                return Err(AppError::invalid("clip_guidance_preset", format!("`{c}` is not one of {}", CLIP_GUIDANCE_PRESETS.join(", "))));
            }
            extras.insert("clip_guidance_preset".into(), c.into());
        }
        let sampler = match self.sampler {
            Some(name) => Some(
                Sampler::STABILITY
                    .into_iter()
                    .find(|s| s.as_str() == name)
                    .ok_or_else(|| AppError::invalid("sampler", format!("`{name}` is not one of {}", Sampler::allowed_list())))?,
            ),
            None => engine.sampler,
        };
        let count = check_range("samples", self.samples.unwrap_or(1), 1, 10)?;
        let seed = match check_range("seed", self.seed.unwrap_or(0), 0, MAX_SEED)? {
            0 => random_seed % MAX_SEED + 1,
            s => s,
        };
        let steps = check_range("steps", self.steps.unwrap_or(30), 10, 50)?;
        let mut negative_prompt = (!negative.is_empty()).then(|| negative.join(", "));
        if let Some(name) = self.style_preset {
            let preset = style_preset(&name).ok_or_else(|| AppError::invalid("style_preset", format!("`{name}` is not one of {}", style_preset_names())))?;
            positive[0].text = preset.apply(&positive[0].text);
            negative_prompt = Some(match negative_prompt {
                Some(n) => format!("{n}, {}", preset.negative),
                None => preset.negative.to_string(),
            });
            extras.insert("style_preset".into(), preset.name.into());
        }
        Ok(TaskSpec {
            model: engine.id.clone(),
            prompt: positive,
            negative_prompt,
            size,
            count,
            steps,
            guidance,
            sampler,
            seed,
            loras: Vec::new(),
            init_image: None,
            output_format: ImageFormat::Png,
            prefix: validate_prefix("prefix", "stability")?,
            revised_prompt: None,
            extras,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imagegate_core::Catalog;
    use serde_json::json;

    fn spec(engine: &str, body: serde_json::Value) -> Result<TaskSpec, AppError> {
        let c = Catalog::builtin();
        serde_json::from_value::<TextToImageRequest>(body).unwrap().into_spec(c.resolve(engine).unwrap(), 99)
    }

    #[test]
    fn seed_001_body_converts_with_weights_and_sampler() {
        let s = spec(
            "stable-diffusion-v1-6",
            json!({"cfg_scale": 7, "height": 512, "width": 512, "sampler": "K_DPM_2_ANCESTRAL", "samples": 1, "steps": 30,
                   "text_prompts": [{"text": "A lighthouse on a cliff", "weight": 1}, {"text": "fog", "weight": -1}]}),
        )
        .unwrap();
        assert_eq!(s.sampler, Some(Sampler::KDpm2Ancestral));
        assert_eq!(s.negative_prompt.as_deref(), Some("fog"));
        assert_eq!((s.size, s.steps, s.seed), (Size::new(512, 512), 30, 100));
    }

    #[test]
    fn style_preset_wraps_the_prompt() {
        let s = spec("stable-diffusion-v1-6", json!({"text_prompts": [{"text": "a fox"}], "style_preset": "anime"})).unwrap();
        assert!(s.prompt[0].text.starts_with("anime artwork of a fox"));
        assert!(s.negative_prompt.unwrap().contains("photo"));
    }

    #[test]
    fn engine_size_rules_name_the_side() {
        let e = spec("stable-diffusion-v1-6", json!({"text_prompts": [{"text": "x"}], "height": 1600})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("height"));
        let e = spec("stable-diffusion-xl-1024-v1-0", json!({"text_prompts": [{"text": "x"}]})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("width"));
        assert!(e.message.contains("1152x896"));
    }
}
