//! BFL's official API: `POST /v1/{flux model}` answers `{id, polling_url}` at
//! once; `GET /v1/get_result?id=` answers `{id, status, result: {sample}}`
//! with BFL's status words. Keys come as `x-key` (or `Authorization`).
//! Errors are `{"detail": message}` as BFL's service writes them.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use imagegate_core::size::Size;
use imagegate_core::{AppError, ModelEntry, ModerationStage, TaskState, TaskView};
use serde_json::{Map, Value, json};

use crate::admission::Admit;
use crate::auth::authenticate_x_key;
use crate::body::{from_value, parse_json, read_body};
use crate::dialects::openai::quote_json;
use crate::dialects::predictions::input::PredictionInput;
use crate::dialects::shared::{is_dry_run, public_base, submit};
use crate::state::AppState;

/// BFL model names served as `POST /v1/{name}` (explicit routes; each
/// resolves through the catalog, which has an entry or alias for every one).
pub const BFL_MODELS: [&str; 6] = ["flux-pro-1.1", "flux-pro-1.1-ultra", "flux-pro", "flux-kontext-pro", "flux-kontext-max", "flux-dev"];

/// An error as `{"detail": message}`.
#[derive(Debug)]
pub struct BflError(pub AppError);

impl From<AppError> for BflError {
    fn from(e: AppError) -> Self {
        Self(e)
    }
}

impl From<imagegate_store::StoreError> for BflError {
    fn from(e: imagegate_store::StoreError) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for BflError {
    fn into_response(self) -> Response {
        let e = self.0;
        if e.code.is_opaque() {
            tracing::error!(error = %e, "internal error");
        }
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(json!({"detail": e.public_message(), "field": e.field}))).into_response()
    }
}

/// BFL's status word for a task; its two moderation words say which side
/// a backend's moderation refused.
pub fn bfl_status(task: &TaskView) -> &'static str {
    match (task.moderation(), task.state) {
        (Some(ModerationStage::Request), _) => "Request Moderated",
        (Some(ModerationStage::Content), _) => "Content Moderated",
        (None, TaskState::Queued | TaskState::Running) => "Pending",
        (None, TaskState::Succeeded) => "Ready",
        (None, TaskState::Failed | TaskState::Cancelled) => "Error",
    }
}

/// `POST /v1/{model}` for one of [`BFL_MODELS`]: queue and answer at once.
/// (Documented once as `/v1/flux-pro-1.1`; the OpenAPI modifier copies it to every BFL model route.)
#[utoipa::path(post, path = "/v1/flux-pro-1.1", tag = "bfl", request_body = PredictionInput, security(("x-key" = []), ("bearer" = [])), responses((status = 200, description = "id and polling_url"), (status = 400, description = "Invalid field"), (status = 401, description = "Missing or unknown key")))]
pub async fn create_generation(
    model_name: &'static str,
    state: AppState,
    query: Option<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, BflError> {
    let caller = authenticate_x_key(&state, &headers).await?;
    let model = state.catalog.require(model_name)?;
    let mut fields: Map<String, Value> = parse_json(&read_body(body)?)?;
    width_and_height_to_size(&mut fields, model)?;
    let input: PredictionInput = from_value(Value::Object(fields))?;
    let (spec, _) = input.into_spec(model, rand::random()).map_err(|mut e| {
        // The shared input type names fields `input.x`; BFL bodies are flat.
        e.field = e.field.map(|f| f.trim_start_matches("input.").to_string());
        e.message = e.message.replacen("`input.", "`", 1);
        e
    })?;
    if is_dry_run(query.as_deref()) {
        return Ok(Json(quote_json(&state.quote(&spec)?)));
    }
    let task = submit(&state, &caller, spec, Admit::default()).await?;
    let polling_url = format!("{}/v1/get_result?id={}", public_base(&state, &headers), task.id);
    Ok(Json(json!({"id": task.id, "polling_url": polling_url})))
}

/// BFL sends `width` and `height` as integers, each 1024 when left out; the
/// shared input type reads a `size`. Checked here, so that a refusal names
/// the field the client sent rather than one it never wrote (and a lone or
/// mistyped side is not silently dropped for the default size).
fn width_and_height_to_size(fields: &mut Map<String, Value>, model: &ModelEntry) -> Result<(), AppError> {
    let (width, height) = (fields.remove("width"), fields.remove("height"));
    if width.is_none() && height.is_none() {
        return Ok(());
    }
    let side = |name: &str, value: Option<Value>| match value {
        None | Some(Value::Null) => Ok(1024),
        Some(v) => v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| AppError::invalid(name, format!("{v} is not a whole number of pixels"))),
    };
    let (w, h) = (side("width", width)?, side("height", height)?);
    let size = Size::new(w, h);
    model.check_size(model.sizes.side_at_fault(size), size)?;
    fields.insert("size".into(), size.to_string().into());
    Ok(())
}

/// `?id=` of `GET /v1/get_result`.
#[derive(Debug, serde::Deserialize)]
pub struct ResultQuery {
    /// The task id `POST /v1/{model}` answered.
    pub id: String,
}

/// `GET /v1/get_result?id=`: the task in BFL's shape.
#[utoipa::path(get, path = "/v1/get_result", tag = "bfl", params(("id" = String, Query, description = "Task id")), security(("x-key" = []), ("bearer" = [])), responses((status = 200, description = "id, status (Pending, Ready, Error, Request Moderated, Content Moderated) and result.sample"), (status = 404, description = "Task not found")))]
pub async fn get_result(State(state): State<AppState>, headers: HeaderMap, query: Result<Query<ResultQuery>, QueryRejection>) -> Result<Response, BflError> {
    let caller = authenticate_x_key(&state, &headers).await?;
    let Query(q) = query.map_err(|_| AppError::invalid("id", "required: the id that POST /v1/{model} answered"))?;
    let Ok(task) = state.task_for(&caller, &q.id).await else {
        return Ok((StatusCode::NOT_FOUND, Json(json!({"id": q.id, "status": "Task not found", "result": null}))).into_response());
    };
    let images = state.images_of(&task).await?;
    let result = (task.state == TaskState::Succeeded).then(|| {
        json!({"sample": images.first().map(|i| &i.url), "prompt": task.spec.effective_prompt(), "seed": task.spec.seed, "samples": images.iter().map(|i| &i.url).collect::<Vec<_>>()})
    });
    let body = json!({"id": task.id, "status": bfl_status(&task), "result": result, "progress": task.progress_fraction()});
    Ok(crate::render::with_served_by(&task, Json(body).into_response()))
}
