//! [`TaskSpec`]: the one validated generation request every dialect converts
//! into. Nothing past a dialect adapter sees a wire type.

use crate::error::AppError;
use crate::sampler::Sampler;
use crate::size::Size;

/// One weighted piece of a prompt (Stability's `text_prompts`, or a plain prompt at weight 1).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PromptPart {
    /// The text.
    pub text: String,
    /// Its weight; positive parts are blended by weight.
    pub weight: f32,
}

/// A LoRA to apply, by file or catalog name, at a scale.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoraSpec {
    /// The LoRA's name (a file under the models directory) or path.
    pub name: String,
    /// Its scale; 0 leaves the base model unchanged.
    pub scale: f32,
}

/// A reference image for image-to-image.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InitImage {
    /// A URL or a data URI / base64 string, as the client sent it.
    pub source: String,
    /// How far from the init image to go (0 keeps it, 1 ignores it).
    pub strength: f32,
    /// Inpainting mask in the same encodings as `source`: white (≥ 50%
    /// grey) is repainted, black kept. Needs an inpainting checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<String>,
}

/// The encoding of stored images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// PNG (default).
    #[default]
    Png,
    /// JPEG.
    Jpeg,
    /// WebP.
    Webp,
}

impl ImageFormat {
    /// File extension.
    pub fn ext(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpg",
            Self::Webp => "webp",
        }
    }

    /// MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Webp => "image/webp",
        }
    }

    /// Parses `png`, `jpeg`/`jpg` or `webp`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "png" => Some(Self::Png),
            "jpeg" | "jpg" => Some(Self::Jpeg),
            "webp" => Some(Self::Webp),
            _ => None,
        }
    }
}

/// A validated generation request.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskSpec {
    /// Canonical catalog id of the model.
    pub model: String,
    /// Positive prompt parts (at least one, non-empty).
    pub prompt: Vec<PromptPart>,
    /// Negative prompt, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    /// Output size.
    pub size: Size,
    /// Images to make.
    pub count: u32,
    /// Denoising steps.
    pub steps: u32,
    /// Classifier-free guidance scale.
    pub guidance: f32,
    /// Sampler; `None` means the model's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampler: Option<Sampler>,
    /// Seed of the first image; image `n` uses `seed + n`.
    pub seed: u64,
    /// LoRAs with scales.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loras: Vec<LoraSpec>,
    /// Reference image for image-to-image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_image: Option<InitImage>,
    /// Output encoding.
    #[serde(default)]
    pub output_format: ImageFormat,
    /// Object-store folder for the results (validated by [`validate_prefix`]).
    pub prefix: String,
    /// The prompt after enhancement, when the client asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revised_prompt: Option<String>,
    /// Family-specific fields passed through to upstream providers.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extras: serde_json::Map<String, serde_json::Value>,
}

impl TaskSpec {
    /// A spec with one prompt and the defaults a test or CLI would pick.
    pub fn simple(model: &str, prompt: &str, size: Size) -> Self {
        Self {
            model: model.to_string(),
            prompt: vec![PromptPart { text: prompt.to_string(), weight: 1.0 }],
            negative_prompt: None,
            size,
            count: 1,
            steps: 20,
            guidance: 7.0,
            sampler: None,
            seed: 0,
            loras: Vec::new(),
            init_image: None,
            output_format: ImageFormat::Png,
            prefix: "images".to_string(),
            revised_prompt: None,
            extras: serde_json::Map::new(),
        }
    }

    /// The prompt the model should draw: the revised one if any, else the
    /// positive parts joined (weights are applied by backends that can).
    pub fn effective_prompt(&self) -> String {
        if let Some(r) = &self.revised_prompt {
            return r.clone();
        }
        self.prompt.iter().map(|p| p.text.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// Tasks with equal batch keys may run as one batch on the engine:
    /// same model, size and step count.
    pub fn batch_key(&self) -> String {
        format!("{}|{}|{}", self.model, self.size, self.steps)
    }
}

/// Characters allowed in a caller-chosen object prefix.
pub const PREFIX_ALPHABET: &str = "A-Z a-z 0-9 . _ - /";

/// Checks a caller-supplied object-store folder: relative, no `..` or `.`
/// segments, no empty segments, only `[A-Za-z0-9._-/]`, at most 200 chars.
pub fn validate_prefix(field: &str, path: &str) -> Result<String, AppError> {
    let fail = |why: &str| Err(AppError::invalid(field, format!("{why}; a relative folder of segments in [{PREFIX_ALPHABET}] is allowed")));
    if path.is_empty() {
        return fail("must not be empty");
    }
    if path.len() > 200 {
        return fail("is longer than 200 characters");
    }
    if path.starts_with('/') {
        return fail("must not be absolute");
    }
    if let Some(c) = path.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))) {
        return fail(&format!("contains {c:?}"));
    }
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    for seg in trimmed.split('/') {
        match seg {
            "" => return fail("has an empty segment"),
            "." | ".." => return fail("must not contain `.` or `..` segments"),
            _ => {}
        }
    }
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_reject_escapes() {
        assert_eq!(validate_prefix("imagePath", "2025/06").unwrap(), "2025/06");
        assert_eq!(validate_prefix("imagePath", "a/b/").unwrap(), "a/b");
        for bad in ["../x", "/abs", "a//b", "a/./b", "", "a b", "a\\b", "é"] {
            let e = validate_prefix("imagePath", bad).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("imagePath"), "{bad}");
        }
    }

    #[test]
    fn spec_round_trips_through_json() {
        let spec = TaskSpec::simple("sdxl", "a cat", Size::new(1024, 1024));
        let json = serde_json::to_string(&spec).unwrap();
        let back: TaskSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(spec, back);
    }
}
