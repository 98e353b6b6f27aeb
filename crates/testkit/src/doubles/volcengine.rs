//! Volcengine Ark double: `POST /api/v3/images/generations` (Bearer) as the
//! Ark image generation reference documents it for Seedream 4.0; answers
//! `{"model", "created", "data": [{"url", "size"}], "usage"}` with URLs on
//! this double, errors as `{"error": {"code", "message", "param", "type"}}`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};

use super::reply;
use super::support::{Log, b64, jpeg, serve_with_files};

#[derive(Clone)]
struct St {
    log: Log,
    key: String,
    base: std::sync::Arc<std::sync::OnceLock<String>>,
}

pub use super::Double;

fn invalid(param: &str, message: &str) -> Response {
    reply(400, json!({"error": {"code": "InvalidParameter", "message": message, "param": param, "type": "BadRequest"}}))
}

async fn generations(State(st): State<St>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    st.log.push(&method, &uri, &headers, &body);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {}", st.key)) {
        return reply(401, json!({"error": {"code": "AuthenticationError", "message": "the API key in the request is missing or invalid", "type": "Unauthorized"}}));
    }
    let Ok(b) = serde_json::from_slice::<Value>(&body) else { return invalid("body", "invalid json") };
    let Some(model) = b.get("model").and_then(Value::as_str) else { return invalid("model", "model is required") };
    if b.get("prompt").and_then(Value::as_str).is_none() {
        return invalid("prompt", "prompt is required");
    }
    let size = b.get("size").and_then(Value::as_str).unwrap_or("2048x2048");
    let size_ok = ["1K", "2K", "4K"].contains(&size) || size.split_once('x').is_some_and(|(w, h)| w.parse::<u32>().is_ok() && h.parse::<u32>().is_ok());
    if !size_ok {
        return invalid("size", "size must be 1K, 2K, 4K or WIDTHxHEIGHT");
    }
    if b.get("stream").and_then(Value::as_bool) == Some(true) {
        return invalid("stream", "this double does not stream");
    }
    if let Some(s) = b.get("sequential_image_generation").and_then(Value::as_str)
        && !["auto", "disabled"].contains(&s)
    {
        return invalid("sequential_image_generation", "must be auto or disabled");
    }
    let format = b.get("response_format").and_then(Value::as_str).unwrap_or("url");
    let item = match format {
        "url" => json!({"url": format!("{}/files/seedream.jpeg", st.base.get().unwrap()), "size": "2048x2048"}),
        "b64_json" => json!({"b64_json": b64(&jpeg(64, 64)), "size": "2048x2048"}),
        _ => return invalid("response_format", "must be url or b64_json"),
    };
    reply(200, json!({"model": model, "created": 1_757_469_561, "data": [item], "usage": {"generated_images": 1, "output_tokens": 16384, "total_tokens": 16384}}))
}

/// Starts an Ark double accepting `key`.
pub async fn start(key: &str) -> Double {
    let st = St { log: Log::default(), key: key.to_string(), base: Default::default() };
    let router = Router::new().route("/api/v3/images/generations", post(generations));
    let base = serve_with_files(router, st.clone(), &st.base).await;
    Double { base, log: st.log }
}
