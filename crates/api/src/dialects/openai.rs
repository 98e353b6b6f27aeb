//! OpenAI Images and SiliconFlow-style generations (`POST /v1/images/generations`,
//! `GET /v1/models`), errors in OpenAI's shape. The response is the union of
//! both shapes: `data` (OpenAI) and `images` (SiliconFlow) list the same
//! images, plus `timings` and `seed`.

pub mod edits;
pub mod request;

use axum::Json;
use axum::body::Bytes;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode};
use imagegate_core::{AppError, TaskSpec};
use imagegate_store::Caller;
use serde_json::{Value, json};

use crate::admission::Admit;
use crate::auth::{authenticate, check_model_allowed};
use crate::body::{parse_json, read_body};
use crate::dialects::shared::run_to_end;
use crate::state::AppState;
use request::{ImageRequest, ResponseOptions};

/// An error rendered as OpenAI does: `{"error": {message, type, param, code}}`.
#[derive(Debug)]
pub struct OpenAiError(pub AppError);

impl From<AppError> for OpenAiError {
    fn from(e: AppError) -> Self {
        Self(e)
    }
}

impl From<imagegate_store::StoreError> for OpenAiError {
    fn from(e: imagegate_store::StoreError) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if e.code.is_opaque() {
            tracing::error!(error = %e, "internal error");
        }
        let kind = if status.is_server_error() { "server_error" } else { "invalid_request_error" };
        let mut body = json!({"error": {"message": e.public_message(), "type": kind, "param": e.field, "code": e.code.as_str()}});
        if let Some(id) = &e.task_id {
            body["error"]["task_id"] = json!(id);
        }
        let mut resp = (status, Json(body)).into_response();
        if let Some(secs) = e.retry_after {
            resp.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// Query options every generation route takes.
#[derive(Debug, Default, serde::Deserialize)]
pub struct GenerationQuery {
    /// Answer with the price instead of generating.
    #[serde(default)]
    pub dry_run: bool,
}

/// The `?dry_run=true` answer: the quote, no task.
pub fn quote_json(quote: &imagegate_core::Quote) -> Value {
    json!({"credits": quote.total_millicredits as f64 / 1000.0, "millicredits": quote.total_millicredits, "breakdown": quote.breakdown})
}

/// `POST /v1/images/generations`: generate and wait (synchronous).
#[utoipa::path(post, path = "/v1/images/generations", tag = "openai", request_body = ImageRequest, params(("dry_run" = Option<bool>, Query, description = "Answer with the price instead of generating")), security(("bearer" = [])), responses((status = 200, description = "`data` (OpenAI) and `images` (SiliconFlow) list the same images; with dry_run, the quote"), (status = 400, description = "Invalid field"), (status = 401, description = "Missing or unknown key"), (status = 402, description = "Not enough credits; the message gives balance and price"), (status = 404, description = "Unknown model"), (status = 429, description = "Rate or waiting-task limit; see Retry-After"), (status = 503, description = "No backend or queue full"), (status = 504, description = "Still running; body carries the task id")))]
pub async fn create_image(
    State(state): State<AppState>,
    Query(query): Query<GenerationQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OpenAiError> {
    let caller = authenticate(&state, &headers).await?;
    let req: ImageRequest = parse_json(&read_body(body)?)?;
    let (spec, opts) = req.into_spec(&state.catalog, rand::random())?;
    generate_and_answer(&state, &caller, spec, opts, query.dry_run).await
}

/// `POST /v1/images/edits`: edit an uploaded image (multipart: `image`,
/// optional `mask`, `prompt` and the generation fields), answered as
/// `POST /v1/images/generations` answers.
#[utoipa::path(post, path = "/v1/images/edits", tag = "openai", request_body(content_type = "multipart/form-data", description = "`image` (file), optional `mask` (file: transparent, or white without alpha, where to repaint; the image's size), `prompt`, and the fields of /v1/images/generations as text"), params(("dry_run" = Option<bool>, Query, description = "Answer with the price instead of generating")), security(("bearer" = [])), responses((status = 200, description = "As /v1/images/generations"), (status = 400, description = "Invalid field"), (status = 401, description = "Missing or unknown key"), (status = 402, description = "Not enough credits"), (status = 404, description = "Unknown model"), (status = 413, description = "Body over the limit"), (status = 504, description = "Still running; body carries the task id")))]
pub async fn create_edit(
    State(state): State<AppState>,
    Query(query): Query<GenerationQuery>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, OpenAiError> {
    let caller = authenticate(&state, &headers).await?;
    let form = edits::read_form(multipart, &state.catalog).await?;
    let (mut spec, opts) = form.request.into_spec(&state.catalog, rand::random())?;
    if let Some(init) = spec.init_image.as_mut() {
        init.mask = form.mask;
    }
    generate_and_answer(&state, &caller, spec, opts, query.dry_run).await
}

/// Quotes, or generates and waits, then answers in both shapes.
async fn generate_and_answer(state: &AppState, caller: &Caller, mut spec: TaskSpec, opts: ResponseOptions, dry_run: bool) -> Result<Response, OpenAiError> {
    check_model_allowed(caller, state.catalog.require(&spec.model)?)?;
    if dry_run {
        return Ok(Json(quote_json(&state.quote(&spec)?)).into_response());
    }
    crate::enhance::enhance_spec(state.enhancer.as_ref(), &mut spec).await;
    let task = run_to_end(state, caller, spec, Admit::default()).await?;
    let images = state.images_of(&task).await?;
    let revised = task.spec.revised_prompt.clone();
    let mut data = Vec::with_capacity(images.len());
    for img in &images {
        let mut item = json!({"url": img.url});
        if opts.b64_json {
            item["b64_json"] = json!(state.image_base64(&img.key).await?);
        }
        if let Some(r) = &revised {
            item["revised_prompt"] = json!(r);
        }
        data.push(item);
    }
    let result = task.result.clone().unwrap_or_default();
    let body = json!({
        "id": task.id,
        "created": task.created_at / 1000,
        "data": data,
        "images": images.iter().map(|i| json!({"url": i.url})).collect::<Vec<_>>(),
        "timings": {"inference": result.inference_ms},
        "seed": task.spec.seed,
    });
    Ok(state.with_charge(caller, &task, Json(body).into_response()).await?)
}

/// `GET /v1/models`: the catalog's models, with whether this deployment can serve each now.
#[utoipa::path(get, path = "/v1/models", tag = "openai", security(("bearer" = [])), responses((status = 200, description = "Model list"), (status = 401, description = "Missing or unknown key")))]
pub async fn list_models(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, OpenAiError> {
    let caller = authenticate(&state, &headers).await?;
    let data: Vec<Value> = state
        .catalog
        .models()
        .iter()
        .filter(|m| caller.allowed_models.as_ref().is_none_or(|l| l.iter().any(|x| x.eq_ignore_ascii_case(&m.id))))
        .map(|m| {
            json!({
                "id": m.id,
                "object": "model",
                "created": 0,
                "owned_by": m.provider.clone().unwrap_or_else(|| "imagegate".into()),
                "family": m.family.as_str(),
                "aliases": m.aliases,
                "available": state.config.remote_workers || state.queue.backends.pick(m).is_ok(),
            })
        })
        .collect();
    Ok(Json(json!({"object": "list", "data": data})))
}
