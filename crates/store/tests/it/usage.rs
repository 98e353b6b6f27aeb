//! Usage contract tests: tasks, images and captured credits per UTC day,
//! model and key, on SQLite and (with `DATABASE_URL`) PostgreSQL.

use imagegate_core::task::{StoredImage, TaskResult};
use imagegate_core::{Catalog, PriceList, Size, TaskSpec, quote};
use imagegate_store::{DAY_MS, Day, Db, NewTask, UsageRow, now_ms};
use imagegate_testkit::ScratchDb;

const FLUX: &str = "FLUX.1-dev";
const SDXL: &str = "stable-diffusion-xl-1024-v1-0";

fn spec(model: &str, count: u32) -> TaskSpec {
    let mut s = TaskSpec::simple(model, "a lighthouse", Size::new(1024, 1024));
    s.count = count;
    s
}

/// What a task of `spec` holds: its quote.
fn price(spec: &TaskSpec) -> i64 {
    quote(spec, Catalog::builtin().resolve(&spec.model).unwrap(), &PriceList::builtin()).total_millicredits
}

/// Submits a paid task, runs it alone and finishes it: `Some(n)` succeeds
/// with `n` images, `None` fails for good. Returns the task id.
async fn run_task(db: &Db, account: &str, key: Option<&str>, spec: TaskSpec, made: Option<usize>) -> String {
    let hold = Some(price(&spec));
    let new = NewTask { account_id: account.into(), key_id: key.map(Into::into), spec, max_attempts: 1, idempotency: None, hold, concurrency_limit: None, start: None };
    let id = db.submit_task(new).await.unwrap().task().id.clone();
    let claimed = db.claim_tasks("w", 1, 30_000).await.unwrap();
    assert_eq!(claimed[0].id, id, "one task at a time");
    match made {
        Some(n) => {
            let images = (0..n).map(|i| StoredImage { key: format!("images/{id}/{i}.png"), width: 1024, height: 1024, seed: i as u64 }).collect();
            assert!(db.complete_task(&id, "w", &TaskResult { images, served_by: "test".into(), ..Default::default() }).await.unwrap());
        }
        None => {
            db.fail_task(&id, "w", "internal", "boom", false).await.unwrap();
        }
    }
    id
}

/// Moves a task's submission time back by `days` (the store has no clock to inject).
async fn backdate(s: &ScratchDb, task: &str, days: i64) {
    let pool = sqlx::AnyPool::connect(&s.url).await.unwrap();
    sqlx::query("UPDATE tasks SET created_at = created_at - $1 WHERE id = $2").bind(days * DAY_MS).bind(task).execute(&pool).await.unwrap();
    pool.close().await;
}

fn row(day: Day, model: &str, key: Option<&str>, tasks: i64, images: i64, millicredits: i64) -> UsageRow {
    UsageRow { day, model: model.into(), key_id: key.map(Into::into), tasks, images, millicredits }
}

#[tokio::test]
async fn usage_groups_by_day_model_and_key_and_counts_only_captured_credits() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let a = db.create_account("a", "basic", false).await.unwrap();
        let other = db.create_account("other", "basic", false).await.unwrap();
        db.grant_credits(&a.id, 500_000, None, "test").await.unwrap();
        db.grant_credits(&other.id, 500_000, None, "test").await.unwrap();
        let (k1, k2) = (db.create_key(&a.id, "k1").await.unwrap().record.id, db.create_key(&a.id, "k2").await.unwrap().record.id);
        let flux1 = price(&spec(FLUX, 1));
        let sdxl1 = price(&spec(SDXL, 1));
        run_task(db, &a.id, Some(&k1), spec(FLUX, 3), Some(2)).await;
        run_task(db, &a.id, Some(&k1), spec(FLUX, 1), None).await;
        run_task(db, &a.id, Some(&k2), spec(SDXL, 1), Some(1)).await;
        run_task(db, &a.id, None, spec(SDXL, 2), Some(2)).await;
        let old = run_task(db, &a.id, Some(&k1), spec(FLUX, 1), Some(1)).await;
        backdate(&s, &old, 1).await;
        run_task(db, &other.id, Some(&k1), spec(FLUX, 1), Some(1)).await;
        let today = Day::of_ms(now_ms());
        let yesterday = Day(today.0 - 1);
        let got = db.usage(&a.id, yesterday, today).await.unwrap();
        let want = vec![
            row(yesterday, FLUX, Some(&k1), 1, 1, flux1),
            row(today, FLUX, Some(&k1), 2, 2, 2 * flux1),
            row(today, SDXL, None, 1, 2, 2 * sdxl1),
            row(today, SDXL, Some(&k2), 1, 1, sdxl1),
        ];
        assert_eq!(got, want, "{:?}", s.db.kind);
    }
}

#[tokio::test]
async fn usage_days_are_inclusive_and_nothing_outside_them_counts() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let a = db.create_account("a", "basic", false).await.unwrap();
        db.grant_credits(&a.id, 500_000, None, "test").await.unwrap();
        let old = run_task(db, &a.id, None, spec(FLUX, 1), Some(1)).await;
        backdate(&s, &old, 3).await;
        run_task(db, &a.id, None, spec(FLUX, 1), Some(1)).await;
        let today = Day::of_ms(now_ms());
        let three_ago = Day(today.0 - 3);
        let only_old = db.usage(&a.id, three_ago, three_ago).await.unwrap();
        assert_eq!(only_old.iter().map(|r| (r.day, r.tasks)).collect::<Vec<_>>(), vec![(three_ago, 1)]);
        assert!(db.usage(&a.id, Day(today.0 - 2), Day(today.0 - 1)).await.unwrap().is_empty());
        assert_eq!(db.usage(&a.id, three_ago, today).await.unwrap().len(), 2);
        assert!(db.usage("acct_nobody", three_ago, today).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn unmetered_and_purged_tasks_still_count_their_images() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let admin = db.create_account("root", "senior", true).await.unwrap();
        let new = NewTask { account_id: admin.id.clone(), key_id: None, spec: spec(FLUX, 2), max_attempts: 1, idempotency: None, hold: None, concurrency_limit: None, start: None };
        let id = db.submit_task(new).await.unwrap().task().id.clone();
        db.claim_tasks("w", 1, 30_000).await.unwrap();
        let images = (0..2).map(|i| StoredImage { key: format!("images/{id}/{i}.png"), width: 1024, height: 1024, seed: i }).collect();
        db.complete_task(&id, "w", &TaskResult { images, served_by: "test".into(), ..Default::default() }).await.unwrap();
        db.mark_purged(&id).await.unwrap();
        let today = Day::of_ms(now_ms());
        let got = db.usage(&admin.id, today, today).await.unwrap();
        assert_eq!(got, vec![row(today, FLUX, None, 1, 2, 0)], "no hold, no credits; the purged result falls back to the count asked for");
    }
}
