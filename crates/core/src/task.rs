//! Task lifecycle states and the read model every dialect renders from.

use crate::backend::ModerationStage;
use crate::error::ErrorCode;
use crate::spec::TaskSpec;

/// Where a task is in its life. `Succeeded`, `Failed` and `Cancelled` are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Accepted and persisted, waiting for a worker.
    Queued,
    /// Claimed by a worker under a lease.
    Running,
    /// Images stored.
    Succeeded,
    /// Gave up; `error_code`/`error_message` say why.
    Failed,
    /// Cancelled by the client or an operator.
    Cancelled,
}

impl TaskState {
    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses the database spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }

    /// Whether the task will change no more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// One stored image of a finished task.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredImage {
    /// Object key `{prefix}/{task id}/{n}.{ext}`.
    pub key: String,
    /// Pixels across.
    pub width: u32,
    /// Pixels down.
    pub height: u32,
    /// The seed that drew it.
    pub seed: u64,
}

/// What a worker recorded about a finished task.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct TaskResult {
    /// Images in order.
    pub images: Vec<StoredImage>,
    /// Milliseconds the backend spent generating.
    pub inference_ms: u64,
    /// The backend (or channel) that served it.
    pub served_by: String,
    /// A note to show the client (e.g. the demo model stood in, or the image was resized).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The provider's request id, for upstream channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_request_id: Option<String>,
}

/// The read model of a task: everything a dialect needs to render it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    /// Task id.
    pub id: String,
    /// Owning account.
    pub account_id: String,
    /// State.
    pub state: TaskState,
    /// The validated request.
    pub spec: TaskSpec,
    /// Steps done so far (progress), and of how many.
    pub progress: (u32, u32),
    /// Result, once succeeded.
    pub result: Option<TaskResult>,
    /// Error code and message, once failed.
    pub error: Option<(String, String)>,
    /// Attempts made so far.
    pub attempts: u32,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds of the last state change.
    pub updated_at: i64,
    /// Milli-credits captured for the task, when this view comes from the
    /// completion that captured them; `None` where that is not known from
    /// here (read the task's credit hold instead).
    pub charged: Option<i64>,
}

impl TaskView {
    /// Progress as a fraction 0..=1.
    pub fn progress_fraction(&self) -> f64 {
        if self.state == TaskState::Succeeded {
            return 1.0;
        }
        let (done, total) = self.progress;
        if total == 0 { 0.0 } else { f64::from(done) / f64::from(total) }
    }

    /// What a provider's moderation refused, when that is why the task
    /// failed (read from the stored error code, which only a backend's
    /// [`BackendError::Moderated`](crate::BackendError::Moderated) writes).
    pub fn moderation(&self) -> Option<ModerationStage> {
        if self.state != TaskState::Failed {
            return None;
        }
        match self.error.as_ref()?.0.as_str() {
            c if c == ErrorCode::RequestModerated.as_str() => Some(ModerationStage::Request),
            c if c == ErrorCode::ContentModerated.as_str() => Some(ModerationStage::Content),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BackendError, Size};

    fn failed_with(e: &BackendError) -> TaskView {
        let code = e.to_app_error().code.as_str().to_string();
        TaskView {
            id: "t".into(),
            account_id: "a".into(),
            state: TaskState::Failed,
            spec: TaskSpec::simple("m", "p", Size::new(64, 64)),
            progress: (0, 1),
            result: None,
            error: Some((code, e.to_string())),
            attempts: 1,
            created_at: 0,
            updated_at: 0,
            charged: None,
        }
    }

    #[test]
    fn only_a_moderation_error_reads_as_moderated() {
        let moderated = |stage| BackendError::Moderated { provider: "p".into(), stage, message: "flagged".into() };
        assert_eq!(failed_with(&moderated(ModerationStage::Content)).moderation(), Some(ModerationStage::Content));
        assert_eq!(failed_with(&moderated(ModerationStage::Request)).moderation(), Some(ModerationStage::Request));
        let upstream = BackendError::Upstream { provider: "p".into(), message: "content policy".into(), retryable: false };
        assert_eq!(failed_with(&upstream).moderation(), None);
        assert!(!moderated(ModerationStage::Content).is_retryable());
    }
}
