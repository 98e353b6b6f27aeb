//! The credit ledger: grants of credits, holds on them for tasks, and an
//! append-only list of entries that explains every change.
//!
//! Money is integer milli-credits (1 credit = 1000, 100 credits = 1 yuan).
//! The balance is kept beside the ledger — `credit_grants.remaining` and the
//! open `credit_holds` — and both are only ever changed together with the
//! entries that explain them, in one transaction, so summing the entries
//! re-derives the balance: per grant and per account, `available_delta` sums
//! to the credits remaining and `held_delta` to the credits on hold.
//!
//! Credits with an expiry (free-plan grants) are spent first, soonest expiry
//! first; once past its expiry a grant is never drawn from, and
//! [`Db::expire_grants`] writes its remainder off.

mod holds;
#[cfg(test)]
mod picture;
mod settle;

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row, Transaction};

use crate::db::{Db, DbKind};
use crate::error::StoreError;
use crate::params::Params;
use crate::{new_id, now_ms};

pub(crate) use holds::HoldRequest;
pub use holds::{Hold, HoldState};
pub(crate) use settle::Settle;
pub use settle::Settlement;

/// What an account can spend now, in milli-credits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Balance {
    /// Unexpired credits not on hold.
    pub available: i64,
    /// Credits on hold for unfinished tasks.
    pub held: i64,
    /// The next credits to expire, if any expire.
    pub expiring_soonest: Option<Expiring>,
}

/// Credits that expire together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Expiring {
    /// Milli-credits.
    pub amount: i64,
    /// Unix ms.
    pub expires_at: i64,
}

/// An account cannot pay for a task: the error a hold fails with (HTTP 402).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[error("insufficient credits: balance {} credits, price {} credits", credits(.balance), credits(.price))]
pub struct InsufficientCredits {
    /// Milli-credits available (unexpired, not on hold) when the hold was tried.
    pub balance: i64,
    /// Milli-credits the hold asked for.
    pub price: i64,
}

fn credits(m: &i64) -> String {
    imagegate_core::pricing::format_credits(*m)
}

/// What a ledger entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// Credits granted (available +).
    Grant,
    /// Credits put on hold for a task (available −, held +).
    Hold,
    /// Held credits spent (held −).
    Capture,
    /// Held credits returned (held −, available +).
    Release,
    /// Credits past their expiry written off (available −).
    Expire,
}

impl EntryKind {
    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grant => "grant",
            Self::Hold => "hold",
            Self::Capture => "capture",
            Self::Release => "release",
            Self::Expire => "expire",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Grant, Self::Hold, Self::Capture, Self::Release, Self::Expire].into_iter().find(|k| k.as_str() == s)
    }
}

/// One append-only ledger entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LedgerEntry {
    /// Order of writing.
    pub seq: i64,
    /// Account.
    pub account_id: String,
    /// What happened.
    pub kind: EntryKind,
    /// The grant whose credits moved.
    pub grant_id: Option<String>,
    /// The task, for hold, capture and release.
    pub task_id: Option<String>,
    /// Change to the available credits.
    pub available_delta: i64,
    /// Change to the held credits.
    pub held_delta: i64,
    /// Why (grants).
    pub reason: Option<String>,
    /// Unix ms.
    pub created_at: i64,
}

/// Fields of one entry to append.
pub(crate) struct Entry<'a> {
    pub account_id: &'a str,
    pub kind: EntryKind,
    pub grant_id: Option<&'a str>,
    pub task_id: Option<&'a str>,
    pub available_delta: i64,
    pub held_delta: i64,
    pub reason: Option<&'a str>,
}

/// Appends one entry inside the caller's transaction.
pub(crate) async fn append(conn: &mut AnyConnection, e: Entry<'_>) -> Result<(), StoreError> {
    append_all(conn, &[e]).await
}

/// Rows one multi-row INSERT carries at most: far below SQLite's and
/// PostgreSQL's limits on bound parameters.
pub(crate) const ROWS_PER_STATEMENT: usize = 500;

/// `INSERT INTO {table} ({columns}) VALUES (…), (…)` with `rows` rows of
/// placeholders for the database behind `conn`; bind row by row.
pub(crate) fn insert_rows(conn: &AnyConnection, table: &str, columns: &[&str], rows: usize) -> String {
    let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
    Params::on(conn).rows(&mut sql, rows, columns.len());
    sql
}

/// Appends entries, in order, inside the caller's transaction.
pub(crate) async fn append_all(conn: &mut AnyConnection, entries: &[Entry<'_>]) -> Result<(), StoreError> {
    let now = now_ms();
    for chunk in entries.chunks(ROWS_PER_STATEMENT) {
        let columns = ["account_id", "kind", "grant_id", "task_id", "available_delta", "held_delta", "reason", "created_at"];
        let sql = insert_rows(conn, "ledger_entries", &columns, chunk.len());
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for e in chunk {
            q = q.bind(e.account_id).bind(e.kind.as_str()).bind(e.grant_id).bind(e.task_id).bind(e.available_delta).bind(e.held_delta).bind(e.reason).bind(now);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

fn entry_from(row: &AnyRow) -> Result<LedgerEntry, StoreError> {
    let kind: String = row.try_get("kind")?;
    Ok(LedgerEntry {
        seq: row.try_get("seq")?,
        account_id: row.try_get("account_id")?,
        kind: EntryKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("ledger kind {kind}")))?,
        grant_id: row.try_get("grant_id")?,
        task_id: row.try_get("task_id")?,
        available_delta: row.try_get("available_delta")?,
        held_delta: row.try_get("held_delta")?,
        reason: row.try_get("reason")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Db {
    /// Begins a write transaction, for composing holds, captures and
    /// releases with other writes; nothing is visible until it commits.
    pub async fn begin(&self) -> Result<Transaction<'static, Any>, StoreError> {
        Ok(self.write.begin().await?)
    }

    /// `FOR UPDATE` where the database has row locks (SQLite's single writer needs none).
    pub(crate) fn lock_rows(&self) -> &'static str {
        match self.kind {
            DbKind::Postgres => " FOR UPDATE",
            DbKind::Sqlite => "",
        }
    }

    /// Grants `amount` milli-credits to an account, expiring at `expires_at`
    /// (unix ms; `None`: never — paid credits). Returns the grant id.
    pub async fn grant_credits(&self, account: &str, amount: i64, expires_at: Option<i64>, reason: &str) -> Result<String, StoreError> {
        if amount <= 0 {
            return Err(StoreError::Config(format!("a grant must be positive, got {amount} milli-credits")));
        }
        let id = new_id("grant");
        let mut tx = self.write.begin().await?;
        sqlx::query("INSERT INTO credit_grants (id, account_id, amount, remaining, expires_at, reason, created_at) VALUES ($1, $2, $3, $3, $4, $5, $6)")
            .bind(&id)
            .bind(account)
            .bind(amount)
            .bind(expires_at)
            .bind(reason)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        let e = Entry { account_id: account, kind: EntryKind::Grant, grant_id: Some(&id), task_id: None, available_delta: amount, held_delta: 0, reason: Some(reason) };
        append(&mut tx, e).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// An account's balance at `now` (unix ms): grants past their expiry
    /// count as gone even before [`Db::expire_grants`] writes them off.
    pub async fn balance(&self, account: &str, now: i64) -> Result<Balance, StoreError> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(remaining), 0) AS BIGINT) FROM credit_grants \
             WHERE account_id = $1 AND remaining > 0 AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(account)
        .bind(now)
        .fetch_one(&self.read)
        .await?;
        let available: i64 = row.try_get(0)?;
        let row =
            sqlx::query("SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM credit_holds WHERE account_id = $1 AND state = 'held'").bind(account).fetch_one(&self.read).await?;
        let held: i64 = row.try_get(0)?;
        let row = sqlx::query(
            "SELECT expires_at, CAST(SUM(remaining) AS BIGINT) AS amount FROM credit_grants \
             WHERE account_id = $1 AND remaining > 0 AND expires_at > $2 GROUP BY expires_at ORDER BY expires_at LIMIT 1",
        )
        .bind(account)
        .bind(now)
        .fetch_optional(&self.read)
        .await?;
        let expiring_soonest = row.map(|r| Ok::<_, StoreError>(Expiring { amount: r.try_get("amount")?, expires_at: r.try_get("expires_at")? })).transpose()?;
        Ok(Balance { available, held, expiring_soonest })
    }

    /// Writes off what remains of every grant whose expiry is at or before
    /// `now`, one `expire` entry each. Returns the milli-credits written off.
    pub async fn expire_grants(&self, now: i64) -> Result<i64, StoreError> {
        let mut tx = self.write.begin().await?;
        let sql = format!("SELECT id, account_id, remaining FROM credit_grants WHERE remaining > 0 AND expires_at <= $1 ORDER BY id{}", self.lock_rows());
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now).fetch_all(&mut *tx).await?;
        let mut total = 0;
        for row in rows {
            let (id, account): (String, String) = (row.try_get("id")?, row.try_get("account_id")?);
            let remaining: i64 = row.try_get("remaining")?;
            sqlx::query("UPDATE credit_grants SET remaining = 0 WHERE id = $1").bind(&id).execute(&mut *tx).await?;
            let e = Entry { account_id: &account, kind: EntryKind::Expire, grant_id: Some(&id), task_id: None, available_delta: -remaining, held_delta: 0, reason: None };
            append(&mut tx, e).await?;
            total += remaining;
        }
        tx.commit().await?;
        Ok(total)
    }

    /// An account's ledger, oldest first.
    pub async fn ledger_entries(&self, account: &str) -> Result<Vec<LedgerEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, account_id, kind, grant_id, task_id, available_delta, held_delta, reason, created_at \
             FROM ledger_entries WHERE account_id = $1 ORDER BY seq",
        )
        .bind(account)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(entry_from).collect()
    }

    /// Credits remaining in each of an account's grants, expired ones
    /// included until written off: `(grant id, remaining, expires_at)`.
    pub async fn grants(&self, account: &str) -> Result<Vec<(String, i64, Option<i64>)>, StoreError> {
        let rows = sqlx::query("SELECT id, remaining, expires_at FROM credit_grants WHERE account_id = $1 ORDER BY id").bind(account).fetch_all(&self.read).await?;
        rows.iter().map(|r| Ok((r.try_get("id")?, r.try_get("remaining")?, r.try_get("expires_at")?))).collect()
    }
}
