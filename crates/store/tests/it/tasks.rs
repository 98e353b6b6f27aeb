//! The task queue on SQLite and PostgreSQL: claims, leases, completion,
//! retries, idempotency and requeueing.

use imagegate_core::task::{StoredImage, TaskResult};
use imagegate_core::{Size, TaskSpec, TaskState};
use imagegate_store::{Db, NewTask, StoreError, Submitted};
use imagegate_testkit::ScratchDb;

fn spec(model: &str, w: u32) -> TaskSpec {
    TaskSpec::simple(model, "a red circle", Size::new(w, w))
}

async fn submit(db: &Db, acct: &str, spec: TaskSpec, idem: Option<(&str, &str)>) -> Result<Submitted, StoreError> {
    db.submit_task(NewTask {
        account_id: acct.to_string(),
        key_id: None,
        spec,
        max_attempts: 2,
        idempotency: idem.map(|(k, h)| (k.to_string(), h.to_string())),
        hold: None,
        concurrency_limit: None,
        start: None,
    })
    .await
}

#[tokio::test]
async fn claims_batch_same_shape_oldest_first() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let a = db.create_account("a", "free", false).await.unwrap();
        let t1 = submit(db, &a.id, spec("m", 512), None).await.unwrap();
        let _t2 = submit(db, &a.id, spec("m", 1024), None).await.unwrap();
        let t3 = submit(db, &a.id, spec("m", 512), None).await.unwrap();
        let batch = db.claim_tasks("w1", 8, 30_000).await.unwrap();
        let ids: Vec<_> = batch.iter().map(|t| t.id.clone()).collect();
        assert_eq!(ids, vec![t1.task().id.clone(), t3.task().id.clone()], "same batch key, oldest first");
        assert_eq!(batch[0].attempt, 1);
        let next = db.claim_tasks("w2", 8, 30_000).await.unwrap();
        assert_eq!(next.len(), 1);
        assert!(db.claim_tasks("w3", 8, 30_000).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn completion_needs_the_lease() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let a = db.create_account("a", "free", false).await.unwrap();
        let t = submit(db, &a.id, spec("m", 512), None).await.unwrap();
        let id = t.task().id.clone();
        db.claim_tasks("w1", 1, 30_000).await.unwrap();
        db.set_progress(&id, "w1", 3, 20).await.unwrap();
        assert_eq!(db.get_task(&id).await.unwrap().unwrap().progress, (3, 20));
        let result =
            TaskResult { images: vec![StoredImage { key: format!("images/{id}/0.png"), width: 512, height: 512, seed: 1 }], served_by: "test".into(), ..Default::default() };
        assert!(!db.complete_task(&id, "intruder", &result).await.unwrap(), "another worker cannot complete it");
        assert!(db.complete_task(&id, "w1", &result).await.unwrap());
        let done = db.get_task(&id).await.unwrap().unwrap();
        assert_eq!(done.state, TaskState::Succeeded);
        assert_eq!(done.result.unwrap(), result);
        assert!(!db.complete_task(&id, "w1", &result).await.unwrap(), "not twice");
    }
}

#[tokio::test]
async fn a_batch_completes_in_one_call_and_returns_each_task_as_it_stands() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let a = db.create_account("a", "free", false).await.unwrap();
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(submit(db, &a.id, spec("m", 512), None).await.unwrap().task().id.clone());
        }
        let claimed = db.claim_tasks("w1", 2, 30_000).await.unwrap();
        assert_eq!(claimed.len(), 2);
        let result = |id: &str| TaskResult {
            images: vec![StoredImage { key: format!("images/{id}-0.png"), width: 512, height: 512, seed: 1 }],
            served_by: "test".into(),
            ..Default::default()
        };
        let (r0, r1, r2) = (result(&ids[0]), result(&ids[1]), result(&ids[2]));
        // The third was never claimed by w1: it is left alone, the others complete.
        let views = db.complete_tasks("w1", &[(&ids[0], &r0), (&ids[2], &r2), (&ids[1], &r1)]).await.unwrap();
        assert_eq!(views.len(), 3);
        let v0 = views[0].as_ref().expect("held by w1");
        assert_eq!((v0.id.as_str(), v0.state, v0.result.as_ref()), (ids[0].as_str(), TaskState::Succeeded, Some(&r0)));
        assert!(views[1].is_none(), "not held by w1");
        assert_eq!(views[2].as_ref().unwrap().result.as_ref(), Some(&r1));
        assert_eq!(db.get_task(&ids[2]).await.unwrap().unwrap().state, TaskState::Queued);
        assert_eq!(db.get_task(&ids[1]).await.unwrap().unwrap(), views[2].clone().unwrap(), "what it returns is what is stored");
    }
}

#[tokio::test]
async fn concurrent_plain_submissions_are_each_stored_and_a_bad_one_fails_alone() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let a = db.create_account("a", "free", false).await.unwrap();
        // Submitted together they are written in groups; the one naming no
        // account breaks its group's statement, which must cost only that one.
        let accounts: Vec<String> = (0..100).map(|n| if n == 37 { "acct_missing".to_string() } else { a.id.clone() }).collect();
        let results = futures::future::join_all(accounts.iter().map(|acct| submit(db, acct, spec("m", 512), None))).await;
        let mut ids = std::collections::HashSet::new();
        for (n, res) in results.into_iter().enumerate() {
            if n == 37 {
                assert!(matches!(res, Err(StoreError::Database(_))), "the task of a missing account fails: {res:?}");
                continue;
            }
            let task = res.unwrap().task().clone();
            let stored = db.get_task(&task.id).await.unwrap().expect("acknowledged means stored");
            assert_eq!((stored.state, stored.account_id.as_str()), (TaskState::Queued, a.id.as_str()));
            assert!(ids.insert(task.id));
        }
        assert_eq!(ids.len(), 99);
        let mut claimed = 0;
        loop {
            let batch = db.claim_tasks("w1", 16, 30_000).await.unwrap();
            if batch.is_empty() {
                break;
            }
            claimed += batch.len();
        }
        assert_eq!(claimed, 99, "every stored task is claimable once");
    }
}

#[tokio::test]
async fn retryable_failures_requeue_until_attempts_run_out() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let a = db.create_account("a", "free", false).await.unwrap();
        let id = submit(db, &a.id, spec("m", 512), None).await.unwrap().task().id.clone();
        db.claim_tasks("w1", 1, 30_000).await.unwrap();
        assert_eq!(db.fail_task(&id, "w1", "upstream_error", "502", true).await.unwrap(), Some(TaskState::Queued));
        db.claim_tasks("w1", 1, 30_000).await.unwrap();
        assert_eq!(db.fail_task(&id, "w1", "upstream_error", "502", true).await.unwrap(), Some(TaskState::Failed));
        let t = db.get_task(&id).await.unwrap().unwrap();
        assert_eq!(t.attempts, 2);
        assert_eq!(t.error, Some(("upstream_error".into(), "502".into())));
        assert_eq!(db.fail_task(&id, "w1", "x", "y", true).await.unwrap(), None, "no lease, no change");
    }
}

#[tokio::test]
async fn lapsed_leases_requeue_then_fail() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let a = db.create_account("a", "free", false).await.unwrap();
        let id = submit(db, &a.id, spec("m", 512), None).await.unwrap().task().id.clone();
        db.claim_tasks("dead", 1, -1).await.unwrap();
        db.set_progress(&id, "dead", 7, 20).await.unwrap();
        let (requeued, failed) = db.requeue_expired().await.unwrap();
        assert_eq!((requeued, failed.len()), (vec![id.clone()], 0));
        assert_eq!(db.get_task(&id).await.unwrap().unwrap().progress, (0, 20), "requeued with no steps done");
        db.claim_tasks("dead-again", 1, -1).await.unwrap();
        let (requeued, failed) = db.requeue_expired().await.unwrap();
        assert_eq!((requeued.len(), failed), (0, vec![id.clone()]));
        let t = db.get_task(&id).await.unwrap().unwrap();
        assert_eq!(t.state, TaskState::Failed);
        assert_eq!(t.error.unwrap().0, "lease_expired");
    }
}

#[tokio::test]
async fn released_tasks_requeue_at_once_with_their_attempt_given_back() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let a = db.create_account("a", "free", false).await.unwrap();
        let id = submit(db, &a.id, spec("m", 512), None).await.unwrap().task().id.clone();
        db.claim_tasks("stopping", 1, 30_000).await.unwrap();
        db.set_progress(&id, "stopping", 5, 20).await.unwrap();
        let ids = [id.clone(), "task_not_held".to_string()];
        assert!(db.release_tasks("someone-else", &ids).await.unwrap().is_empty(), "only the lease holder gives a task back");
        assert_eq!(db.release_tasks("stopping", &ids).await.unwrap(), vec![id.clone()]);
        let t = db.get_task(&id).await.unwrap().unwrap();
        assert_eq!((t.state, t.attempts, t.progress), (TaskState::Queued, 0, (0, 20)), "a queued task shows no steps done");
        // Released on every attempt, it is never failed for it.
        for _ in 0..3 {
            let claimed = db.claim_tasks("next", 1, 30_000).await.unwrap();
            assert_eq!(claimed[0].attempt, 1);
            db.release_tasks("next", std::slice::from_ref(&id)).await.unwrap();
        }
        assert!(db.release_tasks("next", std::slice::from_ref(&id)).await.unwrap().is_empty(), "a queued task is not released twice");
        assert_eq!(db.get_task(&id).await.unwrap().unwrap().state, TaskState::Queued);
    }
}

#[tokio::test]
async fn a_recorded_provider_job_comes_back_with_the_next_claim() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let a = db.create_account("a", "free", false).await.unwrap();
        let id = submit(db, &a.id, spec("m", 512), None).await.unwrap().task().id.clone();
        assert_eq!(db.claim_tasks("w1", 1, -1).await.unwrap()[0].provider_job, None);
        assert!(!db.record_provider_job(&id, "intruder", "x").await.unwrap(), "only the lease holder records");
        assert!(db.record_provider_job(&id, "w1", r#"{"channel":"bfl","state":[]}"#).await.unwrap());
        // w1 dies; the sweeper requeues; the next claim carries the job.
        db.requeue_expired().await.unwrap();
        let next = db.claim_tasks("w2", 1, 30_000).await.unwrap();
        assert_eq!(next[0].provider_job.as_deref(), Some(r#"{"channel":"bfl","state":[]}"#));
    }
}

#[tokio::test]
async fn a_retried_failure_goes_back_with_no_steps_done() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let a = db.create_account("a", "free", false).await.unwrap();
        let id = submit(db, &a.id, spec("m", 512), None).await.unwrap().task().id.clone();
        db.claim_tasks("w1", 1, 30_000).await.unwrap();
        db.set_progress(&id, "w1", 3, 20).await.unwrap();
        assert_eq!(db.fail_task(&id, "w1", "upstream_error", "502", true).await.unwrap(), Some(TaskState::Queued));
        assert_eq!(db.get_task(&id).await.unwrap().unwrap().progress, (0, 20));
    }
}

#[tokio::test]
async fn heartbeats_keep_leases_alive() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let a = db.create_account("a", "free", false).await.unwrap();
        let id = submit(db, &a.id, spec("m", 512), None).await.unwrap().task().id.clone();
        db.claim_tasks("w1", 1, -1).await.unwrap();
        assert_eq!(db.heartbeat("w1", std::slice::from_ref(&id), 60_000).await.unwrap(), 1);
        assert_eq!(db.heartbeat("w2", std::slice::from_ref(&id), 60_000).await.unwrap(), 0);
        let (requeued, failed) = db.requeue_expired().await.unwrap();
        assert!(requeued.is_empty() && failed.is_empty());
    }
}

#[tokio::test]
async fn idempotency_keys_return_the_same_task_or_conflict() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let a = db.create_account("a", "free", false).await.unwrap();
        let b = db.create_account("b", "free", false).await.unwrap();
        let first = submit(db, &a.id, spec("m", 512), Some(("job-1", "h1"))).await.unwrap();
        assert!(matches!(first, Submitted::New(_)));
        let again = submit(db, &a.id, spec("m", 512), Some(("job-1", "h1"))).await.unwrap();
        assert!(matches!(again, Submitted::Existing(_)));
        assert_eq!(again.task().id, first.task().id);
        assert!(matches!(submit(db, &a.id, spec("m", 512), Some(("job-1", "h2"))).await, Err(StoreError::Conflict(_))));
        let other = submit(db, &b.id, spec("m", 512), Some(("job-1", "h1"))).await.unwrap();
        assert_ne!(other.task().id, first.task().id, "keys are per account");
        assert_eq!(db.count_unfinished().await.unwrap(), 2);
    }
}

#[tokio::test]
async fn an_idempotency_key_finds_its_task_for_its_account_only() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let a = db.create_account("a", "free", false).await.unwrap();
        let b = db.create_account("b", "free", false).await.unwrap();
        assert_eq!(db.task_id_for_key(&a.id, "publish:job-1").await.unwrap(), None);
        let t = submit(db, &a.id, spec("m", 512), Some(("publish:job-1", "h1"))).await.unwrap();
        let _other = submit(db, &b.id, spec("m", 512), Some(("publish:job-2", "h1"))).await.unwrap();
        assert_eq!(db.task_id_for_key(&a.id, "publish:job-1").await.unwrap().as_deref(), Some(t.task().id.as_str()));
        assert_eq!(db.task_id_for_key(&b.id, "publish:job-1").await.unwrap(), None, "keys are per account");
        assert_eq!(db.task_id_for_key(&a.id, "publish:job-2").await.unwrap(), None, "another account's key");
        db.mark_purged(&t.task().id).await.unwrap();
        assert_eq!(db.task_id_for_key(&a.id, "publish:job-1").await.unwrap(), None, "purging drops the record");
    }
}

#[tokio::test]
async fn purged_tasks_lose_results() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let a = db.create_account("a", "free", false).await.unwrap();
        let id = submit(db, &a.id, spec("m", 512), Some(("k", "h"))).await.unwrap().task().id.clone();
        db.claim_tasks("w", 1, 30_000).await.unwrap();
        db.complete_task(&id, "w", &TaskResult::default()).await.unwrap();
        assert!(db.purgeable_tasks(0, 10).await.unwrap().is_empty());
        let old = db.purgeable_tasks(imagegate_store::now_ms() + 1, 10).await.unwrap();
        assert_eq!(old.len(), 1);
        db.mark_purged(&id).await.unwrap();
        assert!(db.purgeable_tasks(imagegate_store::now_ms() + 1, 10).await.unwrap().is_empty());
        assert!(db.get_task(&id).await.unwrap().unwrap().result.is_none());
    }
}

#[tokio::test]
async fn claims_respect_each_accounts_concurrency_and_share_fairly() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let a = db.create_account("limited", "junior", false).await.unwrap();
        let b = db.create_account("other", "free", false).await.unwrap();
        for _ in 0..4 {
            db.submit_task(NewTask {
                account_id: a.id.clone(),
                key_id: None,
                spec: spec("m", 512),
                max_attempts: 2,
                idempotency: None,
                hold: None,
                concurrency_limit: Some(2),
                start: None,
            })
            .await
            .unwrap();
        }
        submit(db, &b.id, spec("m", 512), None).await.unwrap();
        // One big claim: at most 2 of a's tasks, and b's task comes along.
        let batch = db.claim_tasks("w", 16, 30_000).await.unwrap();
        let of_a = batch.iter().filter(|t| t.account_id == a.id).count();
        let of_b = batch.iter().filter(|t| t.account_id == b.id).count();
        assert_eq!((of_a, of_b), (2, 1), "on {}", s.url);
        assert!(db.claim_tasks("w", 16, 30_000).await.unwrap().is_empty(), "a is at its limit");
        // One of a's tasks ends: exactly one more may start.
        let done = batch.iter().find(|t| t.account_id == a.id).unwrap();
        db.complete_task(&done.id, "w", &TaskResult::default()).await.unwrap();
        let next = db.claim_tasks("w", 16, 30_000).await.unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(db.count_waiting(&a.id).await.unwrap(), 1);
        let running: std::collections::HashMap<_, _> = db.running_by_account().await.unwrap().into_iter().collect();
        assert_eq!(running[&a.id], 2);
    }
}
