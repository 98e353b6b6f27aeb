//! Per-key rate limits, by plan: a GCRA limiter (governor) per plan, keyed
//! by key id, allowing a burst of the plan's per-minute rate and refilling
//! at that rate. Admin keys are not limited.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use imagegate_core::{AppError, ErrorCode, PlanTable};
use imagegate_store::Caller;

/// Rate limiters, one per plan, created on first use.
#[derive(Default)]
pub struct RateLimits {
    limiters: Mutex<HashMap<String, Arc<DefaultKeyedRateLimiter<String>>>>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RateLimits")
    }
}

impl RateLimits {
    fn limiter(&self, plan: &str, per_minute: NonZeroU32) -> Arc<DefaultKeyedRateLimiter<String>> {
        let mut map = self.limiters.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(plan.to_string()).or_insert_with(|| Arc::new(RateLimiter::keyed(Quota::per_minute(per_minute)))).clone()
    }

    /// Counts one request for `caller`; 429 with `Retry-After` when over its plan's rate.
    pub fn check(&self, caller: &Caller, plans: &PlanTable) -> Result<(), AppError> {
        if caller.is_admin {
            return Ok(());
        }
        let plan = plans.get_or_free(&caller.plan);
        let Some(rate) = NonZeroU32::new(plan.rate_per_minute) else { return Ok(()) };
        match self.limiter(&caller.plan, rate).check_key(&caller.key_id) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                Err(AppError::new(ErrorCode::RateLimited, format!("rate limit of {rate} requests per minute for plan `{}` exceeded", caller.plan)).with_retry_after(secs.max(1)))
            }
        }
    }
}
