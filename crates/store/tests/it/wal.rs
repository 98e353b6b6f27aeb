//! SQLite's write-ahead log is checkpointed in the background (the writer
//! never does it on a commit's time), and still does not grow without bound.

use imagegate_core::{Size, TaskSpec};
use imagegate_store::{Db, NewTask};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_stays_small_while_the_writer_never_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&Db::sqlite_url_in(dir.path())).await.unwrap();
    let wal = dir.path().join("imagegate.db-wal");
    let a = db.create_account("a", "free", false).await.unwrap();
    // Ten rounds of about a megabyte each: without checkpoints the log
    // would hold all of them; each round gives the background one a chance.
    let prompt = "a lighthouse at dusk, ".repeat(500);
    let mut largest = 0;
    for _ in 0..10 {
        let subs = (0..100).map(|_| {
            let spec = TaskSpec::simple("m", &prompt, Size::new(512, 512));
            db.submit_task(NewTask { account_id: a.id.clone(), key_id: None, spec, max_attempts: 1, idempotency: None, hold: None, concurrency_limit: None, start: None })
        });
        for r in futures::future::join_all(subs).await {
            r.unwrap();
        }
        largest = largest.max(std::fs::metadata(&wal).unwrap().len());
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    }
    assert_eq!(db.count_unfinished().await.unwrap(), 1000, "every row is there");
    assert!(largest < 5 << 20, "the WAL reached {largest} bytes: it is not being checkpointed");
}
