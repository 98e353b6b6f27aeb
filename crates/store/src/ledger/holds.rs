//! Holds: credits reserved for one task at admission, then settled exactly
//! once (see `settle`) — captured (the rest released) when the task
//! succeeds, released when it fails. Every function here runs inside the
//! caller's transaction, the same one that changes the task, so a task and
//! its money never disagree.

use std::collections::{BTreeMap, HashMap};

use sqlx::{AnyConnection, Row};

use super::{Entry, EntryKind, InsufficientCredits, ROWS_PER_STATEMENT, append_all, insert_rows};
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

/// One hold for [`Db::place_holds`]: `amount` milli-credits of `account`
/// for `task_id`, drawing on what is unexpired at `now` (unix ms).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HoldRequest<'a> {
    pub account: &'a str,
    pub task_id: &'a str,
    pub amount: i64,
    pub now: i64,
}

/// A grant as a hold sees it.
struct Grant {
    id: String,
    remaining: i64,
    expires_at: Option<i64>,
}

impl Db {
    /// Reserves `amount` milli-credits of `account` for `task_id` inside the
    /// caller's transaction, drawing on unexpired grants, soonest expiry
    /// first (credits that never expire last). Fails with
    /// [`StoreError::InsufficientCredits`] (nothing written) when the
    /// account has less available at `now` (unix ms).
    pub async fn place_hold(&self, conn: &mut AnyConnection, account: &str, task_id: &str, amount: i64, now: i64) -> Result<(), StoreError> {
        let one = HoldRequest { account, task_id, amount, now };
        self.place_holds(conn, &[one]).await?.pop().expect("one outcome per hold")
    }

    /// Places several holds inside the caller's transaction, each decided
    /// exactly as [`Db::place_hold`] would decide it alone, in the order
    /// given: one the account cannot pay by then gets
    /// [`StoreError::InsufficientCredits`] and nothing is written for it;
    /// later, smaller ones may still fit. The outer error undoes nothing by
    /// itself: the caller's transaction must not commit.
    ///
    /// The statements do not grow with the number of holds: one read of
    /// each account's grants, then one write per table (one UPDATE per
    /// grant drawn on). On SQLite every statement is a hand-off to the one
    /// writer thread, and five per hold capped paying traffic.
    pub(crate) async fn place_holds(&self, conn: &mut AnyConnection, reqs: &[HoldRequest<'_>]) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        if let Some(r) = reqs.iter().find(|r| r.amount < 0) {
            return Err(StoreError::Config(format!("a hold must not be negative, got {} milli-credits", r.amount)));
        }
        // Accounts in one order, so that concurrent groups on PostgreSQL
        // lock their grants in the same order.
        let mut accounts: Vec<&str> = reqs.iter().map(|r| r.account).collect();
        accounts.sort_unstable();
        accounts.dedup();
        let mut grants: HashMap<&str, Vec<Grant>> = HashMap::with_capacity(accounts.len());
        for account in accounts {
            let earliest = reqs.iter().filter(|r| r.account == account).map(|r| r.now).min().unwrap_or_else(now_ms);
            grants.insert(account, self.drawable_grants(conn, account, earliest).await?);
        }
        let mut outcomes = Vec::with_capacity(reqs.len());
        let mut placed: Vec<&HoldRequest<'_>> = Vec::with_capacity(reqs.len());
        let mut allocations: Vec<(&str, &str, String, i64)> = Vec::new();
        let mut drawn: BTreeMap<String, i64> = BTreeMap::new();
        for r in reqs {
            let account_grants = grants.get_mut(r.account).expect("grants read for every account");
            let usable = |g: &Grant| g.remaining > 0 && g.expires_at.is_none_or(|at| at > r.now);
            let balance: i64 = account_grants.iter().filter(|g| usable(g)).map(|g| g.remaining).sum();
            if balance < r.amount {
                outcomes.push(Err(StoreError::InsufficientCredits(InsufficientCredits { balance, price: r.amount })));
                continue;
            }
            let mut left = r.amount;
            for g in account_grants.iter_mut().filter(|g| usable(g)) {
                if left == 0 {
                    break;
                }
                let take = g.remaining.min(left);
                left -= take;
                g.remaining -= take;
                *drawn.entry(g.id.clone()).or_default() += take;
                allocations.push((r.task_id, r.account, g.id.clone(), take));
            }
            placed.push(r);
            outcomes.push(Ok(()));
        }
        for chunk in placed.chunks(ROWS_PER_STATEMENT) {
            let sql = insert_rows(conn, "credit_holds", &["task_id", "account_id", "amount", "state", "created_at"], chunk.len());
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for r in chunk {
                q = q.bind(r.task_id).bind(r.account).bind(r.amount).bind(HoldState::Held.as_str()).bind(r.now);
            }
            q.execute(&mut *conn).await?;
        }
        for (grant_id, take) in &drawn {
            // The guard cannot fail under our row lock / single writer; if it
            // ever does, refuse rather than overdraw.
            let res = sqlx::query("UPDATE credit_grants SET remaining = remaining - $1 WHERE id = $2 AND remaining >= $1").bind(*take).bind(grant_id).execute(&mut *conn).await?;
            if res.rows_affected() != 1 {
                return Err(StoreError::Corrupt(format!("grant {grant_id} changed under a hold")));
            }
        }
        for chunk in allocations.chunks(ROWS_PER_STATEMENT) {
            let sql = insert_rows(conn, "credit_hold_allocations", &["task_id", "grant_id", "amount"], chunk.len());
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (task_id, _, grant_id, take) in chunk {
                q = q.bind(*task_id).bind(grant_id.as_str()).bind(*take);
            }
            q.execute(&mut *conn).await?;
        }
        let entries: Vec<Entry<'_>> = allocations
            .iter()
            .map(|(task_id, account, grant_id, take)| Entry {
                account_id: account,
                kind: EntryKind::Hold,
                grant_id: Some(grant_id),
                task_id: Some(task_id),
                available_delta: -take,
                held_delta: *take,
                reason: None,
            })
            .collect();
        append_all(conn, &entries).await?;
        Ok(outcomes)
    }

    /// An account's grants that can be drawn on at `now`, in the order they
    /// are drawn on; on PostgreSQL locked, so concurrent holds queue up
    /// behind ours.
    async fn drawable_grants(&self, conn: &mut AnyConnection, account: &str, now: i64) -> Result<Vec<Grant>, StoreError> {
        let sql = format!(
            "SELECT id, remaining, expires_at FROM credit_grants WHERE account_id = $1 AND remaining > 0 AND (expires_at IS NULL OR expires_at > $2) \
             ORDER BY CASE WHEN expires_at IS NULL THEN 1 ELSE 0 END, expires_at, created_at, id{}",
            self.lock_rows()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account).bind(now).fetch_all(&mut *conn).await?;
        rows.iter().map(|r| Ok(Grant { id: r.try_get("id")?, remaining: r.try_get("remaining")?, expires_at: r.try_get("expires_at")? })).collect()
    }

    /// A task's hold, if it has one.
    pub async fn hold(&self, task_id: &str) -> Result<Option<Hold>, StoreError> {
        let row = sqlx::query("SELECT task_id, account_id, amount, captured, state FROM credit_holds WHERE task_id = $1").bind(task_id).fetch_optional(&self.read).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::picture::{Twin, picture, twins};

    /// The same grants in two databases; the same holds placed one by one
    /// in one and as a set in the other must leave the same outcomes,
    /// balances, grants and ledger.
    #[tokio::test]
    async fn holds_placed_as_a_set_match_holds_placed_one_by_one() {
        let t0 = 1_000_000;
        let dir = tempfile::tempdir().unwrap();
        let grants = [("x", 5_000, Some(t0 + 1_000)), ("x", 3_000, Some(t0 + 10)), ("x", 10_000, None), ("y", 2_000, None), ("x", 1, Some(t0 - 1))];
        let dbs = twins(dir.path(), &grants).await;
        let requests = |x: &str, y: &str| -> Vec<(String, &'static str, i64, i64)> {
            vec![
                (x.to_string(), "t1", 4_000, t0),
                (y.to_string(), "t2", 3_000, t0),       // more than y has
                (x.to_string(), "t3", 9_000, t0 + 20),  // the grant expiring at t0+10 is gone by then
                (x.to_string(), "t4", 20_000, t0 + 20), // more than x has left
                (y.to_string(), "t5", 2_000, t0),
                (x.to_string(), "t6", 0, t0),
                (x.to_string(), "t7", 2_000, t0 + 20), // fits after t4 was refused
            ]
        };
        let mut outcomes = Vec::new();
        let mut pictures = Vec::new();
        for (n, Twin { db, x, y, grants }) in dbs.iter().enumerate() {
            let reqs = requests(x, y);
            let mut tx = db.begin().await.unwrap();
            let got: Vec<Result<(), StoreError>> = if n == 0 {
                let mut got = Vec::new();
                for (a, t, amount, now) in &reqs {
                    got.push(db.place_hold(&mut tx, a, t, *amount, *now).await);
                }
                got
            } else {
                let set: Vec<HoldRequest<'_>> = reqs.iter().map(|(a, t, amount, now)| HoldRequest { account: a, task_id: t, amount: *amount, now: *now }).collect();
                db.place_holds(&mut tx, &set).await.unwrap()
            };
            tx.commit().await.unwrap();
            outcomes.push(format!("{got:?}"));
            pictures.push(picture(db, &[x, y], grants, &["t1", "t2", "t3", "t4", "t5", "t6", "t7"], t0 + 20).await);
        }
        assert_eq!(outcomes[0], outcomes[1]);
        assert_eq!(pictures[0], pictures[1]);
        // and the set did what the comments above say
        assert_eq!(outcomes[1].matches("Err(InsufficientCredits").count(), 2, "{}", outcomes[1]);
        assert!(pictures[1].iter().any(|l| l.starts_with("t7: Some")), "{:#?}", pictures[1]);
    }

    #[tokio::test]
    async fn a_negative_hold_in_a_set_is_refused_before_anything_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}?mode=rwc", dir.path().join("db").display())).await.unwrap();
        let mut tx = db.begin().await.unwrap();
        let set = [HoldRequest { account: "a", task_id: "t", amount: 5, now: 0 }, HoldRequest { account: "a", task_id: "u", amount: -1, now: 0 }];
        assert!(matches!(db.place_holds(&mut tx, &set).await, Err(StoreError::Config(_))));
    }
}
