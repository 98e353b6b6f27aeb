//! Baidu Qianfan image generation (ERNIE iRAG): `POST /v2/images/generations`
//! and, for `ernie-irag-edit`, `POST /v2/images/edits`.
//!
//! Reference: <https://cloud.baidu.com/doc/qianfan-api/s/8m7u6un8a> (图像生成).
//! Auth `Authorization: Bearer <API Key>`. Body: `model` (`irag-1.0`, …),
//! `prompt`, `refer_image` (URL or `data:image/...;base64,`), `n` (1–4),
//! `size` (`WxH`, 512–2048), plus `seed`, `guidance`, `steps`,
//! `watermark` where the model has them. Answer (OpenAI-like): `{"id",
//! "created", "data": [{"url"} | {"b64_image"}]}`; errors
//! `{"error": {"code", "message", "type"}}`. The edit endpoint takes
//! `image` and `feature` instead of `refer_image`.

use serde_json::{Map, json};

use super::{Adapter, Call, Output, put_extra};
use crate::error::UpstreamError;
use crate::http;
use crate::images::RawImage;

/// The Qianfan adapter.
pub(crate) struct Qianfan;

#[derive(serde::Deserialize)]
struct Response {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    data: Vec<Item>,
}

#[derive(serde::Deserialize)]
struct Item {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    b64_image: Option<String>,
}

#[async_trait::async_trait]
impl Adapter for Qianfan {
    async fn generate(&self, call: &Call<'_>) -> Result<Output, UpstreamError> {
        let spec = call.spec;
        let edit = call.model.contains("edit");
        let mut body = Map::new();
        body.insert("model".into(), json!(call.model));
        body.insert("prompt".into(), json!(spec.effective_prompt()));
        body.insert("n".into(), json!(spec.count.max(1)));
        body.insert("size".into(), json!(spec.size.to_string()));
        for key in ["guidance", "watermark", "seed", "steps", "feature", "user"] {
            put_extra(call, &mut body, key, key);
        }
        match (edit, call.init_image()) {
            (true, Some(img)) => {
                body.insert("image".into(), json!(img));
            }
            (true, None) => return Err(UpstreamError::Invalid { field: "image".into(), message: format!("{} needs a reference image", call.model) }),
            (false, Some(img)) => {
                body.insert("refer_image".into(), json!(img));
            }
            (false, None) => {}
        }
        let path = if edit { "/images/edits" } else { "/images/generations" };
        let req = call.bearer(call.http.post(call.url(path))).json(&body);
        let resp = http::send_ok(req).await?;
        let header_id = http::request_id(resp.headers());
        let parsed: Response = http::json(resp).await?;
        let mut images = Vec::new();
        for d in parsed.data {
            images.push(match (d.url, d.b64_image) {
                (Some(url), _) => RawImage::Url { url, seed: None },
                (None, Some(b64)) => RawImage::base64(&b64, None)?,
                (None, None) => return Err(UpstreamError::BadResponse("an item of `data` has neither url nor b64_image".into())),
            });
        }
        if images.is_empty() {
            return Err(UpstreamError::BadResponse("`data` is empty".into()));
        }
        Ok(Output { images, request_id: parsed.id.or(header_id), ..Output::default() })
    }
}
