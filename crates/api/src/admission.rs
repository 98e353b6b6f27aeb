//! Admission and waiting: the two things every dialect does with a spec.
//! Admission checks that something can serve the model and that the queue
//! has room, then persists the task before anything is acknowledged.

use std::time::Duration;

use imagegate_core::{AppError, ErrorCode, Quote, TaskSpec, TaskState, TaskView};
use imagegate_store::{Caller, NewTask, StoreError, Submitted};
use tokio::time::Instant;

use crate::state::AppState;

/// How a dialect wants a task admitted.
#[derive(Debug, Clone, Default)]
pub struct Admit {
    /// Caller's idempotency key and a hash of what it asked for.
    pub idempotency: Option<(String, String)>,
    /// The caller waits for the outcome: a relayed task may then start at
    /// once in this process instead of waiting for a claim.
    pub waits: bool,
}

impl AppState {
    /// Persists a task for `caller` (503 when nothing can serve the model or
    /// the queue is full; 409 on an idempotency-key conflict).
    pub async fn admit(&self, caller: &Caller, spec: TaskSpec, how: Admit) -> Result<Submitted, AppError> {
        let model = self.catalog.require(&spec.model)?;
        // Admin accounts (the operator's own) are unmetered; every other
        // account holds the quoted price until the task ends.
        let hold = (!caller.is_admin).then(|| imagegate_core::quote(&spec, model, &self.prices).total_millicredits);
        if !self.config.remote_workers
            && let Err(why) = self.queue.backends.pick(model)
        {
            let why = match &model.provider {
                Some(p) if model.family == imagegate_core::Family::Upstream => {
                    format!("model `{}` is served only by the upstream provider `{p}`, and no `{p}` channel is configured on this deployment ({why})", model.id)
                }
                Some(p) => format!("{why}; the upstream provider `{p}` could serve it once a `{p}` channel is configured"),
                None => why,
            };
            return Err(AppError::new(ErrorCode::Unavailable, why).with_retry_after(30));
        }
        self.rate_limits.check(caller, &self.plans)?;
        if !caller.is_admin && self.db.count_waiting(&caller.account_id).await? >= self.config.max_waiting_per_account {
            return Err(AppError::new(
                ErrorCode::RateLimited,
                format!("this account already has {} tasks waiting; try again when some finish", self.config.max_waiting_per_account),
            )
            .with_retry_after(10));
        }
        if self.depth.current(&self.db).await? >= self.config.max_queued {
            return Err(AppError::new(ErrorCode::Unavailable, "the queue is full; try again shortly").with_retry_after(5));
        }
        let start = if how.waits { self.queue.start_now(model) } else { None };
        let submitted = self
            .db
            .submit_task(NewTask {
                account_id: caller.account_id.clone(),
                key_id: Some(caller.key_id.clone()),
                spec,
                max_attempts: self.queue.config.max_attempts,
                idempotency: how.idempotency,
                hold,
                concurrency_limit: (!caller.is_admin).then(|| self.plans.get_or_free(&caller.plan).concurrency),
                start,
            })
            .await
            .map_err(|e| match e {
                StoreError::Conflict(m) => AppError::new(ErrorCode::Conflict, m),
                other => AppError::from(other),
            })?;
        if let Submitted::New(t) = &submitted {
            self.depth.admitted();
            let started = t.state == TaskState::Running;
            tracing::info!(task_id = %t.id, model = %t.spec.model, started, "task accepted");
            if started {
                self.queue.run_started(t);
            } else {
                self.queue.wake();
            }
        }
        Ok(submitted)
    }

    /// What `spec` would cost (`?dry_run=true`).
    pub fn quote(&self, spec: &TaskSpec) -> Result<Quote, AppError> {
        let model = self.catalog.require(&spec.model)?;
        Ok(imagegate_core::quote(spec, model, &self.prices))
    }

    /// Credits captured for a finished task of `caller`'s, in milli-credits:
    /// 0 when unmetered (admin tasks never get a hold), what the view's
    /// completion captured when it says, else what the hold records.
    pub async fn charged(&self, caller: &Caller, task: &TaskView) -> Result<i64, AppError> {
        if caller.is_admin {
            return Ok(0);
        }
        if let Some(charged) = task.charged {
            return Ok(charged);
        }
        Ok(self.db.hold(&task.id).await?.map_or(0, |h| h.captured))
    }

    /// Waits for a task to end, up to the configured synchronous deadline:
    /// 504 carrying the task id when it passes (the task goes on), or when
    /// this process halts on its way down (the task is kept: a worker
    /// finishes it, elsewhere or after a restart).
    pub async fn wait_for(&self, task_id: &str) -> Result<TaskView, AppError> {
        let deadline = Instant::now() + Duration::from_secs_f64(self.config.sync_wait_secs);
        let poll = Duration::from_millis(self.queue.config.poll_ms.max(50));
        if let Some(t) = self.queue.hub.wait_terminal(&self.db, task_id, deadline, poll).await? {
            return Ok(t);
        }
        let why = if self.queue.halted() {
            format!("this server is shutting down; task {task_id} is kept and finished by a worker (here after a restart, or elsewhere)")
        } else {
            format!("task {task_id} is still running")
        };
        Err(AppError::new(ErrorCode::Timeout, format!("{why}; fetch it later from GET /v1/tasks/{task_id}")).with_task(task_id))
    }

    /// Reads a task the caller owns (admins see all); 404 otherwise.
    pub async fn task_for(&self, caller: &Caller, task_id: &str) -> Result<TaskView, AppError> {
        match self.db.get_task(task_id).await? {
            Some(t) if caller.is_admin || t.account_id == caller.account_id => Ok(t),
            _ => Err(AppError::not_found(format!("task `{task_id}` not found"))),
        }
    }
}

/// The error a failed task answers with: its stored code, or an opaque 500.
pub fn task_failure(task: &TaskView) -> AppError {
    let (code, message) = task.error.clone().unwrap_or_else(|| ("internal_error".into(), "task failed".into()));
    let parsed: ErrorCode = serde_json::from_value(serde_json::Value::String(code.clone())).unwrap_or(ErrorCode::Internal);
    let err = match task.state {
        TaskState::Cancelled => AppError::new(ErrorCode::Conflict, "task was cancelled"),
        _ => AppError::restored(parsed, message),
    };
    err.with_task(&task.id)
}
