//! Volcengine Ark image generation (Seedream): `POST /api/v3/images/generations`.
//!
//! Reference: the Ark docs' "图片生成 API" page under
//! <https://www.volcengine.com/docs/82379> (shapes cross-checked against
//! the seed's example and gateway mirrors of that page). Auth `Authorization: Bearer <ARK_API_KEY>`. Body: `model`,
//! `prompt`, `image` (reference URL/base64), `size` (`1K`/`2K`/`4K` or
//! `WxH`), `seed`, `sequential_image_generation` (`disabled`/`auto`) with
//! `sequential_image_generation_options.max_images`, `stream`,
//! `response_format` (`url`/`b64_json`), `watermark`. Answer: `{"model",
//! "created", "data": [{"url" | "b64_json", "size"}], "usage":
//! {"generated_images", ...}}`; errors `{"error": {"code", "message"}}`.
//! Seedream 4.0 returns one image unless sequential generation is on, so n
//! independent images are n requests. Streaming is never asked for.

use serde_json::{Map, json};

use super::{Adapter, Call, Output, put_extra};
use crate::error::UpstreamError;
use crate::http;
use crate::images::RawImage;

/// The Ark adapter.
pub(crate) struct Volcengine;

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
    b64_json: Option<String>,
}

fn body(call: &Call<'_>) -> Map<String, serde_json::Value> {
    let spec = call.spec;
    let mut body = Map::new();
    body.insert("model".into(), json!(call.model));
    body.insert("prompt".into(), json!(spec.effective_prompt()));
    // `2K`-style sizes pass through; otherwise the spec's WxH.
    body.insert("size".into(), json!(call.extra_str(&["size"]).unwrap_or_else(|| spec.size.to_string())));
    body.insert("sequential_image_generation".into(), json!("disabled"));
    put_extra(call, &mut body, "sequential_image_generation", "sequential_image_generation");
    put_extra(call, &mut body, "sequential_image_generation_options", "sequential_image_generation_options");
    put_extra(call, &mut body, "watermark", "watermark");
    body.insert("stream".into(), json!(false));
    body.insert("response_format".into(), json!("url"));
    if let Some(img) = call.init_image() {
        body.insert("image".into(), json!(img));
    }
    body
}

#[async_trait::async_trait]
impl Adapter for Volcengine {
    async fn generate(&self, call: &Call<'_>) -> Result<Output, UpstreamError> {
        let sequential = call.extra_str(&["sequential_image_generation"]).is_some_and(|s| s == "auto");
        let requests = if sequential { 1 } else { call.spec.count.max(1) };
        let mut out = Output::default();
        for _ in 0..requests {
            let req = call.bearer(call.http.post(call.url("/images/generations"))).json(&body(call));
            let resp = http::send_ok(req).await?;
            let request_id = http::request_id(resp.headers());
            let parsed: Response = http::json(resp).await?;
            for d in parsed.data {
                out.images.push(match (d.url, d.b64_json) {
                    (Some(url), _) => RawImage::Url { url, seed: None },
                    (None, Some(b64)) => RawImage::base64(&b64, None)?,
                    (None, None) => return Err(UpstreamError::BadResponse("an item of `data` has neither url nor b64_json".into())),
                });
            }
            call.accept(request_id.as_deref().unwrap_or("ark request"));
            if out.request_id.is_none() {
                out.request_id = request_id;
            }
        }
        if out.images.is_empty() {
            return Err(UpstreamError::BadResponse("`data` is empty".into()));
        }
        Ok(out)
    }
}
