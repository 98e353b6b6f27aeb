//! Stopping a process's workers without losing work or spending attempts.
//!
//! A deploy sends SIGTERM, waits a grace period, then kills. Aborting the
//! worker loops at once (as this process used to) left every run it held to
//! wait out its whole lease before the sweeper requeued it, spent one of its
//! attempts, and could cut off an image put half-way. So shutting down has
//! two phases:
//!
//! 1. **Quiet**: worker loops claim nothing more and end after their current
//!    batch; runs already going get `drain_secs` to finish, store their
//!    images and complete as usual.
//! 2. **Halt**, when `drain_secs` pass (or, in a process with worker loops,
//!    as soon as its runs are done): runs still going tell their backend
//!    to cancel and give their tasks back to the queue at once, with the
//!    attempt given back. Synchronous waiters in this process are released
//!    (they answer 504 with the task id, which the client can fetch later),
//!    so the HTTP server can close its connections.
//!
//! The default grace is shorter than the 30 s most orchestrators wait before
//! they kill, so the halt's hand-back has time to land.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use imagegate_store::ClaimedTask;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::worker::Queue;

/// After the halt, how long runs get to give their tasks back before the
/// process stops waiting for them (a hung database should not hang exit).
const HAND_BACK_BOUND: Duration = Duration::from_secs(10);

/// How far shutting down has come; each phase includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    Running,
    Quiet,
    Halt,
}

/// The shutdown phase and the runs in flight, shared by a queue's workers.
#[derive(Debug)]
pub(crate) struct Shutdown {
    phase: watch::Sender<Phase>,
    // A plain counter, not a watch: every relayed request starts and ends a
    // run, and this costs it a handful of atomic operations (the count and
    // the guard's Arc).
    runs: AtomicUsize,
    none_running: Notify,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self { phase: watch::Sender::new(Phase::Running), runs: AtomicUsize::new(0), none_running: Notify::new() }
    }
}

/// Counts a run as in flight until dropped. It owns its handle on the
/// count so that it can be taken before the run's batch exists (before the
/// claim, or before a direct run is spawned): a shutdown beginning in
/// between then waits for that run instead of finding none and halting it
/// the moment it starts.
pub(crate) struct RunGuard(Arc<Shutdown>);

impl Drop for RunGuard {
    fn drop(&mut self) {
        if self.0.runs.fetch_sub(1, Ordering::SeqCst) == 1 && self.0.at(Phase::Quiet) {
            self.0.none_running.notify_waiters();
        }
    }
}

impl Shutdown {
    /// True once shutting down reached `phase` (`Quiet`: claim nothing
    /// more; `Halt`: runs give their tasks back).
    pub(crate) fn at(&self, phase: Phase) -> bool {
        *self.phase.borrow() >= phase
    }

    /// Resolves once shutting down reaches `phase`.
    pub(crate) fn reached(&self, phase: Phase) -> impl Future<Output = ()> + 'static {
        let mut rx = self.phase.subscribe();
        async move {
            let _ = rx.wait_for(|p| *p >= phase).await;
        }
    }

    pub(crate) fn run_started(self: &Arc<Self>) -> RunGuard {
        // SeqCst, with the load in `none_running`: a loop that counts itself
        // and then looks at the phase, and a shutdown that sets the phase
        // and then looks at the count, must not both miss the other.
        self.runs.fetch_add(1, Ordering::SeqCst);
        RunGuard(self.clone())
    }

    /// Resolves when no run is in flight (after quiet: none can start in a
    /// worker loop, so zero stays zero unless a request starts one).
    async fn none_running(&self) {
        loop {
            let notified = self.none_running.notified();
            tokio::pin!(notified);
            // Register before looking, so the last run ending in between is not missed.
            notified.as_mut().enable();
            if self.runs.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    fn advance(&self, to: Phase) -> bool {
        self.phase.send_if_modified(|p| {
            let later = *p < to;
            if later {
                *p = to;
            }
            later
        })
    }
}

impl Queue {
    /// Begins shutting down: worker loops stop claiming now, and runs still
    /// going after the configured drain time are halted. Idempotent.
    ///
    /// A process with worker loops halts as soon as its runs are done, not
    /// at the end of the drain time: the synchronous requests still open
    /// then wait for queued tasks that no loop here will claim, so they may
    /// as well have their 504 and task id now. A process without loops (an
    /// API node) waits the whole drain time: workers elsewhere may still
    /// finish what its requests wait for.
    pub fn begin_shutdown(self: &Arc<Self>) {
        if !self.shutdown.advance(Phase::Quiet) {
            return;
        }
        let grace = self.config.drain();
        tracing::info!(drain_secs = grace.as_secs_f64(), "no longer claiming tasks; runs in flight may finish");
        let queue = self.clone();
        tokio::spawn(async move {
            let runs_here = queue.config.workers > 0;
            tokio::select! {
                () = tokio::time::sleep(grace) => {}
                () = queue.shutdown.none_running(), if runs_here => {}
            }
            queue.halt();
        });
    }

    /// Halts now: runs give their tasks back, and synchronous waiters are
    /// released. Implies [`Queue::begin_shutdown`]'s quiet.
    pub fn halt(&self) {
        if self.shutdown.advance(Phase::Halt) {
            match self.shutdown.runs.load(Ordering::Acquire) {
                0 => tracing::info!("no runs left here; answering the requests still waiting"),
                n => tracing::warn!(runs = n, "halting: runs still going give their tasks back to the queue; answering the requests still waiting"),
            }
            self.hub.close();
        }
    }

    /// True once runs were halted: this process finishes nothing more.
    pub fn halted(&self) -> bool {
        self.shutdown.at(Phase::Halt)
    }

    /// After [`Queue::begin_shutdown`]: waits for `workers` (the loops from
    /// [`Queue::spawn_workers`]) to end and for every run in flight,
    /// including those started at once for a request, to finish or give its
    /// tasks back.
    pub async fn drained(&self, workers: Vec<JoinHandle<()>>) {
        let all_done = async {
            for w in workers {
                let _ = w.await;
            }
            self.shutdown.none_running().await;
        };
        let halted_and_bounded = async {
            self.shutdown.reached(Phase::Halt).await;
            tokio::time::sleep(HAND_BACK_BOUND).await;
        };
        tokio::select! {
            _ = all_done => tracing::info!("workers drained"),
            _ = halted_and_bounded => tracing::error!("runs did not give their tasks back in time; their leases will lapse and the sweeper will requeue them"),
        }
    }

    /// A halted run's tasks go back to the queue.
    pub(crate) async fn give_back(&self, batch: &[ClaimedTask]) {
        let ids: Vec<String> = batch.iter().map(|t| t.id.clone()).collect();
        match self.db.release_tasks(&self.worker_id, &ids).await {
            Ok(released) => tracing::info!(tasks = released.len(), "gave halted tasks back to the queue"),
            Err(e) => tracing::error!(error = %e, tasks = ids.len(), "giving halted tasks back failed; their leases will lapse and the sweeper will requeue them"),
        }
        for id in &ids {
            self.hub.notify(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_run_counted_before_the_quiet_holds_off_none_running_until_it_ends() {
        let shutdown = Arc::new(Shutdown::default());
        // What a worker loop does before its claim goes out.
        let claiming = shutdown.run_started();
        shutdown.advance(Phase::Quiet);
        let waiting = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { shutdown.none_running().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the claimed batch is still to run");
        drop(claiming);
        tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("the last run ending wakes the shutdown").unwrap();
    }
}
