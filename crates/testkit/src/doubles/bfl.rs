//! BFL double: `POST /v1/{model}` then `GET /v1/get_result?id=` as
//! <https://docs.bfl.ai/api-reference> documents them (header `x-key`;
//! answers `{"id", "polling_url"}`, then `Pending` once and `Ready` with
//! `result.sample` pointing at this double's `/files`). A prompt containing
//! "moderate" ends in `Request Moderated`; one containing "explode" in `Error`;
//! one containing "linger" stays `Pending` for its first 200 polls (a job
//! still running at the provider when its task's process stops).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
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
    jobs: Arc<Mutex<HashMap<String, Job>>>,
}

/// A submitted job: (polls so far, prompt, seed, output format).
type Job = (u32, String, u64, String);

pub use super::Double;

fn unprocessable(field: &str, msg: &str) -> Response {
    reply(422, json!({"detail": [{"loc": ["body", field], "msg": msg, "type": "value_error"}]}))
}

fn ratio_ok(r: &str) -> bool {
    let Some((a, b)) = r.split_once(':') else { return false };
    let (Ok(a), Ok(b)) = (a.parse::<f64>(), b.parse::<f64>()) else { return false };
    let x = a / b;
    (9.0 / 21.0 - 1e-9..=21.0 / 9.0 + 1e-9).contains(&x)
}

async fn submit(State(st): State<St>, Path(model): Path<String>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    st.log.push(&method, &uri, &headers, &body);
    if headers.get("x-key").and_then(|v| v.to_str().ok()) != Some(st.key.as_str()) {
        return reply(403, json!({"detail": "Not authenticated - Invalid Authentication"}));
    }
    let known = ["flux-kontext-pro", "flux-kontext-max", "flux-pro-1.1", "flux-pro-1.1-ultra", "flux-dev", "flux-pro"];
    if !known.contains(&model.as_str()) {
        return reply(404, json!({"detail": "Not Found"}));
    }
    let Ok(b) = serde_json::from_slice::<Value>(&body) else { return unprocessable("body", "invalid json") };
    let Some(prompt) = b.get("prompt").and_then(Value::as_str) else { return unprocessable("prompt", "field required") };
    if let Some(t) = b.get("safety_tolerance")
        && t.as_u64().is_none_or(|t| t > 6)
    {
        return unprocessable("safety_tolerance", "ensure this value is between 0 and 6");
    }
    if model.contains("kontext") || model.contains("ultra") {
        if b.get("width").is_some() {
            return unprocessable("width", "extra fields not permitted");
        }
        if let Some(r) = b.get("aspect_ratio").and_then(Value::as_str)
            && !ratio_ok(r)
        {
            return unprocessable("aspect_ratio", "aspect ratio must be between 21:9 and 9:21");
        }
    } else {
        for side in ["width", "height"] {
            let v = b.get(side).and_then(Value::as_u64).unwrap_or(1024);
            if v % 32 != 0 || !(256..=1440).contains(&v) {
                return unprocessable(side, "must be a multiple of 32 between 256 and 1440");
            }
        }
    }
    let format = b.get("output_format").and_then(Value::as_str).unwrap_or("jpeg").to_string();
    if !["jpeg", "png"].contains(&format.as_str()) {
        return unprocessable("output_format", "must be jpeg or png");
    }
    let seed = b.get("seed").and_then(Value::as_u64).unwrap_or(7);
    let id = format!("job-{}", st.jobs.lock().unwrap().len() + 1);
    st.jobs.lock().unwrap().insert(id.clone(), (0, prompt.to_string(), seed, format));
    let base = st.base.get().unwrap();
    reply(200, json!({"id": id, "polling_url": format!("{base}/v1/get_result?id={id}"), "cost": 4.0}))
}

async fn get_result(State(st): State<St>, Query(q): Query<HashMap<String, String>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    st.log.push(&method, &uri, &headers, &[]);
    if headers.get("x-key").and_then(|v| v.to_str().ok()) != Some(st.key.as_str()) {
        return reply(403, json!({"detail": "Not authenticated - Invalid Authentication"}));
    }
    let id = q.get("id").cloned().unwrap_or_default();
    let mut jobs = st.jobs.lock().unwrap();
    let Some(job) = jobs.get_mut(&id) else { return reply(200, json!({"id": id, "status": "Task not found", "result": null})) };
    job.0 += 1;
    if job.0 == 1 || (job.1.contains("linger") && job.0 <= 200) {
        return reply(200, json!({"id": id, "status": "Pending", "result": null, "progress": 0.4}));
    }
    if job.1.contains("moderate") {
        return reply(200, json!({"id": id, "status": "Request Moderated", "result": null}));
    }
    if job.1.contains("explode") {
        return reply(200, json!({"id": id, "status": "Error", "result": null}));
    }
    let sample = format!("{}/files/{id}.{}", st.base.get().unwrap(), job.3);
    reply(200, json!({"id": id, "status": "Ready", "result": {"sample": sample, "prompt": job.1, "seed": job.2, "start_time": 1.0, "end_time": 2.0, "duration": 1.0}}))
}

/// Starts a BFL double accepting `key`.
pub async fn start(key: &str) -> Double {
    let st = St { log: Log::default(), key: key.to_string(), base: Default::default(), jobs: Default::default() };
    let router = Router::new().route("/v1/get_result", get(get_result)).route("/v1/{model}", post(submit));
    let base = serve_with_files(router, st.clone(), &st.base).await;
    Double { base, log: st.log }
}
