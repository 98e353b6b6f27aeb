//! JSON bodies parsed with the offending field named in every 400, and
//! oversized bodies answered 413, in whatever shape the dialect renders.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use imagegate_core::{AppError, ErrorCode};
use serde::de::DeserializeOwned;
use serde_json::error::Category;

/// Parses JSON, naming the field path of the first error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    if bytes.is_empty() {
        return Err(AppError::new(ErrorCode::InvalidRequest, "the request body must be a JSON object"));
    }
    serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(bytes)).map_err(named)
}

/// Reads `value` (fields a dialect assembled itself, from a form or a
/// flattened body) as `T`, naming the field path of the first error as
/// [`parse_json`] does.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, AppError> {
    serde_path_to_error::deserialize(value).map_err(named)
}

fn named(e: serde_path_to_error::Error<serde_json::Error>) -> AppError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    // A syntax error is the text's, not a field's: its path ends in `?`
    // (the key it could not read), which names nothing a client sent.
    let syntax = matches!(inner.classify(), Category::Syntax | Category::Eof);
    if syntax || path.is_empty() || path == "." {
        AppError::new(ErrorCode::InvalidRequest, format!("malformed JSON body: {inner}"))
    } else {
        AppError::invalid(&path, inner.to_string())
    }
}

/// The raw body, with the configured size limit mapped to 413. Handlers
/// extract `Result<Bytes, BytesRejection>` and pass it here, so that the
/// error is rendered in their own dialect.
pub fn read_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, AppError> {
    match body {
        Ok(b) => Ok(b),
        Err(BytesRejection::FailedToBufferBody(e)) if e.status() == http::StatusCode::PAYLOAD_TOO_LARGE => {
            Err(AppError::new(ErrorCode::PayloadTooLarge, "request body is larger than the configured limit"))
        }
        Err(e) => Err(AppError::new(ErrorCode::InvalidRequest, format!("could not read the request body: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Body {
        #[allow(dead_code)]
        input: Input,
    }

    #[derive(Debug, serde::Deserialize)]
    struct Input {
        #[allow(dead_code)]
        n: u32,
    }

    #[test]
    fn syntax_errors_are_the_bodys_and_type_errors_name_their_field() {
        for text in [&b"{not json"[..], b"{\"input\": {oops", b"{\"input\": {\"n\": 1"] {
            let e = parse_json::<Body>(text).unwrap_err();
            assert_eq!(e.field, None, "{e}");
            assert!(e.message.starts_with("malformed JSON body: "), "{e}");
        }
        let e = parse_json::<Body>(br#"{"input": {"n": "two"}}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("input.n"));
    }
}
