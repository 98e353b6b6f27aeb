//! Credits through the task queue: admission holds in `submit_task`'s
//! transaction, completion captures in `complete_task`'s, and a task that
//! fails for good (`fail_task`, `requeue_expired`) releases in its own.

use imagegate_core::task::{StoredImage, TaskResult};
use imagegate_core::{Catalog, PriceList, Size, TaskSpec, TaskState, quote};
use imagegate_store::{Db, HoldState, InsufficientCredits, NewTask, StoreError, Submitted};
use imagegate_testkit::ScratchDb;

use super::assert_ledger_balances;

fn flux_dev(count: u32) -> TaskSpec {
    let mut s = TaskSpec::simple("FLUX.1-dev", "a lighthouse", Size::new(1024, 1024));
    s.count = count;
    s
}

/// Submits with the hold an API handler would place: the task's quote.
async fn submit_paid(db: &Db, account: &str, spec: TaskSpec, idem: Option<&str>) -> Result<Submitted, StoreError> {
    let cat = Catalog::builtin();
    let q = quote(&spec, cat.resolve(&spec.model).unwrap(), &PriceList::builtin());
    submit_holding(db, account, spec, idem, Some(q.total_millicredits)).await
}

/// Submits holding `hold` milli-credits (`None`: unmetered, as an admin's task).
async fn submit_holding(db: &Db, account: &str, spec: TaskSpec, idem: Option<&str>, hold: Option<i64>) -> Result<Submitted, StoreError> {
    db.submit_task(NewTask {
        account_id: account.to_string(),
        key_id: None,
        spec,
        max_attempts: 2,
        idempotency: idem.map(|k| (k.to_string(), "body".to_string())),
        hold,
        concurrency_limit: None,
        start: None,
    })
    .await
}

fn images(id: &str, n: usize) -> TaskResult {
    TaskResult {
        images: (0..n).map(|i| StoredImage { key: format!("images/{id}/{i}.png"), width: 1024, height: 1024, seed: i as u64 }).collect(),
        served_by: "test".into(),
        ..Default::default()
    }
}

async fn available(db: &Db, account: &str) -> (i64, i64) {
    let b = db.balance(account, imagegate_store::now_ms()).await.unwrap();
    (b.available, b.held)
}

#[tokio::test]
async fn submit_holds_the_quote_and_completion_captures_it() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let a = db.create_account("a", "free", false).await.unwrap();
        db.grant_credits(&a.id, 20_000, None, "purchase").await.unwrap();
        let id = submit_paid(db, &a.id, flux_dev(1), None).await.unwrap().task().id.clone();
        assert_eq!(available(db, &a.id).await, (9_000, 11_000), "FLUX.1-dev 1024x1024 at 20 steps holds 11 credits");
        let err = submit_paid(db, &a.id, flux_dev(1), None).await.unwrap_err();
        assert!(matches!(err, StoreError::InsufficientCredits(InsufficientCredits { balance: 9_000, price: 11_000 })), "{err:?}");
        assert_eq!(db.count_unfinished().await.unwrap(), 1, "a task that cannot be paid is not queued");
        db.claim_tasks("w1", 1, 30_000).await.unwrap();
        assert!(db.complete_task(&id, "w1", &images(&id, 1)).await.unwrap());
        assert_eq!(available(db, &a.id).await, (9_000, 0));
        let h = db.hold(&id).await.unwrap().unwrap();
        assert_eq!((h.state, h.captured), (HoldState::Captured, 11_000));
        assert!(!db.complete_task(&id, "w1", &images(&id, 1)).await.unwrap(), "not twice");
        assert_eq!(assert_ledger_balances(db, &a.id).await, (9_000, 0));
    }
}

#[tokio::test]
async fn completion_with_fewer_images_captures_only_those_made() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let a = db.create_account("a", "free", false).await.unwrap();
        db.grant_credits(&a.id, 50_000, None, "purchase").await.unwrap();
        let id = submit_paid(db, &a.id, flux_dev(3), None).await.unwrap().task().id.clone();
        assert_eq!(available(db, &a.id).await, (17_000, 33_000));
        db.claim_tasks("w1", 1, 30_000).await.unwrap();
        assert!(db.complete_task(&id, "w1", &images(&id, 2)).await.unwrap());
        assert_eq!(db.hold(&id).await.unwrap().unwrap().captured, 22_000);
        assert_eq!(available(db, &a.id).await, (28_000, 0));
        assert_ledger_balances(db, &a.id).await;
    }
}

#[tokio::test]
async fn a_batch_completion_settles_each_hold_for_what_its_task_made() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let a = db.create_account("a", "free", false).await.unwrap();
        let b = db.create_account("b", "free", false).await.unwrap();
        // a's first task spans its expiring grant and its lasting one.
        db.grant_credits(&a.id, 5_000, Some(imagegate_store::now_ms() + 60_000), "free plan").await.unwrap();
        db.grant_credits(&a.id, 100_000, None, "purchase").await.unwrap();
        db.grant_credits(&b.id, 40_000, None, "purchase").await.unwrap();
        let mut ids = Vec::new();
        for (acct, count) in [(&a.id, 3), (&b.id, 2), (&a.id, 1), (&b.id, 1)] {
            ids.push(submit_paid(db, acct, flux_dev(count), None).await.unwrap().task().id.clone());
        }
        // An unmetered task in the same batch: no hold, nothing to tell.
        ids.push(submit_holding(db, &a.id, flux_dev(1), None, None).await.unwrap().task().id.clone());
        assert_eq!(db.claim_tasks("w1", 10, 30_000).await.unwrap().len(), 5);
        // 3 asked, 2 made; 2 of 2; 1 of 1; none of 1 (captures nothing).
        let results = [images(&ids[0], 2), images(&ids[1], 2), images(&ids[2], 1), images(&ids[3], 0), images(&ids[4], 1)];
        let done: Vec<(&str, &TaskResult)> = ids.iter().map(String::as_str).zip(results.iter()).collect();
        let views = db.complete_tasks("w1", &done).await.unwrap();
        assert!(views.iter().all(Option::is_some));
        for ((id, view), captured) in ids.iter().zip(&views).zip([22_000, 22_000, 11_000, 0]) {
            let h = db.hold(id).await.unwrap().unwrap();
            assert_eq!((h.state, h.captured), (HoldState::Captured, captured), "task {id}");
            assert_eq!(view.as_ref().unwrap().charged, Some(captured), "the completion tells what it captured for task {id}");
        }
        assert_eq!(views[4].as_ref().unwrap().charged, None, "no hold, so the completion captured nothing it could tell");
        assert!(db.hold(&ids[4]).await.unwrap().is_none());
        assert_eq!(available(db, &a.id).await, (105_000 - 33_000, 0));
        assert_eq!(available(db, &b.id).await, (40_000 - 22_000, 0));
        assert_eq!(assert_ledger_balances(db, &a.id).await, (72_000, 0));
        assert_eq!(assert_ledger_balances(db, &b.id).await, (18_000, 0));
        assert!(db.complete_tasks("w1", &done).await.unwrap().iter().all(Option::is_none), "not twice");
        assert_eq!(available(db, &a.id).await, (72_000, 0));
    }
}

#[tokio::test]
async fn a_requeued_task_keeps_its_hold_and_a_failed_one_releases_it() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let a = db.create_account("a", "free", false).await.unwrap();
        db.grant_credits(&a.id, 11_000, None, "purchase").await.unwrap();
        let id = submit_paid(db, &a.id, flux_dev(1), None).await.unwrap().task().id.clone();
        db.claim_tasks("w1", 1, 30_000).await.unwrap();
        assert_eq!(db.fail_task(&id, "w1", "upstream_error", "502", true).await.unwrap(), Some(TaskState::Queued));
        assert_eq!(available(db, &a.id).await, (0, 11_000), "retrying: still held");
        db.claim_tasks("w1", 1, 30_000).await.unwrap();
        assert_eq!(db.fail_task(&id, "w1", "upstream_error", "502", true).await.unwrap(), Some(TaskState::Failed));
        assert_eq!(available(db, &a.id).await, (11_000, 0), "failed: all back");
        assert_eq!(db.hold(&id).await.unwrap().unwrap().state, HoldState::Released);
        assert_eq!(db.fail_task(&id, "w1", "x", "y", false).await.unwrap(), None);
        assert_ledger_balances(db, &a.id).await;
    }
}

#[tokio::test]
async fn a_task_whose_leases_keep_lapsing_fails_and_releases_its_hold() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let a = db.create_account("a", "free", false).await.unwrap();
        db.grant_credits(&a.id, 30_000, Some(imagegate_store::now_ms() + 60_000), "free plan").await.unwrap();
        let id = submit_paid(db, &a.id, flux_dev(1), None).await.unwrap().task().id.clone();
        db.claim_tasks("dead", 1, -1).await.unwrap();
        assert_eq!(db.requeue_expired().await.unwrap(), (vec![id.clone()], vec![]));
        assert_eq!(available(db, &a.id).await, (19_000, 11_000));
        db.claim_tasks("dead-again", 1, -1).await.unwrap();
        assert_eq!(db.requeue_expired().await.unwrap(), (vec![], vec![id.clone()]));
        assert_eq!(available(db, &a.id).await, (30_000, 0));
        assert_ledger_balances(db, &a.id).await;
    }
}

#[tokio::test]
async fn a_repeated_idempotent_submission_holds_nothing_more() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let a = db.create_account("a", "free", false).await.unwrap();
        db.grant_credits(&a.id, 30_000, None, "purchase").await.unwrap();
        let first = submit_paid(db, &a.id, flux_dev(1), Some("job-1")).await.unwrap();
        let again = submit_paid(db, &a.id, flux_dev(1), Some("job-1")).await.unwrap();
        assert!(matches!(again, Submitted::Existing(_)));
        assert_eq!(again.task().id, first.task().id);
        assert_eq!(available(db, &a.id).await, (19_000, 11_000));
        assert_ledger_balances(db, &a.id).await;
    }
}

#[tokio::test]
async fn unmetered_tasks_hold_nothing_and_need_no_credits() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let admin = db.create_account("root", "senior", true).await.unwrap();
        let t = submit_holding(db, &admin.id, flux_dev(1), None, None).await.unwrap();
        let id = t.task().id.clone();
        assert!(db.hold(&id).await.unwrap().is_none());
        db.claim_tasks("w1", 1, 30_000).await.unwrap();
        assert!(db.complete_task(&id, "w1", &images(&id, 1)).await.unwrap());
        assert!(db.ledger_entries(&admin.id).await.unwrap().is_empty());
        assert_eq!(available(db, &admin.id).await, (0, 0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_admissions_never_overdraw() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let a = db.create_account("a", "free", false).await.unwrap();
        // Room for exactly 5 of 12 concurrent 11-credit tasks, spread over three grants.
        db.grant_credits(&a.id, 20_000, Some(imagegate_store::now_ms() + 60_000), "free plan").await.unwrap();
        db.grant_credits(&a.id, 20_000, None, "purchase").await.unwrap();
        db.grant_credits(&a.id, 19_000, None, "purchase").await.unwrap();
        let runs = (0..12).map(|_| {
            let (db, acct) = (db.clone(), a.id.clone());
            tokio::spawn(async move { submit_paid(&db, &acct, flux_dev(1), None).await })
        });
        let mut admitted = 0;
        for r in futures::future::join_all(runs).await {
            match r.unwrap() {
                Ok(_) => admitted += 1,
                Err(StoreError::InsufficientCredits(_)) => {}
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!(admitted, 5);
        assert_eq!(available(db, &a.id).await, (4_000, 55_000));
        assert_eq!(db.count_unfinished().await.unwrap(), 5);
        assert_ledger_balances(db, &a.id).await;
    }
}
