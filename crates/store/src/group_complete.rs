//! Group commit for completions, the counterpart of `group_admit`.
//!
//! A worker that finishes a claimed batch records it in one transaction;
//! tasks started at admission (see [`crate::NewTask::start`]) finish one by
//! one, each in its own request, and would each pay a transaction (begin,
//! update, commit: three hand-offs to SQLite's connection thread and a
//! commit). Completions that arrive while one group is being written are
//! gathered and written together by [`Db::complete_tasks`], one statement
//! per lease owner. Each caller gets its answer only after its group is
//! committed; if a group fails, its members are written one by one, so one
//! bad entry fails only its own caller.
//!
//! The writer is started on first use (from async code, so inside a
//! runtime) and works on a copy of the handle without a writer of its own,
//! so that it does not keep itself alive: it stops when the last handle
//! that could send to it is dropped.

use std::sync::Arc;

use imagegate_core::TaskView;
use imagegate_core::task::TaskResult;
use tokio::sync::{mpsc, oneshot};

use crate::db::Db;
use crate::error::StoreError;

/// Most tasks in one group (two parameters each in the UPDATE).
const MAX_GROUP: usize = 64;

/// What one caller asked to complete, and where its answer goes.
struct Pending {
    worker: String,
    done: Vec<(String, TaskResult)>,
    answer: oneshot::Sender<Result<Vec<Option<TaskView>>, StoreError>>,
}

/// The sending side, shared by every clone of a [`Db`].
#[derive(Debug, Clone, Default)]
pub(crate) struct GroupComplete {
    tx: Arc<std::sync::OnceLock<mpsc::UnboundedSender<Pending>>>,
}

impl Db {
    /// [`Db::complete_tasks`], written together with other completions that
    /// arrive meanwhile (see the module notes). Answers for `done` alone.
    pub async fn complete_tasks_grouped(&self, worker: &str, done: Vec<(String, TaskResult)>) -> Result<Vec<Option<TaskView>>, StoreError> {
        let tx = self.completions.tx.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(writer(Db { completions: GroupComplete::default(), ..self.clone() }, rx));
            tx
        });
        let (answer, rx) = oneshot::channel();
        tx.send(Pending { worker: worker.to_string(), done, answer }).map_err(|_| sqlx::Error::WorkerCrashed)?;
        rx.await.map_err(|_| sqlx::Error::WorkerCrashed)?
    }
}

async fn writer(db: Db, mut rx: mpsc::UnboundedReceiver<Pending>) {
    let mut inbox = Vec::with_capacity(MAX_GROUP);
    while rx.recv_many(&mut inbox, MAX_GROUP).await > 0 {
        // One statement per lease owner; in practice a process has one.
        while !inbox.is_empty() {
            let worker = inbox[0].worker.clone();
            let (group, rest): (Vec<Pending>, Vec<Pending>) = inbox.drain(..).partition(|p| p.worker == worker);
            inbox = rest;
            write_group(&db, &worker, group).await;
        }
    }
}

async fn write_group(db: &Db, worker: &str, group: Vec<Pending>) {
    let entries: Vec<(&str, &TaskResult)> = group.iter().flat_map(|p| p.done.iter().map(|(id, r)| (id.as_str(), r))).collect();
    match db.complete_tasks(worker, &entries).await {
        Ok(mut views) => {
            drop(entries);
            for p in group {
                let rest = views.split_off(p.done.len().min(views.len()));
                let mine = std::mem::replace(&mut views, rest);
                let _ = p.answer.send(Ok(mine));
            }
        }
        Err(e) if group.len() == 1 => {
            drop(entries);
            let _ = group.into_iter().next().map(|p| p.answer.send(Err(e)));
        }
        Err(e) => {
            drop(entries);
            tracing::warn!(error = %e, callers = group.len(), "a grouped completion failed; writing its members one by one");
            for p in group {
                let entries: Vec<(&str, &TaskResult)> = p.done.iter().map(|(id, r)| (id.as_str(), r)).collect();
                let res = db.complete_tasks(worker, &entries).await;
                let _ = p.answer.send(res);
            }
        }
    }
}
