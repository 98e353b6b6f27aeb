//! Google Imagen through the Gemini API (`POST /v1beta/models/{model}:predict`).
//!
//! Reference: <https://ai.google.dev/gemini-api/docs/imagen> (REST tab).
//! Auth header `x-goog-api-key`. Body: `{"instances": [{"prompt"}],
//! "parameters": {"sampleCount" (1–4), "aspectRatio" ("1:1", "3:4", "4:3",
//! "9:16", "16:9"), "personGeneration", "imageSize" ("1K"/"2K")}}`. Answer:
//! `{"predictions": [{"bytesBase64Encoded", "mimeType"}]}`; images removed by
//! the safety filter are missing from `predictions` (or carry
//! `raiFilteredReason`). Errors: `{"error": {"code", "message", "status"}}`.

use serde_json::{Map, Value, json};

use super::{Adapter, Call, Output, nearest_ratio, put_extra};
use crate::error::UpstreamError;
use crate::http;
use crate::images::RawImage;

/// Aspect ratios Imagen accepts.
const RATIOS: [&str; 5] = ["1:1", "3:4", "4:3", "9:16", "16:9"];

/// The Imagen adapter.
pub(crate) struct Google;

#[derive(serde::Deserialize)]
struct PredictResponse {
    #[serde(default)]
    predictions: Vec<Prediction>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Prediction {
    #[serde(default)]
    bytes_base64_encoded: Option<String>,
    #[serde(default)]
    rai_filtered_reason: Option<String>,
}

#[async_trait::async_trait]
impl Adapter for Google {
    async fn generate(&self, call: &Call<'_>) -> Result<Output, UpstreamError> {
        call.text_only("Imagen :predict")?;
        let count = call.spec.count.max(1);
        if count > 4 {
            return Err(UpstreamError::Invalid { field: "numberOfImages".into(), message: "Imagen makes 1–4 images per request".into() });
        }
        let ratio = call.extra_str(&["aspectRatio", "aspect_ratio"]).unwrap_or_else(|| nearest_ratio(call.spec.size, &RATIOS).to_string());
        if !RATIOS.contains(&ratio.as_str()) {
            return Err(UpstreamError::Invalid { field: "aspectRatio".into(), message: format!("`{ratio}` is not one of {}", RATIOS.join(", ")) });
        }
        let mut params = Map::new();
        params.insert("sampleCount".into(), json!(count));
        params.insert("aspectRatio".into(), json!(ratio));
        put_extra(call, &mut params, "personGeneration", "personGeneration");
        put_extra(call, &mut params, "imageSize", "imageSize");
        let body = json!({"instances": [{"prompt": call.spec.effective_prompt()}], "parameters": Value::Object(params)});
        let url = call.url(&format!("/models/{}:predict", call.model));
        let req = call.http.post(url).header("x-goog-api-key", call.key()).json(&body);
        let resp = http::send_ok(req).await?;
        let request_id = http::request_id(resp.headers());
        let parsed: PredictResponse = http::json(resp).await?;
        let mut images = Vec::new();
        let mut filtered = Vec::new();
        for p in parsed.predictions {
            match (p.bytes_base64_encoded, p.rai_filtered_reason) {
                (Some(b64), _) => images.push(RawImage::base64(&b64, None)?),
                (None, Some(reason)) => filtered.push(reason),
                (None, None) => {}
            }
        }
        if images.is_empty() {
            let why = if filtered.is_empty() { "Imagen returned no images (safety filter)".to_string() } else { filtered.join("; ") };
            return Err(UpstreamError::Moderated(why));
        }
        Ok(Output { images, request_id, ..Output::default() })
    }
}
