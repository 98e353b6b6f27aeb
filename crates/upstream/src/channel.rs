//! A live channel: its configuration resolved (key, URL, model names), its
//! HTTP client, its breaker, its `Retry-After` hold and its concurrency
//! limit, plus the one call that runs an adapter under the channel's timeout
//! and turns the answer into checked images.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use imagegate_core::{CancelFlag, Catalog, Generation, TaskSpec};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::breaker::{Admission, BreakerConfig, CircuitBreaker};
use crate::config::{ApiKey, ChannelConfig, ConfigError};
use crate::error::UpstreamError;
use crate::images::{self, RawImage};
use crate::providers::{Adapter, Call, Provider, Resume};

/// Mutable health of a channel.
#[derive(Debug)]
struct Health {
    breaker: CircuitBreaker,
    /// The provider's `Retry-After`: skip the channel until then.
    hold_until: Option<Instant>,
}

/// Why a channel was passed over without a call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Skip {
    /// The provider asked us to wait.
    RetryAfter(Duration),
    /// The breaker is open.
    Open(Duration),
    /// `max_concurrency` tasks are in flight.
    Saturated,
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::RetryAfter(d) => write!(f, "asked to retry after {}s", d.as_secs()),
            Self::Open(d) => write!(f, "circuit open for another {}s", d.as_secs()),
            Self::Saturated => f.write_str("at its concurrency limit"),
        }
    }
}

/// A permission to call a channel: holds its concurrency slot.
pub(crate) struct Ticket {
    _permit: Option<OwnedSemaphorePermit>,
}

/// One configured, running channel.
pub(crate) struct Channel {
    pub name: String,
    pub served_by: String,
    pub provider: Provider,
    pub priority: i32,
    pub weight: u32,
    pub timeout: Duration,
    pub cost_per_image: u64,
    base_url: String,
    key: Option<ApiKey>,
    /// Lower-cased catalog id → the provider's model name.
    models: HashMap<String, String>,
    http: reqwest::Client,
    adapter: Box<dyn Adapter>,
    limit: Option<Arc<Semaphore>>,
    max_concurrency: usize,
    health: Mutex<Health>,
}

impl Channel {
    /// Resolves a channel against the catalog.
    pub fn build(cfg: &ChannelConfig, catalog: &Catalog, default_breaker: BreakerConfig) -> Result<Self, ConfigError> {
        let unknown = |model: &str| ConfigError::UnknownModel { channel: cfg.name.clone(), model: model.to_string() };
        let mut ids: Vec<String> = Vec::new();
        if cfg.models.is_empty() {
            let p = cfg.provider.as_str();
            ids.extend(catalog.models().iter().filter(|m| m.provider.as_deref() == Some(p)).map(|m| m.id.clone()));
        }
        for name in &cfg.models {
            if name == "*" {
                ids.extend(catalog.models().iter().map(|m| m.id.clone()));
            } else {
                ids.push(catalog.resolve(name).ok_or_else(|| unknown(name))?.id.clone());
            }
        }
        let mut overrides = HashMap::new();
        for (from, to) in &cfg.model_map {
            overrides.insert(catalog.resolve(from).ok_or_else(|| unknown(from))?.id.to_lowercase(), to.clone());
        }
        let models = ids
            .into_iter()
            .map(|id| {
                let lower = id.to_lowercase();
                let upstream = overrides.get(&lower).cloned().unwrap_or_else(|| cfg.provider.upstream_model(&id));
                (lower, upstream)
            })
            .collect();
        let timeout = Duration::from_secs(cfg.timeout_secs.max(1));
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(15)))
            .user_agent(concat!("imagegate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::Client { channel: cfg.name.clone(), reason: e.to_string() })?;
        Ok(Self {
            name: cfg.name.clone(),
            served_by: format!("channel:{}", cfg.name),
            provider: cfg.provider,
            priority: cfg.priority,
            weight: cfg.weight,
            timeout,
            cost_per_image: cfg.cost_per_image_millicredits,
            base_url: cfg.resolve_base_url()?,
            key: cfg.resolve_key()?,
            models,
            http,
            adapter: cfg.provider.adapter(),
            limit: (cfg.max_concurrency > 0).then(|| Arc::new(Semaphore::new(cfg.max_concurrency as usize))),
            max_concurrency: cfg.max_concurrency as usize,
            health: Mutex::new(Health { breaker: CircuitBreaker::new(cfg.breaker.unwrap_or(default_breaker)), hold_until: None }),
        })
    }

    fn health(&self) -> MutexGuard<'_, Health> {
        // The state is updated in single assignments; a panic elsewhere while
        // holding the lock cannot leave it half-written.
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Endpoint root, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The channel's HTTP client (its timeout applies).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The channel's key, for the one place that sends it.
    pub fn key(&self) -> Option<&ApiKey> {
        self.key.as_ref()
    }

    /// The provider's name for catalog model `id`, if this channel serves it.
    pub fn upstream_model(&self, id: &str) -> Option<&str> {
        self.models.get(&id.to_lowercase()).map(String::as_str)
    }

    /// Tasks in flight, when the channel has a concurrency limit.
    pub fn in_flight(&self) -> Option<(usize, usize)> {
        let sem = self.limit.as_ref()?;
        let max = self.max_concurrency;
        Some((max - sem.available_permits().min(max), max))
    }

    /// Catalog ids this channel serves (lower-cased), sorted.
    pub fn model_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.models.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Why the channel would be skipped now, without taking anything.
    pub fn skip_reason(&self, now: Instant) -> Option<Skip> {
        let h = self.health();
        if let Some(until) = h.hold_until.filter(|&u| now < u) {
            return Some(Skip::RetryAfter(until - now));
        }
        h.breaker.refused_until(now).map(|until| Skip::Open(until - now))
    }

    /// Takes a concurrency slot and the breaker's admission, or says why not.
    pub fn try_admit(&self, now: Instant) -> Result<(Ticket, Admission), Skip> {
        let mut h = self.health();
        if let Some(until) = h.hold_until.filter(|&u| now < u) {
            return Err(Skip::RetryAfter(until - now));
        }
        let permit = match &self.limit {
            Some(sem) => Some(sem.clone().try_acquire_owned().map_err(|_| Skip::Saturated)?),
            None => None,
        };
        match h.breaker.admit(now) {
            Admission::Rejected { until } => Err(Skip::Open(until.saturating_duration_since(now))),
            a => Ok((Ticket { _permit: permit }, a)),
        }
    }

    /// A concurrency slot for resuming a job the provider accepted on an
    /// earlier attempt. Unlike [`Channel::try_admit`] it waits for the slot
    /// and consults neither the breaker nor the hold: the task cannot go to
    /// another channel once this one accepted (and bills) its job. It still
    /// counts against `max_concurrency`, since the job is running at the
    /// provider and the resumed call may submit the task's remaining images.
    pub async fn occupy(&self, cancel: &CancelFlag) -> Result<Ticket, UpstreamError> {
        let Some(sem) = &self.limit else { return Ok(Ticket { _permit: None }) };
        tokio::select! {
            // The semaphore is never closed, so this only ever yields a permit.
            permit = sem.clone().acquire_owned() => Ok(Ticket { _permit: permit.ok() }),
            () = cancelled(cancel) => Err(UpstreamError::Cancelled),
        }
    }

    /// Feeds a call's outcome to the breaker and the `Retry-After` hold.
    pub fn record(&self, now: Instant, outcome: Result<(), &UpstreamError>) {
        let mut h = self.health();
        match outcome {
            Ok(()) => h.breaker.on_success(now),
            // no verdict on the channel: hand a probe slot back
            Err(UpstreamError::Cancelled | UpstreamError::Invalid { .. }) => h.breaker.on_abandon(now),
            Err(e) if e.counts_against_channel() => h.breaker.on_failure(now),
            // the channel answered sensibly (a 4xx about the request, moderation)
            Err(_) => h.breaker.on_success(now),
        }
        if let Some(wait) = outcome.err().and_then(UpstreamError::retry_after) {
            h.hold_until = Some(now + wait);
        }
    }

    /// Runs one task on this channel: the adapter under the channel timeout,
    /// then result downloads, then header checks of every image.
    pub async fn call(&self, spec: &TaskSpec, cancel: &CancelFlag, poll_interval: Duration, resume: Resume<'_>) -> Result<Generation, UpstreamError> {
        let model = self
            .upstream_model(&spec.model)
            .ok_or_else(|| UpstreamError::Invalid { field: "model".into(), message: format!("channel {} does not serve {}", self.name, spec.model) })?;
        if spec.init_image.as_ref().is_some_and(|i| i.mask.is_some()) && !self.adapter.takes_masks() {
            return Err(UpstreamError::Invalid { field: "mask".into(), message: format!("channel {}'s provider API takes no inpainting mask here", self.name) });
        }
        let accepted = OnceLock::new();
        let call =
            Call { http: &self.http, base_url: &self.base_url, key: self.key.as_ref(), model, spec, cancel, poll_interval, accepted: &accepted, channel: &self.name, resume };
        if resume.state.is_some() {
            // Picked up from an earlier attempt: the provider accepted it then.
            call.accept("resumed job");
        }
        let work = async {
            let out = self.adapter.generate(&call).await?;
            // Past this point the provider has done (and billed) the work.
            call.accept(out.request_id.as_deref().unwrap_or("synchronous request"));
            let mut images = Vec::with_capacity(out.images.len());
            for (n, raw) in out.images.into_iter().enumerate() {
                let fallback_seed = spec.seed.wrapping_add(n as u64);
                let (bytes, seed) = match raw {
                    RawImage::Bytes { bytes, seed } => (bytes, seed),
                    RawImage::Url { url, seed } => (crate::http::download(&self.http, &url).await?, seed),
                };
                images.push(images::to_generated(bytes, seed.unwrap_or(fallback_seed))?);
            }
            let mut note = out.note;
            if images.len() < spec.count as usize {
                // e.g. Imagen drops filtered images from its answer
                let short = format!("the provider returned {} of {} images", images.len(), spec.count);
                note = Some(note.map_or(short.clone(), |n| format!("{n}; {short}")));
            }
            Ok::<_, UpstreamError>(Generation { images, served_by: self.served_by.clone(), note, provider_request_id: out.request_id })
        };
        let result = tokio::select! {
            r = tokio::time::timeout(self.timeout, work) => match r {
                Ok(r) => r,
                Err(_) => Err(UpstreamError::Timeout(format!("channel {} took longer than {}s", self.name, self.timeout.as_secs()))),
            },
            () = cancelled(cancel) => Err(UpstreamError::Cancelled),
        };
        result.map_err(|e| match accepted.get() {
            Some(job) => e.after_accept(job),
            None => e,
        })
    }
}

/// Resolves once `cancel` is raised. The flag is a plain atomic without a
/// wake-up, so it is sampled; a quarter second is quick enough for a user's
/// cancel and costs nothing next to an upstream call.
async fn cancelled(cancel: &CancelFlag) {
    while !cancel.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
