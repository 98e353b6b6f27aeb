//! Group commit for plain task inserts (no credit hold, no idempotency key:
//! the operator's own traffic and every synchronous benchmark).
//!
//! On SQLite each statement is a round trip to the connection's own thread
//! (sqlx-sqlite runs one per connection), and under load those hand-offs,
//! not SQLite, were most of the cost of admitting a task. Inserts that
//! arrive while one is being written are gathered and written together as
//! one multi-row INSERT, so a burst of N submissions costs one hand-off and
//! one commit instead of N. Each caller still gets its answer only after
//! the row holding its task is committed. If a group's statement fails, its
//! rows are retried one by one, so one bad row fails only its own caller.

use sqlx::{AnyPool, AssertSqlSafe};
use tokio::sync::{mpsc, oneshot};

use crate::error::StoreError;
use crate::tasks::{NewTask, UNLIMITED};

/// Most rows in one statement (14 parameters each, well under SQLite's
/// 32,766 and PostgreSQL's 65,535).
const MAX_GROUP: usize = 64;
const COLUMNS: usize = 14;

/// One task row, ready to write.
pub(crate) struct Row {
    pub id: String,
    pub new: NewTask,
    pub spec_json: String,
    pub now: i64,
}

struct Pending {
    row: Row,
    done: oneshot::Sender<Result<Row, StoreError>>,
}

/// The sending side; the writer task lives as long as any clone of it.
#[derive(Debug, Clone)]
pub(crate) struct GroupInsert {
    tx: mpsc::UnboundedSender<Pending>,
}

impl GroupInsert {
    /// Starts the writer on the current tokio runtime.
    pub fn spawn(pool: AnyPool) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer(pool, rx));
        Self { tx }
    }

    /// Writes `row` (with whatever else is waiting) and returns it once committed.
    pub async fn insert(&self, row: Row) -> Result<Row, StoreError> {
        let (done, answer) = oneshot::channel();
        // The writer only stops with the runtime it was started on.
        self.tx.send(Pending { row, done }).map_err(|_| sqlx::Error::WorkerCrashed)?;
        answer.await.map_err(|_| sqlx::Error::WorkerCrashed)?
    }
}

async fn writer(pool: AnyPool, mut rx: mpsc::UnboundedReceiver<Pending>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while rx.recv_many(&mut group, MAX_GROUP).await > 0 {
        let rows: Vec<&Row> = group.iter().map(|p| &p.row).collect();
        match insert_rows(&pool, &rows).await {
            Ok(()) => {
                for p in group.drain(..) {
                    let _ = p.done.send(Ok(p.row));
                }
            }
            Err(e) if group.len() == 1 => {
                let p = group.pop().expect("one pending insert");
                let _ = p.done.send(Err(e));
            }
            Err(e) => {
                tracing::warn!(error = %e, rows = group.len(), "a grouped task insert failed; writing its rows one by one");
                for p in group.drain(..) {
                    let res = insert_rows(&pool, &[&p.row]).await.map(|()| p.row);
                    let _ = p.done.send(res);
                }
            }
        }
    }
}

async fn insert_rows(pool: &AnyPool, rows: &[&Row]) -> Result<(), StoreError> {
    let values: Vec<_> = rows.iter().map(|r| (r.id.as_str(), &r.new, r.spec_json.as_str(), r.now, r.new.start.is_some())).collect();
    insert_statement(&values).execute(pool).await?;
    Ok(())
}

/// The INSERT of one or more tasks, each given as (id, task, spec JSON,
/// now, starts): queued, or with `starts` running under the lease in
/// [`NewTask::start`]; the transactional submit paths write their rows with
/// it too.
pub(crate) fn insert_statement<'q>(rows: &[(&'q str, &'q NewTask, &'q str, i64, bool)]) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    let mut sql = String::from(
        "INSERT INTO tasks (id, account_id, key_id, model, batch_key, state, spec, max_attempts, progress_total, created_at, updated_at, concurrency_limit, lease_owner, lease_expires_at, attempts) VALUES ",
    );
    for n in 0..rows.len() {
        let p = n * COLUMNS;
        if n > 0 {
            sql.push_str(", ");
        }
        // created_at and updated_at share parameter 10.
        let [a, b, c, d, e, f, g, h, i, j, k, l, m, n] = std::array::from_fn(|k| p + k + 1);
        sql.push_str(&format!("(${a}, ${b}, ${c}, ${d}, ${e}, ${f}, ${g}, ${h}, ${i}, ${j}, ${j}, ${k}, ${l}, ${m}, ${n})"));
    }
    // Only placeholders are spliced in; every value is bound.
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for &(id, new, spec_json, now, starts) in rows {
        let start = new.start.as_ref().filter(|_| starts);
        query = query
            .bind(id)
            .bind(&new.account_id)
            .bind(&new.key_id)
            .bind(&new.spec.model)
            .bind(new.spec.batch_key())
            .bind(if start.is_some() { "running" } else { "queued" })
            .bind(spec_json)
            .bind(i64::from(new.max_attempts))
            .bind(i64::from(new.spec.steps))
            .bind(now)
            .bind(new.concurrency_limit.map_or(UNLIMITED, i64::from))
            .bind(start.map(|s| s.worker.clone()))
            .bind(start.map(|s| now + s.lease_ms))
            .bind(i64::from(start.is_some()));
    }
    query
}
