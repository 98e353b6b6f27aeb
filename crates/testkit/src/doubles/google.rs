//! Gemini API Imagen double: `POST /v1beta/models/{model}:predict` as
//! <https://ai.google.dev/gemini-api/docs/imagen> documents it (auth header
//! `x-goog-api-key`; `instances[].prompt`; `parameters.sampleCount` 1–4 and
//! `aspectRatio`). Unknown fields are refused the way the Google API refuses them.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};

use super::reply;
use super::support::{Log, b64, png, serve};

#[derive(Clone)]
struct St {
    log: Log,
    key: String,
}

pub use super::Double;

fn invalid(message: &str) -> Response {
    reply(400, json!({"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}))
}

async fn predict(State(st): State<St>, Path(rest): Path<String>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    st.log.push(&method, &uri, &headers, &body);
    let Some(model) = rest.strip_suffix(":predict") else { return reply(404, json!({"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}})) };
    if !model.starts_with("imagen-") {
        return reply(404, json!({"error": {"code": 404, "message": format!("models/{model} is not found"), "status": "NOT_FOUND"}}));
    }
    match headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()) {
        None => return reply(403, json!({"error": {"code": 403, "message": "Method doesn't allow unregistered callers", "status": "PERMISSION_DENIED"}})),
        Some(k) if k != st.key => return invalid("API key not valid. Please pass a valid API key."),
        _ => {}
    }
    let Ok(b) = serde_json::from_slice::<Value>(&body) else { return invalid("Invalid JSON payload received.") };
    let Some(prompt) = b.pointer("/instances/0/prompt").and_then(Value::as_str) else { return invalid("instances[0].prompt is required") };
    let params = b.get("parameters").cloned().unwrap_or(json!({}));
    for k in params.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
        if !["sampleCount", "aspectRatio", "personGeneration", "imageSize", "outputOptions"].contains(&k.as_str()) {
            return invalid(&format!("Invalid JSON payload received. Unknown name \"{k}\" at 'parameters'"));
        }
    }
    let count = params.get("sampleCount").and_then(Value::as_u64).unwrap_or(4);
    if !(1..=4).contains(&count) {
        return invalid("sampleCount must be between 1 and 4");
    }
    let ratio = params.get("aspectRatio").and_then(Value::as_str).unwrap_or("1:1");
    let (w, h) = match ratio {
        "1:1" => (64, 64),
        "3:4" => (48, 64),
        "4:3" => (64, 48),
        "9:16" => (36, 64),
        "16:9" => (64, 36),
        _ => return invalid("aspectRatio must be one of 1:1, 3:4, 4:3, 9:16, 16:9"),
    };
    if prompt.contains("forbidden") {
        // every image filtered: the documented answer is an empty object
        return reply(200, json!({}));
    }
    let mut predictions: Vec<Value> = (0..count).map(|_| json!({"bytesBase64Encoded": b64(&png(w, h)), "mimeType": "image/png"})).collect();
    if prompt.contains("partly") && count > 1 {
        // one image filtered, reported in its place (includeRaiReason)
        predictions[0] = json!({"raiFilteredReason": "filtered by the safety filter"});
    }
    reply(200, json!({"predictions": predictions}))
}

/// Starts an Imagen double accepting `key`.
pub async fn start(key: &str) -> Double {
    let st = St { log: Log::default(), key: key.to_string() };
    let router = Router::new().route("/v1beta/models/{*rest}", post(predict)).with_state(st.clone());
    Double { base: serve(router).await, log: st.log }
}
