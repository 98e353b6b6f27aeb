//! Test doubles of the provider APIs. Each checks requests the way the
//! provider's reference documents them and answers with the documented
//! shapes (errors included); a request the real API would refuse gets the
//! provider's own error body, so a wrong adapter fails its test visibly.

pub mod bfl;
pub mod dashscope;
pub mod google;
pub mod ideogram;
pub mod openai;
pub mod qianfan;
pub mod scripted;
pub mod stability;
pub mod volcengine;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// A JSON answer with a status.
pub fn reply(status: u16, body: serde_json::Value) -> Response {
    (StatusCode::from_u16(status).unwrap(), Json(body)).into_response()
}

/// The route every double serves its result files from: `GET /files/{name}`
/// returns a 64x48 PNG (or a JPEG when the name ends in `.jpeg`).
pub async fn file(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let (bytes, mime) = if name.ends_with(".jpeg") { (crate::support::jpeg(64, 48), "image/jpeg") } else { (crate::support::png(64, 48), "image/png") };
    ([("content-type", mime)], bytes).into_response()
}
