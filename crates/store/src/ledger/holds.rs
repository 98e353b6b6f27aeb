//! Holds: credits reserved for one task at admission, then settled exactly
//! once — captured (the rest released) when the task succeeds, released when
//! it fails. Every function here runs inside the caller's transaction, the
//! same one that changes the task, so a task and its money never disagree.

use sqlx::{AnyConnection, Row};

use super::{Entry, EntryKind, InsufficientCredits, append};
use crate::db::Db;
use crate::error::StoreError;
use crate::now_ms;

/// Where a hold is in its life; `Captured` and `Released` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldState {
    /// Reserved, not yet settled.
    Held,
    /// Settled by a capture (of some or all of it; the rest went back).
    Captured,
    /// Settled by giving all of it back.
    Released,
}

impl HoldState {
    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Captured => "captured",
            Self::Released => "released",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Held, Self::Captured, Self::Released].into_iter().find(|k| k.as_str() == s)
    }
}

/// A task's hold.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Hold {
    /// The task.
    pub task_id: String,
    /// The paying account.
    pub account_id: String,
    /// Milli-credits reserved.
    pub amount: i64,
    /// Milli-credits spent (0 until captured).
    pub captured: i64,
    /// State.
    pub state: HoldState,
}

/// What settling a hold did, in milli-credits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Settlement {
    /// Spent.
    pub captured: i64,
    /// Given back.
    pub released: i64,
}

impl Db {
    /// Reserves `amount` milli-credits of `account` for `task_id` inside the
    /// caller's transaction, drawing on unexpired grants, soonest expiry
    /// first (credits that never expire last). Fails with
    /// [`StoreError::InsufficientCredits`] (nothing written) when the
    /// account has less available at `now` (unix ms).
    pub async fn place_hold(&self, conn: &mut AnyConnection, account: &str, task_id: &str, amount: i64, now: i64) -> Result<(), StoreError> {
        if amount < 0 {
            return Err(StoreError::Config(format!("a hold must not be negative, got {amount} milli-credits")));
        }
        // Lock the grants we may draw on so concurrent holds (PostgreSQL) queue up behind us.
        let sql = format!(
            "SELECT id, remaining FROM credit_grants WHERE account_id = $1 AND remaining > 0 AND (expires_at IS NULL OR expires_at > $2) \
             ORDER BY CASE WHEN expires_at IS NULL THEN 1 ELSE 0 END, expires_at, created_at, id{}",
            self.lock_rows()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account).bind(now).fetch_all(&mut *conn).await?;
        let grants = rows.iter().map(|r| Ok((r.try_get::<String, _>("id")?, r.try_get::<i64, _>("remaining")?))).collect::<Result<Vec<_>, StoreError>>()?;
        let balance = grants.iter().map(|(_, r)| *r).sum::<i64>();
        if balance < amount {
            return Err(StoreError::InsufficientCredits(InsufficientCredits { balance, price: amount }));
        }
        sqlx::query("INSERT INTO credit_holds (task_id, account_id, amount, state, created_at) VALUES ($1, $2, $3, 'held', $4)")
            .bind(task_id)
            .bind(account)
            .bind(amount)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        let mut left = amount;
        for (grant_id, remaining) in grants {
            if left == 0 {
                break;
            }
            let take = remaining.min(left);
            left -= take;
            // The guard cannot fail under our row lock / single writer; if it
            // ever does, refuse rather than overdraw.
            let res = sqlx::query("UPDATE credit_grants SET remaining = remaining - $1 WHERE id = $2 AND remaining >= $1")
                .bind(take)
                .bind(&grant_id)
                .execute(&mut *conn)
                .await?;
            if res.rows_affected() != 1 {
                return Err(StoreError::Corrupt(format!("grant {grant_id} changed under a hold")));
            }
            sqlx::query("INSERT INTO credit_hold_allocations (task_id, grant_id, amount) VALUES ($1, $2, $3)")
                .bind(task_id)
                .bind(&grant_id)
                .bind(take)
                .execute(&mut *conn)
                .await?;
            let e = Entry { account_id: account, kind: EntryKind::Hold, grant_id: Some(&grant_id), task_id: Some(task_id), available_delta: -take, held_delta: take, reason: None };
            append(conn, e).await?;
        }
        Ok(())
    }

    /// Spends up to `actual` milli-credits of the task's hold (never more
    /// than was held) and releases the rest. Idempotent: a hold already
    /// captured or released, or no hold at all, gives `None` and changes nothing.
    pub async fn capture_hold(&self, conn: &mut AnyConnection, task_id: &str, actual: i64) -> Result<Option<Settlement>, StoreError> {
        settle(conn, task_id, actual.max(0), HoldState::Captured).await
    }

    /// Gives the whole hold back. Idempotent, like [`Db::capture_hold`].
    pub async fn release_hold(&self, conn: &mut AnyConnection, task_id: &str) -> Result<Option<Settlement>, StoreError> {
        settle(conn, task_id, 0, HoldState::Released).await
    }

    /// A task's hold, if it has one.
    pub async fn hold(&self, task_id: &str) -> Result<Option<Hold>, StoreError> {
        let row = sqlx::query("SELECT task_id, account_id, amount, captured, state FROM credit_holds WHERE task_id = $1")
            .bind(task_id)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| {
            let state: String = r.try_get("state")?;
            Ok(Hold {
                task_id: r.try_get("task_id")?,
                account_id: r.try_get("account_id")?,
                amount: r.try_get("amount")?,
                captured: r.try_get("captured")?,
                state: HoldState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("hold state {state}")))?,
            })
        })
        .transpose()
    }
}

/// Settles a held hold: the guarded state change makes this happen at most
/// once, however many workers or sweeps race to do it.
async fn settle(conn: &mut AnyConnection, task_id: &str, actual: i64, to: HoldState) -> Result<Option<Settlement>, StoreError> {
    // The state change and the captured amount (never more than was held)
    // in one statement: each statement is a hand-off to SQLite's writer thread.
    let row = sqlx::query(
        "UPDATE credit_holds SET state = $1, settled_at = $2, captured = CASE WHEN amount < $4 THEN amount ELSE $4 END \
         WHERE task_id = $3 AND state = 'held' RETURNING account_id, captured",
    )
    .bind(to.as_str())
    .bind(now_ms())
    .bind(task_id)
    .bind(actual)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let account: String = row.try_get("account_id")?;
    let captured: i64 = row.try_get("captured")?;
    // Spend the soonest-expiring credits; what goes back goes to the grants that last longest.
    let rows = sqlx::query(
        "SELECT a.grant_id, a.amount FROM credit_hold_allocations a JOIN credit_grants g ON g.id = a.grant_id \
         WHERE a.task_id = $1 ORDER BY CASE WHEN g.expires_at IS NULL THEN 1 ELSE 0 END, g.expires_at, g.created_at, g.id",
    )
    .bind(task_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut left = captured;
    let mut released = 0;
    for r in rows {
        let grant_id: String = r.try_get("grant_id")?;
        let alloc: i64 = r.try_get("amount")?;
        let spend = alloc.min(left);
        let back = alloc - spend;
        left -= spend;
        if spend > 0 {
            sqlx::query("UPDATE credit_hold_allocations SET captured = $1 WHERE task_id = $2 AND grant_id = $3")
                .bind(spend)
                .bind(task_id)
                .bind(&grant_id)
                .execute(&mut *conn)
                .await?;
            let e = Entry { account_id: &account, kind: EntryKind::Capture, grant_id: Some(&grant_id), task_id: Some(task_id), available_delta: 0, held_delta: -spend, reason: None };
            append(conn, e).await?;
        }
        if back > 0 {
            // Back into its grant; if that grant has expired meanwhile, the
            // next expiry sweep writes it off (it is never drawn on again).
            sqlx::query("UPDATE credit_grants SET remaining = remaining + $1 WHERE id = $2").bind(back).bind(&grant_id).execute(&mut *conn).await?;
            let e = Entry { account_id: &account, kind: EntryKind::Release, grant_id: Some(&grant_id), task_id: Some(task_id), available_delta: back, held_delta: -back, reason: None };
            append(conn, e).await?;
            released += back;
        }
    }
    Ok(Some(Settlement { captured, released }))
}
