//! `GET /v1/tasks/{id}`: any task's state, progress and freshly signed image
//! URLs. Statuses follow the unified-predictions dialect (`Pending`,
//! `Running`, `Ready`, `Error`, and `Content Moderated` when a backend's
//! moderation refused the task); `state` gives ours.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use imagegate_core::{TaskState, TaskView};
use serde_json::{Value, json};

use crate::admission::task_failure;
use crate::auth::authenticate;
use crate::dialects::openai::OpenAiError;
use crate::state::AppState;

/// The unified dialect's status word for a task. The dialect has one word
/// for moderation, whichever side was refused.
pub fn status_word(task: &TaskView) -> &'static str {
    if task.moderation().is_some() {
        return "Content Moderated";
    }
    match task.state {
        TaskState::Queued => "Pending",
        TaskState::Running => "Running",
        TaskState::Succeeded => "Ready",
        TaskState::Failed | TaskState::Cancelled => "Error",
    }
}

/// Renders a task for polling clients.
pub async fn task_json(state: &AppState, task: &TaskView) -> Result<Value, OpenAiError> {
    let images = state.images_of(task).await?;
    let urls: Vec<&str> = images.iter().map(|i| i.url.as_str()).collect();
    let result = task.result.as_ref().map(|r| {
        json!({"sample": urls.first(), "urls": urls, "seeds": images.iter().map(|i| i.seed).collect::<Vec<_>>(), "timings": {"inference": r.inference_ms}, "served_by": r.served_by, "note": r.note})
    });
    let error = (matches!(task.state, TaskState::Failed | TaskState::Cancelled)).then(|| {
        let e = task_failure(task);
        json!({"code": e.code.as_str(), "message": e.public_message()})
    });
    let hold = state.db.hold(&task.id).await?;
    let credits = hold.map(|h| json!({"held": h.amount as f64 / 1000.0, "charged": h.captured as f64 / 1000.0, "state": h.state}));
    Ok(json!({
        "id": task.id,
        "credits": credits,
        "taskId": task.id,
        "status": status_word(task),
        "state": task.state.as_str(),
        "progress": task.progress_fraction(),
        "steps": {"done": task.progress.0, "total": task.progress.1},
        "model": task.spec.model,
        "attempts": task.attempts,
        "created": task.created_at / 1000,
        "revised_prompt": task.spec.revised_prompt,
        "result": result,
        "images": urls.iter().map(|u| json!({"url": u})).collect::<Vec<_>>(),
        "error": error,
    }))
}

/// `GET /v1/tasks/{id}`.
#[utoipa::path(get, path = "/v1/tasks/{id}", tag = "tasks", params(("id" = String, Path, description = "Task id")), security(("bearer" = [])), responses((status = 200, description = "Status (Pending, Running, Ready, Error, Content Moderated), progress, result.sample and image URLs"), (status = 404, description = "No such task for this account")))]
pub async fn get_task(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, OpenAiError> {
    let caller = authenticate(&state, &headers).await?;
    let task = state.task_for(&caller, &id).await?;
    Ok(crate::render::with_served_by(&task, Json(task_json(&state, &task).await?).into_response()))
}
