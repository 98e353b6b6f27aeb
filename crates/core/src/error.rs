//! The one error-code table: every failure a client can see has a stable
//! snake_case code, an HTTP status and a user-facing message. Each dialect
//! renders an [`AppError`] in its own body shape; none invents its own codes.

use std::fmt;

/// Stable error codes shared by all dialects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A request field is missing, malformed or out of range.
    InvalidRequest,
    /// No credentials, or a key we do not know.
    Unauthorized,
    /// The key may not use this route or model.
    Forbidden,
    /// The account cannot pay the quoted price.
    InsufficientCredits,
    /// Unknown model, engine, workflow, task or route.
    NotFound,
    /// An idempotency key was reused with a different body.
    Conflict,
    /// The request body exceeds the configured limit.
    PayloadTooLarge,
    /// A rate or waiting-task limit was hit.
    RateLimited,
    /// Nothing can serve the request now (queue full, weights missing, no channel).
    Unavailable,
    /// A synchronous wait passed its deadline; the task goes on.
    Timeout,
    /// An upstream provider failed in a way we pass on.
    UpstreamError,
    /// A provider's moderation refused the request (the prompt or input image).
    RequestModerated,
    /// A provider's moderation refused what it generated.
    ContentModerated,
    /// A bug or an infrastructure failure; details go to the log only.
    Internal,
}

impl ErrorCode {
    /// The HTTP status this code is answered with.
    pub fn status(self) -> u16 {
        match self {
            // OpenAI-style clients know moderation refusals as 400s
            // (`moderation_blocked`); a retry of the same request fails alike.
            Self::InvalidRequest | Self::RequestModerated | Self::ContentModerated => 400,
            Self::Unauthorized => 401,
            Self::InsufficientCredits => 402,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::Conflict => 409,
            Self::PayloadTooLarge => 413,
            Self::RateLimited => 429,
            Self::Internal => 500,
            Self::UpstreamError => 502,
            Self::Unavailable => 503,
            Self::Timeout => 504,
        }
    }

    /// The snake_case name used in error bodies and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::InsufficientCredits => "insufficient_credits",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
            Self::UpstreamError => "upstream_error",
            Self::RequestModerated => "request_moderated",
            Self::ContentModerated => "content_moderated",
            Self::Internal => "internal_error",
        }
    }

    /// Whether the message may be shown to clients. 5xx causes stay in the log.
    pub fn is_opaque(self) -> bool {
        matches!(self, Self::Internal)
    }
}

/// An error on its way to a client: a code, a message and optional extras.
#[derive(Debug, Clone, PartialEq)]
pub struct AppError {
    /// The stable code.
    pub code: ErrorCode,
    /// What went wrong, for the client (replaced by a generic text when opaque).
    pub message: String,
    /// The offending request field, when there is one.
    pub field: Option<String>,
    /// The task concerned (504 carries it so the client can poll).
    pub task_id: Option<String>,
    /// Seconds after which a retry may succeed (429, 503).
    pub retry_after: Option<u64>,
}

impl AppError {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), field: None, task_id: None, retry_after: None }
    }

    /// A 400 naming the field and what is allowed.
    pub fn invalid(field: &str, allowed: impl fmt::Display) -> Self {
        Self { field: Some(field.to_string()), ..Self::new(ErrorCode::InvalidRequest, format!("invalid `{field}`: {allowed}")) }
    }

    /// An error read back from a failed task's stored code and message; a
    /// 400 gets back the field that [`AppError::invalid`] wrote into its
    /// message, so that a refusal found by a backend names it as one found
    /// at admission does.
    pub fn restored(code: ErrorCode, message: String) -> Self {
        let field = (code == ErrorCode::InvalidRequest).then(|| message.strip_prefix("invalid `")?.split_once("`: ").map(|(f, _)| f.to_string())).flatten();
        Self { field, ..Self::new(code, message) }
    }

    /// A 404 for an unknown thing.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// A 500 whose cause is logged by the caller, never shown.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// Attach a task id.
    pub fn with_task(mut self, task_id: impl Into<String>) -> Self {
        self.task_id = Some(task_id.into());
        self
    }

    /// Attach a Retry-After in seconds.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// The message a client may see.
    pub fn public_message(&self) -> &str {
        if self.code.is_opaque() { "internal server error" } else { &self.message }
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for AppError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_refusal_gets_its_field_back() {
        let stored = AppError::invalid("mask", "needs an inpainting checkpoint");
        let back = AppError::restored(stored.code, stored.message.clone());
        assert_eq!((back.field.as_deref(), back.message), (Some("mask"), stored.message));
        assert_eq!(AppError::restored(ErrorCode::InvalidRequest, "the prompt was refused".into()).field, None);
        assert_eq!(AppError::restored(ErrorCode::UpstreamError, "invalid `x`: from a provider".into()).field, None);
    }

    #[test]
    fn invalid_names_the_field() {
        let e = AppError::invalid("image_size", "one of 1024x1024, 512x1024");
        assert_eq!(e.status(), 400);
        assert_eq!(e.field.as_deref(), Some("image_size"));
        assert!(e.message.contains("image_size") && e.message.contains("1024x1024"));
    }

    #[test]
    fn codes_round_trip_through_their_stored_names() {
        // Failed tasks store `as_str()` and are read back through serde.
        for code in [ErrorCode::RequestModerated, ErrorCode::ContentModerated, ErrorCode::UpstreamError, ErrorCode::Unavailable] {
            let back: ErrorCode = serde_json::from_value(serde_json::Value::String(code.as_str().into())).unwrap();
            assert_eq!(back, code);
        }
    }

    #[test]
    fn internal_messages_are_opaque() {
        let e = AppError::internal("db password wrong at 10.0.0.1");
        assert_eq!(e.public_message(), "internal server error");
    }
}
