//! Bearer-key authentication. The key itself is never logged: only the key
//! id of the resolved caller reaches the trace span.

use http::HeaderMap;
use imagegate_core::{AppError, ErrorCode, ModelEntry};
use imagegate_store::Caller;

use crate::state::AppState;

/// Resolves the `Authorization: Bearer` key (Stability clients may send the
/// bare key) to a caller, or 401.
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Caller, AppError> {
    let raw = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim())
        .ok_or_else(|| AppError::new(ErrorCode::Unauthorized, "missing API key: send `Authorization: Bearer <key>`"))?;
    let key = raw.strip_prefix("Bearer ").or_else(|| raw.strip_prefix("bearer ")).unwrap_or(raw).trim();
    resolve(state, key).await
}

/// The caller behind a presented key: from the short-lived cache, else the
/// store (401 when neither knows it).
async fn resolve(state: &AppState, key: &str) -> Result<Caller, AppError> {
    let caller = match state.auth_cache.get(key, imagegate_store::now_ms()) {
        Some(c) => c,
        None => {
            let c = state.db.authenticate(key).await?.ok_or_else(|| AppError::new(ErrorCode::Unauthorized, "invalid API key"))?;
            state.auth_cache.put(key, &c);
            c
        }
    };
    tracing::Span::current().record("key_id", caller.key_id.as_str());
    Ok(caller)
}

/// 403 unless the caller's key may use `model`.
pub fn check_model_allowed(caller: &Caller, model: &ModelEntry) -> Result<(), AppError> {
    match &caller.allowed_models {
        Some(list) if !list.iter().any(|m| m.eq_ignore_ascii_case(&model.id)) => Err(AppError::new(ErrorCode::Forbidden, format!("this key may not use model `{}`", model.id))),
        _ => Ok(()),
    }
}

/// 403 unless the caller is an admin.
pub fn require_admin(caller: &Caller) -> Result<(), AppError> {
    if caller.is_admin { Ok(()) } else { Err(AppError::new(ErrorCode::Forbidden, "this route needs an admin key")) }
}

/// BFL clients send `x-key: <key>` instead of `Authorization`; either works.
pub async fn authenticate_x_key(state: &AppState, headers: &HeaderMap) -> Result<Caller, AppError> {
    match headers.get("x-key").and_then(|v| v.to_str().ok()).map(str::trim) {
        Some(key) if !key.is_empty() => resolve(state, key).await,
        _ => authenticate(state, headers).await,
    }
}
