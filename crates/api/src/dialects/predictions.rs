//! Unified predictions (`POST /v1/models/{model_path}/predictions`): the
//! model path may contain slashes (`openai/gpt-image-1`, `bfl/flux-kontext-max`,
//! the `opanai/` typo too). Synchronous families answer `{"output": [{"url"}]}`;
//! asynchronous ones answer at once with `taskId` and `polling_url`.
//! Errors are in OpenAI's shape.

pub mod input;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use imagegate_core::AppError;
use serde_json::json;

use crate::admission::Admit;
use crate::auth::authenticate;
use crate::body::{parse_json, read_body};
use crate::dialects::openai::OpenAiError;
use crate::dialects::openai::quote_json;
use crate::dialects::shared::{is_dry_run, public_base, run_to_end, submit};
use crate::state::AppState;
use input::PredictionRequest;

/// `POST /v1/models/{*model_path}` where the path ends in `/predictions`
#[utoipa::path(post, path = "/v1/models/{model_path}/predictions", tag = "predictions", request_body = PredictionRequest, params(("model_path" = String, Path, description = "Catalog id or provider path; may contain slashes (openai/gpt-image-1)")), security(("bearer" = [])), responses((status = 200, description = "`output`: url or b64_json items; for asynchronous models taskId and polling_url"), (status = 400, description = "Invalid input field"), (status = 404, description = "Unknown model path"), (status = 503, description = "No backend or channel serves the model")))]
/// (axum's catch-all must be last, so the suffix is matched here).
pub async fn create_prediction(
    State(state): State<AppState>,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OpenAiError> {
    let model_path = path
        .strip_suffix("/predictions")
        .filter(|m| !m.is_empty())
        .ok_or_else(|| AppError::not_found(format!("no route `/v1/models/{path}`; use /v1/models/<model_path>/predictions")))?;
    let caller = authenticate(&state, &headers).await?;
    let model = state.catalog.require(model_path)?;
    let req: PredictionRequest = parse_json(&read_body(body)?)?;
    let (spec, opts) = req.input.into_spec(model, rand::random())?;
    if is_dry_run(query.as_deref()) {
        return Ok(Json(quote_json(&state.quote(&spec)?)).into_response());
    }
    if model.asynchronous {
        let task = submit(&state, &caller, spec, Admit::default()).await?;
        let polling_url = format!("{}/v1/tasks/{}", public_base(&state, &headers), task.id);
        return Ok(Json(json!({"output": [{"taskId": task.id, "polling_url": polling_url}]})).into_response());
    }
    let task = run_to_end(&state, &caller, spec, Admit::default()).await?;
    let mut output = Vec::new();
    for img in state.images_of(&task).await? {
        output.push(if opts.b64_json { json!({"b64_json": state.image_base64(&img.key).await?}) } else { json!({"url": img.url}) });
    }
    Ok(state.with_charge(&caller, &task, Json(json!({"id": task.id, "output": output})).into_response()).await?)
}
