//! The route table and the layers every route shares: request ids, tracing,
//! body limit and panic containment.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use http::HeaderName;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::dialects::{openai, tasks};
use crate::state::AppState;
use crate::{admin, files, health, usage};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every route imagegate serves.
pub fn router(state: AppState) -> Router {
    let limit = state.config.body_limit_bytes;
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/v1/images/generations", post(openai::create_image))
        .route("/v1/models", get(openai::list_models))
        .route("/v1/tasks/{id}", get(tasks::get_task))
        .route("/files/{*key}", get(files::get_file))
        .route("/v1/usage", get(usage::get_usage))
        .route("/v1/admin/accounts", post(admin::create_account).get(admin::list_accounts))
        .route("/v1/admin/accounts/{id}", get(admin::get_account))
        .route("/v1/admin/accounts/{id}/credits", post(admin::grant_credits))
        .route("/v1/admin/accounts/{id}/keys", post(admin::create_key))
        .route("/v1/admin/plans", get(admin::list_plans))
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
