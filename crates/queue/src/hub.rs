//! Completion signals: a request waiting synchronously for its task parks on
//! a per-task slot; in-process workers hand the finished task to it, so the
//! waiter needs no database read. A poll of the database backs it up, for
//! tasks finished by workers elsewhere and for outcomes not handed over
//! (failures, which only ring the slot).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use imagegate_core::TaskView;
use imagegate_store::{Db, StoreError};
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long a finished task nobody waits for yet is kept for a waiter that
/// is about to arrive (a worker can finish a task before the request that
/// submitted it starts waiting).
const UNCLAIMED_TTL: Duration = Duration::from_secs(10);
/// Bound on those kept, so tasks nobody waits for (asynchronous dialects)
/// cannot grow the map.
const UNCLAIMED_MAX: usize = 4096;

#[derive(Debug, Default)]
struct Slot {
    notify: Notify,
    finished: Mutex<Option<TaskView>>,
}

#[derive(Debug, Default)]
struct Waiters {
    slots: HashMap<String, Arc<Slot>>,
    unclaimed: HashMap<String, TaskView>,
    unclaimed_order: VecDeque<(Instant, String)>,
}

/// What a waiter finds when it registers.
enum Registered {
    /// Its slot, to wait on.
    Waiting(Arc<Slot>),
    /// The task, finished before the waiter arrived.
    AlreadyFinished(Box<TaskView>),
}

/// Per-task completion hand-over.
#[derive(Debug, Default)]
pub struct CompletionHub {
    waiters: Mutex<Waiters>,
    closed: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked mid-update of a
    // map that is still valid.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl CompletionHub {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    /// Hands a task that reached a terminal state to its waiters, or keeps
    /// it briefly for a waiter that has not registered yet.
    pub fn finished(&self, task: TaskView) {
        let mut w = lock(&self.waiters);
        if let Some(slot) = w.slots.get(&task.id).cloned() {
            drop(w);
            *lock(&slot.finished) = Some(task);
            slot.notify.notify_waiters();
            return;
        }
        let now = Instant::now();
        while let Some((at, _)) = w.unclaimed_order.front() {
            if now.duration_since(*at) < UNCLAIMED_TTL && w.unclaimed_order.len() < UNCLAIMED_MAX {
                break;
            }
            if let Some((_, id)) = w.unclaimed_order.pop_front() {
                w.unclaimed.remove(&id);
            }
        }
        w.unclaimed_order.push_back((now, task.id.clone()));
        w.unclaimed.insert(task.id.clone(), task);
    }

    /// Tells waiters of task `id` that its state changed without handing
    /// them the task; they read it from the database.
    pub fn notify(&self, id: &str) {
        let found = lock(&self.waiters).slots.get(id).cloned();
        if let Some(slot) = found {
            slot.notify.notify_waiters();
        }
    }

    /// Releases every waiter, now and later, as if its deadline passed: the
    /// process is shutting down and will finish nothing more (see `drain`).
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let slots: Vec<Arc<Slot>> = lock(&self.waiters).slots.values().cloned().collect();
        for slot in slots {
            slot.notify.notify_waiters();
        }
    }

    /// Number of tasks kept for waiters that have not arrived (tests).
    pub fn unclaimed(&self) -> usize {
        lock(&self.waiters).unclaimed.len()
    }

    fn register(&self, id: &str) -> Registered {
        let mut w = lock(&self.waiters);
        if let Some(task) = w.unclaimed.remove(id) {
            return Registered::AlreadyFinished(Box::new(task));
        }
        Registered::Waiting(w.slots.entry(id.to_string()).or_default().clone())
    }

    fn release(&self, id: &str, mine: &Arc<Slot>) {
        let mut w = lock(&self.waiters);
        // Two references: the map's and ours. More means another waiter still needs it.
        if w.slots.get(id).is_some_and(|s| Arc::ptr_eq(s, mine) && Arc::strong_count(s) <= 2) {
            w.slots.remove(id);
        }
    }

    /// What a waiter on `slot` can answer without reading the database: the
    /// task a worker handed over, or `None` once the hub closed.
    fn known_without_a_read(&self, slot: &Slot) -> Option<Option<TaskView>> {
        if let Some(task) = lock(&slot.finished).clone() {
            return Some(Some(task));
        }
        self.closed.load(Ordering::SeqCst).then_some(None)
    }

    /// Waits until task `id` is terminal or `deadline` passes or the hub
    /// closes (then `Ok(None)`). The database is read every `poll`, and when a worker
    /// rings without handing the task over; a task handed over by an
    /// in-process worker costs no read at all.
    pub async fn wait_terminal(&self, db: &Db, id: &str, deadline: Instant, poll: Duration) -> Result<Option<TaskView>, StoreError> {
        let slot = match self.register(id) {
            Registered::Waiting(slot) => slot,
            Registered::AlreadyFinished(task) => return Ok(Some(*task)),
        };
        let mut next_read = Instant::now() + poll;
        let out = loop {
            let notified = slot.notify.notified();
            tokio::pin!(notified);
            // Register before looking, so a hand-over between the look and
            // the wait cannot be missed.
            notified.as_mut().enable();
            if let Some(known) = self.known_without_a_read(&slot) {
                break Ok(known);
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(next_read) => {}
                _ = tokio::time::sleep_until(deadline) => break Ok(None),
            }
            if let Some(known) = self.known_without_a_read(&slot) {
                break Ok(known);
            }
            next_read = Instant::now() + poll;
            match db.get_task(id).await {
                Ok(Some(t)) if t.state.is_terminal() => break Ok(Some(t)),
                Ok(Some(_)) => {}
                Ok(None) => break Err(StoreError::NotFound(format!("task {id}"))),
                Err(e) => break Err(e),
            }
        };
        self.release(id, &slot);
        out
    }
}

#[cfg(test)]
mod tests {
    use imagegate_core::{Size, TaskSpec, TaskState};

    use super::*;

    fn finished(id: &str) -> TaskView {
        TaskView {
            id: id.into(),
            account_id: "a".into(),
            state: TaskState::Succeeded,
            spec: TaskSpec::simple("m", "p", Size::new(64, 64)),
            progress: (1, 1),
            result: None,
            error: None,
            attempts: 1,
            created_at: 0,
            updated_at: 0,
            charged: None,
        }
    }

    async fn db() -> Db {
        // An empty database: any read of a task would answer "not found",
        // so a hand-over that fell back to the database fails the test.
        Db::connect("sqlite::memory:").await.unwrap()
    }

    #[tokio::test]
    async fn a_task_finished_before_its_waiter_arrives_is_handed_over_without_a_read() {
        let hub = CompletionHub::new();
        hub.finished(finished("t1"));
        assert_eq!(hub.unclaimed(), 1);
        let got = hub.wait_terminal(&db().await, "t1", Instant::now() + Duration::from_secs(5), Duration::from_secs(60)).await.unwrap();
        assert_eq!(got.unwrap().id, "t1");
        assert_eq!(hub.unclaimed(), 0, "claimed once");
    }

    #[tokio::test]
    async fn every_waiter_gets_the_task_handed_over_while_it_waits() {
        let hub = Arc::new(CompletionHub::new());
        let db = db().await;
        let deadline = Instant::now() + Duration::from_secs(5);
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let (hub, db) = (hub.clone(), db.clone());
                tokio::spawn(async move { hub.wait_terminal(&db, "t2", deadline, Duration::from_secs(60)).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        hub.finished(finished("t2"));
        for w in waiters {
            assert_eq!(w.await.unwrap().unwrap().unwrap().id, "t2");
        }
        assert_eq!(hub.unclaimed(), 0, "handed to waiters, not kept");
        assert!(lock(&hub.waiters).slots.is_empty(), "slots are released");
    }

    #[tokio::test]
    async fn the_deadline_ends_a_wait_with_none() {
        let hub = CompletionHub::new();
        let got = hub.wait_terminal(&db().await, "t3", Instant::now() + Duration::from_millis(30), Duration::from_secs(60)).await.unwrap();
        assert!(got.is_none());
    }

    #[tokio::test]
    async fn closing_releases_waiters_now_and_later_without_a_read() {
        let hub = Arc::new(CompletionHub::new());
        let db = db().await;
        let deadline = Instant::now() + Duration::from_secs(60);
        let waiter = {
            let (hub, db) = (hub.clone(), db.clone());
            tokio::spawn(async move { hub.wait_terminal(&db, "t4", deadline, Duration::from_secs(60)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        hub.close();
        let got = tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("released at once").unwrap();
        assert!(got.unwrap().is_none());
        assert!(hub.wait_terminal(&db, "t5", deadline, Duration::from_secs(60)).await.unwrap().is_none(), "a waiter after the close");
        assert!(lock(&hub.waiters).slots.is_empty(), "slots are released");
    }

    #[test]
    fn unclaimed_tasks_are_bounded() {
        let hub = CompletionHub::new();
        for n in 0..UNCLAIMED_MAX + 10 {
            hub.finished(finished(&format!("t{n}")));
        }
        assert_eq!(hub.unclaimed(), UNCLAIMED_MAX);
    }
}
