//! Black Forest Labs FLUX API: submit `POST /v1/{model}` then poll.
//!
//! Reference: <https://docs.bfl.ai/api-reference> and
//! <https://docs.bfl.ai/quick_start/generating_images>. Auth header `x-key`.
//! Kontext and Ultra models take `aspect_ratio` (21:9 … 9:21); the others
//! (`flux-pro-1.1`, `flux-dev`, `flux-pro`) take `width`/`height` (multiples
//! of 32). Common: `prompt`, `seed`, `output_format` (jpeg|png),
//! `safety_tolerance` (0–6), `prompt_upsampling`, `input_image` (Kontext).
//! Submit answers `{"id", "polling_url"}`; `GET polling_url` answers
//! `{"id", "status": "Pending" | "Ready" | "Request Moderated" | "Content
//! Moderated" | "Error" | "Task not found", "result": {"sample", "seed"}}`.
//! One image per job, so n images are n jobs (submitted together, then polled).
//! The key is sent to a `polling_url` only on BFL's hosts or the configured one.
//! Each accepted job (id, polling URL, seed) is recorded as it is accepted,
//! so a later attempt of the task polls it instead of paying for it again.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Adapter, Call, Output, put_extra, reduced_ratio};
use crate::error::UpstreamError;
use crate::http;
use crate::images::RawImage;

/// The BFL adapter.
pub(crate) struct Bfl;

#[derive(serde::Deserialize)]
struct Submitted {
    id: String,
    #[serde(default)]
    polling_url: Option<String>,
}

/// One accepted job: what polling it needs, and what a later attempt
/// resumes (the resume state is the list of these).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Accepted {
    id: String,
    polling_url: String,
    seed: u64,
}

#[derive(serde::Deserialize)]
struct Polled {
    status: String,
    #[serde(default)]
    result: Option<PollResult>,
}

#[derive(serde::Deserialize)]
struct PollResult {
    #[serde(default)]
    sample: Option<String>,
    #[serde(default)]
    seed: Option<u64>,
}

fn body(call: &Call<'_>, seed: u64) -> Map<String, Value> {
    let spec = call.spec;
    let mut body = Map::new();
    body.insert("prompt".into(), json!(spec.effective_prompt()));
    if call.model.contains("kontext") || call.model.contains("ultra") {
        let ratio = call.extra_str(&["aspect_ratio"]).unwrap_or_else(|| {
            let (a, b) = reduced_ratio(spec.size);
            format!("{a}:{b}")
        });
        body.insert("aspect_ratio".into(), json!(ratio));
    } else {
        // width/height must be multiples of 32
        body.insert("width".into(), json!(spec.size.width / 32 * 32));
        body.insert("height".into(), json!(spec.size.height / 32 * 32));
    }
    if call.model == "flux-dev" {
        body.insert("steps".into(), json!(spec.steps));
        body.insert("guidance".into(), json!(spec.guidance));
    }
    body.insert("seed".into(), json!(seed));
    let format = if spec.output_format == imagegate_core::ImageFormat::Jpeg { "jpeg" } else { "png" };
    body.insert("output_format".into(), json!(format));
    for key in ["safety_tolerance", "prompt_upsampling", "raw", "image_prompt", "image_prompt_strength"] {
        put_extra(call, &mut body, key, key);
    }
    if let Some(img) = call.init_image() {
        body.insert("input_image".into(), json!(img));
    }
    body
}

#[async_trait::async_trait]
impl Adapter for Bfl {
    async fn generate(&self, call: &Call<'_>) -> Result<Output, UpstreamError> {
        // Jobs an earlier attempt got accepted are polled, not submitted again.
        let mut jobs: Vec<Accepted> = match call.resume.state {
            Some(state) => Vec::deserialize(state).map_err(|e| UpstreamError::BadResponse(format!("unreadable resume state: {e}")))?,
            None => Vec::new(),
        };
        for n in jobs.len() as u64..u64::from(call.spec.count.max(1)) {
            let seed = call.spec.seed.wrapping_add(n) % 4_294_967_296;
            let req = call.http.post(call.url(&format!("/{}", call.model))).header("x-key", call.key()).json(&body(call, seed));
            let sub: Submitted = http::json(http::send_ok(req).await?).await?;
            call.accept(&sub.id);
            let polling_url = sub.polling_url.clone().unwrap_or_else(|| call.url(&format!("/get_result?id={}", sub.id)));
            jobs.push(Accepted { id: sub.id, polling_url, seed });
            call.accepted_state(serde_json::to_value(&jobs).unwrap_or_default());
        }
        let mut images = Vec::with_capacity(jobs.len());
        for Accepted { id, polling_url: poll_url, seed } in &jobs {
            let url = loop {
                let mut req = call.http.get(poll_url);
                // BFL hands out regional polling URLs (api.us1.bfl.ai, …); the key
                // goes only to BFL's hosts or the configured one.
                if http::same_site(poll_url, call.base_url, ".bfl.ai") {
                    req = req.header("x-key", call.key());
                }
                let polled: Polled = http::json(http::send_ok(req).await?).await?;
                match polled.status.as_str() {
                    "Ready" => match polled.result.and_then(|r| r.sample.map(|s| (s, r.seed))) {
                        Some((sample, reported)) => break (sample, reported.unwrap_or(*seed)),
                        None => return Err(UpstreamError::BadResponse(format!("job {id} is Ready without result.sample"))),
                    },
                    "Pending" | "Queued" | "Processing" => call.poll_wait().await?,
                    "Request Moderated" | "Content Moderated" => return Err(UpstreamError::Moderated(polled.status)),
                    other => return Err(UpstreamError::JobFailed(format!("job {id}: {other}"))),
                }
            };
            images.push(RawImage::Url { url: url.0, seed: Some(url.1) });
        }
        Ok(Output { images, request_id: jobs.first().map(|j| j.id.clone()), ..Output::default() })
    }
}
