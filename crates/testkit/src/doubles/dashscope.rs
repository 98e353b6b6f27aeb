//! DashScope double: the asynchronous text-to-image task API
//! (`POST /api/v1/services/aigc/text2image/image-synthesis` with
//! `X-DashScope-Async: enable`, then `GET /api/v1/tasks/{task_id}`) and the
//! synchronous multimodal edit endpoint, as the Model Studio Qwen-Image
//! references document them. Tasks report RUNNING once, then SUCCEEDED (or
//! FAILED with `DataInspectionFailed` for prompts containing "inspect").

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::reply;
use super::support::{Log, serve_with_files};

#[derive(Clone)]
struct St {
    log: Log,
    key: String,
    base: Arc<std::sync::OnceLock<String>>,
    tasks: Arc<Mutex<HashMap<String, Task>>>,
}

/// A submitted task: (polls so far, prompt, n).
type Task = (u32, String, u64);

pub use super::Double;

fn invalid(message: &str) -> Response {
    reply(400, json!({"code": "InvalidParameter", "message": message, "request_id": "req-bad"}))
}

fn auth(st: &St, headers: &HeaderMap) -> Option<Response> {
    (headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {}", st.key)))
        .then(|| reply(401, json!({"code": "InvalidApiKey", "message": "Invalid API-key provided.", "request_id": "req-401"})))
}

async fn synthesis(State(st): State<St>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    st.log.push(&method, &uri, &headers, &body);
    if let Some(r) = auth(&st, &headers) {
        return r;
    }
    if headers.get("x-dashscope-async").and_then(|v| v.to_str().ok()) != Some("enable") {
        return reply(403, json!({"code": "AccessDenied", "message": "current user api does not support synchronous calls", "request_id": "req-403"}));
    }
    let Ok(b) = serde_json::from_slice::<Value>(&body) else { return invalid("invalid json") };
    if !matches!(b.get("model").and_then(Value::as_str), Some("qwen-image" | "qwen-image-plus")) {
        return invalid("Model not exist.");
    }
    let Some(prompt) = b.pointer("/input/prompt").and_then(Value::as_str) else { return invalid("input.prompt is required") };
    let size = b.pointer("/parameters/size").and_then(Value::as_str).unwrap_or("1328*1328");
    if !["1664*928", "1472*1140", "1328*1328", "1140*1472", "928*1664"].contains(&size) {
        return invalid("The size is not match the allowed size ['1664*928', '1472*1140', '1328*1328', '1140*1472', '928*1664']");
    }
    let n = b.pointer("/parameters/n").and_then(Value::as_u64).unwrap_or(1);
    if !(1..=4).contains(&n) {
        return invalid("n must be between 1 and 4");
    }
    let id = format!("task-{}", st.tasks.lock().unwrap().len() + 1);
    st.tasks.lock().unwrap().insert(id.clone(), (0, prompt.to_string(), n));
    reply(200, json!({"output": {"task_status": "PENDING", "task_id": id}, "request_id": "req-submit"}))
}

async fn task(State(st): State<St>, Path(id): Path<String>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    st.log.push(&method, &uri, &headers, &[]);
    if let Some(r) = auth(&st, &headers) {
        return r;
    }
    let mut tasks = st.tasks.lock().unwrap();
    let Some(t) = tasks.get_mut(&id) else { return reply(200, json!({"request_id": "r", "output": {"task_id": id, "task_status": "UNKNOWN"}})) };
    t.0 += 1;
    if t.0 == 1 {
        return reply(200, json!({"request_id": "r", "output": {"task_id": id, "task_status": "RUNNING"}}));
    }
    if t.1.contains("inspect") {
        return reply(
            200,
            json!({"request_id": "r", "output": {"task_id": id, "task_status": "FAILED", "code": "DataInspectionFailed", "message": "Input data may contain inappropriate content."}}),
        );
    }
    let base = st.base.get().unwrap();
    let results: Vec<Value> = (0..t.2).map(|i| json!({"orig_prompt": t.1, "actual_prompt": t.1, "url": format!("{base}/files/{id}-{i}.png")})).collect();
    reply(200, json!({"request_id": "r", "output": {"task_id": id, "task_status": "SUCCEEDED", "results": results}, "usage": {"image_count": t.2}}))
}

async fn multimodal(State(st): State<St>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    st.log.push(&method, &uri, &headers, &body);
    if let Some(r) = auth(&st, &headers) {
        return r;
    }
    let Ok(b) = serde_json::from_slice::<Value>(&body) else { return invalid("invalid json") };
    let content = b.pointer("/input/messages/0/content").and_then(Value::as_array).cloned().unwrap_or_default();
    let has_image = content.iter().any(|c| c.get("image").is_some());
    let has_text = content.iter().any(|c| c.get("text").is_some());
    if b.get("model").and_then(Value::as_str) != Some("qwen-image-edit") || !has_image || !has_text {
        return invalid("input.messages[0].content needs one image and one text");
    }
    let url = format!("{}/files/edit.png", st.base.get().unwrap());
    reply(
        200,
        json!({"output": {"choices": [{"finish_reason": "stop", "message": {"role": "assistant", "content": [{"image": url}]}}]}, "usage": {"width": 64, "height": 48, "image_count": 1}, "request_id": "req-edit"}),
    )
}

/// Starts a DashScope double accepting `key`.
pub async fn start(key: &str) -> Double {
    let st = St { log: Log::default(), key: key.to_string(), base: Default::default(), tasks: Default::default() };
    let router = Router::new()
        .route("/api/v1/services/aigc/text2image/image-synthesis", post(synthesis))
        .route("/api/v1/services/aigc/multimodal-generation/generation", post(multimodal))
        .route("/api/v1/tasks/{id}", get(task));
    let base = serve_with_files(router, st.clone(), &st.base).await;
    Double { base, log: st.log }
}
