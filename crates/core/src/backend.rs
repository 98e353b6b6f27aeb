//! The [`Backend`] trait: anything that turns a [`TaskSpec`] into encoded
//! images — the local candle engine, an upstream channel, a test double —
//! and the [`BackendRegistry`] that picks one per model under the
//! local/upstream [`RoutingPolicy`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::catalog::ModelEntry;
use crate::error::{AppError, ErrorCode};
use crate::routing::{LoadStats, Locality, RoutingPolicy, prefer_upstream};
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
    /// What an earlier attempt recorded through `on_accept` (a provider's
    /// async job, say): the backend picks that work up again instead of
    /// starting it over, which a provider would bill twice.
    pub resume: Option<String>,
    /// Called when a provider accepts work it will bill, with what a later
    /// attempt needs to pick it up (see `resume`); the queue stores it.
    pub on_accept: Option<AcceptHook>,
}

impl Job {
    /// A fresh job, with nothing to resume and nobody told of acceptance.
    pub fn new(task_id: impl Into<String>, spec: TaskSpec) -> Self {
        Self { task_id: task_id.into(), spec, resume: None, on_accept: None }
    }
}

/// Where a backend reports work a provider accepted (see [`Job::on_accept`]).
#[derive(Clone)]
pub struct AcceptHook(Arc<dyn Fn(String) + Send + Sync>);

impl AcceptHook {
    /// A hook that calls `f` with each token.
    pub fn new(f: impl Fn(String) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Reports `token`.
    pub fn accepted(&self, token: String) {
        (self.0)(token)
    }
}

impl std::fmt::Debug for AcceptHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AcceptHook")
    }
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

    /// Whether it runs here or relays to a provider (the routing policy
    /// chooses between the two kinds).
    fn locality(&self) -> Locality {
        Locality::Local
    }

    /// How many batches it works on at once; the engine's one thread runs
    /// one. Used to estimate a local backend's queue wait.
    fn parallelism(&self) -> usize {
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

/// A backend the registry picked, with the load counters the queue updates.
#[derive(Clone)]
pub struct Picked {
    /// The backend.
    pub backend: Arc<dyn Backend>,
    /// Its in-flight count and measured task time.
    pub load: Arc<LoadStats>,
}

/// The backends a process has, in registration order within each kind
/// (local, upstream), and the policy that orders the two kinds per model.
#[derive(Clone, Default)]
pub struct BackendRegistry {
    backends: Vec<Picked>,
    policy: RoutingPolicy,
    deadline: Option<Duration>,
    /// Serves a model only when no other backend can (`serve --demo`).
    fallback: Option<Picked>,
}

impl BackendRegistry {
    /// An empty registry with the default policy (local first).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a backend after those already registered (lower preference within its kind).
    pub fn register(&mut self, backend: Arc<dyn Backend>) {
        self.backends.push(Picked { backend, load: Arc::default() });
    }

    /// Sets the backend that serves a model no registered backend can serve
    /// (the demo model standing in under `serve --demo`).
    pub fn set_fallback(&mut self, backend: Arc<dyn Backend>) {
        self.fallback = Some(Picked { backend, load: Arc::default() });
    }

    /// Sets the local/upstream policy; `spill` measures tasks against the
    /// policy's `deadline_secs` from submission, or `sync_wait` (the
    /// server's synchronous wait limit) when it has none.
    pub fn set_policy(&mut self, policy: RoutingPolicy, sync_wait: Duration) {
        self.deadline = Some(policy.deadline(sync_wait));
        self.policy = policy;
    }

    /// The policy in effect.
    pub fn policy(&self) -> &RoutingPolicy {
        &self.policy
    }

    /// The backend a new task for `model` would go to, or every backend's
    /// reason why none can. Without a task at hand `spill` counts as local-first.
    pub fn pick(&self, model: &ModelEntry) -> Result<Arc<dyn Backend>, String> {
        self.pick_with(model, None).map(|p| p.backend)
    }

    /// The backend for a claimed task that was submitted `waited` ago:
    /// serving backends ordered by the model's policy, `spill` comparing the
    /// first local backend's expected finish with the task's time left.
    pub fn pick_for(&self, model: &ModelEntry, waited: Duration) -> Result<Picked, String> {
        self.pick_with(model, Some(waited))
    }

    fn pick_with(&self, model: &ModelEntry, waited: Option<Duration>) -> Result<Picked, String> {
        let mut reasons = Vec::new();
        let mut local = None;
        let mut upstream = None;
        for p in &self.backends {
            match p.backend.serves(model) {
                Ok(()) => {
                    let slot = if p.backend.locality() == Locality::Local { &mut local } else { &mut upstream };
                    slot.get_or_insert(p);
                }
                Err(why) => reasons.push(format!("{}: {why}", p.backend.name())),
            }
        }
        let chosen = match (local, upstream) {
            (Some(l), Some(u)) => {
                let finish = l.load.expected_finish(l.backend.parallelism());
                let remaining = waited.zip(self.deadline).map(|(w, d)| d.saturating_sub(w));
                if prefer_upstream(self.policy.routing_for(model), finish, remaining) { u } else { l }
            }
            (Some(only), None) | (None, Some(only)) => only,
            (None, None) => match self.fallback.as_ref().filter(|f| f.backend.serves(model).is_ok()) {
                Some(fallback) => fallback,
                None => {
                    if reasons.is_empty() {
                        reasons.push("no backend is configured".to_string());
                    }
                    return Err(format!("no backend can serve model `{}` here ({})", model.id, reasons.join("; ")));
                }
            },
        };
        Ok(chosen.clone())
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
        f.debug_list().entries(self.backends.iter().map(|p| p.backend.name())).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::routing::Routing;

    #[test]
    fn a_refusal_stored_as_its_text_reads_back_with_its_field() {
        // The worker stores a failed attempt's Display; AppError::restored
        // recovers the field from that text, so the two formats must agree.
        let e = BackendError::Invalid { field: "mask".into(), message: "needs an inpainting checkpoint".into() };
        assert_eq!(e.to_string(), e.to_app_error().message);
        assert_eq!(AppError::restored(ErrorCode::InvalidRequest, e.to_string()).field.as_deref(), Some("mask"));
    }

    struct Fake {
        name: &'static str,
        locality: Locality,
        serves: bool,
    }

    #[async_trait::async_trait]
    impl Backend for Fake {
        fn name(&self) -> &str {
            self.name
        }
        fn serves(&self, _model: &ModelEntry) -> Result<(), String> {
            if self.serves { Ok(()) } else { Err("not installed".into()) }
        }
        fn locality(&self) -> Locality {
            self.locality
        }
        async fn generate(&self, _job: &Job, _progress: &ProgressSink, _cancel: &CancelFlag) -> Result<Generation, BackendError> {
            Err(BackendError::Internal("not used".into()))
        }
    }

    fn registry(local_serves: bool, upstream_serves: bool, default: Routing) -> BackendRegistry {
        let mut r = BackendRegistry::new();
        // upstream registered first on purpose: the policy, not the order, decides between kinds
        r.register(Arc::new(Fake { name: "upstream", locality: Locality::Upstream, serves: upstream_serves }));
        r.register(Arc::new(Fake { name: "engine", locality: Locality::Local, serves: local_serves }));
        r.set_policy(RoutingPolicy { default, ..RoutingPolicy::default() }, Duration::from_secs(60));
        r
    }

    fn model() -> ModelEntry {
        Catalog::builtin().resolve("FLUX.1-dev").unwrap().clone()
    }

    fn picked(r: &BackendRegistry, waited_secs: u64) -> String {
        r.pick_for(&model(), Duration::from_secs(waited_secs)).unwrap().backend.name().to_string()
    }

    #[test]
    fn local_first_and_upstream_first_choose_the_kind_when_both_serve() {
        assert_eq!(picked(&registry(true, true, Routing::LocalFirst), 0), "engine");
        assert_eq!(picked(&registry(true, true, Routing::UpstreamFirst), 0), "upstream");
    }

    #[test]
    fn either_kind_alone_serves_whatever_the_policy() {
        assert_eq!(picked(&registry(false, true, Routing::LocalFirst), 0), "upstream");
        assert_eq!(picked(&registry(true, false, Routing::UpstreamFirst), 0), "engine");
        let err = registry(false, false, Routing::Spill).pick(&model()).err().unwrap();
        assert!(err.contains("engine: not installed") && err.contains("upstream: not installed"), "{err}");
    }

    #[test]
    fn the_fallback_serves_only_what_nothing_else_serves() {
        let mut r = registry(false, true, Routing::LocalFirst);
        r.set_fallback(Arc::new(Fake { name: "demo", locality: Locality::Local, serves: true }));
        assert_eq!(picked(&r, 0), "upstream", "a working upstream channel beats the stand-in");
        let mut r = registry(false, false, Routing::LocalFirst);
        r.set_fallback(Arc::new(Fake { name: "demo", locality: Locality::Local, serves: true }));
        assert_eq!(picked(&r, 0), "demo");
        let mut r = registry(false, false, Routing::LocalFirst);
        r.set_fallback(Arc::new(Fake { name: "demo", locality: Locality::Local, serves: false }));
        let err = r.pick(&model()).err().unwrap();
        assert!(err.contains("engine: not installed"), "{err}");
    }

    #[test]
    fn spill_goes_upstream_once_the_local_queue_would_miss_the_deadline() {
        let r = registry(true, true, Routing::Spill);
        let local = r.pick_for(&model(), Duration::ZERO).unwrap();
        assert_eq!(local.backend.name(), "engine", "no measurement yet: local");
        local.load.record(1, Duration::from_secs(10));
        // 5 in flight: 5 × 10 s ahead + 10 s own run = 60 s, just within a 60 s deadline
        let _busy = local.load.begin(5);
        assert_eq!(picked(&r, 0), "engine");
        // the same load for a task that already waited 1 s in the queue misses it
        assert_eq!(picked(&r, 1), "upstream");
        let _more = local.load.begin(1);
        assert_eq!(picked(&r, 0), "upstream");
        // pick() without a task never spills
        assert_eq!(r.pick(&model()).unwrap().name(), "engine");
    }

    #[test]
    fn per_model_overrides_beat_the_default() {
        let mut r = registry(true, true, Routing::LocalFirst);
        let policy = RoutingPolicy { models: [("flux-dev".to_string(), Routing::UpstreamFirst)].into(), ..RoutingPolicy::default() };
        r.set_policy(policy, Duration::from_secs(60));
        assert_eq!(picked(&r, 0), "upstream");
        let sdxl = Catalog::builtin().resolve("sdxl").unwrap().clone();
        assert_eq!(r.pick(&sdxl).unwrap().name(), "engine");
    }
}
