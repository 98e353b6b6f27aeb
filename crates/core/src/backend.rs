//! The [`Backend`] trait: anything that turns a [`TaskSpec`] into encoded
//! images — the local candle engine, an upstream channel, a test double —
//! and the [`BackendRegistry`] that picks one per model.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::catalog::ModelEntry;
use crate::error::{AppError, ErrorCode};
use crate::spec::{ImageFormat, TaskSpec};

/// One encoded image a backend produced.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedImage {
    /// Encoded bytes.
    pub bytes: Vec<u8>,
    /// Their encoding.
    pub format: ImageFormat,
    /// Pixels across.
    pub width: u32,
    /// Pixels down.
    pub height: u32,
    /// The seed that drew it.
    pub seed: u64,
}

/// What a backend returns for one task.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Generation {
    /// The images, `spec.count` of them.
    pub images: Vec<GeneratedImage>,
    /// Who served it (backend or channel name), recorded on the task.
    pub served_by: String,
    /// A note for the client, e.g. that a stand-in model drew it.
    pub note: Option<String>,
    /// The provider's request id, for upstream channels.
    pub provider_request_id: Option<String>,
}

/// A unit of work handed to a backend.
#[derive(Debug, Clone)]
pub struct Job {
    /// Task id (used in logs and progress).
    pub task_id: String,
    /// What to make.
    pub spec: TaskSpec,
}

/// Step `step` of `total` done for a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Task id.
    pub task_id: String,
    /// Steps done.
    pub step: u32,
    /// Steps in all.
    pub total: u32,
}

/// Where backends report progress.
pub type ProgressSink = Arc<dyn Fn(Progress) + Send + Sync>;

/// A progress sink that drops everything.
pub fn no_progress() -> ProgressSink {
    Arc::new(|_| {})
}

/// Cooperative cancellation: backends check it between steps.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    /// A flag not yet raised.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask the backend to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether a stop was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Which side of a generation a provider's moderation refused (BFL's
/// `Request Moderated` and `Content Moderated`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModerationStage {
    /// The request: its prompt or input image.
    Request,
    /// The generated content.
    Content,
}

impl std::fmt::Display for ModerationStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Request => "request",
            Self::Content => "content",
        })
    }
}

/// Why a backend could not produce a task's images.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackendError {
    /// Weights are not installed; names what is missing and where we looked.
    #[error("weights for {model} are missing: {missing} (looked in {looked_in})")]
    MissingWeights {
        /// Model id.
        model: String,
        /// Missing files.
        missing: String,
        /// Where we looked.
        looked_in: String,
    },
    /// Nothing can serve this now (no channel, all channels down, overloaded).
    #[error("{0}")]
    Unavailable(String),
    /// The spec asks for something this backend cannot do.
    #[error("invalid `{field}`: {message}")]
    Invalid {
        /// Offending field.
        field: String,
        /// What is allowed.
        message: String,
    },
    /// An upstream provider failed; `retryable` says whether another attempt may succeed.
    #[error("upstream {provider} failed: {message}")]
    Upstream {
        /// Provider or channel.
        provider: String,
        /// What it said.
        message: String,
        /// Whether a retry (here or on another channel) may succeed.
        retryable: bool,
    },
    /// The provider's moderation refused the request or its result. Final:
    /// the same task would be refused again.
    #[error("{stage} moderated by {provider}: {message}")]
    Moderated {
        /// Provider or channel.
        provider: String,
        /// What was refused.
        stage: ModerationStage,
        /// What the provider said.
        message: String,
    },
    /// The task was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// A bug or resource failure inside the backend.
    #[error("{0}")]
    Internal(String),
}

impl BackendError {
    /// Whether the queue should retry the task (a later attempt may succeed).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Upstream { retryable: true, .. } | Self::Internal(_))
    }

    /// The client-facing error.
    pub fn to_app_error(&self) -> AppError {
        match self {
            Self::MissingWeights { .. } | Self::Unavailable(_) => AppError::new(ErrorCode::Unavailable, self.to_string()),
            Self::Invalid { field, message } => AppError::invalid(field, message),
            Self::Upstream { .. } => AppError::new(ErrorCode::UpstreamError, self.to_string()),
            Self::Moderated { stage: ModerationStage::Request, .. } => AppError::new(ErrorCode::RequestModerated, self.to_string()),
            Self::Moderated { stage: ModerationStage::Content, .. } => AppError::new(ErrorCode::ContentModerated, self.to_string()),
            Self::Cancelled => AppError::new(ErrorCode::Conflict, "task was cancelled"),
            Self::Internal(_) => AppError::internal(self.to_string()),
        }
    }
}

/// Something that generates images. Implemented by the engine, upstream
/// channels and test doubles; the queue's workers only see this trait.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// A short name recorded on tasks (`engine`, `channel:openai-main`, …).
    fn name(&self) -> &str;

    /// Whether this backend can serve `model` now; `Err` says why not
    /// (e.g. which weight files are missing), for the 503 message.
    fn serves(&self, model: &ModelEntry) -> Result<(), String>;

    /// The most tasks this backend takes in one [`Backend::generate_batch`] call.
    fn max_batch(&self) -> usize {
        1
    }

    /// Generates one task's images.
    async fn generate(&self, job: &Job, progress: &ProgressSink, cancel: &CancelFlag) -> Result<Generation, BackendError>;

    /// Generates several compatible tasks (same [`TaskSpec::batch_key`]);
    /// results are in job order. The default runs them one by one.
    async fn generate_batch(&self, jobs: &[Job], progress: &ProgressSink, cancel: &CancelFlag) -> Vec<Result<Generation, BackendError>> {
        let mut out = Vec::with_capacity(jobs.len());
        for job in jobs {
            out.push(self.generate(job, progress, cancel).await);
        }
        out
    }
}

/// The backends a process has, in preference order.
#[derive(Clone, Default)]
pub struct BackendRegistry {
    backends: Vec<Arc<dyn Backend>>,
}

impl BackendRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a backend after those already registered (lower preference).
    pub fn register(&mut self, backend: Arc<dyn Backend>) {
        self.backends.push(backend);
    }

    /// The first backend that serves `model`, or every backend's reason why not.
    pub fn pick(&self, model: &ModelEntry) -> Result<Arc<dyn Backend>, String> {
        let mut reasons = Vec::new();
        for b in &self.backends {
            match b.serves(model) {
                Ok(()) => return Ok(b.clone()),
                Err(why) => reasons.push(format!("{}: {why}", b.name())),
            }
        }
        if reasons.is_empty() {
            reasons.push("no backend is configured".to_string());
        }
        Err(format!("no backend can serve model `{}` here ({})", model.id, reasons.join("; ")))
    }

    /// Whether any backend is registered.
    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }

    /// Ids of the catalog models some backend serves.
    pub fn served_models<'a>(&self, models: &'a [ModelEntry]) -> Vec<&'a ModelEntry> {
        models.iter().filter(|m| self.pick(m).is_ok()).collect()
    }
}

impl std::fmt::Debug for BackendRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.backends.iter().map(|b| b.name())).finish()
    }
}
