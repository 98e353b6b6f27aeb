//! Stability v1 (`POST /v1/generation/{engine_id}/text-to-image`,
//! `.../image-to-image` and `.../image-to-image/masking`, each also under
//! `/sd`), `GET /v1/engines/list` and `GET /v1/user/account`. Errors are
//! rendered as Stability does: `{"id": <request id>, "name", "message"}`.

pub mod image_to_image;
pub mod request;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode};
use imagegate_core::{AppError, Family, TaskSpec};
use imagegate_store::Caller;
use serde_json::{Value, json};

use crate::admission::Admit;
use crate::auth::authenticate;
use crate::body::{parse_json, read_body};
use crate::dialects::openai::quote_json;
use crate::dialects::shared::{is_dry_run, request_id, run_to_end};
use crate::state::AppState;
use image_to_image::Route;
use request::TextToImageRequest;

/// The engines Stability v1 clients know, in its order.
pub const ENGINES: [&str; 3] = ["stable-diffusion-xl-1024-v1-0", "stable-diffusion-v1-6", "stable-diffusion-xl-beta-v2-2-2"];

/// An error in Stability's shape, carrying the request id it names.
#[derive(Debug)]
pub struct StabilityError {
    /// What went wrong.
    pub error: AppError,
    /// The request's `x-request-id`.
    pub request_id: String,
}

/// Stability's `name` for a status.
fn error_name(status: u16) -> &'static str {
    match status {
        400 | 413 => "bad_request",
        401 => "unauthorized",
        402 => "insufficient_balance",
        403 => "permission_denied",
        404 => "not_found",
        409 => "conflict",
        429 => "rate_limit_exceeded",
        503 => "service_unavailable",
        504 => "timeout",
        _ => "server_error",
    }
}

impl IntoResponse for StabilityError {
    fn into_response(self) -> Response {
        let e = self.error;
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if e.code.is_opaque() {
            tracing::error!(error = %e, "internal error");
        }
        let mut body = json!({"id": self.request_id, "name": error_name(e.status()), "message": e.public_message()});
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

fn wants_png(headers: &HeaderMap) -> bool {
    headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.split(',').any(|p| p.trim().starts_with("image/png")))
}

/// `POST /v1/generation/{engine_id}/text-to-image` (and `/sd/v1/...`):
#[utoipa::path(post, path = "/v1/generation/{engine_id}/text-to-image", tag = "stability", request_body = TextToImageRequest, params(("engine_id" = String, Path, description = "stable-diffusion-xl-1024-v1-0, stable-diffusion-v1-6 or stable-diffusion-xl-beta-v2-2-2"), ("Accept" = Option<String>, Header, description = "application/json (default) or image/png")), security(("bearer" = [])), responses((status = 200, description = "`artifacts` with base64, finishReason and seed; or the first image as PNG"), (status = 400, description = "bad_request"), (status = 401, description = "unauthorized"), (status = 403, description = "permission_denied"), (status = 404, description = "not_found"), (status = 500, description = "server_error")))]
/// generate and wait; JSON artifacts, or the first image as raw PNG.
pub async fn create_text_to_image(
    State(state): State<AppState>,
    Path(engine_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, StabilityError> {
    let request_id = request_id(&headers);
    let dry_run = is_dry_run(query.as_deref());
    text_to_image(&state, &engine_id, &headers, body, dry_run).await.map_err(|error| StabilityError { error, request_id })
}

async fn text_to_image(state: &AppState, engine_id: &str, headers: &HeaderMap, body: Result<Bytes, BytesRejection>, dry_run: bool) -> Result<Response, AppError> {
    let caller = authenticate(state, headers).await?;
    let engine = state.catalog.resolve(engine_id).ok_or_else(|| AppError::not_found(format!("engine `{engine_id}` was not found")))?;
    let req: TextToImageRequest = parse_json(&read_body(body)?)?;
    for h in ["organization", "stability-client-id", "stability-client-version"] {
        if let Some(v) = headers.get(h).and_then(|v| v.to_str().ok()) {
            tracing::info!(header = h, value = v, "stability client header");
        }
    }
    let spec = req.into_spec(engine, rand::random())?;
    generate_and_answer(state, &caller, headers, spec, dry_run).await
}

/// `POST /v1/generation/{engine_id}/image-to-image` (and `/sd/v1/...`):
#[utoipa::path(post, path = "/v1/generation/{engine_id}/image-to-image", tag = "stability", request_body(content_type = "multipart/form-data", description = "`init_image` (file; its size is the result's), `text_prompts[N][text]` and `[weight]`, `init_image_mode` (IMAGE_STRENGTH with `image_strength` 0–1, default 0.35; or STEP_SCHEDULE with `step_schedule_start`, default 0.65, and `step_schedule_end`), and text-to-image's other fields"), params(("engine_id" = String, Path, description = "An engine from /v1/engines/list"), ("Accept" = Option<String>, Header, description = "application/json (default) or image/png")), security(("bearer" = [])), responses((status = 200, description = "As text-to-image"), (status = 400, description = "bad_request"), (status = 401, description = "unauthorized"), (status = 404, description = "not_found")))]
/// start from an uploaded image; answered as text-to-image answers.
pub async fn create_image_to_image(
    State(state): State<AppState>,
    Path(engine_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, StabilityError> {
    image_to_image(state, engine_id, query, headers, multipart, Route::Strength).await
}

/// `POST /v1/generation/{engine_id}/image-to-image/masking` (and `/sd/v1/...`):
#[utoipa::path(post, path = "/v1/generation/{engine_id}/image-to-image/masking", tag = "stability", request_body(content_type = "multipart/form-data", description = "`init_image` (file), `mask_source` (MASK_IMAGE_WHITE or MASK_IMAGE_BLACK with a `mask_image` file of the same size, or INIT_IMAGE_ALPHA), `text_prompts[N][text]` and `[weight]`, and text-to-image's other fields; needs an inpainting checkpoint"), params(("engine_id" = String, Path, description = "An engine from /v1/engines/list, or an inpainting model such as stable-diffusion-inpainting"), ("Accept" = Option<String>, Header, description = "application/json (default) or image/png")), security(("bearer" = [])), responses((status = 200, description = "As text-to-image"), (status = 400, description = "bad_request"), (status = 401, description = "unauthorized"), (status = 404, description = "not_found")))]
/// repaint the masked area of an uploaded image.
pub async fn create_masking(
    State(state): State<AppState>,
    Path(engine_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, StabilityError> {
    image_to_image(state, engine_id, query, headers, multipart, Route::Masking).await
}

async fn image_to_image(
    state: AppState,
    engine_id: String,
    query: Option<String>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
    route: Route,
) -> Result<Response, StabilityError> {
    let request_id = request_id(&headers);
    let answer = async {
        let caller = authenticate(&state, &headers).await?;
        let engine = state.catalog.resolve(&engine_id).ok_or_else(|| AppError::not_found(format!("engine `{engine_id}` was not found")))?;
        let spec = image_to_image::read_form(multipart, engine, route, rand::random()).await?;
        generate_and_answer(&state, &caller, &headers, spec, is_dry_run(query.as_deref())).await
    };
    answer.await.map_err(|error| StabilityError { error, request_id })
}

/// Quotes, or generates and waits; JSON artifacts, or the first image as raw PNG.
async fn generate_and_answer(state: &AppState, caller: &Caller, headers: &HeaderMap, spec: TaskSpec, dry_run: bool) -> Result<Response, AppError> {
    if dry_run {
        return Ok(Json(quote_json(&state.quote(&spec)?)).into_response());
    }
    let task = run_to_end(state, caller, spec, Admit::default()).await?;
    let images = state.images_of(&task).await?;
    if wants_png(headers) {
        let first = images.first().ok_or_else(|| AppError::internal(format!("task {} succeeded without images", task.id)))?;
        let bytes = state.objects.get(&first.key).await?;
        let mut resp = Response::new(Body::from(bytes));
        let h = resp.headers_mut();
        h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
        h.insert("seed", HeaderValue::from(first.seed));
        h.insert("finish-reason", HeaderValue::from_static("SUCCESS"));
        return state.with_charge(caller, &task, resp).await;
    }
    let mut artifacts = Vec::with_capacity(images.len());
    for img in &images {
        artifacts.push(json!({"base64": state.image_base64(&img.key).await?, "finishReason": "SUCCESS", "seed": img.seed}));
    }
    state.with_charge(caller, &task, Json(json!({"artifacts": artifacts})).into_response()).await
}

/// `GET /v1/engines/list`: the Stability v1 engines this catalog knows.
#[utoipa::path(get, path = "/v1/engines/list", tag = "stability", security(("bearer" = [])), responses((status = 200, description = "Engines"), (status = 401, description = "unauthorized")))]
pub async fn list_engines(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, StabilityError> {
    let request_id = request_id(&headers);
    authenticate(&state, &headers).await.map_err(|error| StabilityError { error, request_id })?;
    let engines: Vec<Value> = ENGINES
        .iter()
        .filter_map(|id| state.catalog.resolve(id))
        .filter(|m| m.family != Family::Upstream)
        .map(|m| {
            json!({
                "id": m.id,
                "name": m.id,
                "description": format!("{} ({} family); sizes: {}", m.id, m.family.as_str(), m.sizes.describe()),
                "type": "PICTURE",
            })
        })
        .collect();
    Ok(Json(Value::Array(engines)))
}

/// `GET /v1/user/balance`: the caller's spendable credits, from the ledger.
#[utoipa::path(get, path = "/v1/user/balance", tag = "stability", security(("bearer" = [])), responses((status = 200, description = "`{\"credits\": <float>}`"), (status = 401, description = "unauthorized")))]
pub async fn get_balance(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, StabilityError> {
    let request_id = request_id(&headers);
    let caller = authenticate(&state, &headers).await.map_err(|error| StabilityError { error: error.clone(), request_id: request_id.clone() })?;
    let balance = state.db.balance(&caller.account_id, imagegate_store::now_ms()).await.map_err(|e| StabilityError { error: e.into(), request_id })?;
    Ok(Json(json!({"credits": balance.available as f64 / 1000.0})))
}

/// `GET /v1/user/account`: the caller's account in Stability's shape.
#[utoipa::path(get, path = "/v1/user/account", tag = "stability", security(("bearer" = [])), responses((status = 200, description = "Account"), (status = 401, description = "unauthorized")))]
pub async fn get_account(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, StabilityError> {
    let request_id = request_id(&headers);
    let caller = authenticate(&state, &headers).await.map_err(|error| StabilityError { error, request_id })?;
    Ok(Json(json!({
        "id": caller.account_id,
        "email": null,
        "profile_picture": "",
        "plan": caller.plan,
        "organizations": [{"id": caller.account_id, "name": caller.account_id, "role": if caller.is_admin { "OWNER" } else { "MEMBER" }, "is_default": true}],
    })))
}
