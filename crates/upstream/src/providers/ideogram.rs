//! Ideogram 3.0 (`POST /v1/ideogram-v3/generate`).
//!
//! Reference: <https://developer.ideogram.ai/api-reference/api-reference/generate-v3>.
//! Auth header `Api-Key`. Body is `multipart/form-data`: `prompt`,
//! `aspect_ratio` (`1x1`, `2x1`, `16x9`, … — Ideogram writes ratios with an
//! `x`), `rendering_speed` (TURBO/DEFAULT/QUALITY), `magic_prompt`,
//! `negative_prompt`, `num_images`, `seed` (0–2147483647), `style_type`.
//! Answer: `{"created", "data": [{"url", "prompt", "resolution",
//! "is_image_safe", "seed", "style_type"}]}`; an unsafe image has no URL.
//! The URLs expire, so the relay downloads them at once.

use super::{Adapter, Call, Output, nearest_ratio, seed31};
use crate::error::UpstreamError;
use crate::http::{self, Form};
use crate::images::RawImage;

/// Aspect ratios Ideogram 3.0 accepts.
const RATIOS: [&str; 15] = ["1x3", "3x1", "1x2", "2x1", "9x16", "16x9", "10x16", "16x10", "2x3", "3x2", "3x4", "4x3", "4x5", "5x4", "1x1"];

/// The Ideogram adapter.
pub(crate) struct Ideogram;

#[derive(serde::Deserialize)]
struct Response {
    #[serde(default)]
    data: Vec<Item>,
}

#[derive(serde::Deserialize)]
struct Item {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    is_image_safe: Option<bool>,
}

#[async_trait::async_trait]
impl Adapter for Ideogram {
    async fn generate(&self, call: &Call<'_>) -> Result<Output, UpstreamError> {
        call.text_only("Ideogram generate")?;
        let spec = call.spec;
        // Accept `2:1` from clients too: Ideogram only knows `2x1`.
        let ratio = call.extra_str(&["aspect_ratio", "aspectRatio"]).map(|r| r.replace(':', "x")).unwrap_or_else(|| nearest_ratio(spec.size, &RATIOS).to_string());
        let form = Form::new()
            .text("prompt", spec.effective_prompt())
            .text("aspect_ratio", ratio)
            .text("num_images", spec.count.max(1).to_string())
            .text("seed", seed31(spec.seed).to_string())
            .opt("rendering_speed", call.extra_str(&["rendering_speed"]))
            .opt("magic_prompt", call.extra_str(&["magic_prompt"]))
            .opt("style_type", call.extra_str(&["style_type"]))
            .opt("negative_prompt", spec.negative_prompt.as_deref());
        let (content_type, body) = form.finish();
        let req = call.http.post(call.url("/v1/ideogram-v3/generate")).header("Api-Key", call.key()).header("content-type", content_type).body(body);
        let resp = http::send_ok(req).await?;
        let request_id = http::request_id(resp.headers());
        let parsed: Response = http::json(resp).await?;
        let total = parsed.data.len();
        let images: Vec<RawImage> =
            parsed.data.into_iter().filter(|d| d.is_image_safe != Some(false)).filter_map(|d| d.url.map(|url| RawImage::Url { url, seed: d.seed })).collect();
        if images.is_empty() {
            return Err(if total > 0 { UpstreamError::Moderated("every image was marked unsafe".into()) } else { UpstreamError::BadResponse("`data` is empty".into()) });
        }
        Ok(Output { images, request_id, ..Output::default() })
    }
}
