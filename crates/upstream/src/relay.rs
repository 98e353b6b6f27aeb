//! [`UpstreamBackend`]: the [`Backend`] that relays tasks to channels. For
//! each task it orders the channels serving the model (priority, then
//! weight), skips those held by `Retry-After`, an open breaker or a full
//! concurrency limit, and calls the rest in turn until one succeeds, a
//! failure says no other channel would do better (a 4xx about the request,
//! moderation, a job the provider already accepted), or `max_attempts`
//! calls have been made. A channel whose API cannot express the task
//! (`Invalid`, found before any call) is passed over without using an attempt.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use imagegate_core::backend::Job;
use imagegate_core::{Backend, BackendError, CancelFlag, Catalog, Generation, ModelEntry, Progress, ProgressSink};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::channel::Channel;
use crate::clock::{Clock, SystemClock};
use crate::config::{ConfigError, UpstreamConfig};
use crate::picker::{self, Candidate};
use crate::providers::{Resume, ResumeToken};

/// One channel's health as [`UpstreamBackend::status`] reports it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ChannelStatus {
    /// Channel name.
    pub name: String,
    /// Its provider API.
    pub provider: crate::providers::Provider,
    /// Routing priority.
    pub priority: i32,
    /// Routing weight.
    pub weight: u32,
    /// Catalog ids served (lower-cased).
    pub models: Vec<String>,
    /// Whether a task could be sent now.
    pub available: bool,
    /// Why not (breaker open, Retry-After), when not.
    pub reason: Option<String>,
    /// Tasks in flight, for channels with a concurrency limit.
    pub in_flight: Option<usize>,
    /// That limit.
    pub max_concurrency: Option<usize>,
}

/// Relays generation to the configured upstream channels.
pub struct UpstreamBackend {
    channels: Vec<Channel>,
    max_attempts: u32,
    poll_interval: Duration,
    clock: Arc<dyn Clock>,
    rng: Mutex<StdRng>,
}

impl std::fmt::Debug for UpstreamBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBackend").field("channels", &self.channel_names()).field("max_attempts", &self.max_attempts).finish()
    }
}

impl UpstreamBackend {
    /// Picks up the job channel `idx` accepted on an earlier attempt of
    /// this task. No failover: the provider accepted (and bills) that job,
    /// so whatever becomes of it is the task's outcome.
    async fn resume(&self, job: &Job, idx: usize, state: &serde_json::Value, progress: &ProgressSink, cancel: &CancelFlag) -> Result<Generation, BackendError> {
        let ch = &self.channels[idx];
        tracing::info!(task = %job.task_id, channel = %ch.name, "resuming the job the provider accepted on an earlier attempt");
        let ticket = ch.occupy(cancel).await.map_err(|e| e.into_backend_error(&ch.name))?;
        let result = ch.call(&job.spec, cancel, self.poll_interval, Resume { state: Some(state), on_accept: job.on_accept.as_ref() }).await;
        drop(ticket);
        ch.record(self.clock.now(), result.as_ref().map(|_| ()));
        match result {
            Ok(generation) => {
                progress(Progress { task_id: job.task_id.clone(), step: 1, total: 1 });
                Ok(generation)
            }
            Err(e) => Err(e.into_backend_error(&ch.name)),
        }
    }

    /// Builds the backend from the `[upstream]` config, resolving every
    /// channel's models against `catalog` and reading keys from env or files.
    pub fn from_config(config: &UpstreamConfig, catalog: &Catalog) -> Result<Self, ConfigError> {
        Self::with_clock(config, catalog, Arc::new(SystemClock))
    }

    /// As [`Self::from_config`], with the clock breakers and holds read (tests move it by hand).
    pub fn with_clock(config: &UpstreamConfig, catalog: &Catalog, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        let mut channels: Vec<Channel> = Vec::new();
        for cfg in config.channels.iter().filter(|c| c.enabled) {
            if channels.iter().any(|c| c.name == cfg.name) {
                return Err(ConfigError::DuplicateName(cfg.name.clone()));
            }
            channels.push(Channel::build(cfg, catalog, config.breaker)?);
        }
        Ok(Self {
            channels,
            max_attempts: config.max_attempts.max(1),
            poll_interval: Duration::from_millis(config.poll_interval_ms),
            clock,
            rng: Mutex::new(StdRng::from_os_rng()),
        })
    }

    /// Names of the enabled channels, in config order.
    pub fn channel_names(&self) -> Vec<&str> {
        self.channels.iter().map(|c| c.name.as_str()).collect()
    }

    /// The enabled channel called `name`.
    pub(crate) fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.name == name)
    }

    /// Whether any channel is configured.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// What `images` images cost on the channel recorded as `served_by`
    /// (`channel:<name>`), in milli-credits, for margin reports.
    pub fn cost_millicredits(&self, served_by: &str, images: u32) -> Option<u64> {
        let ch = self.channels.iter().find(|c| c.served_by == served_by)?;
        Some(ch.cost_per_image * u64::from(images))
    }

    /// A snapshot of every channel's health, for admin pages and logs.
    pub fn status(&self) -> Vec<ChannelStatus> {
        let now = self.clock.now();
        self.channels
            .iter()
            .map(|c| ChannelStatus {
                name: c.name.clone(),
                provider: c.provider,
                priority: c.priority,
                weight: c.weight,
                models: c.model_ids(),
                available: c.skip_reason(now).is_none(),
                reason: c.skip_reason(now).map(|s| s.to_string()),
                in_flight: c.in_flight().map(|(n, _)| n),
                max_concurrency: c.in_flight().map(|(_, m)| m),
            })
            .collect()
    }

    fn serving(&self, model_id: &str) -> Vec<usize> {
        (0..self.channels.len()).filter(|&i| self.channels[i].upstream_model(model_id).is_some()).collect()
    }
}

#[async_trait::async_trait]
impl Backend for UpstreamBackend {
    fn name(&self) -> &str {
        "upstream"
    }

    fn locality(&self) -> imagegate_core::Locality {
        imagegate_core::Locality::Upstream
    }

    fn max_batch(&self) -> usize {
        // see generate_batch: a claimed batch costs no more than its slowest task
        64
    }

    fn parallelism(&self) -> usize {
        usize::MAX
    }

    /// Relay calls are independent provider requests: the tasks of a batch
    /// run concurrently. (The default runs them one after another, so the
    /// fourth task of a batch would wait for three provider round trips.)
    async fn generate_batch(&self, jobs: &[Job], progress: &ProgressSink, cancel: &CancelFlag) -> Vec<Result<Generation, BackendError>> {
        futures::future::join_all(jobs.iter().map(|job| self.generate(job, progress, cancel))).await
    }

    fn serves(&self, model: &ModelEntry) -> Result<(), String> {
        let serving = self.serving(&model.id);
        if serving.is_empty() {
            return Err(format!("no upstream channel serves {}", model.id));
        }
        let now = self.clock.now();
        let mut reasons = Vec::new();
        for &i in &serving {
            match self.channels[i].skip_reason(now) {
                None => return Ok(()),
                Some(why) => reasons.push(format!("{}: {why}", self.channels[i].name)),
            }
        }
        Err(format!("every channel serving {} is unavailable ({})", model.id, reasons.join("; ")))
    }

    async fn generate(&self, job: &Job, progress: &ProgressSink, cancel: &CancelFlag) -> Result<Generation, BackendError> {
        let spec = &job.spec;
        let serving = self.serving(&spec.model);
        if serving.is_empty() {
            return Err(BackendError::Unavailable(format!("no upstream channel serves {}", spec.model)));
        }
        let token = job.resume.as_deref().and_then(|t| serde_json::from_str::<ResumeToken>(t).ok());
        if let Some(token) = &token {
            match serving.iter().find(|&&i| self.channels[i].name == token.channel) {
                Some(&idx) => return self.resume(job, idx, &token.state, progress, cancel).await,
                None => tracing::warn!(task = %job.task_id, channel = %token.channel, "the channel that accepted this task's job no longer serves its model; submitting anew"),
            }
        }
        // Nothing to pick up: a new submission, whose acceptance is reported.
        let fresh = Resume { state: None, on_accept: job.on_accept.as_ref() };
        let candidates: Vec<Candidate> = serving.iter().map(|&i| Candidate { index: i, priority: self.channels[i].priority, weight: self.channels[i].weight }).collect();
        let order = {
            // the lock only guards the RNG state; a poisoned one is still a fine RNG
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            picker::order(&candidates, &mut *rng)
        };
        let mut attempts = 0;
        let mut skipped = Vec::new();
        let mut failures = Vec::new();
        let mut invalid = None;
        for idx in order {
            if attempts >= self.max_attempts {
                break;
            }
            if cancel.is_cancelled() {
                return Err(BackendError::Cancelled);
            }
            let ch = &self.channels[idx];
            let (ticket, admission) = match ch.try_admit(self.clock.now()) {
                Ok(t) => t,
                Err(why) => {
                    tracing::debug!(task = %job.task_id, channel = %ch.name, %why, "channel skipped");
                    skipped.push(format!("{}: {why}", ch.name));
                    continue;
                }
            };
            attempts += 1;
            tracing::debug!(task = %job.task_id, channel = %ch.name, provider = ch.provider.as_str(), ?admission, attempt = attempts, "relaying");
            let result = ch.call(spec, cancel, self.poll_interval, fresh).await;
            drop(ticket);
            ch.record(self.clock.now(), result.as_ref().map(|_| ()));
            match result {
                Ok(generation) => {
                    tracing::info!(task = %job.task_id, channel = %ch.name, images = generation.images.len(), request = ?generation.provider_request_id, "upstream served");
                    progress(Progress { task_id: job.task_id.clone(), step: 1, total: 1 });
                    return Ok(generation);
                }
                Err(e @ crate::error::UpstreamError::Invalid { .. }) => {
                    // This provider's API cannot express the task; another
                    // channel's may, and no provider call was made or billed.
                    attempts -= 1;
                    tracing::debug!(task = %job.task_id, channel = %ch.name, error = %e, "channel cannot express the task");
                    invalid.get_or_insert(e.into_backend_error(&ch.name));
                }
                Err(e) if e.fails_over() => {
                    tracing::warn!(task = %job.task_id, channel = %ch.name, error = %e, "channel failed; trying the next");
                    failures.push(format!("{}: {e}", ch.name));
                }
                Err(e) => {
                    tracing::warn!(task = %job.task_id, channel = %ch.name, error = %e, "upstream failed");
                    return Err(e.into_backend_error(&ch.name));
                }
            }
        }
        if failures.is_empty() {
            if let Some(e) = invalid {
                return Err(e);
            }
            return Err(BackendError::Unavailable(format!("every channel serving {} is unavailable ({})", spec.model, skipped.join("; "))));
        }
        failures.extend(skipped);
        Err(BackendError::Upstream { provider: "upstream".into(), message: failures.join("; "), retryable: true })
    }
}
