//! The worker loop: claim a batch under a lease, keep the lease alive with
//! heartbeats (flushing progress on the same beat), run the batch on the
//! backend that serves the model, store the images, then complete or fail
//! each task and ring its waiters.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::FutureExt;
use imagegate_core::backend::{AcceptHook, Job};
use imagegate_core::task::{StoredImage, TaskResult};
use imagegate_core::{BackendError, BackendRegistry, CancelFlag, Catalog, Generation, Progress, ProgressSink};
use imagegate_store::{ClaimedTask, Db, Objects, StoreError};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::config::QueueConfig;
use crate::drain::{Phase, RunGuard, Shutdown};
use crate::hub::CompletionHub;

/// Everything workers and sweepers share.
pub struct Queue {
    /// Database (the queue itself).
    pub db: Db,
    /// Image storage.
    pub objects: Objects,
    /// Backends, in preference order.
    pub backends: BackendRegistry,
    /// Model catalog.
    pub catalog: Arc<Catalog>,
    /// Completion signals for synchronous waiters.
    pub hub: Arc<CompletionHub>,
    /// Tuning.
    pub config: QueueConfig,
    /// This process's lease-owner name.
    pub worker_id: String,
    wake: Notify,
    pub(crate) shutdown: Arc<Shutdown>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("worker_id", &self.worker_id).field("backends", &self.backends).finish()
    }
}

type ProgressMap = Arc<Mutex<HashMap<String, (u32, u32)>>>;

impl Queue {
    /// A queue over the given parts.
    pub fn new(db: Db, objects: Objects, backends: BackendRegistry, catalog: Arc<Catalog>, config: QueueConfig) -> Arc<Self> {
        let worker_id = format!("{}-{}", hostname(), imagegate_store::new_id("w"));
        Arc::new(Self { db, objects, backends, catalog, hub: Arc::new(CompletionHub::new()), config, worker_id, wake: Notify::new(), shutdown: Arc::default() })
    }

    /// Tells an idle worker that a task was queued.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Starts the configured number of worker loops.
    pub fn spawn_workers(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        (0..self.config.workers).map(|_| tokio::spawn(self.clone().worker_loop())).collect()
    }

    async fn worker_loop(self: Arc<Self>) {
        let poll = std::time::Duration::from_millis(self.config.poll_ms);
        while !self.shutdown.at(Phase::Quiet) {
            // In flight from before the claim: the tasks are running in the
            // database once it returns, and a shutdown that began meanwhile
            // must wait for them, not halt them on arrival.
            let in_flight = self.shutdown.run_started();
            if self.shutdown.at(Phase::Quiet) {
                break;
            }
            match self.db.claim_tasks(&self.worker_id, self.config.batch_max, self.config.lease_ms()).await {
                Ok(batch) if !batch.is_empty() => {
                    // Another task may be waiting behind this batch: pass the wake-up on.
                    self.wake.notify_one();
                    self.run_counted_batch(batch, in_flight).await;
                }
                Ok(_) => {
                    drop(in_flight);
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(poll) => {}
                        _ = self.shutdown.reached(Phase::Quiet) => {}
                    }
                }
                Err(e) => {
                    drop(in_flight);
                    tracing::error!(error = %e, "claiming tasks failed");
                    tokio::time::sleep(poll).await;
                }
            }
        }
    }

    /// Runs one claimed batch to its end, or until a shutdown halts it
    /// (then its tasks go back to the queue; see `drain`).
    pub async fn run_batch(&self, batch: Vec<ClaimedTask>) {
        self.run_counted_batch(batch, self.shutdown.run_started()).await;
    }

    /// [`Queue::run_batch`] for a run counted as in flight before its batch
    /// was in hand; `_in_flight` ends when the run does.
    pub(crate) async fn run_counted_batch(&self, batch: Vec<ClaimedTask>, _in_flight: RunGuard) {
        let ids: Vec<String> = batch.iter().map(|t| t.id.clone()).collect();
        let progress: ProgressMap = Arc::default();
        let beat = tokio::spawn(heartbeat(self.db.clone(), self.worker_id.clone(), ids, progress.clone(), self.config.clone()));
        let sink: ProgressSink = {
            let progress = progress.clone();
            Arc::new(move |p: Progress| {
                progress.lock().unwrap_or_else(|e| e.into_inner()).insert(p.task_id, (p.step, p.total));
            })
        };
        let started = Instant::now();
        let cancel = CancelFlag::new();
        let results = tokio::select! {
            results = self.generate(&batch, &sink, &cancel) => results,
            _ = self.shutdown.reached(Phase::Halt) => {
                // The flag reaches a backend that left work on its own thread (the engine), which stops at its next step.
                cancel.cancel();
                beat.abort();
                self.give_back(&batch).await;
                return;
            }
        };
        let inference_ms = started.elapsed().as_millis() as u64;
        beat.abort();
        let mut stored = Vec::with_capacity(batch.len());
        for (task, result) in batch.iter().zip(results) {
            match self.store_outcome(task, result, inference_ms).await {
                Ok(Some(result)) => stored.push((task.id.as_str(), result)),
                Ok(None) => self.hub.notify(&task.id),
                Err(e) => {
                    tracing::error!(task_id = %task.id, error = %e, "recording the task's outcome failed; its lease will lapse and it will be retried");
                    self.hub.notify(&task.id);
                }
            }
        }
        if stored.is_empty() {
            return;
        }
        let ids: Vec<&str> = stored.iter().map(|(id, _)| *id).collect();
        let done: Vec<(String, TaskResult)> = stored.into_iter().map(|(id, r)| (id.to_string(), r)).collect();
        match self.db.complete_tasks_grouped(&self.worker_id, done).await {
            Ok(views) => {
                for (id, view) in ids.iter().zip(views) {
                    match view {
                        Some(view) => self.hub.finished(view),
                        None => {
                            tracing::warn!(task_id = %id, "lease was lost before completion; the other attempt's outcome stands");
                            self.hub.notify(id);
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, tasks = ids.len(), "recording the batch's completion failed; its leases will lapse and it will be retried");
                for id in &ids {
                    self.hub.notify(id);
                }
            }
        }
    }

    async fn generate(&self, batch: &[ClaimedTask], sink: &ProgressSink, cancel: &CancelFlag) -> Vec<Result<Generation, BackendError>> {
        let model = &batch[0].spec.model;
        let Some(entry) = self.catalog.resolve(model) else {
            return batch.iter().map(|_| Err(BackendError::Invalid { field: "model".into(), message: format!("model `{model}` is not in the catalog") })).collect();
        };
        // The oldest task's wait decides for the batch: it is the one closest to its deadline.
        let oldest = batch.iter().map(|t| t.created_at).min().unwrap_or_else(imagegate_store::now_ms);
        let waited = std::time::Duration::from_millis((imagegate_store::now_ms() - oldest).max(0) as u64);
        let picked = match self.backends.pick_for(entry, waited) {
            Ok(p) => p,
            Err(why) => return batch.iter().map(|_| Err(BackendError::Unavailable(why.clone()))).collect(),
        };
        let backend = picked.backend;
        // in flight from hand-over (waiting for the engine thread counts) until the results are in
        let _in_flight = picked.load.begin(batch.len());
        let started = Instant::now();
        let jobs: Vec<Job> = batch.iter().map(|t| self.job_for(t)).collect();
        let mut out = Vec::with_capacity(jobs.len());
        for chunk in jobs.chunks(backend.max_batch().max(1)) {
            // A panicking backend must not take the worker loop down with it.
            match AssertUnwindSafe(backend.generate_batch(chunk, sink, cancel)).catch_unwind().await {
                Ok(results) if results.len() == chunk.len() => out.extend(results),
                Ok(results) => out.extend(chunk.iter().map(|_| Err(BackendError::Internal(format!("backend returned {} results for {} tasks", results.len(), chunk.len()))))),
                Err(_) => out.extend(chunk.iter().map(|_| Err(BackendError::Internal("backend panicked".into())))),
            }
        }
        // Only batches that produced images say how long work takes; quick
        // failures (missing weights, refused requests) would drag the mean down.
        if out.iter().any(Result::is_ok) {
            picked.load.record(out.len(), started.elapsed());
        }
        out
    }

    /// The job for a claimed task: it resumes what a provider accepted on an
    /// earlier attempt, and records what a provider accepts on this one at
    /// once (not on the next heartbeat: a crash in between would make the
    /// next attempt submit, and the provider bill, again).
    fn job_for(&self, task: &ClaimedTask) -> Job {
        let mut job = Job::new(task.id.clone(), task.spec.clone());
        job.resume = task.provider_job.clone();
        let (db, worker, id) = (self.db.clone(), self.worker_id.clone(), task.id.clone());
        job.on_accept = Some(AcceptHook::new(move |token| {
            let (db, worker, id) = (db.clone(), worker.clone(), id.clone());
            tokio::spawn(async move {
                match db.record_provider_job(&id, &worker, &token).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(task_id = %id, "the lease was lost before the provider's job was recorded"),
                    Err(e) => tracing::warn!(task_id = %id, error = %e, "recording the provider's job failed; a retry would submit it again"),
                }
            });
        }));
        job
    }

    /// Stores a successful task's images and returns the result to record,
    /// or records a failed attempt and returns `None`.
    async fn store_outcome(&self, task: &ClaimedTask, result: Result<Generation, BackendError>, inference_ms: u64) -> Result<Option<TaskResult>, StoreError> {
        let generation = match result {
            Ok(g) => g,
            Err(e) => {
                let code = e.to_app_error().code.as_str();
                let state = self.db.fail_task(&task.id, &self.worker_id, code, &e.to_string(), e.is_retryable()).await?;
                tracing::warn!(task_id = %task.id, error = %e, ?state, "task attempt failed");
                if state == Some(imagegate_core::TaskState::Queued) {
                    self.wake();
                }
                return Ok(None);
            }
        };
        let mut images = Vec::with_capacity(generation.images.len());
        for (n, img) in generation.images.into_iter().enumerate() {
            let key = Objects::key_for(&task.spec.prefix, &task.id, n, img.format.ext());
            if let Err(e) = self.objects.put(&key, img.bytes).await {
                self.db.fail_task(&task.id, &self.worker_id, "storage_error", "storing the image failed", true).await?;
                return Err(e);
            }
            images.push(StoredImage { key, width: img.width, height: img.height, seed: img.seed });
        }
        Ok(Some(TaskResult { images, inference_ms, served_by: generation.served_by, note: generation.note, provider_request_id: generation.provider_request_id }))
    }
}

/// Renews the batch's leases and flushes progress until aborted.
async fn heartbeat(db: Db, worker: String, ids: Vec<String>, progress: ProgressMap, config: QueueConfig) {
    let mut tick = tokio::time::interval(config.heartbeat_every());
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = db.heartbeat(&worker, &ids, config.lease_ms()).await {
            tracing::warn!(error = %e, "heartbeat failed");
        }
        let pending: Vec<_> = progress.lock().unwrap_or_else(|e| e.into_inner()).drain().collect();
        for (id, (step, total)) in pending {
            if let Err(e) = db.set_progress(&id, &worker, step, total).await {
                tracing::warn!(task_id = %id, error = %e, "recording progress failed");
            }
        }
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "imagegate".to_string())
}
