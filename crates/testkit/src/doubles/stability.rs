//! Stability double: `POST /v2beta/stable-image/generate/sd3` (multipart, as
//! <https://platform.stability.ai/docs/api-reference> documents it) and
//! `POST /v1/generation/{engine_id}/text-to-image` (JSON). Bearer auth;
//! `Accept: application/json` gets base64 JSON answers. Errors use
//! Stability's `{"id", "name", "errors" | "message"}` bodies.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};

use super::reply;
use super::support::{Log, b64, parse_form, png, serve};

#[derive(Clone)]
struct St {
    log: Log,
    key: String,
}

pub use super::Double;

fn bad(errors: &str) -> Response {
    reply(400, json!({"id": "e1", "name": "bad_request", "errors": [errors]}))
}

fn authorized(st: &St, headers: &HeaderMap) -> Option<Response> {
    (headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {}", st.key)))
        .then(|| reply(401, json!({"id": "e0", "name": "unauthorized", "message": "missing authorization header"})))
}

async fn sd3(State(st): State<St>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    st.log.push(&method, &uri, &headers, &body);
    if let Some(r) = authorized(&st, &headers) {
        return r;
    }
    if headers.get("accept").and_then(|v| v.to_str().ok()) != Some("application/json") {
        return bad("this double only answers Accept: application/json");
    }
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(f) = ct.starts_with("multipart/form-data").then(|| parse_form(ct, &body)).flatten() else {
        return bad("content-type: must be multipart/form-data");
    };
    let Some(prompt) = f.get("prompt").filter(|p| !p.is_empty()) else { return bad("prompt: required") };
    let model = f.get("model").map_or("sd3.5-large", String::as_str);
    if !["sd3.5-large", "sd3.5-large-turbo", "sd3.5-medium", "sd3.5-flash"].contains(&model) {
        return bad("model: must be one of sd3.5-large, sd3.5-large-turbo, sd3.5-medium, sd3.5-flash");
    }
    match f.get("mode").map(String::as_str) {
        Some("image-to-image") => {
            if !f.get("image").is_some_and(|i| i.contains("PNG")) || !f.contains_key("strength") {
                return bad("image-to-image requires image and strength");
            }
            if f.contains_key("aspect_ratio") {
                return bad("aspect_ratio: not allowed in image-to-image mode");
            }
        }
        None | Some("text-to-image") => {}
        Some(_) => return bad("mode: must be text-to-image or image-to-image"),
    }
    let ratio = f.get("aspect_ratio").map_or("1:1", String::as_str);
    if !["16:9", "1:1", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21"].contains(&ratio) {
        return bad("aspect_ratio: invalid");
    }
    if !["jpeg", "png"].contains(&f.get("output_format").map_or("png", String::as_str)) {
        return bad("output_format: must be jpeg or png");
    }
    let seed: u64 = match f.get("seed").map(|s| s.parse::<u64>()) {
        None => 0,
        Some(Ok(s)) if s <= 4_294_967_294 => s,
        _ => return bad("seed: must be between 0 and 4294967294"),
    };
    if prompt.contains("forbidden") {
        return reply(200, json!({"image": b64(&png(8, 8)), "finish_reason": "CONTENT_FILTERED", "seed": seed}));
    }
    reply(200, json!({"image": b64(&png(64, 64)), "finish_reason": "SUCCESS", "seed": seed}))
}

async fn v1(State(st): State<St>, Path(engine): Path<String>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    st.log.push(&method, &uri, &headers, &body);
    if let Some(r) = authorized(&st, &headers) {
        return r;
    }
    if !engine.starts_with("stable-diffusion-") {
        return reply(404, json!({"id": "e2", "name": "not_found", "message": format!("engine {engine} not found")}));
    }
    let Ok(b) = serde_json::from_slice::<Value>(&body) else { return reply(400, json!({"id": "e3", "name": "bad_request", "message": "invalid json"})) };
    let prompts = b.get("text_prompts").and_then(Value::as_array).cloned().unwrap_or_default();
    if prompts.is_empty() || prompts.iter().any(|p| p.get("text").and_then(Value::as_str).is_none()) {
        return reply(400, json!({"id": "e4", "name": "bad_request", "message": "text_prompts: must have at least one item with text"}));
    }
    let (w, h) = (b.get("width").and_then(Value::as_u64).unwrap_or(512), b.get("height").and_then(Value::as_u64).unwrap_or(512));
    if engine == "stable-diffusion-xl-1024-v1-0" && ![(1024, 1024), (1152, 896), (896, 1152), (1216, 832), (1344, 768), (768, 1344), (1536, 640), (640, 1536)].contains(&(w, h)) {
        return reply(400, json!({"id": "e5", "name": "invalid_sdxl_v1_dimensions", "message": "For 1024 engines, the following dimensions are allowed: ..."}));
    }
    let samples = b.get("samples").and_then(Value::as_u64).unwrap_or(1);
    let seed = b.get("seed").and_then(Value::as_u64).unwrap_or(0);
    let artifacts: Vec<Value> = (0..samples).map(|i| json!({"base64": b64(&png((w / 16) as u32, (h / 16) as u32)), "seed": seed + i, "finishReason": "SUCCESS"})).collect();
    reply(200, json!({"artifacts": artifacts}))
}

/// Starts a Stability double accepting `key`.
pub async fn start(key: &str) -> Double {
    let st = St { log: Log::default(), key: key.to_string() };
    let router = Router::new().route("/v2beta/stable-image/generate/sd3", post(sd3)).route("/v1/generation/{engine}/text-to-image", post(v1)).with_state(st.clone());
    Double { base: serve(router).await, log: st.log }
}
