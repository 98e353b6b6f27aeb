//! Test support for the tests that check a set-based ledger change against
//! the same change made one by one: twin databases with the same accounts
//! and grants, and what a database's ledger holds, in a form two databases
//! can be compared by.

use std::path::Path;

use sqlx::Row;

use crate::db::Db;

/// One of two databases set up alike: accounts x and y and their grants,
/// in the order given.
pub(crate) struct Twin {
    pub db: Db,
    pub x: String,
    pub y: String,
    pub grants: Vec<String>,
}

/// Two databases in `dir` ("one_by_one" and "as_a_set"), each with accounts
/// x and y and the `grants` given as (`"x"` or `"y"`, milli-credits, expiry).
pub(crate) async fn twins(dir: &Path, grants: &[(&str, i64, Option<i64>)]) -> Vec<Twin> {
    let mut out = Vec::new();
    for name in ["one_by_one", "as_a_set"] {
        let db = Db::connect(&format!("sqlite://{}?mode=rwc", dir.join(name).display())).await.unwrap();
        let x = db.create_account("x", "free", false).await.unwrap().id;
        let y = db.create_account("y", "free", false).await.unwrap().id;
        let mut ids = Vec::new();
        for (who, amount, expires_at) in grants {
            let account = if *who == "x" { &x } else { &y };
            ids.push(db.grant_credits(account, *amount, *expires_at, "test").await.unwrap());
        }
        out.push(Twin { db, x, y, grants: ids });
    }
    out
}

/// Balances, ledger entries, grants, holds and their allocations, with
/// grant ids replaced by their position in `grants` and account ids by
/// their position in `accounts` (ids differ between databases).
pub(crate) async fn picture(db: &Db, accounts: &[&str], grants: &[String], tasks: &[&str], now: i64) -> Vec<String> {
    let index = |id: &Option<String>| id.as_ref().map(|g| grants.iter().position(|x| x == g).expect("known grant"));
    let mut out = Vec::new();
    for a in accounts {
        out.push(format!("{a}: {:?}", db.balance(a, now).await.unwrap()));
        for e in db.ledger_entries(a).await.unwrap() {
            out.push(format!("{:?} grant {:?} task {:?} {} {}", e.kind, index(&e.grant_id), e.task_id, e.available_delta, e.held_delta));
        }
        for (id, remaining, _) in db.grants(a).await.unwrap() {
            out.push(format!("grant {:?} remaining {remaining}", index(&Some(id))));
        }
    }
    for t in tasks {
        out.push(format!("{t}: {:?}", db.hold(t).await.unwrap()));
        let rows = sqlx::query("SELECT grant_id, amount, captured FROM credit_hold_allocations WHERE task_id = $1").bind(*t).fetch_all(&db.read).await.unwrap();
        let mut allocations: Vec<(Option<usize>, i64, i64)> = rows.iter().map(|r| (index(&Some(r.get("grant_id"))), r.get("amount"), r.get("captured"))).collect();
        allocations.sort_unstable();
        for (grant, amount, captured) in allocations {
            out.push(format!("{t} allocation on grant {grant:?}: {amount}, captured {captured}"));
        }
    }
    out.into_iter().map(|l| accounts.iter().enumerate().fold(l, |l, (n, a)| l.replace(a, &format!("account {n}")))).collect()
}
