//! `GET /files/{key}?exp=…&sig=…`: local objects, served only with a valid,
//! unexpired HMAC signature (403 otherwise).

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use imagegate_core::{AppError, ErrorCode, ImageFormat};

use crate::dialects::openai::OpenAiError;
use crate::state::AppState;

/// The signature query.
#[derive(Debug, serde::Deserialize)]
pub struct Signature {
    exp: Option<i64>,
    sig: Option<String>,
}

/// Serves one object.
#[utoipa::path(get, path = "/files/{key}", tag = "files", params(("key" = String, Path, description = "Object key"), ("exp" = i64, Query, description = "Expiry (unix seconds)"), ("sig" = String, Query, description = "HMAC signature")), responses((status = 200, description = "The image bytes"), (status = 403, description = "Bad or expired signature"), (status = 404, description = "No such object")))]
pub async fn get_file(State(state): State<AppState>, Path(key): Path<String>, query: Result<Query<Signature>, QueryRejection>) -> Result<Response, OpenAiError> {
    // An `exp` that is not a number is a tampered URL like any other, not a malformed request.
    let Ok(Query(q)) = query else {
        return Err(AppError::new(ErrorCode::Forbidden, "invalid or expired signature").into());
    };
    let (Some(exp), Some(sig)) = (q.exp, q.sig) else {
        return Err(AppError::new(ErrorCode::Forbidden, "missing signature").into());
    };
    if key.split('/').any(|s| s == ".." || s.is_empty()) || !state.objects.verify(&key, exp, &sig) {
        return Err(AppError::new(ErrorCode::Forbidden, "invalid or expired signature").into());
    }
    let bytes = state.objects.get(&key).await?;
    let mime = key.rsplit_once('.').and_then(|(_, ext)| ImageFormat::parse(ext)).map_or("application/octet-stream", |f| f.mime());
    let mut resp = (StatusCode::OK, Body::from(bytes)).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=3600"));
    Ok(resp)
}
