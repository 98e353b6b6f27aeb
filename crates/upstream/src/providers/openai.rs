//! OpenAI Images (`POST /v1/images/generations`) and any gateway that speaks
//! it ("openai-compatible", another imagegate included).
//!
//! Reference: <https://platform.openai.com/docs/api-reference/images/create>.
//! Body: `model`, `prompt`, `n`, `size` (`WxH`), `quality`, `background`,
//! `moderation`, `output_format` (gpt-image), `style` and `response_format`
//! (dall-e; gpt-image always answers base64). Answer: `{"created",
//! "data": [{"b64_json" | "url", "revised_prompt"}]}`; the request id is the
//! `x-request-id` header. Errors: `{"error": {"message", "type", "code"}}`.
//! dall-e-3 makes one image per request, so n > 1 becomes n requests.
//! With an inline reference image the same fields go as a multipart form
//! with an `image` file (and a `mask` file, transparent where to repaint)
//! to `POST /v1/images/edits`
//! (<https://platform.openai.com/docs/api-reference/images/createEdit>).

use imagegate_core::ImageFormat;
use serde_json::{Map, Value, json};

use super::{Adapter, Call, Output, put_extra};
use crate::error::UpstreamError;
use crate::http::{self, Form};
use crate::images::RawImage;

/// The OpenAI adapter; `compatible` also passes every extra field through.
pub(crate) struct OpenAi {
    pub compatible: bool,
}

#[derive(serde::Deserialize)]
struct ImagesResponse {
    #[serde(default)]
    data: Vec<ImageData>,
}

#[derive(serde::Deserialize)]
struct ImageData {
    #[serde(default)]
    b64_json: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    seed: Option<u64>,
}

impl OpenAi {
    fn body(&self, call: &Call<'_>, n: u32) -> Map<String, Value> {
        let spec = call.spec;
        let dalle = call.model.starts_with("dall-e");
        let mut body = Map::new();
        body.insert("model".into(), json!(call.model));
        body.insert("prompt".into(), json!(spec.effective_prompt()));
        body.insert("n".into(), json!(n));
        body.insert("size".into(), json!(spec.size.to_string()));
        for key in ["quality", "background", "moderation", "style", "user", "output_compression"] {
            put_extra(call, &mut body, key, key);
        }
        if self.compatible {
            // A gateway may understand more than OpenAI does (seed, negative
            // prompt, steps…): send what the spec knows and every extra.
            body.insert("response_format".into(), json!("b64_json"));
            body.insert("output_format".into(), json!(spec.output_format.ext().replace("jpg", "jpeg")));
            body.insert("seed".into(), json!(spec.seed));
            body.insert("num_inference_steps".into(), json!(spec.steps));
            body.insert("guidance_scale".into(), json!(spec.guidance));
            if let Some(neg) = &spec.negative_prompt {
                body.insert("negative_prompt".into(), json!(neg));
            }
            if let Some(img) = call.init_image() {
                body.insert("image".into(), json!(img));
            }
            for (k, v) in &spec.extras {
                body.entry(k.clone()).or_insert_with(|| v.clone());
            }
        } else if dalle {
            body.insert("response_format".into(), json!("b64_json"));
        } else {
            body.insert("output_format".into(), json!(spec.output_format.ext().replace("jpg", "jpeg")));
        }
        body
    }

    async fn request(&self, call: &Call<'_>, n: u32, reference: Option<&(Vec<u8>, ImageFormat)>) -> Result<(Vec<RawImage>, Option<String>), UpstreamError> {
        let body = self.body(call, n);
        let req = match reference {
            None => call.bearer(call.http.post(call.url("/images/generations"))).json(&body),
            Some((bytes, format)) => {
                // images/edits takes the same fields as a multipart form plus the image file
                let mut form = Form::new();
                for (k, v) in &body {
                    form = form.text(
                        k,
                        match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        },
                    );
                }
                form = form.file("image", &format!("image.{}", format.ext()), format.mime(), bytes);
                if let Some(mask) = call.openai_mask()? {
                    form = form.file("mask", "mask.png", "image/png", &mask);
                }
                let (content_type, data) = form.finish();
                call.bearer(call.http.post(call.url("/images/edits"))).header("content-type", content_type).body(data)
            }
        };
        let resp = http::send_ok(req).await?;
        let request_id = http::request_id(resp.headers());
        let parsed: ImagesResponse = http::json(resp).await?;
        let mut images = Vec::with_capacity(parsed.data.len());
        for d in parsed.data {
            images.push(match (d.b64_json, d.url) {
                (Some(b64), _) if !b64.is_empty() => RawImage::base64(&b64, d.seed)?,
                (_, Some(url)) => RawImage::Url { url, seed: d.seed },
                _ => return Err(UpstreamError::BadResponse("an item of `data` has neither b64_json nor url".into())),
            });
        }
        if images.is_empty() {
            return Err(UpstreamError::BadResponse("`data` is empty".into()));
        }
        Ok((images, request_id))
    }
}

#[async_trait::async_trait]
impl Adapter for OpenAi {
    /// OpenAI's images/edits takes a mask file; a gateway's JSON body has no field for one.
    fn takes_masks(&self) -> bool {
        !self.compatible
    }

    async fn generate(&self, call: &Call<'_>) -> Result<Output, UpstreamError> {
        // A gateway takes the reference in the JSON body (see `body`); OpenAI
        // itself wants an upload to images/edits, which dall-e-3 lacks.
        let reference = if self.compatible { None } else { call.inline_reference()? };
        if reference.is_some() && call.model == "dall-e-3" {
            call.text_only("dall-e-3")?;
        }
        let count = call.spec.count.max(1);
        let one_per_request = !self.compatible && call.model == "dall-e-3";
        if !one_per_request {
            let (images, request_id) = self.request(call, count, reference.as_ref()).await?;
            return Ok(Output { images, request_id, ..Output::default() });
        }
        let mut out = Output::default();
        for _ in 0..count {
            let (images, id) = self.request(call, 1, None).await?;
            call.accept(id.as_deref().unwrap_or("dall-e-3 request"));
            if out.request_id.is_none() {
                out.request_id = id;
            }
            out.images.extend(images);
        }
        Ok(out)
    }
}
