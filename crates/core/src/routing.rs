//! Local versus upstream: which kind of backend a task goes to when a model
//! has both local weights and upstream channels. The policy is data from the
//! config (`[models.routing]`), globally and per model:
//!
//! - `local-first` (default): the local engine when it serves the model,
//!   else the channels;
//! - `upstream-first`: the channels when one is available, else local;
//! - `spill`: local, unless the local backend's expected finish for this
//!   task would pass the task's deadline; then upstream.
//!
//! The expected finish is an estimate, deliberately simple so an operator can
//! check it by hand: `in_flight × mean_task_time / parallelism + mean_task_time`,
//! where `in_flight` counts the tasks handed to the local backend and not yet
//! finished (running or waiting for its thread), `mean_task_time` is an
//! exponentially weighted mean (α = 0.3) of measured batch time divided by
//! batch size, and `parallelism` is how many batches the backend runs at
//! once (1 for the engine). Until a first local batch has been measured there
//! is no estimate and `spill` stays local. The deadline is the task's
//! submission time plus `deadline_secs` (by default the synchronous wait
//! limit, i.e. when a waiting client would get 504), so time a task already
//! spent in the queue counts against it.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::catalog::{Catalog, ModelEntry};

/// Which kind of backend to prefer for a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Routing {
    /// Local weights when installed, else upstream (today's behaviour).
    #[default]
    LocalFirst,
    /// Upstream channels when one is available, else local.
    UpstreamFirst,
    /// Local unless its expected finish passes the task's deadline.
    Spill,
}

/// Where a backend runs, for the routing policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locality {
    /// On this deployment's hardware (the engine, the synthetic backend).
    Local,
    /// At a provider, through channels.
    Upstream,
}

/// The `[models.routing]` config: a default policy, per-model overrides and
/// the deadline `spill` measures against.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingPolicy {
    /// Policy for models without an override.
    pub default: Routing,
    /// Seconds after submission by which a task should be done, for
    /// `spill`; `None`: the server's synchronous wait limit.
    pub deadline_secs: Option<f64>,
    /// Catalog id or alias → policy.
    pub models: BTreeMap<String, Routing>,
}

impl RoutingPolicy {
    /// The policy for `model` (overrides match its id or any alias, ignoring case).
    pub fn routing_for(&self, model: &ModelEntry) -> Routing {
        self.models.iter().find(|(name, _)| name.eq_ignore_ascii_case(&model.id) || model.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))).map_or(self.default, |(_, r)| *r)
    }

    /// Checks every override names a catalog model; the error names the entry.
    pub fn validate(&self, catalog: &Catalog) -> Result<(), String> {
        if let Some(d) = self.deadline_secs {
            crate::seconds::check_seconds("models.routing.deadline_secs", d, false)?;
        }
        match self.models.keys().find(|name| catalog.resolve(name).is_none()) {
            Some(name) => Err(format!("models.routing.models: model `{name}` is not in the catalog")),
            None => Ok(()),
        }
    }

    /// The deadline, falling back to `sync_wait`.
    pub fn deadline(&self, sync_wait: Duration) -> Duration {
        self.deadline_secs.map_or(sync_wait, Duration::from_secs_f64)
    }
}

/// Whether to try upstream before local for one task. `local_finish` is the
/// local backend's expected finish for a new task (`None`: no estimate yet),
/// `remaining` the time left before the task's deadline (`None`: no deadline).
pub fn prefer_upstream(routing: Routing, local_finish: Option<Duration>, remaining: Option<Duration>) -> bool {
    match routing {
        Routing::LocalFirst => false,
        Routing::UpstreamFirst => true,
        Routing::Spill => matches!((local_finish, remaining), (Some(f), Some(r)) if f > r),
    }
}

/// Weight of the newest measurement in the mean task time.
const ALPHA: f64 = 0.3;

/// Load of one backend: tasks in flight and the measured mean time per task.
#[derive(Debug, Default)]
pub struct LoadStats {
    in_flight: AtomicUsize,
    mean_secs: Mutex<Option<f64>>,
}

/// Counts tasks as in flight until dropped.
#[derive(Debug)]
pub struct InFlight<'a> {
    stats: &'a LoadStats,
    tasks: usize,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.stats.in_flight.fetch_sub(self.tasks, Ordering::Relaxed);
    }
}

impl LoadStats {
    /// Marks `tasks` as handed to the backend until the guard drops.
    pub fn begin(&self, tasks: usize) -> InFlight<'_> {
        self.in_flight.fetch_add(tasks, Ordering::Relaxed);
        InFlight { stats: self, tasks }
    }

    /// Tasks handed to the backend and not finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Records that a batch of `tasks` took `elapsed`.
    pub fn record(&self, tasks: usize, elapsed: Duration) {
        if tasks == 0 {
            return;
        }
        let per_task = elapsed.as_secs_f64() / tasks as f64;
        // plain numbers under the lock; a poisoned one still holds a valid mean
        let mut mean = self.mean_secs.lock().unwrap_or_else(|e| e.into_inner());
        *mean = Some(match *mean {
            Some(m) => m + ALPHA * (per_task - m),
            None => per_task,
        });
    }

    /// The measured mean time per task, once there is one.
    pub fn mean_task_time(&self) -> Option<Duration> {
        let mean = *self.mean_secs.lock().unwrap_or_else(|e| e.into_inner());
        mean.map(Duration::from_secs_f64)
    }

    /// When a task handed over now would be done: the queue ahead of it
    /// (`in_flight × mean / parallelism`) plus its own run (`mean`).
    pub fn expected_finish(&self, parallelism: usize) -> Option<Duration> {
        let mean = self.mean_task_time()?;
        let ahead = mean.mul_f64(self.in_flight() as f64 / parallelism.max(1) as f64);
        Some(ahead + mean)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn policies_parse_and_default_to_local_first() {
        let p: RoutingPolicy = toml::from_str("default = 'spill'\ndeadline_secs = 30\nmodels = { 'FLUX.1-dev' = 'upstream-first', sdxl = 'local-first' }").unwrap();
        assert_eq!((p.default, p.deadline_secs), (Routing::Spill, Some(30.0)));
        let c = Catalog::builtin();
        assert_eq!(p.routing_for(c.resolve("flux-dev").unwrap()), Routing::UpstreamFirst);
        assert_eq!(p.routing_for(c.resolve("stable-diffusion-xl-1024-v1-0").unwrap()), Routing::LocalFirst, "aliases match");
        assert_eq!(p.routing_for(c.resolve("FLUX.1-schnell").unwrap()), Routing::Spill);
        assert_eq!(RoutingPolicy::default().routing_for(c.resolve("sdxl").unwrap()), Routing::LocalFirst);
        assert!(toml::from_str::<RoutingPolicy>("default = 'cheapest'").is_err());
    }

    #[test]
    fn unknown_models_and_bad_deadlines_are_named() {
        let c = Catalog::builtin();
        let p: RoutingPolicy = toml::from_str("models = { 'no-such-model' = 'spill' }").unwrap();
        assert!(p.validate(&c).unwrap_err().contains("no-such-model"));
        let p = RoutingPolicy { deadline_secs: Some(0.0), ..RoutingPolicy::default() };
        assert!(p.validate(&c).unwrap_err().contains("deadline_secs"));
        assert_eq!(p.deadline(secs(120.0)), secs(0.0));
        assert_eq!(RoutingPolicy::default().deadline(secs(120.0)), secs(120.0));
    }

    #[test]
    fn spill_goes_upstream_only_when_the_local_finish_passes_the_deadline() {
        assert!(!prefer_upstream(Routing::Spill, Some(secs(10.0)), Some(secs(30.0))));
        assert!(prefer_upstream(Routing::Spill, Some(secs(31.0)), Some(secs(30.0))));
        assert!(!prefer_upstream(Routing::Spill, None, Some(secs(0.0))), "no estimate yet: stay local");
        assert!(!prefer_upstream(Routing::Spill, Some(secs(99.0)), None), "no deadline: stay local");
        assert!(!prefer_upstream(Routing::LocalFirst, Some(secs(99.0)), Some(secs(1.0))));
        assert!(prefer_upstream(Routing::UpstreamFirst, None, None));
    }

    #[test]
    fn expected_finish_is_queue_ahead_plus_own_run() {
        let s = LoadStats::default();
        assert_eq!(s.expected_finish(1), None, "nothing measured");
        s.record(4, secs(8.0)); // 2 s per task
        assert_eq!(s.expected_finish(1), Some(secs(2.0)), "idle: just its own run");
        let _a = s.begin(4);
        let b = s.begin(2);
        assert_eq!(s.in_flight(), 6);
        assert_eq!(s.expected_finish(1), Some(secs(14.0)));
        assert_eq!(s.expected_finish(2), Some(secs(8.0)));
        drop(b);
        assert_eq!(s.in_flight(), 4);
    }

    #[test]
    fn the_mean_follows_new_measurements_with_weight_alpha() {
        let s = LoadStats::default();
        s.record(1, secs(10.0));
        s.record(1, secs(20.0));
        let m = s.mean_task_time().unwrap().as_secs_f64();
        assert!((m - 13.0).abs() < 1e-9, "{m}");
        s.record(0, secs(100.0));
        assert!((s.mean_task_time().unwrap().as_secs_f64() - 13.0).abs() < 1e-9, "empty batches are ignored");
    }
}
