//! Ideogram double: `POST /v1/ideogram-v3/generate` (multipart, header
//! `Api-Key`) as <https://developer.ideogram.ai/api-reference/api-reference/generate-v3>
//! documents it; answers `{"created", "data": [{"url", "is_image_safe", "seed", ...}]}`
//! with URLs on this double. A prompt containing "unsafe" yields an unsafe image without URL.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};

use super::reply;
use super::support::{Log, parse_form, serve_with_files};

#[derive(Clone)]
struct St {
    log: Log,
    key: String,
    base: std::sync::Arc<std::sync::OnceLock<String>>,
}

pub use super::Double;

const RATIOS: [&str; 15] = ["1x3", "3x1", "1x2", "2x1", "9x16", "16x9", "10x16", "16x10", "2x3", "3x2", "3x4", "4x3", "4x5", "5x4", "1x1"];

async fn generate(State(st): State<St>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    st.log.push(&method, &uri, &headers, &body);
    if headers.get("api-key").and_then(|v| v.to_str().ok()) != Some(st.key.as_str()) {
        return reply(401, json!({"detail": "Unauthorized"}));
    }
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(f) = ct.starts_with("multipart/form-data").then(|| parse_form(ct, &body)).flatten() else {
        return reply(422, json!({"detail": "expected multipart/form-data"}));
    };
    let Some(prompt) = f.get("prompt") else { return reply(422, json!({"detail": "prompt is required"})) };
    let ratio = f.get("aspect_ratio").map_or("1x1", String::as_str);
    if !RATIOS.contains(&ratio) {
        return reply(400, json!({"detail": format!("Invalid aspect_ratio {ratio}")}));
    }
    if let Some(speed) = f.get("rendering_speed")
        && !["TURBO", "DEFAULT", "QUALITY"].contains(&speed.as_str())
    {
        return reply(400, json!({"detail": "Invalid rendering_speed"}));
    }
    let n: u64 = f.get("num_images").and_then(|n| n.parse().ok()).unwrap_or(1);
    if !(1..=8).contains(&n) {
        return reply(400, json!({"detail": "num_images must be between 1 and 8"}));
    }
    let seed: u64 = f.get("seed").and_then(|s| s.parse().ok()).unwrap_or(12345);
    if seed > 2_147_483_647 {
        return reply(400, json!({"detail": "seed must be between 0 and 2147483647"}));
    }
    let base = st.base.get().unwrap();
    let data: Vec<Value> = (0..n)
        .map(|i| {
            if prompt.contains("unsafe") {
                json!({"prompt": prompt, "resolution": "1024x1024", "is_image_safe": false, "seed": seed})
            } else {
                json!({"url": format!("{base}/files/ideo-{i}.png"), "prompt": prompt, "resolution": "1024x1024", "is_image_safe": true, "seed": seed, "style_type": "GENERAL"})
            }
        })
        .collect();
    reply(200, json!({"created": "2025-08-27T18:23:28.806107+00:00", "data": data}))
}

/// Starts an Ideogram double accepting `key`.
pub async fn start(key: &str) -> Double {
    let st = St { log: Log::default(), key: key.to_string(), base: Default::default() };
    let router = Router::new().route("/v1/ideogram-v3/generate", post(generate));
    let base = serve_with_files(router, st.clone(), &st.base).await;
    Double { base, log: st.log }
}
