//! Completion signals: a request waiting synchronously for its task parks on
//! a per-task `Notify`; in-process workers ring it when the task ends. A poll
//! of the database backs it up, for tasks finished by workers elsewhere.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use imagegate_core::TaskView;
use imagegate_store::{Db, StoreError};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Per-task completion notifications.
#[derive(Debug, Default)]
pub struct CompletionHub {
    waiters: Mutex<HashMap<String, Arc<Notify>>>,
}

impl CompletionHub {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    fn entry(&self, id: &str) -> Arc<Notify> {
        // A poisoned lock only means another waiter panicked mid-insert; the map is still valid.
        let mut map = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id.to_string()).or_default().clone()
    }

    fn release(&self, id: &str, mine: &Arc<Notify>) {
        let mut map = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        // Two references: the map's and ours. More means another waiter still needs it.
        if map.get(id).is_some_and(|n| Arc::ptr_eq(n, mine) && Arc::strong_count(n) <= 2) {
            map.remove(id);
        }
    }

    /// Wakes everyone waiting on task `id`.
    pub fn notify(&self, id: &str) {
        let found = self.waiters.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned();
        if let Some(n) = found {
            n.notify_waiters();
        }
    }

    /// Waits until task `id` is terminal or `deadline` passes (then `Ok(None)`).
    pub async fn wait_terminal(&self, db: &Db, id: &str, deadline: Instant, poll: Duration) -> Result<Option<TaskView>, StoreError> {
        let notify = self.entry(id);
        let out = loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            // Register before reading the state, so a completion between the
            // read and the wait cannot be missed.
            notified.as_mut().enable();
            match db.get_task(id).await {
                Ok(Some(t)) if t.state.is_terminal() => break Ok(Some(t)),
                Ok(Some(_)) => {}
                Ok(None) => break Err(StoreError::NotFound(format!("task {id}"))),
                Err(e) => break Err(e),
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(poll) => {}
                _ = tokio::time::sleep_until(deadline) => break Ok(None),
            }
        };
        self.release(id, &notify);
        out
    }
}
