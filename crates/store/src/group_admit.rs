//! Group commit for metered submissions: tasks with a credit hold (and
//! those that ask to start at once under a concurrency limit), without an
//! idempotency key.
//!
//! Each such submission is a transaction of its own (the start check, the
//! hold on the account's grants, the task row), and on SQLite every one of
//! its statements, `BEGIN` and `COMMIT` included, is a hand-off to the one
//! writer thread: that thread was the ceiling for paying traffic. Here the
//! submissions that arrive while one group is written are written together:
//! one transaction, in arrival order, each hold checked against what the
//! earlier ones in the group already took, and one multi-row INSERT of the
//! tasks. A hold the account cannot pay fails only its own caller (nothing
//! is written for it; `place_hold` checks before it writes). If the group
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
use crate::group_insert::{Row, insert_statement};

/// Most submissions in one transaction.
const MAX_GROUP: usize = 64;

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
    /// Writes a metered submission (see the module notes) and returns its
    /// row once committed, with `new.start` cleared if it may not start now.
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
    let mut group = Vec::with_capacity(MAX_GROUP);
    while rx.recv_many(&mut group, MAX_GROUP).await > 0 {
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
    let mut tx = db.write.begin().await?;
    // Per account, what the rows before this one in the group add to what
    // the table shows: tasks started, and whether one was queued.
    let mut added: HashMap<&str, (i64, bool)> = HashMap::new();
    let mut outcomes = Vec::with_capacity(rows.len());
    let mut written = Vec::with_capacity(rows.len());
    for row in rows {
        let new = &row.new;
        let (started_before, queued_before) = added.get(new.account_id.as_str()).copied().unwrap_or_default();
        let starts = match (&new.start, new.concurrency_limit) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(_), Some(_)) => !queued_before && db.may_start_now(&mut tx, new, started_before).await?,
        };
        if let Some(amount) = new.hold {
            match db.place_hold(&mut tx, &new.account_id, &row.id, amount, row.now).await {
                Ok(()) => {}
                Err(e @ StoreError::InsufficientCredits(_)) => {
                    outcomes.push(Err(e));
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        let entry = added.entry(new.account_id.as_str()).or_default();
        if starts {
            entry.0 += 1;
        } else {
            entry.1 = true;
        }
        outcomes.push(Ok(starts));
        written.push((row, starts));
    }
    if !written.is_empty() {
        let values: Vec<_> = written.iter().map(|(r, starts)| (r.id.as_str(), &r.new, r.spec_json.as_str(), r.now, *starts)).collect();
        insert_statement(&values).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(outcomes)
}
