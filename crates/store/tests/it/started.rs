//! Tasks admitted already running (`NewTask::start`) and grouped
//! completions, on SQLite and PostgreSQL.

use imagegate_core::task::{StoredImage, TaskResult};
use imagegate_core::{Size, TaskSpec, TaskState};
use imagegate_store::{Db, NewTask, Start, Submitted};
use imagegate_testkit::ScratchDb;

fn new_task(account: &str, limit: Option<u32>, start: Option<Start>) -> NewTask {
    NewTask {
        account_id: account.to_string(),
        key_id: None,
        spec: TaskSpec::simple("m", "a red circle", Size::new(512, 512)),
        max_attempts: 2,
        idempotency: None,
        hold: None,
        concurrency_limit: limit,
        start,
    }
}

fn start(worker: &str, lease_ms: i64) -> Option<Start> {
    Some(Start { worker: worker.to_string(), lease_ms })
}

async fn admit(db: &Db, new: NewTask) -> imagegate_core::TaskView {
    match db.submit_task(new).await.unwrap() {
        Submitted::New(t) => t,
        Submitted::Existing(t) => panic!("no idempotency key was given, yet {} came back as existing", t.id),
    }
}

fn result(id: &str) -> TaskResult {
    TaskResult { images: vec![StoredImage { key: format!("images/{id}-0.png"), width: 512, height: 512, seed: 1 }], served_by: "test".into(), ..Default::default() }
}

#[tokio::test]
async fn a_started_task_is_running_under_its_lease_no_claim_takes_it_and_a_lapsed_lease_requeues_it() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let a = db.create_account("a", "free", false).await.unwrap();
        let t = admit(db, new_task(&a.id, None, start("here", -1))).await;
        assert_eq!((t.state, t.attempts), (TaskState::Running, 1), "the returned view");
        let stored = db.get_task(&t.id).await.unwrap().unwrap();
        assert_eq!((stored.state, stored.attempts), (TaskState::Running, 1), "the stored row");
        assert!(db.claim_tasks("elsewhere", 8, 30_000).await.unwrap().is_empty(), "a started task is not in the queue");
        // Its process died (the lease was already lapsed): the sweeper hands it to any worker.
        let (requeued, failed) = db.requeue_expired().await.unwrap();
        assert_eq!((requeued, failed.len()), (vec![t.id.clone()], 0));
        let claimed = db.claim_tasks("elsewhere", 8, 30_000).await.unwrap();
        assert_eq!((claimed.len(), claimed[0].attempt), (1, 2), "the second attempt");
        // A plain submission without `start` is queued as ever.
        let q = admit(db, new_task(&a.id, None, None)).await;
        assert_eq!((q.state, q.attempts), (TaskState::Queued, 0));
    }
}

#[tokio::test]
async fn a_start_is_refused_over_the_accounts_limit_or_behind_its_queued_tasks() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let a = db.create_account("a", "free", false).await.unwrap();
        let first = admit(db, new_task(&a.id, Some(1), start("here", 30_000))).await;
        assert_eq!(first.state, TaskState::Running, "under the limit");
        let second = admit(db, new_task(&a.id, Some(1), start("here", 30_000))).await;
        assert_eq!((second.state, second.attempts), (TaskState::Queued, 0), "at the limit it waits in the queue");
        assert_eq!(db.get_task(&second.id).await.unwrap().unwrap().state, TaskState::Queued);
        let views = db.complete_tasks_grouped("here", vec![(first.id.clone(), result(&first.id))]).await.unwrap();
        assert_eq!(views[0].as_ref().map(|v| v.state), Some(TaskState::Succeeded));
        let third = admit(db, new_task(&a.id, Some(1), start("here", 30_000))).await;
        assert_eq!(third.state, TaskState::Queued, "room again, but the second task is queued ahead of it");
        let other = db.create_account("b", "free", false).await.unwrap();
        let theirs = admit(db, new_task(&other.id, Some(1), start("here", 30_000))).await;
        assert_eq!(theirs.state, TaskState::Running, "another account's queue does not hold it back");
        let claimed = db.claim_tasks("w", 8, 30_000).await.unwrap();
        assert_eq!(claimed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), vec![second.id.as_str()], "claims still go oldest first");
    }
}

#[tokio::test]
async fn grouped_completions_answer_each_caller_for_its_own_tasks() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let a = db.create_account("a", "free", false).await.unwrap();
        let mut ids = Vec::new();
        for _ in 0..12 {
            ids.push(admit(db, new_task(&a.id, None, start("here", 30_000))).await.id);
        }
        let lost = admit(db, new_task(&a.id, None, start("someone-else", 30_000))).await.id;
        // Twelve callers at once, as twelve requests would; one also names a task it does not hold.
        let calls = ids.iter().enumerate().map(|(n, id)| {
            let mut done = vec![(id.clone(), result(id))];
            if n == 5 {
                done.push((lost.clone(), result(&lost)));
            }
            db.complete_tasks_grouped("here", done)
        });
        let answers = futures::future::join_all(calls).await;
        for (n, (id, answer)) in ids.iter().zip(answers).enumerate() {
            let views = answer.unwrap();
            assert_eq!(views.len(), if n == 5 { 2 } else { 1 }, "one answer per entry asked");
            let v = views[0].as_ref().expect("held by this worker");
            assert_eq!((v.id.as_str(), v.state, v.result.as_ref()), (id.as_str(), TaskState::Succeeded, Some(&result(id))));
            if n == 5 {
                assert!(views[1].is_none(), "a task another worker holds is left alone");
            }
        }
        assert_eq!(db.get_task(&lost).await.unwrap().unwrap().state, TaskState::Running);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_paid_starts_stay_within_the_accounts_limit() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let a = db.create_account("a", "free", false).await.unwrap();
        db.grant_credits(&a.id, 1_000_000, None, "purchase").await.unwrap();
        // Twelve at once: most are written in one transaction, where the
        // table does not show the others yet.
        let runs = (0..12).map(|_| {
            let (db, acct) = (db.clone(), a.id.clone());
            tokio::spawn(async move { admit(&db, NewTask { hold: Some(1_000), ..new_task(&acct, Some(2), start("here", 30_000)) }).await })
        });
        let views: Vec<_> = futures::future::join_all(runs).await.into_iter().map(|r| r.unwrap()).collect();
        let running = views.iter().filter(|v| v.state == TaskState::Running).count();
        assert_eq!((running, views.len() - running), (2, 10), "two start, the rest wait in the queue");
        let mut counts = db.task_state_counts().await.unwrap();
        counts.sort();
        assert_eq!(counts, vec![("queued".to_string(), 10), ("running".to_string(), 2)], "as stored");
        let balance = db.balance(&a.id, imagegate_store::now_ms()).await.unwrap();
        assert_eq!((balance.available, balance.held), (988_000, 12_000), "every task holds its price, started or not");
    }
}
