//! Test support: what a database's ledger holds, in a form two databases
//! can be compared by, for the tests that check a set-based ledger change
//! against the same change made one by one.

use sqlx::Row;

use crate::db::Db;

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
        let mut allocations: Vec<(Option<usize>, i64, i64)> =
            rows.iter().map(|r| (index(&Some(r.get("grant_id"))), r.get("amount"), r.get("captured"))).collect();
        allocations.sort_unstable();
        for (grant, amount, captured) in allocations {
            out.push(format!("{t} allocation on grant {grant:?}: {amount}, captured {captured}"));
        }
    }
    out.into_iter().map(|l| accounts.iter().enumerate().fold(l, |l, (n, a)| l.replace(a, &format!("account {n}")))).collect()
}
