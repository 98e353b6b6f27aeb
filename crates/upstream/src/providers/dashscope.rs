//! Alibaba Cloud DashScope (Model Studio): Qwen-Image as an asynchronous
//! task, Qwen-Image-Edit through the synchronous multimodal endpoint.
//!
//! References: <https://www.alibabacloud.com/help/en/model-studio/qwen-image-api>
//! (async text-to-image, read for this adapter) and Model Studio's
//! Qwen-Image-Edit page (multimodal-generation shape, from memory of it).
//! Auth `Authorization: Bearer`. Text-to-image: `POST
//! /api/v1/services/aigc/text2image/image-synthesis` with header
//! `X-DashScope-Async: enable`, body `{"model", "input": {"prompt",
//! "negative_prompt"}, "parameters": {"size": "W*H", "n", "seed",
//! "prompt_extend", "watermark"}}`, answer `{"output": {"task_id",
//! "task_status"}, "request_id"}`; then `GET /api/v1/tasks/{task_id}` until
//! `task_status` is `SUCCEEDED` (`output.results[].url`) or
//! `FAILED`/`CANCELED`/`UNKNOWN` (`output.code`, `output.message`). Edit:
//! `POST /api/v1/services/aigc/multimodal-generation/generation` with
//! `input.messages[0].content = [{"image"}, {"text"}]`, answer
//! `output.choices[].message.content[].image`. Errors: `{"code", "message", "request_id"}`.
//! qwen-image draws only 1664*928, 1472*1140, 1328*1328, 1140*1472 and
//! 928*1664; other sizes snap to the nearest ratio, with a note.

use serde_json::{Map, Value, json};

use super::{Adapter, Call, Output, put_extra, seed31};
use crate::error::UpstreamError;
use crate::http;
use crate::images::RawImage;

/// The DashScope adapter.
pub(crate) struct DashScope;

#[derive(serde::Deserialize)]
struct TaskAnswer {
    #[serde(default)]
    request_id: Option<String>,
    output: TaskOutput,
}

#[derive(serde::Deserialize)]
struct TaskOutput {
    #[serde(default)]
    task_id: Option<String>,
    #[serde(default)]
    task_status: Option<String>,
    #[serde(default)]
    results: Vec<TaskResult>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    choices: Vec<Value>,
}

#[derive(serde::Deserialize)]
struct TaskResult {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

fn parameters(call: &Call<'_>, seed: u64) -> Map<String, Value> {
    let mut p = Map::new();
    if let Some(neg) = &call.spec.negative_prompt {
        p.insert("negative_prompt".into(), json!(neg));
    }
    for key in ["prompt_extend", "watermark"] {
        put_extra(call, &mut p, key, key);
    }
    p.insert("seed".into(), json!(seed));
    p
}

impl DashScope {
    async fn text_to_image(&self, call: &Call<'_>) -> Result<Output, UpstreamError> {
        let spec = call.spec;
        let seed = seed31(spec.seed);
        let mut params = parameters(call, seed);
        let (size, note) = qwen_size(call.model, spec.size);
        params.insert("size".into(), json!(size));
        params.insert("n".into(), json!(spec.count.max(1)));
        let mut input = Map::new();
        input.insert("prompt".into(), json!(spec.effective_prompt()));
        if let Some(neg) = params.remove("negative_prompt") {
            input.insert("negative_prompt".into(), neg);
        }
        // A task an earlier attempt got accepted is polled, not submitted again.
        let resumed = call.resume.state.and_then(|s| s.get("task_id")).and_then(Value::as_str).map(str::to_string);
        let task_id = match resumed {
            Some(id) => id,
            None => {
                let body = json!({"model": call.model, "input": input, "parameters": params});
                let req = call.bearer(call.http.post(call.url("/services/aigc/text2image/image-synthesis"))).header("X-DashScope-Async", "enable").json(&body);
                let submitted: TaskAnswer = http::json(http::send_ok(req).await?).await?;
                let task_id = submitted.output.task_id.ok_or_else(|| UpstreamError::BadResponse("no output.task_id".into()))?;
                call.accept(&task_id);
                call.accepted_state(json!({ "task_id": task_id }));
                task_id
            }
        };
        loop {
            call.poll_wait().await?;
            let req = call.bearer(call.http.get(call.url(&format!("/tasks/{task_id}"))));
            let polled: TaskAnswer = http::json(http::send_ok(req).await?).await?;
            let out = polled.output;
            match out.task_status.as_deref().unwrap_or("UNKNOWN") {
                "PENDING" | "RUNNING" => continue,
                "SUCCEEDED" => {
                    let images: Vec<RawImage> = out.results.iter().filter_map(|r| r.url.clone().map(|url| RawImage::Url { url, seed: Some(seed) })).collect();
                    if images.is_empty() {
                        let why: Vec<String> = out.results.iter().filter_map(|r| Some(format!("{}: {}", r.code.as_deref()?, r.message.as_deref().unwrap_or("")))).collect();
                        return Err(failure(&why.join("; ")));
                    }
                    return Ok(Output { images, request_id: Some(task_id), note });
                }
                status => {
                    let why = format!("{status} {}: {}", out.code.as_deref().unwrap_or(""), out.message.as_deref().unwrap_or(""));
                    return Err(failure(&why));
                }
            }
        }
    }

    async fn edit(&self, call: &Call<'_>) -> Result<Output, UpstreamError> {
        let image = call.init_image().ok_or_else(|| UpstreamError::Invalid { field: "image".into(), message: format!("{} needs a reference image", call.model) })?;
        let content = json!([{"image": image}, {"text": call.spec.effective_prompt()}]);
        let body = json!({
            "model": call.model,
            "input": {"messages": [{"role": "user", "content": content}]},
            "parameters": parameters(call, seed31(call.spec.seed)),
        });
        let req = call.bearer(call.http.post(call.url("/services/aigc/multimodal-generation/generation"))).json(&body);
        let answer: TaskAnswer = http::json(http::send_ok(req).await?).await?;
        let images: Vec<RawImage> = answer
            .output
            .choices
            .iter()
            .filter_map(|c| c.pointer("/message/content")?.as_array().cloned())
            .flatten()
            .filter_map(|part| part.get("image")?.as_str().map(|url| RawImage::Url { url: url.to_string(), seed: None }))
            .collect();
        if images.is_empty() {
            return Err(UpstreamError::BadResponse("no image in output.choices".into()));
        }
        Ok(Output { images, request_id: answer.request_id, ..Output::default() })
    }
}

/// Sizes qwen-image and qwen-image-plus accept, with their ratios.
const QWEN_SIZES: [(&str, &str); 5] = [("16:9", "1664*928"), ("4:3", "1472*1140"), ("1:1", "1328*1328"), ("3:4", "1140*1472"), ("9:16", "928*1664")];

/// qwen-image only draws five sizes; clients (and the seed's own example)
/// ask for others such as 1024x1024, so those snap to the nearest ratio and
/// the client is told. Other models take the size as given.
fn qwen_size(model: &str, size: imagegate_core::Size) -> (String, Option<String>) {
    let asked = format!("{}*{}", size.width, size.height);
    if !matches!(model, "qwen-image" | "qwen-image-plus") || QWEN_SIZES.iter().any(|(_, s)| *s == asked) {
        return (asked, None);
    }
    let ratios: Vec<&str> = QWEN_SIZES.iter().map(|(r, _)| *r).collect();
    let ratio = super::nearest_ratio(size, &ratios);
    let snapped = QWEN_SIZES.iter().find(|(r, _)| *r == ratio).map_or("1328*1328", |(_, s)| *s);
    let note = format!("{model} draws {}; {}x{} was asked", snapped.replace('*', "x"), size.width, size.height);
    (snapped.to_string(), Some(note))
}

/// DashScope reports moderation as `DataInspectionFailed`.
fn failure(why: &str) -> UpstreamError {
    if why.contains("DataInspection") || why.contains("IPInfringement") { UpstreamError::Moderated(why.to_string()) } else { UpstreamError::JobFailed(why.to_string()) }
}

#[async_trait::async_trait]
impl Adapter for DashScope {
    async fn generate(&self, call: &Call<'_>) -> Result<Output, UpstreamError> {
        if call.model.contains("edit") { self.edit(call).await } else { self.text_to_image(call).await }
    }
}
