//! The tasks table's INSERT, for one row or many: the grouped admissions
//! (`group_admit`) write a whole group with one statement, and an
//! idempotent submission writes its row with it inside its own transaction.

use sqlx::AssertSqlSafe;

use crate::db::DbKind;
use crate::params::Params;
use crate::tasks::{NewTask, UNLIMITED};

/// Most rows in one statement (15 parameters each, well under SQLite's
/// 32,766 and PostgreSQL's 65,535).
pub(crate) const MAX_ROWS: usize = 64;
const COLUMNS: usize = 15;

/// One task row, ready to write.
pub(crate) struct Row {
    pub id: String,
    pub new: NewTask,
    pub spec_json: String,
    pub now: i64,
}

/// The INSERT of one or more tasks, each given as (id, task, spec JSON,
/// now, starts): queued, or with `starts` running under the lease in
/// [`NewTask::start`].
pub(crate) fn insert_statement<'q>(kind: DbKind, rows: &[(&'q str, &'q NewTask, &'q str, i64, bool)]) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    let mut sql = String::from(
        "INSERT INTO tasks (id, account_id, key_id, model, batch_key, state, spec, max_attempts, progress_total, created_at, updated_at, concurrency_limit, lease_owner, lease_expires_at, attempts) VALUES ",
    );
    Params::new(kind).rows(&mut sql, rows.len(), COLUMNS);
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
            .bind(now)
            .bind(new.concurrency_limit.map_or(UNLIMITED, i64::from))
            .bind(start.map(|s| s.worker.clone()))
            .bind(start.map(|s| now + s.lease_ms))
            .bind(i64::from(start.is_some()));
    }
    query
}
