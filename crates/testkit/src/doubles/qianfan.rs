//! Baidu Qianfan double: `POST /v2/images/generations` (iRAG) and
//! `POST /v2/images/edits`, Bearer auth, as the Qianfan 图像生成 reference
//! documents them: `model`, `prompt` (≤ 220 characters for irag-1.0),
//! `refer_image`, `n` (1–4), `size` (512–2048 per side); answers
//! `{"id", "created", "data": [{"url"}]}`, errors `{"error": {"code", "message", "type"}}`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};

use super::reply;
use super::support::{Log, serve_with_files};

#[derive(Clone)]
struct St {
    log: Log,
    key: String,
    base: std::sync::Arc<std::sync::OnceLock<String>>,
}

pub use super::Double;

fn invalid(message: &str) -> Response {
    reply(400, json!({"error": {"code": "invalid_argument", "message": message, "type": "invalid_request_error"}}))
}

async fn handle(st: St, edit: bool, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    st.log.push(&method, &uri, &headers, &body);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {}", st.key)) {
        return reply(401, json!({"error": {"code": "invalid_iam_token", "message": "IAM Certification failed", "type": "invalid_request_error"}}));
    }
    let Ok(b) = serde_json::from_slice::<Value>(&body) else { return invalid("invalid json") };
    let model = b.get("model").and_then(Value::as_str).unwrap_or("");
    let expected = if edit { "ernie-irag-edit" } else { "irag-1.0" };
    if model != expected {
        return invalid(&format!("model {model} is not supported here"));
    }
    let Some(prompt) = b.get("prompt").and_then(Value::as_str) else { return invalid("prompt is required") };
    if prompt.chars().count() > 220 {
        return invalid("prompt is longer than 220 characters");
    }
    if edit && b.get("image").and_then(Value::as_str).is_none() {
        return invalid("image is required");
    }
    let n = b.get("n").and_then(Value::as_u64).unwrap_or(1);
    if !(1..=4).contains(&n) {
        return invalid("n must be between 1 and 4");
    }
    let size = b.get("size").and_then(Value::as_str).unwrap_or("1024x1024");
    let ok = size.split_once('x').is_some_and(|(w, h)| [w, h].iter().all(|v| v.parse::<u32>().is_ok_and(|v| (512..=2048).contains(&v))));
    if !ok {
        return invalid("size must be WIDTHxHEIGHT between 512x512 and 2048x2048");
    }
    let base = st.base.get().unwrap();
    let data: Vec<Value> = (0..n).map(|i| json!({"url": format!("{base}/files/irag-{i}.jpeg")})).collect();
    reply(200, json!({"id": "as-irag-1", "created": 1_735_000_000, "data": data}))
}

async fn generations(State(st): State<St>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    handle(st, false, method, uri, headers, body).await
}

async fn edits(State(st): State<St>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    handle(st, true, method, uri, headers, body).await
}

/// Starts a Qianfan double accepting `key`.
pub async fn start(key: &str) -> Double {
    let st = St { log: Log::default(), key: key.to_string(), base: Default::default() };
    let router = Router::new().route("/v2/images/generations", post(generations)).route("/v2/images/edits", post(edits));
    let base = serve_with_files(router, st.clone(), &st.base).await;
    Double { base, log: st.log }
}
