//! The queue depth admission compares with `max_queued`, without a count
//! query per request: the database count is refreshed at most every
//! [`REFRESH`], and what this process admitted since is added to it. The
//! figure can only run high between refreshes (completions are not
//! subtracted), so the cap is never exceeded by more than what other
//! processes admit within one refresh period.

use std::sync::Mutex;
use std::time::Duration;

use imagegate_store::{Db, StoreError};
use tokio::time::Instant;

/// How stale the database count may get.
pub const REFRESH: Duration = Duration::from_millis(100);

#[derive(Debug, Default)]
struct Counted {
    read_at: Option<Instant>,
    count: i64,
}

/// Cached count of unfinished (queued or running) tasks.
#[derive(Debug, Default)]
pub struct QueueDepth {
    counted: Mutex<Counted>,
}

impl QueueDepth {
    /// The current estimate, reading the database when the last read is
    /// older than [`REFRESH`]. Only one caller reads; the others use the
    /// estimate meanwhile.
    pub async fn current(&self, db: &Db) -> Result<i64, StoreError> {
        let now = Instant::now();
        {
            let mut c = self.counted.lock().unwrap_or_else(|p| p.into_inner());
            if c.read_at.is_some_and(|t| now.duration_since(t) < REFRESH) {
                return Ok(c.count);
            }
            // Claim this refresh; if it fails the stale figure stands for
            // one more period rather than every request retrying at once.
            c.read_at = Some(now);
        }
        let n = db.count_unfinished().await?;
        let mut c = self.counted.lock().unwrap_or_else(|p| p.into_inner());
        c.count = n;
        Ok(n)
    }

    /// Counts a task this process just admitted.
    pub fn admitted(&self) {
        self.counted.lock().unwrap_or_else(|p| p.into_inner()).count += 1;
    }
}
