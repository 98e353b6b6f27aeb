//! The route table and the layers every route shares: request ids, tracing,
//! body limit and panic containment.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderName, Method, Uri};
use imagegate_core::AppError;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::dialects::openai::OpenAiError;
use crate::dialects::{bfl, openai, predictions, publish, stability, tasks};
use crate::state::AppState;
use crate::{admin, files, health, openapi, usage};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// An unknown path, in the error shape most clients read (OpenAI's), so
/// that a mistyped URL says so instead of answering an empty 404.
async fn no_route(method: Method, uri: Uri) -> OpenAiError {
    AppError::not_found(format!("no route for {method} {}; the routes are listed at /openapi.json", uri.path())).into()
}

/// Every route imagegate serves.
pub fn router(state: AppState) -> Router {
    let limit = state.config.body_limit_bytes;
    let mut app: Router<AppState> = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/v1/images/generations", post(openai::create_image))
        .route("/v1/images/edits", post(openai::create_edit))
        .route("/v1/models", get(openai::list_models))
        .route("/v1/tasks/{id}", get(tasks::get_task))
        .route("/files/{*key}", get(files::get_file))
        .route("/v1/generation/{engine_id}/text-to-image", post(stability::create_text_to_image))
        .route("/sd/v1/generation/{engine_id}/text-to-image", post(stability::create_text_to_image))
        .route("/v1/generation/{engine_id}/image-to-image", post(stability::create_image_to_image))
        .route("/sd/v1/generation/{engine_id}/image-to-image", post(stability::create_image_to_image))
        .route("/v1/generation/{engine_id}/image-to-image/masking", post(stability::create_masking))
        .route("/sd/v1/generation/{engine_id}/image-to-image/masking", post(stability::create_masking))
        .route("/v1/engines/list", get(stability::list_engines))
        .route("/sd/v1/engines/list", get(stability::list_engines))
        .route("/v1/user/account", get(stability::get_account))
        .route("/sd/v1/user/account", get(stability::get_account))
        .route("/v1/user/balance", get(stability::get_balance))
        .route("/sd/v1/user/balance", get(stability::get_balance))
        .route("/v1/models/{*model_path}", post(predictions::create_prediction))
        .route("/session/publish", post(publish::publish_task))
        .route("/session/{task_id}", get(publish::get_session))
        .route("/v1/get_result", get(bfl::get_result))
        .route("/openapi.json", get(openapi::get_openapi))
        .route("/docs", get(openapi::get_docs))
        .route("/v1/usage", get(usage::get_usage))
        .route("/v1/admin/accounts", post(admin::create_account).get(admin::list_accounts))
        .route("/v1/admin/accounts/{id}", get(admin::get_account))
        .route("/v1/admin/accounts/{id}/credits", post(admin::grant_credits))
        .route("/v1/admin/accounts/{id}/keys", post(admin::create_key))
        .route("/v1/admin/plans", get(admin::list_plans));
    for name in bfl::BFL_MODELS {
        app = app.route(
            &format!("/v1/{name}"),
            post(move |State(s): State<AppState>, RawQuery(q): RawQuery, h: HeaderMap, b: Result<Bytes, BytesRejection>| bfl::create_generation(name, s, q, h, b)),
        );
    }
    app.fallback(no_route)
        .layer(DefaultBodyLimit::max(limit))
        .layer(CatchPanicLayer::new())
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &http::Request<_>| {
            let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id, key_id = tracing::field::Empty)
        }))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}
