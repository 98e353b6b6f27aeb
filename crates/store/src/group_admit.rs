//! Group commit for submissions without an idempotency key (those with one
//! keep a transaction of their own, `Db::submit_task`).
//!
//! On SQLite every statement, `BEGIN` and `COMMIT` included, is a hand-off
//! to the one writer connection's thread, and under load those hand-offs,
//! not SQLite, were most of the cost of admitting a task. Submissions that
//! arrive while one group is being written are written together, in
//! arrival order, with one multi-row INSERT of their tasks:
//! - a group of plain rows (no credit hold, no start check: the operator's
//!   own traffic) is that one autocommitted statement;
//! - a group with a metered row is one transaction: each hold is checked
//!   against what the earlier ones in the group already took, and a start
//!   under a concurrency limit counts the group's earlier rows, which the
//!   table does not show yet. The group's holds are placed as one set
//!   (`Db::place_holds`: a few statements, however many holds), and a hold
//!   the account cannot pay fails only its own caller (nothing is written
//!   for it).
//!
//! Each caller gets its answer only after its row is committed. If a group
//! fails otherwise, each member is written again on its own, so one bad row
//! fails only its own caller.
//!
//! The writer is started on first use and works on a copy of the handle
//! without an admission writer of its own, so it stops when the last handle
//! that could send to it is dropped.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::db::Db;
use crate::error::StoreError;
use crate::ledger::HoldRequest;
use crate::task_insert::{MAX_ROWS, Row, insert_statement};
use crate::tasks::room_to_start;

struct Pending {
    row: Row,
    done: oneshot::Sender<Result<Row, StoreError>>,
}

/// The sending side, shared by every clone of a [`Db`].
#[derive(Debug, Clone, Default)]
pub(crate) struct GroupAdmit {
    tx: Arc<std::sync::OnceLock<mpsc::UnboundedSender<Pending>>>,
}

impl Db {
    /// Writes a submission without an idempotency key (see the module
    /// notes) and returns its row once committed, with `new.start` cleared
    /// if it may not start now.
    pub(crate) async fn admit_grouped(&self, row: Row) -> Result<Row, StoreError> {
        let tx = self.admissions.tx.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(writer(Db { admissions: GroupAdmit::default(), ..self.clone() }, rx));
            tx
        });
        let (done, answer) = oneshot::channel();
        tx.send(Pending { row, done }).map_err(|_| sqlx::Error::WorkerCrashed)?;
        answer.await.map_err(|_| sqlx::Error::WorkerCrashed)?
    }
}

async fn writer(db: Db, mut rx: mpsc::UnboundedReceiver<Pending>) {
    let mut group = Vec::with_capacity(MAX_ROWS);
    while rx.recv_many(&mut group, MAX_ROWS).await > 0 {
        let rows: Vec<&Row> = group.iter().map(|p| &p.row).collect();
        match write_group(&db, &rows).await {
            Ok(outcomes) => {
                for (p, outcome) in group.drain(..).zip(outcomes) {
                    let _ = p.done.send(outcome.map(|starts| settle_start(p.row, starts)));
                }
            }
            Err(e) if group.len() == 1 => {
                let p = group.pop().expect("one pending admission");
                let _ = p.done.send(Err(e));
            }
            Err(e) => {
                tracing::warn!(error = %e, rows = group.len(), "a grouped admission failed; writing its rows one by one");
                for p in group.drain(..) {
                    let res = match write_group(&db, &[&p.row]).await {
                        Ok(mut o) => o.pop().expect("one outcome per row"),
                        Err(e) => Err(e),
                    };
                    let _ = p.done.send(res.map(|starts| settle_start(p.row, starts)));
                }
            }
        }
    }
}

fn settle_start(mut row: Row, starts: bool) -> Row {
    if !starts {
        row.new.start = None;
    }
    row
}

/// Writes `rows` in one transaction: each row's outcome (whether it starts
/// now, or why it was refused), or the error that undid them all.
async fn write_group(db: &Db, rows: &[&Row]) -> Result<Vec<Result<bool, StoreError>>, StoreError> {
    let metered = |r: &Row| r.new.hold.is_some() || (r.new.start.is_some() && r.new.concurrency_limit.is_some());
    if !rows.iter().any(|r| metered(r)) {
        // Nothing to check or hold first: one autocommitted statement.
        let values: Vec<_> = rows.iter().map(|r| (r.id.as_str(), &r.new, r.spec_json.as_str(), r.now, r.new.start.is_some())).collect();
        insert_statement(db.kind, &values).execute(&db.write).await?;
        return Ok(rows.iter().map(|r| Ok(r.new.start.is_some())).collect());
    }
    let mut tx = db.write.begin().await?;
    // Per account that may start a task under a limit: its running and
    // queued tasks as the table shows them, then counting the group's own
    // rows. Read before the holds: on PostgreSQL this takes the claims'
    // lock, which `submit_task` also takes before an account's grants, so
    // both lock in one order.
    let mut counts: HashMap<&str, (i64, i64)> = HashMap::new();
    for r in rows.iter().filter(|r| r.new.start.is_some() && r.new.concurrency_limit.is_some()) {
        let account = r.new.account_id.as_str();
        if !counts.contains_key(account) {
            counts.insert(account, db.start_counts(&mut tx, account).await?);
        }
    }
    // The holds, in arrival order and as a set (`Db::place_holds`): a row
    // whose hold fails is not written, and takes no part in the starts.
    let holds: Vec<HoldRequest<'_>> = rows.iter().filter_map(|r| r.new.hold.map(|amount| HoldRequest { account: &r.new.account_id, task_id: &r.id, amount, now: r.now })).collect();
    let mut held = db.place_holds(&mut tx, &holds).await?.into_iter();
    let mut outcomes = Vec::with_capacity(rows.len());
    let mut written = Vec::with_capacity(rows.len());
    for row in rows {
        let new = &row.new;
        if new.hold.is_some() {
            match held.next().expect("one outcome per hold") {
                Ok(()) => {}
                Err(e @ StoreError::InsufficientCredits(_)) => {
                    outcomes.push(Err(e));
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        let account = new.account_id.as_str();
        let starts = match (&new.start, new.concurrency_limit) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(_), Some(limit)) => {
                let (running, queued) = counts[account];
                room_to_start(running, queued, limit)
            }
        };
        if let Some((running, queued)) = counts.get_mut(account) {
            if starts {
                *running += 1;
            } else {
                *queued += 1;
            }
        }
        outcomes.push(Ok(starts));
        written.push((row, starts));
    }
    if !written.is_empty() {
        let values: Vec<_> = written.iter().map(|(r, starts)| (r.id.as_str(), &r.new, r.spec_json.as_str(), r.now, *starts)).collect();
        insert_statement(db.kind, &values).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(outcomes)
}
