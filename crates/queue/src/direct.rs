//! Starting a synchronous request's task at once when an upstream channel
//! will serve it.
//!
//! The queue exists so that GPUs take work in batches, at their own pace.
//! A relayed task needs neither: the provider is the queue. Yet through the
//! queue a waiting client pays for a claim statement and two hand-offs
//! between tasks before its provider call even starts. So admission may
//! insert such a task already running, leased to this process exactly as a
//! claim would have leased it, and run it here straight away. It is durable
//! the same way: if this process dies, the lease lapses and the sweeper
//! requeues the task for any worker. Everything after the provider call
//! (storing the images, completion, credits, the waiter's hand-over) is the
//! worker's own code.

use std::sync::Arc;

use imagegate_core::{Locality, ModelEntry, TaskView};
use imagegate_store::{ClaimedTask, Start};

use crate::worker::Queue;

impl Queue {
    /// The lease to admit a task for `model` under, when this process
    /// would relay it now: it runs workers, starting at once is enabled,
    /// and the backend picked for the model is upstream (a channel not held
    /// by `Retry-After` or an open breaker). `None` means: queue it as usual.
    pub fn start_now(&self, model: &ModelEntry) -> Option<Start> {
        if self.config.workers == 0 || !self.config.start_relays_at_once {
            return None;
        }
        let backend = self.backends.pick(model).ok()?;
        (backend.locality() == Locality::Upstream).then(|| Start { worker: self.worker_id.clone(), lease_ms: self.config.lease_ms() })
    }

    /// Runs a task that admission inserted as running under
    /// [`Queue::start_now`]'s lease, on its own tokio task: a client that
    /// hangs up does not cancel the provider call, and the outcome reaches
    /// waiters through the completion hub as a claimed task's would.
    pub fn run_started(self: &Arc<Self>, task: &TaskView) {
        let claimed =
            ClaimedTask { id: task.id.clone(), account_id: task.account_id.clone(), spec: task.spec.clone(), attempt: 1, created_at: task.created_at, provider_job: None };
        // Counted before the spawn: the task is already running in the database.
        let in_flight = self.shutdown.run_started();
        let queue = self.clone();
        tokio::spawn(async move { queue.run_counted_batch(vec![claimed], in_flight).await });
    }
}
