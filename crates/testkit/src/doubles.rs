//! Test doubles of the provider APIs (feature `doubles`). Each checks
//! requests the way the provider's reference documents them and answers with
//! the documented shapes (errors included); a request the real API would
//! refuse gets the provider's own error body, so a wrong adapter fails its
//! test visibly. They live here rather than in one crate's tests because the
//! upstream contract tests, the API's end-to-end tests, the binary's CLI
//! tests and the relay benchmark all talk to the same doubles.

pub mod bfl;
pub mod dashscope;
pub mod google;
pub mod hf_hub;
pub mod ideogram;
pub mod instant;
pub mod openai;
pub mod qianfan;
pub mod scripted;
pub mod stability;
pub mod support;
pub mod volcengine;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// A running provider double.
pub struct Double {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Every request it received.
    pub log: support::Log,
}

/// A JSON answer with a status.
pub fn reply(status: u16, body: serde_json::Value) -> Response {
    (StatusCode::from_u16(status).unwrap(), Json(body)).into_response()
}

/// The route every double serves its result files from: `GET /files/{name}`
/// returns a 64x48 PNG (or a JPEG when the name ends in `.jpeg`).
pub async fn file(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let (bytes, mime) = if name.ends_with(".jpeg") { (support::jpeg(64, 48), "image/jpeg") } else { (support::png(64, 48), "image/png") };
    ([("content-type", mime)], bytes).into_response()
}

/// Whether `bytes` are exactly an image some double made: every double draws
/// with [`support::png`] or [`support::jpeg`], so a test can tell a re-hosted
/// double image (byte for byte) from a re-encoded or a synthetic one.
pub fn is_double_image(bytes: &[u8]) -> bool {
    let Ok(img) = image::load_from_memory(bytes) else { return false };
    let (w, h) = (img.width(), img.height());
    bytes == support::png(w, h).as_slice() || bytes == support::jpeg(w, h).as_slice()
}
