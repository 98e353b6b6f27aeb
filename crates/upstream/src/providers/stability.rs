//! Stability AI: v2beta Stable Image (`sd3.5-*`, `core`, `ultra`) and the v1
//! generation API (`stable-diffusion-*` engine ids).
//!
//! References: <https://platform.stability.ai/docs/api-reference> —
//! `POST /v2beta/stable-image/generate/{sd3|core|ultra}` takes
//! `multipart/form-data` (`prompt`, `negative_prompt`, `aspect_ratio`, `seed`
//! 0–4294967294, `output_format`, and for sd3 `model`, `mode`, `cfg_scale`);
//! with `Accept: application/json` it answers `{"image" (base64),
//! "finish_reason": "SUCCESS" | "CONTENT_FILTERED", "seed"}`, one image per
//! request. `POST /v1/generation/{engine_id}/text-to-image` takes JSON
//! (`text_prompts` [{text, weight}], `width`, `height`, `cfg_scale`, `steps`,
//! `samples`, `seed`, `sampler`, `style_preset`) and answers `{"artifacts":
//! [{"base64", "seed", "finishReason"}]}`. Errors: `{"id", "name",
//! "errors" | "message"}`. Auth: `Authorization: Bearer`. Image-to-image
//! (sd3 and ultra): `mode=image-to-image`, an `image` file and `strength`
//! instead of `aspect_ratio`; the reference must be inline (see `Call::inline_reference`).

use serde_json::{Map, Value, json};

use super::{Adapter, Call, Output, nearest_ratio};
use crate::error::UpstreamError;
use crate::http::{self, Form};
use crate::images::RawImage;

/// Aspect ratios the v2beta endpoints accept.
const RATIOS: [&str; 9] = ["16:9", "1:1", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21"];

/// The Stability adapter.
pub(crate) struct Stability;

#[derive(serde::Deserialize)]
struct V2Response {
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    seed: Option<u64>,
}

#[derive(serde::Deserialize)]
struct V1Response {
    #[serde(default)]
    artifacts: Vec<Artifact>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Artifact {
    #[serde(default)]
    base64: Option<String>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    finish_reason: Option<String>,
}

fn check_finish(reason: Option<&str>) -> Result<(), UpstreamError> {
    match reason {
        None | Some("SUCCESS") => Ok(()),
        Some("CONTENT_FILTERED") => Err(UpstreamError::Moderated("CONTENT_FILTERED".into())),
        Some(other) => Err(UpstreamError::JobFailed(format!("finish reason {other}"))),
    }
}

impl Stability {
    async fn v2beta(&self, call: &Call<'_>) -> Result<Output, UpstreamError> {
        let spec = call.spec;
        let (path, model) = match call.model {
            "core" | "ultra" => (call.model, None),
            m => ("sd3", Some(m)),
        };
        let reference = call.inline_reference()?;
        if reference.is_some() && path == "core" {
            call.text_only("Stable Image Core")?;
        }
        let ratio = call.extra_str(&["aspect_ratio"]).unwrap_or_else(|| nearest_ratio(spec.size, &RATIOS).to_string());
        let format = match spec.output_format {
            imagegate_core::ImageFormat::Jpeg => "jpeg",
            imagegate_core::ImageFormat::Webp if model.is_none() => "webp",
            _ => "png",
        };
        let mut out = Output::default();
        for n in 0..u64::from(spec.count.max(1)) {
            let seed = spec.seed.wrapping_add(n) % 4_294_967_295;
            let mut form = Form::new().text("prompt", spec.effective_prompt()).text("seed", seed.to_string()).text("output_format", format);
            form = form.opt("negative_prompt", spec.negative_prompt.as_deref()).opt("style_preset", call.extra_str(&["style_preset"]));
            match &reference {
                // image-to-image takes the init image's shape: no aspect_ratio
                Some((bytes, fmt)) => {
                    let strength = spec.init_image.as_ref().map_or(0.5, |i| i.strength);
                    form = form.file("image", &format!("init.{}", fmt.ext()), fmt.mime(), bytes).text("strength", strength.to_string());
                }
                None => form = form.text("aspect_ratio", &ratio),
            }
            if let Some(m) = model {
                let mode = if reference.is_some() { "image-to-image" } else { "text-to-image" };
                form = form.text("model", m).text("mode", mode).text("cfg_scale", spec.guidance.to_string());
            }
            let (content_type, body) = form.finish();
            let req = call.bearer(call.http.post(call.url(&format!("/v2beta/stable-image/generate/{path}"))));
            let req = req.header("accept", "application/json").header("content-type", content_type).body(body);
            let resp = http::send_ok(req).await?;
            let request_id = http::request_id(resp.headers());
            let parsed: V2Response = http::json(resp).await?;
            check_finish(parsed.finish_reason.as_deref())?;
            let b64 = parsed.image.ok_or_else(|| UpstreamError::BadResponse("no `image` in the answer".into()))?;
            out.images.push(RawImage::base64(&b64, Some(parsed.seed.unwrap_or(seed)))?);
            call.accept(request_id.as_deref().unwrap_or("stability request"));
            if out.request_id.is_none() {
                out.request_id = request_id;
            }
        }
        Ok(out)
    }

    async fn v1(&self, call: &Call<'_>) -> Result<Output, UpstreamError> {
        let spec = call.spec;
        let mut prompts: Vec<Value> = spec.prompt.iter().map(|p| json!({"text": p.text, "weight": p.weight})).collect();
        if let Some(neg) = &spec.negative_prompt {
            prompts.push(json!({"text": neg, "weight": -1.0}));
        }
        let mut body = Map::new();
        body.insert("text_prompts".into(), Value::Array(prompts));
        body.insert("width".into(), json!(spec.size.width));
        body.insert("height".into(), json!(spec.size.height));
        body.insert("cfg_scale".into(), json!(spec.guidance));
        body.insert("steps".into(), json!(spec.steps));
        body.insert("samples".into(), json!(spec.count.max(1)));
        body.insert("seed".into(), json!(spec.seed % 4_294_967_296));
        if let Some(s) = spec.sampler {
            body.insert("sampler".into(), json!(s.as_str()));
        }
        for key in ["style_preset", "clip_guidance_preset"] {
            super::put_extra(call, &mut body, key, key);
        }
        let url = call.url(&format!("/v1/generation/{}/text-to-image", call.model));
        let req = call.bearer(call.http.post(url)).header("accept", "application/json").json(&body);
        let resp = http::send_ok(req).await?;
        let request_id = http::request_id(resp.headers());
        let parsed: V1Response = http::json(resp).await?;
        let mut images = Vec::new();
        for a in parsed.artifacts {
            check_finish(a.finish_reason.as_deref())?;
            let b64 = a.base64.ok_or_else(|| UpstreamError::BadResponse("artifact without base64".into()))?;
            images.push(RawImage::base64(&b64, a.seed)?);
        }
        if images.is_empty() {
            return Err(UpstreamError::BadResponse("no artifacts".into()));
        }
        Ok(Output { images, request_id, ..Output::default() })
    }
}

#[async_trait::async_trait]
impl Adapter for Stability {
    async fn generate(&self, call: &Call<'_>) -> Result<Output, UpstreamError> {
        if call.model.starts_with("stable-diffusion-") {
            call.text_only("Stability v1 text-to-image")?;
            self.v1(call).await
        } else {
            self.v2beta(call).await
        }
    }
}
