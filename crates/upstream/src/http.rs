//! HTTP plumbing shared by the adapters: sending with errors classified into
//! [`UpstreamError`], reading provider error bodies, `Retry-After`, result
//! downloads, and a small `multipart/form-data` writer (Stability v2beta and
//! Ideogram take forms; writing them here keeps reqwest's features as the
//! rest of the workspace has them).

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::UpstreamError;

/// Longest piece of a provider's error body we keep in messages and logs.
const MAX_ERROR_TEXT: usize = 400;

/// Sends a request, turning transport failures into [`UpstreamError`].
pub(crate) async fn send(req: RequestBuilder) -> Result<Response, UpstreamError> {
    req.send().await.map_err(transport_error)
}

/// Sends and insists on a 2xx answer (see [`check`]).
pub(crate) async fn send_ok(req: RequestBuilder) -> Result<Response, UpstreamError> {
    check(send(req).await?).await
}

/// Maps reqwest's own errors (no HTTP answer, or a broken body).
pub(crate) fn transport_error(e: reqwest::Error) -> UpstreamError {
    if e.is_timeout() {
        UpstreamError::Timeout(e.to_string())
    } else if e.is_decode() || e.is_body() {
        UpstreamError::BadResponse(e.to_string())
    } else {
        UpstreamError::Connect(e.to_string())
    }
}

/// Passes a 2xx response through; otherwise reads the error body and classifies the status.
pub(crate) async fn check(resp: Response) -> Result<Response, UpstreamError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let retry_after = retry_after(resp.headers());
    let body = resp.text().await.unwrap_or_default();
    Err(classify(status, &body, retry_after))
}

/// Turns a non-2xx status and its body into an error.
pub(crate) fn classify(status: StatusCode, body: &str, retry_after: Option<Duration>) -> UpstreamError {
    let message = error_message(body);
    let lowered = message.to_ascii_lowercase();
    let code = status.as_u16();
    if lowered.contains("moderat") || lowered.contains("content_policy") || lowered.contains("safety system") {
        // Stability answers moderation with 403, OpenAI with 400: either way
        // the content is the problem, not the channel.
        return UpstreamError::Moderated(message);
    }
    match code {
        429 => UpstreamError::RateLimited { message, retry_after },
        // 402: the channel's own account is out of credit; another channel may serve.
        401..=403 => UpstreamError::Auth { status: code, message },
        404 => UpstreamError::NotServed { status: code, message },
        400..=499 => UpstreamError::Rejected { status: code, message },
        _ => UpstreamError::Server { status: code, message, retry_after },
    }
}

/// Pulls the human message out of the error shapes providers use:
/// `{"error":{"message"}}` (OpenAI, Ark, Qianfan, Google), `{"message"}`
/// (DashScope, Stability v1), `{"detail"}` (BFL), `{"errors":[..]}` (Stability v2beta).
pub(crate) fn error_message(body: &str) -> String {
    let text = match serde_json::from_str::<serde_json::Value>(body) {
        Ok(v) => {
            let pick = |v: &serde_json::Value| -> Option<String> {
                match v {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Null => None,
                    other => Some(other.to_string()),
                }
            };
            v.pointer("/error/message")
                .or_else(|| v.get("message"))
                .or_else(|| v.get("detail"))
                .or_else(|| v.get("errors"))
                .or_else(|| v.get("error"))
                .and_then(pick)
                .unwrap_or_else(|| body.to_string())
        }
        Err(_) => body.to_string(),
    };
    truncate(text.trim())
}

fn truncate(s: &str) -> String {
    if s.len() <= MAX_ERROR_TEXT {
        return s.to_string();
    }
    let mut end = MAX_ERROR_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// `Retry-After` in seconds (the form providers send); HTTP dates are ignored.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let secs: f64 = v.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}

/// The provider's request id from the usual response headers, when it sends one.
pub(crate) fn request_id(headers: &HeaderMap) -> Option<String> {
    ["x-request-id", "request-id", "x-tt-logid", "x-acs-request-id"].iter().find_map(|h| headers.get(*h)?.to_str().ok().filter(|v| !v.is_empty()).map(str::to_string))
}

/// Reads a 2xx JSON body into `T`.
pub(crate) async fn json<T: DeserializeOwned>(resp: Response) -> Result<T, UpstreamError> {
    let bytes = resp.bytes().await.map_err(transport_error)?;
    serde_json::from_slice(&bytes).map_err(|e| UpstreamError::BadResponse(format!("{e}: {}", truncate(&String::from_utf8_lossy(&bytes)))))
}

/// Largest result image we accept (a 4K PNG is ~30 MiB); a bigger body is
/// a broken or hostile answer, not an image.
pub(crate) const MAX_IMAGE_BYTES: usize = 64 * 1024 * 1024;

/// Downloads a result URL (provider URLs are pre-signed: no credentials go
/// with it), refusing bodies over [`MAX_IMAGE_BYTES`] without buffering them.
pub(crate) async fn download(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, UpstreamError> {
    let too_big = || UpstreamError::BadResponse(format!("result image is larger than {MAX_IMAGE_BYTES} bytes"));
    let mut resp = send_ok(client.get(url)).await?;
    if resp.content_length().is_some_and(|n| n > MAX_IMAGE_BYTES as u64) {
        return Err(too_big());
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport_error)? {
        if out.len() + chunk.len() > MAX_IMAGE_BYTES {
            return Err(too_big());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Whether `url` points at the same host as `base` (or a subdomain of
/// `trusted_suffix`): credentials only go where the channel is configured to send them.
pub(crate) fn same_site(url: &str, base: &str, trusted_suffix: &str) -> bool {
    let host = |u: &str| url::Url::parse(u).ok().and_then(|u| u.host_str().map(str::to_ascii_lowercase));
    match (host(url), host(base)) {
        (Some(h), Some(b)) => h == b || h.ends_with(trusted_suffix),
        _ => false,
    }
}

/// A `multipart/form-data` body of text fields.
pub(crate) struct Form {
    boundary: String,
    body: Vec<u8>,
}

impl Form {
    /// An empty form with a random boundary.
    pub(crate) fn new() -> Self {
        Self { boundary: format!("imagegate-{:016x}", rand::random::<u64>()), body: Vec::new() }
    }

    /// Adds a text field.
    pub(crate) fn text(mut self, name: &str, value: impl AsRef<str>) -> Self {
        self.body.extend_from_slice(format!("--{}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n", self.boundary).as_bytes());
        self.body.extend_from_slice(value.as_ref().as_bytes());
        self.body.extend_from_slice(b"\r\n");
        self
    }

    /// Adds a file field.
    pub(crate) fn file(mut self, name: &str, filename: &str, mime: &str, bytes: &[u8]) -> Self {
        let head = format!("--{}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: {mime}\r\n\r\n", self.boundary);
        self.body.extend_from_slice(head.as_bytes());
        self.body.extend_from_slice(bytes);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    /// Adds a text field when there is a value.
    pub(crate) fn opt(self, name: &str, value: Option<impl AsRef<str>>) -> Self {
        match value {
            Some(v) => self.text(name, v),
            None => self,
        }
    }

    /// The `Content-Type` header value and the finished body.
    pub(crate) fn finish(mut self) -> (String, Vec<u8>) {
        self.body.extend_from_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        (format!("multipart/form-data; boundary={}", self.boundary), self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_are_found_in_each_shape() {
        assert_eq!(error_message(r#"{"error":{"message":"bad size","type":"x"}}"#), "bad size");
        assert_eq!(error_message(r#"{"code":"InvalidParameter","message":"nope"}"#), "nope");
        assert_eq!(error_message(r#"{"detail":"Not authenticated"}"#), "Not authenticated");
        assert_eq!(error_message("plain text"), "plain text");
        assert!(error_message(&"x".repeat(1000)).len() < 420);
    }

    #[test]
    fn statuses_map_to_failover_classes() {
        assert!(matches!(classify(StatusCode::TOO_MANY_REQUESTS, "{}", None), UpstreamError::RateLimited { .. }));
        assert!(matches!(classify(StatusCode::BAD_GATEWAY, "", None), UpstreamError::Server { status: 502, .. }));
        assert!(matches!(classify(StatusCode::UNAUTHORIZED, "", None), UpstreamError::Auth { .. }));
        assert!(matches!(classify(StatusCode::UNPROCESSABLE_ENTITY, "", None), UpstreamError::Rejected { .. }));
        assert!(matches!(classify(StatusCode::NOT_FOUND, "", None), UpstreamError::NotServed { .. }));
        assert!(matches!(
            classify(StatusCode::FORBIDDEN, r#"{"name":"content_moderation","errors":["Your request was flagged by our content moderation system"]}"#, None),
            UpstreamError::Moderated(_)
        ));
    }

    #[test]
    fn credentials_stay_on_the_configured_site() {
        assert!(same_site("https://api.us1.bfl.ai/v1/get_result?id=1", "https://api.bfl.ai/v1", ".bfl.ai"));
        assert!(same_site("http://127.0.0.1:9/v1/get_result", "http://127.0.0.1:9/v1", ".bfl.ai"));
        assert!(!same_site("https://evil.example/get_result", "https://api.bfl.ai/v1", ".bfl.ai"));
        assert!(!same_site("https://notbfl.ai/x", "https://api.bfl.ai/v1", ".bfl.ai"));
    }

    #[test]
    fn retry_after_reads_seconds() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
