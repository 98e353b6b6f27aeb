//! [`UpstreamError`]: how one call to one channel failed, and the two
//! decisions that hang on it: may the relay fail over to another channel
//! (and does the failure count against this channel's breaker), and what the
//! queue sees as a [`BackendError`].

use std::time::Duration;

use imagegate_core::{BackendError, ModerationStage};

/// Why one call to one channel failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UpstreamError {
    /// 429 from the provider; `retry_after` when it said how long to wait.
    #[error("rate limited by the provider (HTTP 429): {message}")]
    RateLimited {
        /// The provider's message.
        message: String,
        /// Its `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// 5xx from the provider.
    #[error("provider error (HTTP {status}): {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// The provider's message.
        message: String,
        /// Its `Retry-After` (503 may carry one).
        retry_after: Option<Duration>,
    },
    /// The channel's timeout passed (the text says which wait).
    #[error("timed out: {0}")]
    Timeout(String),
    /// No HTTP answer at all (DNS, refused, reset, TLS).
    #[error("connection failed: {0}")]
    Connect(String),
    /// 401/402/403: the channel's key is wrong, lacks access or its account
    /// is out of credit. The channel is broken, not the request, so another
    /// channel may serve it.
    #[error("the provider refused the channel's credentials (HTTP {status}): {message}")]
    Auth {
        /// HTTP status.
        status: u16,
        /// The provider's message.
        message: String,
    },
    /// 404: this channel's provider does not have the model or route (a
    /// mapping or account matter). Another channel may; this one is not unwell.
    #[error("the channel does not serve this (HTTP {status}): {message}")]
    NotServed {
        /// HTTP status.
        status: u16,
        /// The provider's message.
        message: String,
    },
    /// Another 4xx: the provider rejected this request. Never failed over:
    /// another channel would reject it too.
    #[error("the provider rejected the request (HTTP {status}): {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The provider's message.
        message: String,
    },
    /// The provider's moderation blocked the prompt or the result.
    #[error("content moderated by the provider: {0}")]
    Moderated(String),
    /// The spec cannot be expressed in this provider's API.
    #[error("invalid `{field}`: {message}")]
    Invalid {
        /// The spec field.
        field: String,
        /// What the provider allows.
        message: String,
    },
    /// A 2xx answer we could not read (wrong shape, undecodable image).
    #[error("unexpected response: {0}")]
    BadResponse(String),
    /// An asynchronous job the provider accepted failed.
    #[error("the provider's job failed: {0}")]
    JobFailed(String),
    /// The task was cancelled while the call ran.
    #[error("cancelled")]
    Cancelled,
    /// Failed after the provider accepted (and will bill) the work: the job
    /// id is kept for the log, and the relay must not resubmit elsewhere.
    #[error("{source} (after the provider accepted job {job})")]
    AfterAccept {
        /// The provider's job or request id.
        job: String,
        /// What went wrong.
        source: Box<UpstreamError>,
    },
}

impl UpstreamError {
    /// Whether another channel may be tried: only for failures that say
    /// this channel is unwell, and never once the provider took the job.
    pub fn fails_over(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Server { .. } | Self::Timeout(_) | Self::Connect(_) | Self::Auth { .. } | Self::NotServed { .. } | Self::BadResponse(_))
    }

    /// Whether this failure counts against the channel's breaker.
    pub fn counts_against_channel(&self) -> bool {
        match self {
            Self::AfterAccept { source, .. } => source.counts_against_channel(),
            Self::Cancelled | Self::NotServed { .. } => false,
            e => e.fails_over(),
        }
    }

    /// How long the provider asked us to stay away, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Marks a failure as happening after the provider accepted job `job`.
    pub fn after_accept(self, job: &str) -> Self {
        match self {
            Self::AfterAccept { .. } | Self::Cancelled => self,
            other => Self::AfterAccept { job: job.to_string(), source: Box::new(other) },
        }
    }

    /// The error the queue sees, attributed to `channel`.
    pub fn into_backend_error(self, channel: &str) -> BackendError {
        let provider = format!("channel:{channel}");
        match self {
            Self::Cancelled => BackendError::Cancelled,
            Self::Invalid { field, message } => BackendError::Invalid { field, message },
            // Final like the other refusals below; reported to clients as
            // moderation (task status `Content Moderated`, BFL's words),
            // also when the provider refused a job it had already accepted.
            Self::Moderated(message) => BackendError::Moderated { provider, stage: moderation_stage(&message), message },
            Self::AfterAccept { job, source } => match *source {
                Self::Moderated(why) => BackendError::Moderated { provider, stage: moderation_stage(&why), message: format!("{why} (after the provider accepted job {job})") },
                // Billed already: final, like the refusals below.
                source => BackendError::Upstream { provider, message: Self::AfterAccept { job, source: Box::new(source) }.to_string(), retryable: false },
            },
            e @ (Self::Rejected { .. } | Self::JobFailed(_)) => {
                // The provider may already have billed an accepted job; a queue
                // retry would pay again, so these are final.
                BackendError::Upstream { provider, message: e.to_string(), retryable: false }
            }
            e => BackendError::Upstream { provider, message: e.to_string(), retryable: true },
        }
    }
}

/// Which side a refusal concerned. BFL says so in its status word
/// (`Request Moderated` / `Content Moderated`); the other providers do not
/// tell a refused prompt from a refused result, so they count as content.
fn moderation_stage(why: &str) -> ModerationStage {
    if why.trim_start().to_ascii_lowercase().starts_with("request moderated") { ModerationStage::Request } else { ModerationStage::Content }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_channel_failures_fail_over() {
        assert!(UpstreamError::RateLimited { message: String::new(), retry_after: None }.fails_over());
        assert!(UpstreamError::Server { status: 502, message: String::new(), retry_after: None }.fails_over());
        assert!(UpstreamError::Timeout("1s".into()).fails_over());
        assert!(!UpstreamError::Rejected { status: 400, message: String::new() }.fails_over());
        assert!(!UpstreamError::Moderated(String::new()).fails_over());
        let accepted = UpstreamError::Timeout("1s".into()).after_accept("job-1");
        assert!(!accepted.fails_over());
        assert!(accepted.counts_against_channel());
        assert!(accepted.to_string().contains("job-1"));
    }

    #[test]
    fn moderation_reaches_the_queue_as_moderation_with_bfls_stage() {
        let e = UpstreamError::Moderated("Request Moderated".into()).into_backend_error("bfl-main");
        assert!(matches!(&e, BackendError::Moderated { stage: ModerationStage::Request, provider, .. } if provider == "channel:bfl-main"), "{e:?}");
        assert!(!e.is_retryable());
        let e = UpstreamError::Moderated("CONTENT_FILTERED".into()).into_backend_error("stability");
        assert!(matches!(e, BackendError::Moderated { stage: ModerationStage::Content, .. }));
        let e = UpstreamError::Moderated("Content Moderated".into()).after_accept("job-7").into_backend_error("bfl");
        assert!(matches!(&e, BackendError::Moderated { stage: ModerationStage::Content, message, .. } if message.contains("job-7")), "{e:?}");
    }

    #[test]
    fn final_errors_are_not_retryable_for_the_queue() {
        let e = UpstreamError::JobFailed("boom".into()).into_backend_error("a");
        assert!(!e.is_retryable());
        let e = UpstreamError::Connect("refused".into()).into_backend_error("a");
        assert!(e.is_retryable());
        assert!(matches!(UpstreamError::Invalid { field: "size".into(), message: "x".into() }.into_backend_error("a"), BackendError::Invalid { .. }));
    }
}
