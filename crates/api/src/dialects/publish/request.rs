//! The task-publishing body (`POST /session/publish`) and its conversion
//! into a `TaskSpec` through a workflow: the workflow fixes model, LoRAs,
//! sampler, steps and guidance; the client sets only what it accepts.

use imagegate_core::size::ASPECT_RATIOS;
use imagegate_core::spec::validate_prefix;
use imagegate_core::{AppError, ImageFormat, ModelEntry, PromptPart, Size, TaskSpec, Workflow};
use serde_json::{Map, Value};

/// `POST /session/publish` body.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
pub struct PublishRequest {
    /// Workflow name.
    pub title: String,
    /// Images to make (default 1).
    #[serde(rename = "imageCount")]
    pub image_count: Option<u32>,
    /// Object-store folder for the results (relative, safe alphabet).
    #[serde(rename = "imagePath")]
    pub image_path: Option<String>,
    /// Caller's task id: the idempotency key per account.
    #[serde(rename = "taskID")]
    pub task_id: Option<String>,
    /// `{"parameters": {...}}`.
    #[serde(default)]
    pub data: PublishData,
}

/// The `data` object.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
pub struct PublishData {
    /// Workflow parameters (`promptText`, `imageRatio`, …).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameters: Map<String, Value>,
}

/// Parameters every workflow may list; anything else is rejected.
pub const KNOWN_PARAMETERS: [&str; 4] = ["promptText", "imageRatio", "negativePromptText", "seed"];

/// Checks a caller's `taskID`: 1–100 characters of `[A-Za-z0-9._-]`.
pub fn validate_task_id(id: &str) -> Result<(), AppError> {
    let ok = !id.is_empty() && id.len() <= 100 && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) && id != "." && id != "..";
    if ok { Ok(()) } else { Err(AppError::invalid("taskID", "1–100 characters of [A-Za-z0-9._-]")) }
}

fn param_str<'a>(params: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, AppError> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(AppError::invalid(&format!("data.parameters.{name}"), "must be a string")),
    }
}

/// The model's native size for `ratio`: the area-preserving size, or, when
/// the model only takes listed sizes, the listed one closest in shape
/// (SDXL's buckets: 3:2 is 1216x832).
fn native_size_for(model: &ModelEntry, ratio: &str) -> Result<Size, AppError> {
    let size = model.size_for_ratio(ratio).ok_or_else(|| AppError::invalid("data.parameters.imageRatio", "not a ratio"))?;
    if model.sizes.allows(size) {
        return Ok(size);
    }
    let want = f64::from(size.width) / f64::from(size.height);
    let shape = |s: &Size| (f64::from(s.width) / f64::from(s.height) / want).ln().abs();
    Ok(model.sizes.list.iter().filter_map(|s| s.parse::<Size>().ok()).min_by(|a, b| shape(a).total_cmp(&shape(b))).unwrap_or(size))
}

impl PublishRequest {
    /// Validates against `workflow` (whose base model is `model`) and converts.
    pub fn into_spec(self, workflow: &Workflow, model: &ModelEntry, random_seed: u64) -> Result<TaskSpec, AppError> {
        let params = &self.data.parameters;
        for name in params.keys() {
            if !KNOWN_PARAMETERS.contains(&name.as_str()) || !workflow.accepts(name) {
                return Err(AppError::invalid(
                    &format!("data.parameters.{name}"),
                    format!("workflow `{}` does not accept it; accepted: {}", workflow.title, workflow.parameters.join(", ")),
                ));
            }
        }
        let count = self.image_count.unwrap_or(1);
        if count < 1 || count > workflow.max_images {
            return Err(AppError::invalid("imageCount", format!("{count} is out of range; allowed 1–{}", workflow.max_images)));
        }
        let prefix = validate_prefix("imagePath", self.image_path.as_deref().unwrap_or("session"))?;
        if let Some(id) = &self.task_id {
            validate_task_id(id)?;
        }
        let prompt = param_str(params, "promptText")?.map(str::trim).unwrap_or_default();
        if prompt.is_empty() {
            return Err(AppError::invalid("data.parameters.promptText", "is required and must not be empty"));
        }
        if prompt.chars().count() > model.max_prompt_chars {
            return Err(AppError::invalid("data.parameters.promptText", format!("at most {} characters", model.max_prompt_chars)));
        }
        let ratio = param_str(params, "imageRatio")?.unwrap_or("1:1");
        if !ASPECT_RATIOS.contains(&ratio) {
            return Err(AppError::invalid("data.parameters.imageRatio", format!("`{ratio}` is not one of {}", ASPECT_RATIOS.join(", "))));
        }
        let size = native_size_for(model, ratio)?;
        let seed = match params.get("seed") {
            None | Some(Value::Null) => random_seed % 4_294_967_296,
            Some(v) => v.as_u64().ok_or_else(|| AppError::invalid("data.parameters.seed", "must be a non-negative integer"))?,
        };
        Ok(TaskSpec {
            model: model.id.clone(),
            prompt: vec![PromptPart { text: prompt.to_string(), weight: 1.0 }],
            negative_prompt: param_str(params, "negativePromptText")?.map(str::trim).filter(|n| !n.is_empty()).map(String::from),
            size,
            count,
            steps: workflow.steps,
            guidance: workflow.guidance,
            sampler: workflow.sampler.or(model.sampler),
            seed,
            loras: workflow.loras.clone(),
            init_image: None,
            output_format: ImageFormat::Png,
            prefix,
            revised_prompt: None,
            extras: Map::from_iter([("workflow".to_string(), Value::from(workflow.title.clone()))]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imagegate_core::{Catalog, WorkflowSet};
    use serde_json::json;

    fn convert(body: Value) -> Result<TaskSpec, AppError> {
        let (c, w) = (Catalog::builtin(), WorkflowSet::builtin());
        let req: PublishRequest = serde_json::from_value(body).unwrap();
        let wf = w.find(&req.title).unwrap().clone();
        req.into_spec(&wf, c.resolve(&wf.base_model).unwrap(), 7)
    }

    #[test]
    fn seed_000_body_uses_the_flux_dev_workflow() {
        let s = convert(json!({"title": "Image generation", "imageCount": 3, "imagePath": "2025/06", "taskID": "nextGPU20250531145458888",
                               "data": {"parameters": {"imageRatio": "16:9", "promptText": "A little boy running"}}}))
        .unwrap();
        assert_eq!((s.model.as_str(), s.count, s.steps, s.size), ("FLUX.1-dev", 3, 20, Size::new(1344, 768)));
        assert_eq!(s.prefix, "2025/06");
    }

    #[test]
    fn every_ratio_gives_a_size_the_base_model_takes() {
        let c = Catalog::builtin();
        for model in ["sdxl", "FLUX.1-dev"] {
            let m = c.resolve(model).unwrap();
            for r in ASPECT_RATIOS {
                let s = native_size_for(m, r).unwrap();
                assert!(m.sizes.allows(s), "{model} {r} -> {s}");
            }
        }
        assert_eq!(native_size_for(c.resolve("sdxl").unwrap(), "3:2").unwrap(), Size::new(1216, 832));
    }

    #[test]
    fn bad_paths_ratios_and_parameters_are_named() {
        for (patch, field) in [
            (json!({"imagePath": "../x"}), "imagePath"),
            (json!({"imagePath": "/abs"}), "imagePath"),
            (json!({"imagePath": "a//b"}), "imagePath"),
            (json!({"imageCount": 0}), "imageCount"),
            (json!({"taskID": "a/b"}), "taskID"),
            (json!({"data": {"parameters": {"promptText": "x", "imageRatio": "5:1"}}}), "data.parameters.imageRatio"),
            (json!({"data": {"parameters": {"promptText": "x", "lora": "y"}}}), "data.parameters.lora"),
            (json!({"data": {"parameters": {}}}), "data.parameters.promptText"),
        ] {
            let mut body = json!({"title": "Image generation", "data": {"parameters": {"promptText": "x"}}});
            for (k, v) in patch.as_object().unwrap() {
                body[k] = v.clone();
            }
            assert_eq!(convert(body).unwrap_err().field.as_deref(), Some(field), "{patch}");
        }
    }
}
