//! OpenAI Images double: `POST /v1/images/generations` as
//! <https://platform.openai.com/docs/api-reference/images/create> documents it.
//! Unknown parameters are refused as the real API refuses them; gpt-image
//! models answer base64 only; dall-e-3 takes n = 1 only.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::reply;
use super::support::{Log, b64, png, serve_with_files};

const PARAMS: [&str; 13] =
    ["model", "prompt", "n", "size", "quality", "response_format", "output_format", "output_compression", "background", "moderation", "style", "user", "stream"];

#[derive(Clone)]
struct St {
    log: Log,
    key: String,
    /// Answer with URLs to /files (an OpenAI-compatible gateway) instead of base64.
    urls: bool,
    base: std::sync::Arc<std::sync::OnceLock<String>>,
}

pub use super::Double;

fn invalid(message: &str, param: &str) -> Response {
    reply(400, json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": null}}))
}

async fn generations(State(st): State<St>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    st.log.push(&method, &uri, &headers, &body);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {}", st.key)) {
        return reply(401, json!({"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}));
    }
    let Ok(Value::Object(b)) = serde_json::from_slice::<Value>(&body) else { return invalid("We could not parse the JSON body of your request.", "") };
    if !st.urls
        && let Some(k) = b.keys().find(|k| !PARAMS.contains(&k.as_str()))
    {
        return invalid(&format!("Unknown parameter: '{k}'."), k);
    }
    let model = b.get("model").and_then(Value::as_str).unwrap_or("dall-e-2");
    let Some(prompt) = b.get("prompt").and_then(Value::as_str).filter(|p| !p.is_empty()) else { return invalid("Missing required parameter: 'prompt'.", "prompt") };
    let n = b.get("n").and_then(Value::as_u64).unwrap_or(1);
    let sizes: &[&str] = match model {
        "gpt-image-1" => &["1024x1024", "1536x1024", "1024x1536", "auto"],
        "dall-e-3" => &["1024x1024", "1792x1024", "1024x1792"],
        _ => &["256x256", "512x512", "1024x1024", "1536x1024", "1024x1536", "1792x1024", "1024x1792", "auto"],
    };
    let size = b.get("size").and_then(Value::as_str).unwrap_or("1024x1024");
    // a gateway (urls) limits sizes only for OpenAI's own models; FLUX and the rest have their own rules
    let openai_model = model.starts_with("gpt-image") || model.starts_with("dall-e");
    if (!st.urls || openai_model) && !sizes.contains(&size) {
        return invalid(&format!("Invalid value: '{size}'. Supported values are: {}.", sizes.join(", ")), "size");
    }
    if model == "dall-e-3" && n != 1 {
        return invalid("You must provide n=1 for this model.", "n");
    }
    if model.starts_with("gpt-image") && b.contains_key("response_format") {
        return invalid("Unknown parameter: 'response_format'.", "response_format");
    }
    if prompt.contains("forbidden") {
        return reply(
            400,
            json!({"error": {"message": "Your request was rejected as a result of our safety system.", "type": "image_generation_user_error", "param": null, "code": "moderation_blocked"}}),
        );
    }
    let (w, h) = size.split_once('x').map(|(w, h)| (w.parse().unwrap_or(64) / 16, h.parse().unwrap_or(64) / 16)).unwrap_or((64, 64));
    let data: Vec<Value> = (0..n)
        .map(|i| {
            if st.urls {
                json!({"url": format!("{}/files/{i}.png", st.base.get().unwrap())})
            } else if model == "dall-e-3" {
                json!({"b64_json": b64(&png(w, h)), "revised_prompt": format!("{prompt}, revised")})
            } else {
                json!({"b64_json": b64(&png(w, h))})
            }
        })
        .collect();
    ([("x-request-id", "req_abc123")], axum::Json(json!({"created": 1_700_000_000, "data": data}))).into_response()
}

/// `POST /v1/images/edits`: multipart with an `image` file, as
/// <https://platform.openai.com/docs/api-reference/images/createEdit> documents it.
async fn edits(State(st): State<St>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    st.log.push(&method, &uri, &headers, &body);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {}", st.key)) {
        return reply(401, json!({"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}));
    }
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(f) = ct.starts_with("multipart/form-data").then(|| super::support::parse_form(ct, &body)).flatten() else {
        return invalid("Invalid Content-Type header, expected multipart/form-data.", "");
    };
    if !f.get("image").is_some_and(|i| i.contains("PNG") || i.contains("JFIF") || i.contains("WEBP")) {
        return invalid("Missing required parameter: 'image'.", "image");
    }
    if !matches!(f.get("model").map(String::as_str), Some("gpt-image-1" | "dall-e-2")) {
        return invalid("Invalid value for 'model'.", "model");
    }
    if f.get("prompt").is_none_or(|p| p.is_empty()) {
        return invalid("Missing required parameter: 'prompt'.", "prompt");
    }
    let n: u32 = f.get("n").and_then(|n| n.parse().ok()).unwrap_or(1);
    let data: Vec<Value> = (0..n).map(|_| json!({"b64_json": b64(&png(32, 32))})).collect();
    ([("x-request-id", "req_edit")], axum::Json(json!({"created": 1_700_000_000, "data": data}))).into_response()
}

/// `GET /v1/models` as <https://platform.openai.com/docs/api-reference/models/list>
/// documents it: free, bearer auth, `{"object": "list", "data": [...]}`.
async fn models(State(st): State<St>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    st.log.push(&method, &uri, &headers, &[]);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {}", st.key)) {
        return reply(401, json!({"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}));
    }
    let data: Vec<Value> = ["gpt-image-1", "dall-e-3", "dall-e-2"].iter().map(|id| json!({"id": id, "object": "model", "created": 1_698_785_189, "owned_by": "system"})).collect();
    reply(200, json!({"object": "list", "data": data}))
}

/// Starts an OpenAI double accepting `key`; `urls` makes it answer like a
/// gateway that returns image URLs.
pub async fn start(key: &str, urls: bool) -> Double {
    let st = St { log: Log::default(), key: key.to_string(), urls, base: Default::default() };
    let router = Router::new().route("/v1/images/generations", post(generations)).route("/v1/images/edits", post(edits)).route("/v1/models", get(models));
    let base = serve_with_files(router, st.clone(), &st.base).await;
    Double { base, log: st.log }
}
