//! The tasks table is the queue: submission (with idempotency), claims under
//! a lease, heartbeats, progress, completion, failure with bounded retries,
//! and requeueing of tasks whose worker stopped heartbeating.
//!
//! Every state change is guarded by `lease_owner` and `state`, so a worker
//! that lost its lease can never overwrite what a later attempt recorded.

use imagegate_core::task::TaskResult;
use imagegate_core::{TaskSpec, TaskState, TaskView};
// Queries built with format! only splice in compile-time constants; values are always bound.
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::db::{Db, DbKind};
use crate::error::StoreError;
use crate::params::Params;
use crate::{new_id, now_ms};

/// A task to submit.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// Owning account.
    pub account_id: String,
    /// Key it came in with.
    pub key_id: Option<String>,
    /// What to make.
    pub spec: TaskSpec,
    /// Attempts before giving up.
    pub max_attempts: u32,
    /// Caller's idempotency key and a hash of the request body.
    pub idempotency: Option<(String, String)>,
    /// Milli-credits to hold for the task (its quote), placed in the same
    /// transaction as the insert; `None` for unmetered (admin) accounts.
    pub hold: Option<i64>,
    /// Most tasks of this account that may run at once (its plan's
    /// concurrency); `None` for no limit. Tasks over it wait in the queue.
    pub concurrency_limit: Option<u32>,
    /// Insert the task already running under this lease, for the caller to
    /// run at once, instead of queued for a worker to claim. Honoured only
    /// when a claim could have taken it now: the account is under its
    /// concurrency limit and has no task queued ahead of it; otherwise the
    /// task is queued as usual (the returned view's state tells which).
    pub start: Option<Start>,
}

/// A lease to admit a task under (see [`NewTask::start`]).
#[derive(Debug, Clone)]
pub struct Start {
    /// Lease owner, as a claiming worker would name itself.
    pub worker: String,
    /// Lease length.
    pub lease_ms: i64,
}

/// The outcome of a submission.
#[derive(Debug, Clone)]
pub enum Submitted {
    /// A new task was queued.
    New(TaskView),
    /// The idempotency key named an existing task with the same body.
    Existing(TaskView),
}

impl Submitted {
    /// The task either way.
    pub fn task(&self) -> &TaskView {
        match self {
            Self::New(t) | Self::Existing(t) => t,
        }
    }
}

/// A task a worker holds a lease on.
#[derive(Debug, Clone)]
pub struct ClaimedTask {
    /// Task id.
    pub id: String,
    /// Owning account.
    pub account_id: String,
    /// What to make.
    pub spec: TaskSpec,
    /// This attempt's number (1-based).
    pub attempt: u32,
    /// Unix ms of submission (claims are served oldest first).
    pub created_at: i64,
    /// What a provider accepted on an earlier attempt (see [`Db::record_provider_job`]).
    pub provider_job: Option<String>,
}

/// The PostgreSQL advisory lock that serialises claims (and admissions
/// that start a task at once) against each other.
const CLAIM_LOCK: i64 = 7305871;

/// Whether an account may start one more task now, as a claim would decide:
/// none of its tasks queued (they would go first) and fewer running than
/// its concurrency limit.
pub(crate) fn room_to_start(running: i64, queued: i64, limit: u32) -> bool {
    queued == 0 && running < i64::from(limit)
}

/// The concurrency limit stored for accounts without one.
pub(crate) const UNLIMITED: i64 = 1_000_000;

const TASK_COLUMNS: &str = "id, account_id, state, spec, attempts, progress_step, progress_total, result, error_code, error_message, created_at, updated_at";

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

fn task_from(row: &AnyRow) -> Result<TaskView, StoreError> {
    let state: String = row.try_get("state")?;
    let spec: String = row.try_get("spec")?;
    let result: Option<String> = row.try_get("result")?;
    let code: Option<String> = row.try_get("error_code")?;
    let message: Option<String> = row.try_get("error_message")?;
    Ok(TaskView {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        state: TaskState::parse(&state).ok_or_else(|| corrupt("state", &state))?,
        spec: serde_json::from_str(&spec).map_err(|e| corrupt("spec", e))?,
        progress: (row.try_get::<i64, _>("progress_step")? as u32, row.try_get::<i64, _>("progress_total")? as u32),
        result: result.map(|r| serde_json::from_str(&r)).transpose().map_err(|e| corrupt("result", e))?,
        error: code.map(|c| (c, message.unwrap_or_default())),
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        charged: None,
    })
}

fn admitted_view(id: String, new: NewTask, now: i64) -> TaskView {
    let started = new.start.is_some();
    TaskView {
        id,
        account_id: new.account_id,
        state: if started { TaskState::Running } else { TaskState::Queued },
        progress: (0, new.spec.steps),
        spec: new.spec,
        result: None,
        error: None,
        attempts: u32::from(started),
        created_at: now,
        updated_at: now,
        charged: None,
    }
}

impl Db {
    /// Persists a task, its credit hold and its idempotency record in one
    /// transaction. Nothing is acknowledged to a client before this commits;
    /// a repeat under the same idempotency key holds nothing more. Fails with
    /// [`StoreError::InsufficientCredits`] when the hold cannot be paid.
    /// Submissions without an idempotency key share their statement or
    /// transaction with others arriving meanwhile (`group_admit`).
    pub async fn submit_task(&self, mut new: NewTask) -> Result<Submitted, StoreError> {
        if new.idempotency.is_none() {
            let now = now_ms();
            let id = new_id("task");
            let spec_json = serde_json::to_string(&new.spec).map_err(|e| corrupt("spec", e))?;
            let row = self.admit_grouped(crate::task_insert::Row { id, new, spec_json, now }).await?;
            return Ok(Submitted::New(admitted_view(row.id, row.new, row.now)));
        }
        let mut tx = self.write.begin().await?;
        if let Some((key, body_hash)) = &new.idempotency {
            let row =
                sqlx::query("SELECT body_hash, task_id FROM idempotency WHERE account_id = $1 AND idem_key = $2").bind(&new.account_id).bind(key).fetch_optional(&mut *tx).await?;
            if let Some(row) = row {
                let stored: String = row.try_get("body_hash")?;
                let task_id: String = row.try_get("task_id")?;
                tx.rollback().await?;
                if &stored != body_hash {
                    return Err(StoreError::Conflict(format!("task id `{key}` was already used with a different request body")));
                }
                let task = self.get_task(&task_id).await?.ok_or_else(|| StoreError::NotFound(format!("task {task_id}")))?;
                return Ok(Submitted::Existing(task));
            }
        }
        if new.start.is_some() && !self.may_start_now(&mut tx, &new).await? {
            new.start = None;
        }
        let now = now_ms();
        let id = new_id("task");
        let spec_json = serde_json::to_string(&new.spec).map_err(|e| corrupt("spec", e))?;
        if let Some(amount) = new.hold {
            self.place_hold(&mut tx, &new.account_id, &id, amount, now).await?;
        }
        crate::task_insert::insert_statement(self.kind, &[(&id, &new, &spec_json, now, new.start.is_some())]).execute(&mut *tx).await?;
        if let Some((key, body_hash)) = &new.idempotency {
            let res = sqlx::query("INSERT INTO idempotency (account_id, idem_key, body_hash, task_id, created_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(&new.account_id)
                .bind(key)
                .bind(body_hash)
                .bind(&id)
                .bind(now)
                .execute(&mut *tx)
                .await;
            if let Err(sqlx::Error::Database(e)) = &res
                && e.is_unique_violation()
            {
                // A concurrent request with the same key won; answer as it did.
                tx.rollback().await?;
                return Box::pin(self.submit_task(new)).await;
            }
            res?;
        }
        tx.commit().await?;
        Ok(Submitted::New(admitted_view(id, new, now)))
    }

    /// Whether a claim would take `new` now: its account runs fewer tasks
    /// than its limit and has none queued (which would go first). On
    /// PostgreSQL this takes the claims' lock, so that it and a concurrent
    /// claim cannot both see the last free slot.
    pub(crate) async fn may_start_now(&self, tx: &mut sqlx::Transaction<'_, sqlx::Any>, new: &NewTask) -> Result<bool, StoreError> {
        let Some(limit) = new.concurrency_limit else { return Ok(true) };
        let (running, queued) = self.start_counts(tx, &new.account_id).await?;
        Ok(room_to_start(running, queued, limit))
    }

    /// An account's running and queued tasks, as [`room_to_start`] weighs
    /// them (taking the claims' lock on PostgreSQL). Within one transaction
    /// they change only by what that transaction writes, so a group
    /// admission reads them once per account and counts its own rows.
    pub(crate) async fn start_counts(&self, tx: &mut sqlx::Transaction<'_, sqlx::Any>, account: &str) -> Result<(i64, i64), StoreError> {
        if self.kind == DbKind::Postgres {
            sqlx::query(AssertSqlSafe(format!("SELECT pg_advisory_xact_lock({CLAIM_LOCK})"))).execute(&mut **tx).await?;
        }
        let row = sqlx::query(
            "SELECT COALESCE(SUM(CASE WHEN state = 'running' THEN 1 ELSE 0 END), 0) AS running, COALESCE(SUM(CASE WHEN state = 'queued' THEN 1 ELSE 0 END), 0) AS queued \
             FROM tasks WHERE account_id = $1 AND state IN ('queued', 'running')",
        )
        .bind(account)
        .fetch_one(&mut **tx)
        .await?;
        Ok((row.try_get("running")?, row.try_get("queued")?))
    }

    /// Reads a task.
    pub async fn get_task(&self, id: &str) -> Result<Option<TaskView>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"))).bind(id).fetch_optional(&self.read).await?;
        row.as_ref().map(task_from).transpose()
    }

    /// Claims up to `limit` queued tasks that share one batch key (same
    /// model, size, steps), leasing them to `worker` until `now + lease_ms`.
    ///
    /// Only tasks their account may start now are eligible: an account with
    /// `n` running tasks and limit `lim` contributes its oldest `lim - n`
    /// queued tasks. Accounts with fewer running tasks go first, so one
    /// account's backlog cannot starve the others; within that, oldest first.
    /// On PostgreSQL claims are serialised by a transaction-scoped advisory
    /// lock, because concurrent claimers could otherwise each see room under
    /// an account's limit and together exceed it.
    ///
    /// The limit is written `$4 + 0`, not `$4`: SQLite reads a bare bound
    /// LIMIT's value while planning, which marks the prepared statement
    /// stale on every new binding, so each claim was parsed and planned
    /// afresh (a third of the SQLite thread's time under load).
    pub async fn claim_tasks(&self, worker: &str, limit: u32, lease_ms: i64) -> Result<Vec<ClaimedTask>, StoreError> {
        const SQL: &str = "WITH running AS (SELECT account_id, COUNT(*) AS n FROM tasks WHERE state = 'running' GROUP BY account_id), \
             cand AS (SELECT q.id, q.batch_key, q.created_at, COALESCE(r.n, 0) + ROW_NUMBER() OVER (PARTITION BY q.account_id ORDER BY q.created_at, q.id) AS rank, q.concurrency_limit AS lim \
                      FROM tasks q LEFT JOIN running r ON r.account_id = q.account_id WHERE q.state = 'queued'), \
             eligible AS (SELECT id, batch_key, created_at, rank FROM cand WHERE rank <= lim), \
             head AS (SELECT batch_key FROM eligible ORDER BY rank, created_at LIMIT 1) \
             UPDATE tasks SET state = 'running', lease_owner = $1, lease_expires_at = $2, attempts = attempts + 1, updated_at = $3, error_code = NULL, error_message = NULL \
             WHERE state = 'queued' AND id IN (SELECT id FROM eligible WHERE batch_key = (SELECT batch_key FROM head) ORDER BY rank, created_at LIMIT $4 + 0) \
             RETURNING id, account_id, spec, attempts, created_at, provider_job";
        let now = now_ms();
        let claim = sqlx::query(SQL).bind(worker).bind(now + lease_ms).bind(now).bind(i64::from(limit));
        let rows = if self.kind == DbKind::Postgres {
            let mut tx = self.write.begin().await?;
            sqlx::query(AssertSqlSafe(format!("SELECT pg_advisory_xact_lock({CLAIM_LOCK})"))).execute(&mut *tx).await?;
            let rows = claim.fetch_all(&mut *tx).await?;
            tx.commit().await?;
            rows
        } else {
            // SQLite has one writer, and one statement is atomic on its own:
            // no transaction round trips needed.
            claim.fetch_all(&self.write).await?
        };
        let mut claimed = rows
            .iter()
            .map(|row| {
                let spec: String = row.try_get("spec")?;
                Ok(ClaimedTask {
                    id: row.try_get("id")?,
                    account_id: row.try_get("account_id")?,
                    spec: serde_json::from_str(&spec).map_err(|e| corrupt("spec", e))?,
                    attempt: row.try_get::<i64, _>("attempts")? as u32,
                    created_at: row.try_get("created_at")?,
                    provider_job: row.try_get("provider_job")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        claimed.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
        Ok(claimed)
    }

    /// Extends the lease of tasks `worker` still holds; returns how many it holds.
    pub async fn heartbeat(&self, worker: &str, ids: &[String], lease_ms: i64) -> Result<u64, StoreError> {
        let until = now_ms() + lease_ms;
        let mut held = 0;
        for id in ids {
            let res = sqlx::query("UPDATE tasks SET lease_expires_at = $1 WHERE id = $2 AND lease_owner = $3 AND state = 'running'")
                .bind(until)
                .bind(id)
                .bind(worker)
                .execute(&self.write)
                .await?;
            held += res.rows_affected();
        }
        Ok(held)
    }

    /// Records what a provider accepted for a task `worker` holds, for a
    /// later attempt to resume (the backend's own token). Returns false if
    /// the lease was lost.
    pub async fn record_provider_job(&self, id: &str, worker: &str, token: &str) -> Result<bool, StoreError> {
        let res = sqlx::query("UPDATE tasks SET provider_job = $1 WHERE id = $2 AND lease_owner = $3 AND state = 'running'")
            .bind(token)
            .bind(id)
            .bind(worker)
            .execute(&self.write)
            .await?;
        Ok(res.rows_affected() > 0)
    }

    /// Records progress of a running task.
    pub async fn set_progress(&self, id: &str, worker: &str, step: u32, total: u32) -> Result<(), StoreError> {
        sqlx::query("UPDATE tasks SET progress_step = $1, progress_total = $2, updated_at = $3 WHERE id = $4 AND lease_owner = $5 AND state = 'running'")
            .bind(i64::from(step))
            .bind(i64::from(total))
            .bind(now_ms())
            .bind(id)
            .bind(worker)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Marks a task succeeded if `worker` still holds it; false if the lease
    /// was lost. See [`Db::complete_tasks`].
    pub async fn complete_task(&self, id: &str, worker: &str, result: &TaskResult) -> Result<bool, StoreError> {
        Ok(self.complete_tasks(worker, &[(id, result)]).await?.pop().flatten().is_some())
    }

    /// Marks the tasks of a batch succeeded, in one transaction, and returns
    /// each as it now stands (`None` where `worker` no longer held it: the
    /// other attempt's outcome stands). In the same transaction each hold is
    /// captured for the images made (hold × made / asked, exact because a
    /// quote is per image × count) and the rest released.
    ///
    /// The whole batch is one UPDATE and its holds are settled as one set:
    /// on SQLite every statement is a hand-off to the connection's thread,
    /// and the commit is the costly part.
    pub async fn complete_tasks(&self, worker: &str, done: &[(&str, &TaskResult)]) -> Result<Vec<Option<TaskView>>, StoreError> {
        if done.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        // Placeholders in the order their values are bound (see `params`).
        let mut p = Params::new(self.kind);
        let mut sql = String::from("UPDATE tasks SET state = 'succeeded', result = CASE id");
        p.when_then(&mut sql, done.len());
        sql.push_str(" END, progress_step = progress_total, lease_owner = NULL, lease_expires_at = NULL, finished_at = ");
        p.push(&mut sql);
        sql.push_str(", updated_at = ");
        p.push(&mut sql);
        sql.push_str(" WHERE id IN (");
        p.list(&mut sql, done.len());
        sql.push_str(") AND lease_owner = ");
        p.push(&mut sql);
        sql.push_str(&format!(" AND state = 'running' RETURNING {TASK_COLUMNS}, (SELECT h.amount FROM credit_holds h WHERE h.task_id = tasks.id AND h.state = 'held') AS held"));
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (id, result) in done {
            query = query.bind(*id).bind(serde_json::to_string(result).map_err(|e| corrupt("result", e))?);
        }
        query = query.bind(now).bind(now);
        for (id, _) in done {
            query = query.bind(*id);
        }
        query = query.bind(worker);
        let mut tx = self.write.begin().await?;
        let rows = query.fetch_all(&mut *tx).await?;
        let mut updated = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            let view = task_from(row)?;
            let held = row.try_get::<Option<i64>, _>("held")?;
            updated.insert(view.id.clone(), (view, held));
        }
        let mut out = Vec::with_capacity(done.len());
        let mut captures = Vec::new();
        // Where each capture's outcome goes: the view's index in `out`.
        let mut captured_views = Vec::new();
        for (id, result) in done {
            let Some((view, held)) = updated.remove(*id) else {
                out.push(None);
                continue;
            };
            if let Some(hold) = held {
                let asked = i128::from(view.spec.count.max(1));
                let made = i128::from(result.images.len() as u32).min(asked);
                // Integer and exact: the hold is per-image price × count.
                let actual = i64::try_from(i128::from(hold) * made / asked).unwrap_or(hold);
                captures.push(crate::ledger::Settle { task_id: id, actual, to: crate::HoldState::Captured });
                captured_views.push(out.len());
            }
            out.push(Some(view));
        }
        // The views carry what was captured, so that a waiting request can
        // tell its caller without reading the hold back.
        let settled = self.settle_holds(&mut tx, &captures).await?;
        for (at, settlement) in captured_views.into_iter().zip(settled) {
            if let (Some(view), Some(s)) = (&mut out[at], settlement) {
                view.charged = Some(s.captured);
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Records a failed attempt. Retryable failures go back to the queue
    /// while attempts remain; returns the new state, or `None` if `worker`
    /// no longer held the task. A task that fails for good has its credit
    /// hold released in the same transaction.
    pub async fn fail_task(&self, id: &str, worker: &str, code: &str, message: &str, retryable: bool) -> Result<Option<TaskState>, StoreError> {
        let now = now_ms();
        let mut tx = self.write.begin().await?;
        let row = sqlx::query(
            "UPDATE tasks SET state = CASE WHEN $1 = 1 AND attempts < max_attempts THEN 'queued' ELSE 'failed' END, \
             finished_at = CASE WHEN $1 = 1 AND attempts < max_attempts THEN NULL ELSE $2 END, \
             progress_step = CASE WHEN $1 = 1 AND attempts < max_attempts THEN 0 ELSE progress_step END, \
             lease_owner = NULL, lease_expires_at = NULL, error_code = $3, error_message = $4, updated_at = $2 \
             WHERE id = $5 AND lease_owner = $6 AND state = 'running' RETURNING state",
        )
        .bind(i64::from(retryable))
        .bind(now)
        .bind(code)
        .bind(message)
        .bind(id)
        .bind(worker)
        .fetch_optional(&mut *tx)
        .await?;
        let state = row
            .map(|r| {
                let s: String = r.try_get(0)?;
                TaskState::parse(&s).ok_or_else(|| corrupt("state", s))
            })
            .transpose()?;
        // A requeued task keeps its hold for the next attempt; a failed one gives it back.
        if state == Some(TaskState::Failed) {
            self.release_hold(&mut tx, id).await?;
        }
        tx.commit().await?;
        Ok(state)
    }

    /// Gives tasks `worker` holds back to the queue at once, with the
    /// attempt they used given back too: the worker is shutting down, which
    /// is no fault of the task, so a deploy must not spend its attempts or
    /// make it wait out a lease. Their credit holds stay for the next
    /// attempt. Returns the ids given back (those `worker` still held).
    pub async fn release_tasks(&self, worker: &str, ids: &[String]) -> Result<Vec<String>, StoreError> {
        let now = now_ms();
        let mut released = Vec::with_capacity(ids.len());
        for id in ids {
            let res = sqlx::query(
                "UPDATE tasks SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL, progress_step = 0, \
                 attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, updated_at = $1 \
                 WHERE id = $2 AND lease_owner = $3 AND state = 'running'",
            )
            .bind(now)
            .bind(id)
            .bind(worker)
            .execute(&self.write)
            .await?;
            if res.rows_affected() > 0 {
                released.push(id.clone());
            }
        }
        Ok(released)
    }

    /// Requeues running tasks whose lease lapsed (their worker died or hung);
    /// those out of attempts fail and have their credit holds released, in
    /// the same transaction. Returns the ids requeued and the ids that failed.
    pub async fn requeue_expired(&self) -> Result<(Vec<String>, Vec<String>), StoreError> {
        let now = now_ms();
        let mut tx = self.write.begin().await?;
        let requeued = sqlx::query(
            "UPDATE tasks SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL, progress_step = 0, updated_at = $1 \
             WHERE state = 'running' AND lease_expires_at < $1 AND attempts < max_attempts RETURNING id",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let failed = sqlx::query(
            "UPDATE tasks SET state = 'failed', error_code = 'lease_expired', error_message = 'its worker stopped responding on every attempt', \
             lease_owner = NULL, lease_expires_at = NULL, finished_at = $1, updated_at = $1 \
             WHERE state = 'running' AND lease_expires_at < $1 AND attempts >= max_attempts RETURNING id",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let ids = |rows: Vec<AnyRow>| rows.iter().map(|r| r.try_get::<String, _>(0)).collect::<Result<Vec<_>, _>>();
        let (requeued, failed) = (ids(requeued)?, ids(failed)?);
        for id in &failed {
            self.release_hold(&mut tx, id).await?;
        }
        tx.commit().await?;
        Ok((requeued, failed))
    }

    /// Number of an account's tasks waiting for a worker.
    pub async fn count_waiting(&self, account_id: &str) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) FROM tasks WHERE account_id = $1 AND state = 'queued'").bind(account_id).fetch_one(&self.read).await?;
        Ok(row.try_get(0)?)
    }

    /// Running tasks per account (for tests and admin views).
    pub async fn running_by_account(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT account_id, COUNT(*) FROM tasks WHERE state = 'running' GROUP BY account_id").fetch_all(&self.write).await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    /// Number of tasks waiting or running (for queue-full admission).
    pub async fn count_unfinished(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) FROM tasks WHERE state IN ('queued', 'running')").fetch_one(&self.read).await?;
        Ok(row.try_get(0)?)
    }

    /// Finished tasks older than `before` whose results are not yet purged.
    pub async fn purgeable_tasks(&self, before: i64, limit: u32) -> Result<Vec<TaskView>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!("SELECT {TASK_COLUMNS} FROM tasks WHERE finished_at < $1 AND purged_at IS NULL ORDER BY finished_at LIMIT $2")))
            .bind(before)
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(task_from).collect()
    }

    /// Drops a task's result (its objects are already deleted) and its idempotency record.
    pub async fn mark_purged(&self, id: &str) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        sqlx::query("UPDATE tasks SET result = NULL, purged_at = $1 WHERE id = $2").bind(now_ms()).bind(id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM idempotency WHERE task_id = $1").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Counts tasks by state (for tests and admin views).
    pub async fn task_state_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) FROM tasks GROUP BY state ORDER BY state").fetch_all(&self.write).await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }
}

/// A fresh id for tasks created outside [`Db::submit_task`] (tests).
pub fn new_task_id() -> String {
    new_id("task")
}
