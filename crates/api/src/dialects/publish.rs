//! Task publishing (`POST /session/publish`, `GET /session/{taskID}`): a
//! workflow title plus parameters, the caller's `taskID` as idempotency key
//! per account. Answers `{"code": 200, "msg": "success", "taskID", "data":
//! [{"url"}]}`; errors `{"code": <status>, "msg"}` with that HTTP status.

pub mod request;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode};
use imagegate_core::{AppError, TaskState, TaskView};
use serde_json::{Value, json};

use crate::admission::{Admit, task_failure};
use crate::auth::authenticate;
use crate::body::{parse_json, read_body};
use crate::dialects::openai::quote_json;
use crate::dialects::shared::{body_hash, is_dry_run, run_to_end};
use crate::dialects::tasks::status_word;
use crate::state::AppState;
use request::{PublishRequest, validate_task_id};

/// An error as `{"code": <status>, "msg"}`.
#[derive(Debug)]
pub struct PublishError(pub AppError);

impl From<AppError> for PublishError {
    fn from(e: AppError) -> Self {
        Self(e)
    }
}

impl From<imagegate_store::StoreError> for PublishError {
    fn from(e: imagegate_store::StoreError) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for PublishError {
    fn into_response(self) -> Response {
        let e = self.0;
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if e.code.is_opaque() {
            tracing::error!(error = %e, "internal error");
        }
        let mut body = json!({"code": e.status(), "msg": e.public_message()});
        if let Some(f) = &e.field {
            body["field"] = json!(f);
        }
        if let Some(id) = &e.task_id {
            body["task_id"] = json!(id);
        }
        let mut resp = (status, Json(body)).into_response();
        if let Some(secs) = e.retry_after {
            resp.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// The idempotency key a caller's `taskID` is stored under (per account).
fn idempotency_key(task_id: &str) -> String {
    format!("publish:{task_id}")
}

async fn render(state: &AppState, client_id: &str, task: &TaskView) -> Result<Value, AppError> {
    let images = state.images_of(task).await?;
    let msg = match task.state {
        TaskState::Failed | TaskState::Cancelled => task_failure(task).public_message().to_string(),
        _ => "success".to_string(),
    };
    Ok(json!({
        "code": 200,
        "msg": msg,
        "taskID": client_id,
        "status": status_word(task),
        "data": images.iter().map(|i| json!({"url": i.url})).collect::<Vec<_>>(),
    }))
}

/// `POST /session/publish`: run a workflow and wait for its images.
#[utoipa::path(post, path = "/session/publish", tag = "publish", request_body = PublishRequest, security(("bearer" = [])), responses((status = 200, description = "code, msg, taskID and data (one url per image)"), (status = 400, description = "Invalid field"), (status = 404, description = "Unknown workflow"), (status = 409, description = "taskID reused with a different body")))]
pub async fn publish_task(State(state): State<AppState>, RawQuery(query): RawQuery, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Response, PublishError> {
    let caller = authenticate(&state, &headers).await?;
    let raw = read_body(body)?;
    let value: Value = parse_json(&raw)?;
    let req: PublishRequest = parse_json(&raw)?;
    let workflow = state.workflows.find(&req.title).ok_or_else(|| AppError::not_found(format!("workflow `{}` does not exist", req.title)))?.clone();
    let model = state.catalog.require(&workflow.base_model)?;
    let client_id = req.task_id.clone();
    let spec = req.into_spec(&workflow, model, rand::random())?;
    if is_dry_run(query.as_deref()) {
        return Ok(Json(quote_json(&state.quote(&spec)?)).into_response());
    }
    let how = Admit { idempotency: client_id.as_deref().map(|id| (idempotency_key(id), body_hash(&value))), ..Admit::default() };
    let task = run_to_end(&state, &caller, spec, how).await?;
    let body = render(&state, client_id.as_deref().unwrap_or(&task.id), &task).await?;
    Ok(state.with_charge(&caller, &task, Json(body).into_response()).await?)
}

/// `GET /session/{taskID}`: the task by the caller's `taskID` (or ours).
#[utoipa::path(get, path = "/session/{task_id}", tag = "publish", params(("task_id" = String, Path, description = "The caller's taskID (or the task id)")), security(("bearer" = [])), responses((status = 200, description = "Same shape as publish, with status"), (status = 404, description = "Unknown task")))]
pub async fn get_session(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, PublishError> {
    let caller = authenticate(&state, &headers).await?;
    validate_task_id(&id).map_err(|_| AppError::not_found(format!("task `{id}` not found")))?;
    // The caller's own taskID first (recorded with the task when it was
    // admitted, so a publish still running or past its 504 is found too),
    // then our task id.
    let ours = state.db.task_id_for_key(&caller.account_id, &idempotency_key(&id)).await?.unwrap_or_else(|| id.clone());
    let task = state.task_for(&caller, &ours).await?;
    Ok(crate::render::with_served_by(&task, Json(render(&state, &id, &task).await?).into_response()))
}
