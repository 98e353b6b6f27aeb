//! Queue tuning knobs, with the defaults a single machine wants.

use std::time::Duration;

use imagegate_core::seconds::check_seconds;

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
    /// On shutdown, how long runs in flight may take to finish before they
    /// are halted and their tasks given back to the queue (see `drain`).
    pub drain_secs: f64,
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
            // under the 30 s that orchestrators usually wait before killing
            drain_secs: 25.0,
        }
    }
}

impl QueueConfig {
    /// Rejects durations that would stall or panic the timers built from
    /// them (a negative, infinite or NaN number of seconds), naming the field.
    pub fn check(&self) -> Result<(), String> {
        let seconds = [
            ("lease_secs", self.lease_secs, false),
            ("sweep_secs", self.sweep_secs, false),
            ("retention_days", self.retention_days, false),
            ("retention_sweep_secs", self.retention_sweep_secs, false),
            ("drain_secs", self.drain_secs, true),
        ];
        seconds.into_iter().try_for_each(|(field, value, zero_ok)| check_seconds(field, value, zero_ok))
    }

    /// Lease length in milliseconds.
    pub fn lease_ms(&self) -> i64 {
        (self.lease_secs * 1000.0) as i64
    }

    /// Heartbeat period: a third of the lease, so two can be missed.
    pub fn heartbeat_every(&self) -> Duration {
        Duration::from_secs_f64((self.lease_secs / 3.0).max(0.05))
    }

    /// Shutdown grace for runs in flight.
    pub fn drain(&self) -> Duration {
        Duration::from_secs_f64(self.drain_secs.max(0.0))
    }

    /// Retention in milliseconds.
    pub fn retention_ms(&self) -> i64 {
        (self.retention_days * 86_400_000.0) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_the_field_that_would_break_a_timer() {
        assert_eq!(QueueConfig::default().check(), Ok(()));
        assert_eq!(QueueConfig { drain_secs: 0.0, ..QueueConfig::default() }.check(), Ok(()));
        let err = QueueConfig { drain_secs: f64::INFINITY, ..QueueConfig::default() }.check().unwrap_err();
        assert!(err.starts_with("drain_secs must be a finite number zero or more"), "{err}");
        let err = QueueConfig { lease_secs: 0.0, ..QueueConfig::default() }.check().unwrap_err();
        assert!(err.starts_with("lease_secs must be a finite number more than zero"), "{err}");
        assert!(QueueConfig { sweep_secs: f64::NAN, ..QueueConfig::default() }.check().unwrap_err().starts_with("sweep_secs"));
        assert!(QueueConfig { retention_days: -1.0, ..QueueConfig::default() }.check().unwrap_err().starts_with("retention_days"));
    }
}
