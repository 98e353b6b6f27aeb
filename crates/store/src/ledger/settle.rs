//! Settling holds: when its task succeeds a hold is captured (what the task
//! spent; the rest goes back), when it fails the hold is released, and
//! either happens exactly once. Like the holds' placing, this runs inside
//! the caller's transaction, the one that changes the task.
//!
//! A group of completions settles its holds together, and the statements
//! do not grow with the number of holds: one guarded UPDATE of the holds,
//! one read of their allocations, one UPDATE of the allocations, one UPDATE
//! per grant that gets credits back and one INSERT of the ledger entries.
//! One by one it was four to six statements per hold, and on SQLite every
//! statement is a hand-off to the one writer thread.

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::{AnyConnection, AssertSqlSafe, Row};

use super::holds::HoldState;
use super::{Entry, EntryKind, ROWS_PER_STATEMENT, append_all};
use crate::db::Db;
use crate::error::StoreError;
use crate::now_ms;
use crate::params::Params;

/// Holds settled by one set of statements at most (six parameters each in
/// the UPDATE of the holds).
const HOLDS_PER_SET: usize = 200;

/// What settling a hold did, in milli-credits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Settlement {
    /// Spent.
    pub captured: i64,
    /// Given back.
    pub released: i64,
}

/// One settlement for [`Db::settle_holds`]: spend up to `actual`
/// milli-credits of `task_id`'s hold and give the rest back, leaving the
/// hold in state `to`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settle<'a> {
    pub task_id: &'a str,
    pub actual: i64,
    pub to: HoldState,
}

/// A settled hold's movement on one grant, in the order it is written.
struct Move {
    account: String,
    grant: String,
    task: String,
    kind: EntryKind,
    amount: i64,
}

impl Db {
    /// Spends up to `actual` milli-credits of the task's hold (never more
    /// than was held) and releases the rest. Idempotent: a hold already
    /// captured or released, or no hold at all, gives `None` and changes nothing.
    pub async fn capture_hold(&self, conn: &mut AnyConnection, task_id: &str, actual: i64) -> Result<Option<Settlement>, StoreError> {
        Ok(self.settle_holds(conn, &[Settle { task_id, actual, to: HoldState::Captured }]).await?.pop().flatten())
    }

    /// Gives the whole hold back. Idempotent, like [`Db::capture_hold`].
    pub async fn release_hold(&self, conn: &mut AnyConnection, task_id: &str) -> Result<Option<Settlement>, StoreError> {
        Ok(self.settle_holds(conn, &[Settle { task_id, actual: 0, to: HoldState::Released }]).await?.pop().flatten())
    }

    /// Settles several holds inside the caller's transaction, each exactly
    /// as [`Db::capture_hold`] or [`Db::release_hold`] would settle it
    /// alone, in the order given: one outcome per request, `None` for a
    /// task without an unsettled hold (a task named twice is settled by its
    /// first request). Credits are spent from the soonest-expiring grants
    /// first, and what goes back goes to the grants that last longest.
    pub(crate) async fn settle_holds(&self, conn: &mut AnyConnection, reqs: &[Settle<'_>]) -> Result<Vec<Option<Settlement>>, StoreError> {
        let mut out = Vec::with_capacity(reqs.len());
        for chunk in reqs.chunks(HOLDS_PER_SET) {
            out.extend(settle_set(conn, chunk).await?);
        }
        Ok(out)
    }
}

async fn settle_set(conn: &mut AnyConnection, reqs: &[Settle<'_>]) -> Result<Vec<Option<Settlement>>, StoreError> {
    let mut seen = HashSet::with_capacity(reqs.len());
    let firsts: Vec<&Settle<'_>> = reqs.iter().filter(|r| seen.insert(r.task_id)).collect();
    let mut settled = mark_settled(conn, &firsts).await?;
    if settled.is_empty() {
        return Ok(reqs.iter().map(|_| None).collect());
    }
    let mut allocations = allocations_of(conn, settled.keys().map(String::as_str)).await?;

    let mut outcomes = Vec::with_capacity(reqs.len());
    let mut moves: Vec<Move> = Vec::new();
    for r in reqs {
        // Removed on first use: a later request for the same task finds it settled.
        let Some((account, captured)) = settled.remove(r.task_id) else {
            outcomes.push(None);
            continue;
        };
        let mut left = captured;
        let mut released = 0;
        for (grant, alloc) in allocations.remove(r.task_id).unwrap_or_default() {
            let spend = alloc.min(left);
            let back = alloc - spend;
            left -= spend;
            for (kind, amount) in [(EntryKind::Capture, spend), (EntryKind::Release, back)] {
                if amount > 0 {
                    moves.push(Move { account: account.clone(), grant: grant.clone(), task: r.task_id.to_string(), kind, amount });
                }
            }
            released += back;
        }
        outcomes.push(Some(Settlement { captured, released }));
    }
    record_spending(conn, &moves).await?;
    // Back into their grants, in one order so that concurrent settlements
    // on PostgreSQL lock grants as holds do. A grant that has expired
    // meanwhile gets its credits back too; the next expiry sweep writes
    // them off (it is never drawn on again).
    let mut back: BTreeMap<&str, i64> = BTreeMap::new();
    for m in moves.iter().filter(|m| m.kind == EntryKind::Release) {
        *back.entry(m.grant.as_str()).or_default() += m.amount;
    }
    for (grant, amount) in back {
        sqlx::query("UPDATE credit_grants SET remaining = remaining + $1 WHERE id = $2").bind(amount).bind(grant).execute(&mut *conn).await?;
    }
    let entries: Vec<Entry<'_>> = moves
        .iter()
        .map(|m| {
            let (available_delta, held_delta) = match m.kind {
                EntryKind::Capture => (0, -m.amount),
                _ => (m.amount, -m.amount),
            };
            Entry { account_id: &m.account, kind: m.kind, grant_id: Some(&m.grant), task_id: Some(&m.task), available_delta, held_delta, reason: None }
        })
        .collect();
    append_all(conn, &entries).await?;
    Ok(outcomes)
}

/// Moves each still-held hold to its final state with what it captured
/// (never more than was held); the guard on the state makes this happen at
/// most once, however many workers or sweeps race to do it. Returns the
/// holds it settled: task → (account, captured).
async fn mark_settled(conn: &mut AnyConnection, reqs: &[&Settle<'_>]) -> Result<HashMap<String, (String, i64)>, StoreError> {
    // Placeholders in the order their values are bound (see `params`).
    let mut p = Params::on(conn);
    let mut sql = String::from("UPDATE credit_holds SET state = CASE task_id");
    p.when_then(&mut sql, reqs.len());
    sql.push_str(" END, settled_at = ");
    p.push(&mut sql);
    sql.push_str(", captured = CASE task_id");
    for _ in reqs {
        sql.push_str(" WHEN ");
        p.push(&mut sql);
        sql.push_str(" THEN CASE WHEN amount < ");
        p.push(&mut sql);
        sql.push_str(" THEN amount ELSE ");
        p.push(&mut sql);
        sql.push_str(" END");
    }
    sql.push_str(" END WHERE task_id IN (");
    p.list(&mut sql, reqs.len());
    sql.push_str(") AND state = 'held' RETURNING task_id, account_id, captured");
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for r in reqs {
        q = q.bind(r.task_id).bind(r.to.as_str());
    }
    q = q.bind(now_ms());
    for r in reqs {
        q = q.bind(r.task_id).bind(r.actual.max(0)).bind(r.actual.max(0));
    }
    for r in reqs {
        q = q.bind(r.task_id);
    }
    let rows = q.fetch_all(&mut *conn).await?;
    rows.iter().map(|r| Ok((r.try_get("task_id")?, (r.try_get("account_id")?, r.try_get("captured")?)))).collect()
}

/// Each task's allocations, in the order its credits are spent: soonest
/// expiry first, credits that never expire last.
async fn allocations_of<'a>(conn: &mut AnyConnection, tasks: impl Iterator<Item = &'a str>) -> Result<HashMap<String, Vec<(String, i64)>>, StoreError> {
    let tasks: Vec<&str> = tasks.collect();
    let mut sql = String::from("SELECT a.task_id, a.grant_id, a.amount FROM credit_hold_allocations a JOIN credit_grants g ON g.id = a.grant_id WHERE a.task_id IN (");
    Params::on(conn).list(&mut sql, tasks.len());
    sql.push_str(") ORDER BY a.task_id, CASE WHEN g.expires_at IS NULL THEN 1 ELSE 0 END, g.expires_at, g.created_at, g.id");
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for t in tasks {
        q = q.bind(t);
    }
    let mut out: HashMap<String, Vec<(String, i64)>> = HashMap::new();
    for r in q.fetch_all(&mut *conn).await? {
        out.entry(r.try_get("task_id")?).or_default().push((r.try_get("grant_id")?, r.try_get("amount")?));
    }
    Ok(out)
}

/// Records on each allocation what was spent of it.
async fn record_spending(conn: &mut AnyConnection, moves: &[Move]) -> Result<(), StoreError> {
    let spent: Vec<&Move> = moves.iter().filter(|m| m.kind == EntryKind::Capture).collect();
    for chunk in spent.chunks(ROWS_PER_STATEMENT) {
        // Placeholders in the order their values are bound (see `params`):
        // (task id, grant id, spent) per allocation, then the tasks' ids.
        let mut p = Params::on(conn);
        let mut sql = String::from("UPDATE credit_hold_allocations SET captured = CASE");
        for _ in chunk {
            sql.push_str(" WHEN task_id = ");
            p.push(&mut sql);
            sql.push_str(" AND grant_id = ");
            p.push(&mut sql);
            sql.push_str(" THEN ");
            p.push(&mut sql);
        }
        let mut tasks: Vec<&str> = chunk.iter().map(|m| m.task.as_str()).collect();
        tasks.dedup();
        sql.push_str(" ELSE captured END WHERE task_id IN (");
        p.list(&mut sql, tasks.len());
        sql.push(')');
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for m in chunk {
            q = q.bind(m.task.as_str()).bind(m.grant.as_str()).bind(m.amount);
        }
        for t in tasks {
            q = q.bind(t);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::picture::{Twin, picture, twins};

    /// The same grants and holds in two databases; the same settlements
    /// made one by one in one and as a set in the other must leave the same
    /// outcomes, balances, grants, holds, allocations and ledger.
    #[tokio::test]
    async fn holds_settled_as_a_set_match_holds_settled_one_by_one() {
        let t0 = 1_000_000;
        let dir = tempfile::tempdir().unwrap();
        let tasks = ["t1", "t2", "t3", "t4", "t5", "t6", "t7"];
        let grants = [("x", 5_000, Some(t0 + 1_000)), ("x", 3_000, Some(t0 + 10)), ("x", 10_000, None), ("y", 2_000, None)];
        let dbs = twins(dir.path(), &grants).await;
        for Twin { db, x, y, .. } in &dbs {
            let mut tx = db.begin().await.unwrap();
            // t1 draws on two grants, t2 on two others, t4 holds nothing.
            for (acct, task, amount) in [(x, "t1", 7_000), (x, "t2", 5_000), (y, "t3", 1_500), (x, "t4", 0), (x, "t5", 2_000), (y, "t6", 500), (x, "t7", 1_000)] {
                db.place_hold(&mut tx, acct, task, amount, t0).await.unwrap();
            }
            assert!(db.release_hold(&mut tx, "t6").await.unwrap().is_some(), "settled before the set");
            tx.commit().await.unwrap();
        }
        let settlements = [
            Settle { task_id: "t1", actual: 5_000, to: HoldState::Captured }, // spends the sooner grant first, gives 2,000 back
            Settle { task_id: "t2", actual: 0, to: HoldState::Released },
            Settle { task_id: "t3", actual: 9_999, to: HoldState::Captured }, // never more than held
            Settle { task_id: "t4", actual: 0, to: HoldState::Captured },     // a zero hold
            Settle { task_id: "t1", actual: 7_000, to: HoldState::Captured }, // named twice: the first stands
            Settle { task_id: "none", actual: 1, to: HoldState::Captured },   // no hold at all
            Settle { task_id: "t5", actual: -5, to: HoldState::Captured },    // below zero spends nothing
            Settle { task_id: "t6", actual: 500, to: HoldState::Captured },   // already released
            Settle { task_id: "t7", actual: 1_000, to: HoldState::Captured },
        ];
        let mut outcomes = Vec::new();
        let mut pictures = Vec::new();
        for (n, Twin { db, x, y, grants }) in dbs.iter().enumerate() {
            let mut tx = db.begin().await.unwrap();
            let got = if n == 0 {
                let mut got = Vec::new();
                for s in &settlements {
                    got.push(match s.to {
                        HoldState::Released => db.release_hold(&mut tx, s.task_id).await.unwrap(),
                        _ => db.capture_hold(&mut tx, s.task_id, s.actual).await.unwrap(),
                    });
                }
                got
            } else {
                db.settle_holds(&mut tx, &settlements).await.unwrap()
            };
            tx.commit().await.unwrap();
            outcomes.push(got);
            pictures.push(picture(db, &[x, y], grants, &tasks, t0).await);
        }
        assert_eq!(outcomes[0], outcomes[1]);
        assert_eq!(pictures[0], pictures[1]);
        // and the set did what the comments above say
        let s = |captured, released| Some(Settlement { captured, released });
        assert_eq!(outcomes[1], [s(5_000, 2_000), s(0, 5_000), s(1_500, 0), s(0, 0), None, None, s(0, 2_000), None, s(1_000, 0)]);
        assert!(pictures[1].iter().any(|l| l == "t1 allocation on grant Some(1): 3000, captured 3000"), "{:#?}", pictures[1]);
        assert!(pictures[1].iter().any(|l| l == "t1 allocation on grant Some(0): 4000, captured 2000"), "{:#?}", pictures[1]);
    }
}
