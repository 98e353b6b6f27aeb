//! Queue tuning knobs, with the defaults a single machine wants.

use std::time::Duration;

/// How workers claim, lease, retry and clean up.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Concurrent worker loops in this process (0: none, e.g. API-only nodes).
    pub workers: usize,
    /// Lease length; a worker that stops heartbeating for this long loses its tasks.
    pub lease_secs: f64,
    /// Attempts before a task fails for good.
    pub max_attempts: u32,
    /// Most tasks claimed as one batch.
    pub batch_max: u32,
    /// Poll interval when no wake-up arrives (tasks from other processes).
    pub poll_ms: u64,
    /// How often lapsed leases are looked for.
    pub sweep_secs: f64,
    /// How long finished tasks keep their images.
    pub retention_days: f64,
    /// How often the retention sweeper runs.
    pub retention_sweep_secs: f64,
    /// Run a synchronous request's task at once, in the request's process,
    /// when an upstream channel serves it, instead of queueing it for a
    /// worker loop to claim (see `direct`). Needs `workers` > 0.
    pub start_relays_at_once: bool,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            workers: 8,
            lease_secs: 30.0,
            max_attempts: 3,
            batch_max: 4,
            poll_ms: 500,
            sweep_secs: 5.0,
            retention_days: 7.0,
            retention_sweep_secs: 3600.0,
            start_relays_at_once: true,
        }
    }
}

impl QueueConfig {
    /// Lease length in milliseconds.
    pub fn lease_ms(&self) -> i64 {
        (self.lease_secs * 1000.0) as i64
    }

    /// Heartbeat period: a third of the lease, so two can be missed.
    pub fn heartbeat_every(&self) -> Duration {
        Duration::from_secs_f64((self.lease_secs / 3.0).max(0.05))
    }

    /// Retention in milliseconds.
    pub fn retention_ms(&self) -> i64 {
        (self.retention_days * 86_400_000.0) as i64
    }
}
