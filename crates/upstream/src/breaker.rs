//! A per-channel circuit breaker: a pure state machine driven by the
//! caller's clock. Closed channels take traffic; `threshold` failures within
//! a sliding `window` (successes in between do not reset the count) open
//! the breaker for `cooldown`; then one probe call is let
//! through (half-open) and its outcome closes or re-opens the breaker. This
//! replaces one-strike disabling: a single blip never takes a channel out.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Breaker tuning, shared by all channels unless a channel overrides it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct BreakerConfig {
    /// Failures within `window_secs` that open the breaker.
    pub failure_threshold: u32,
    /// The sliding window failures are counted in, in seconds.
    pub window_secs: u64,
    /// How long an open breaker rejects calls before a probe, in seconds.
    pub cooldown_secs: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self { failure_threshold: 5, window_secs: 60, cooldown_secs: 30 }
    }
}

/// Whether a call may go to the channel now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: go ahead.
    Allowed,
    /// Half-open: this call is the single probe; its outcome decides.
    Probe,
    /// Open (or a probe is already out): skip the channel until the instant.
    Rejected {
        /// When the next probe may go.
        until: Instant,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Closed { failures: VecDeque<Instant> },
    Open { until: Instant },
    HalfOpen { probe_started: Instant },
}

/// The breaker of one channel.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: State,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Self { config, state: State::Closed { failures: VecDeque::new() } }
    }

    fn cooldown(&self) -> Duration {
        Duration::from_secs(self.config.cooldown_secs)
    }

    /// Asks to send a call at `now`; a `Probe` answer must be followed by
    /// [`Self::on_success`] or [`Self::on_failure`] (or [`Self::on_abandon`]).
    pub fn admit(&mut self, now: Instant) -> Admission {
        match &self.state {
            State::Closed { .. } => Admission::Allowed,
            State::Open { until } if now < *until => Admission::Rejected { until: *until },
            State::Open { .. } => {
                self.state = State::HalfOpen { probe_started: now };
                Admission::Probe
            }
            // A probe whose caller vanished (its future was dropped) must not
            // wedge the channel: after another cool-down a new probe may go.
            State::HalfOpen { probe_started } if now >= *probe_started + self.cooldown() => {
                self.state = State::HalfOpen { probe_started: now };
                Admission::Probe
            }
            State::HalfOpen { probe_started } => Admission::Rejected { until: *probe_started + self.cooldown() },
        }
    }

    /// The channel answered (including a 4xx about the request: it is up).
    /// A good probe closes the breaker; in the closed state successes do
    /// not erase recent failures, so a channel failing every other call
    /// still opens once `threshold` failures fall within the window.
    pub fn on_success(&mut self, _now: Instant) {
        // Only the probe decides: a late success from a call admitted before
        // the breaker opened does not close it.
        if matches!(self.state, State::HalfOpen { .. }) {
            self.state = State::Closed { failures: VecDeque::new() };
        }
    }

    /// The channel failed in a way that says it is unhealthy (429, 5xx, timeout, connection).
    pub fn on_failure(&mut self, now: Instant) {
        let window = Duration::from_secs(self.config.window_secs);
        let threshold = self.config.failure_threshold.max(1) as usize;
        let open_until = now + self.cooldown();
        match &mut self.state {
            State::Closed { failures } => {
                failures.push_back(now);
                while failures.front().is_some_and(|&t| now.duration_since(t) > window) {
                    failures.pop_front();
                }
                if failures.len() >= threshold {
                    self.state = State::Open { until: open_until };
                }
            }
            State::HalfOpen { .. } => self.state = State::Open { until: open_until },
            // A late failure from a call admitted before the breaker opened
            // does not extend the cool-down.
            State::Open { .. } => {}
        }
    }

    /// An admitted call ended without a verdict (cancelled): a probe slot is
    /// handed back so another caller may probe at once.
    pub fn on_abandon(&mut self, now: Instant) {
        if matches!(self.state, State::HalfOpen { .. }) {
            self.state = State::Open { until: now };
        }
    }

    /// Whether calls are currently refused (open, or half-open with a probe out).
    pub fn is_open(&self, now: Instant) -> bool {
        self.refused_until(now).is_some()
    }

    /// Until when calls are refused, if they are now.
    pub fn refused_until(&self, now: Instant) -> Option<Instant> {
        match &self.state {
            State::Closed { .. } => None,
            State::Open { until } => (now < *until).then_some(*until),
            State::HalfOpen { probe_started } => {
                let until = *probe_started + self.cooldown();
                (now < until).then_some(until)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig { failure_threshold: 3, window_secs: 10, cooldown_secs: 30 }
    }

    #[test]
    fn opens_after_threshold_failures_within_the_window() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(cfg());
        b.on_failure(t0);
        b.on_failure(t0 + Duration::from_secs(1));
        assert_eq!(b.admit(t0 + Duration::from_secs(2)), Admission::Allowed);
        b.on_failure(t0 + Duration::from_secs(2));
        assert_eq!(b.admit(t0 + Duration::from_secs(3)), Admission::Rejected { until: t0 + Duration::from_secs(32) });
    }

    #[test]
    fn interleaved_successes_do_not_hide_a_flaky_channel() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(cfg());
        for i in 0..3 {
            b.on_failure(t0 + Duration::from_secs(i));
            b.on_success(t0 + Duration::from_secs(i));
        }
        assert!(b.is_open(t0 + Duration::from_secs(3)));
    }

    #[test]
    fn failures_outside_the_window_are_forgotten() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(cfg());
        b.on_failure(t0);
        b.on_failure(t0 + Duration::from_secs(1));
        b.on_failure(t0 + Duration::from_secs(20));
        assert_eq!(b.admit(t0 + Duration::from_secs(21)), Admission::Allowed);
    }

    #[test]
    fn one_probe_after_cooldown_and_success_closes() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(cfg());
        for i in 0..3 {
            b.on_failure(t0 + Duration::from_secs(i));
        }
        let after = t0 + Duration::from_secs(33);
        assert_eq!(b.admit(after), Admission::Probe);
        assert!(matches!(b.admit(after), Admission::Rejected { .. }), "only one probe at a time");
        b.on_success(after);
        assert_eq!(b.admit(after), Admission::Allowed);
        assert!(!b.is_open(after));
    }

    #[test]
    fn failed_probe_reopens_for_another_cooldown() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(cfg());
        for _ in 0..3 {
            b.on_failure(t0);
        }
        let probe_at = t0 + Duration::from_secs(30);
        assert_eq!(b.admit(probe_at), Admission::Probe);
        b.on_failure(probe_at);
        assert_eq!(b.admit(probe_at + Duration::from_secs(1)), Admission::Rejected { until: probe_at + Duration::from_secs(30) });
        assert_eq!(b.admit(probe_at + Duration::from_secs(30)), Admission::Probe);
    }

    #[test]
    fn an_abandoned_probe_frees_the_slot_and_a_lost_one_expires() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(cfg());
        for _ in 0..3 {
            b.on_failure(t0);
        }
        let t1 = t0 + Duration::from_secs(30);
        assert_eq!(b.admit(t1), Admission::Probe);
        b.on_abandon(t1);
        assert_eq!(b.admit(t1), Admission::Probe);
        // never reported back: a new probe is allowed one cool-down later
        assert!(matches!(b.admit(t1 + Duration::from_secs(29)), Admission::Rejected { .. }));
        assert_eq!(b.admit(t1 + Duration::from_secs(30)), Admission::Probe);
    }
}
