//! Small helpers several dialects share: the request id, the public base URL
//! for polling links, a stable hash of a request body, and running a task to
//! its end.

use http::HeaderMap;
use imagegate_core::{AppError, TaskSpec, TaskState, TaskView};
use imagegate_store::Caller;
use sha2::{Digest, Sha256};

use crate::admission::{Admit, task_failure};
use crate::auth::check_model_allowed;
use crate::state::AppState;

/// Whether the query asks for a quote only (`?dry_run=true` or `=1`).
pub fn is_dry_run(query: Option<&str>) -> bool {
    query.is_some_and(|q| q.split('&').any(|kv| matches!(kv, "dry_run=true" | "dry_run=1")))
}

/// The `x-request-id` the request-id layer put on the request.
pub fn request_id(headers: &HeaderMap) -> String {
    headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-").to_string()
}

/// The base URL clients reach us on: the configured public URL, else the
/// request's `Host`.
pub fn public_base(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(u) = &state.config.public_url {
        return u.trim_end_matches('/').to_string();
    }
    let host = headers.get(http::header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
    format!("http://{host}")
}

/// SHA-256 (hex) of a JSON value in canonical form (object keys sorted), so
/// that the same body with keys reordered hashes the same.
pub fn body_hash(value: &serde_json::Value) -> String {
    // serde_json's Map is a BTreeMap here (no `preserve_order`), so
    // serialisation sorts keys.
    hex_encode(&Sha256::digest(value.to_string().as_bytes()))
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks the key may use the model, admits the spec and returns the task
/// as submitted (asynchronous dialects answer with its id).
pub async fn submit(state: &AppState, caller: &Caller, spec: TaskSpec, how: Admit) -> Result<TaskView, AppError> {
    check_model_allowed(caller, state.catalog.require(&spec.model)?)?;
    Ok(state.admit(caller, spec, how).await?.task().clone())
}

/// Submits and waits for success (504 with the task id past the deadline;
/// the task's own error when it failed).
pub async fn run_to_end(state: &AppState, caller: &Caller, spec: TaskSpec, how: Admit) -> Result<TaskView, AppError> {
    let task = submit(state, caller, spec, Admit { waits: true, ..how }).await?;
    let task = if task.state.is_terminal() { task } else { state.wait_for(&task.id).await? };
    if task.state != TaskState::Succeeded {
        return Err(task_failure(&task));
    }
    Ok(task)
}
