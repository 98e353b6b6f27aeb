//! An instant OpenAI Images double for benchmarks: `POST
//! /v1/images/generations` answers at once with one canned 64x64 PNG as
//! `b64_json`, whatever the body or key, so what is measured is the caller
//! and not the double. Also runnable on a fixed port for tools outside
//! Rust (`cargo run -p imagegate-testkit --features doubles --example instant_double -- 9100`).

use axum::Router;
use axum::routing::post;
use serde_json::json;

use super::support::{b64, png, serve_on};

/// The canned answer: `{"created": 1, "data": [{"b64_json": <64x64 PNG>}]}`.
pub fn canned_body() -> String {
    json!({"created": 1, "data": [{"b64_json": b64(&png(64, 64))}]}).to_string()
}

/// The router, for serving however the caller likes.
pub fn router() -> Router {
    let body: &'static str = Box::leak(canned_body().into_boxed_str());
    Router::new().route("/v1/images/generations", post(move || async move { ([("content-type", "application/json")], body) }))
}

/// Serves on 127.0.0.1:`port` (0: any free one); returns the base URL.
pub async fn start_on(port: u16) -> String {
    serve_on(router(), port).await
}
