//! Plan limits: per-key rate limits and per-account concurrency.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use imagegate_api::ApiConfig;
use imagegate_queue::QueueConfig;
use imagegate_testkit::{SyntheticBackend, TestApp, TestAppOptions};
use serde_json::json;

async fn account_key(app: &TestApp, name: &str, plan: &str) -> (String, String) {
    let db = &app.state.db;
    let acct = db.create_account(name, plan, false).await.unwrap();
    db.grant_credits(&acct.id, 1_000_000, None, "test").await.unwrap();
    let key = db.create_key(&acct.id, "k").await.unwrap().secret.expose().to_string();
    (acct.id, key)
}

#[tokio::test]
async fn a_burst_gets_exactly_the_plan_rate_then_429_with_retry_after() {
    let app = TestApp::spawn().await;
    let (_, key) = account_key(&app, "bursty", "free").await;
    let rate = app.state.plans.get("free").unwrap().rate_per_minute as usize;
    let body = json!({"prompt": "x", "image_size": "512x1024"});
    let mut ok = 0;
    let mut limited = 0;
    for _ in 0..rate + 4 {
        let resp = app.client.post(app.url("/v1/images/generations")).bearer_auth(&key).json(&body).send().await.unwrap();
        match resp.status().as_u16() {
            200 => ok += 1,
            429 => {
                let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((1..=60).contains(&retry), "{retry}");
                let err: serde_json::Value = resp.json().await.unwrap();
                assert_eq!(err["error"]["code"], "rate_limited");
                limited += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((ok, limited), (rate, 4));
    // Another key is not affected.
    let (_, other) = account_key(&app, "calm", "free").await;
    let resp = app.client.post(app.url("/v1/images/generations")).bearer_auth(&other).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn an_account_never_runs_more_than_its_plan_allows_while_others_run() {
    let app = TestApp::spawn_with(TestAppOptions {
        backends: vec![SyntheticBackend::with_delay(Duration::from_millis(600))],
        queue: QueueConfig { workers: 8, batch_max: 1, poll_ms: 20, ..QueueConfig::default() },
        api: ApiConfig { sync_wait_secs: 0.01, ..ApiConfig::default() },
        ..Default::default()
    })
    .await;
    let (limited, key) = account_key(&app, "two-at-a-time", "junior").await;
    assert_eq!(app.state.plans.get("junior").unwrap().concurrency, 2);
    let body = json!({"prompt": "x", "image_size": "512x1024"});
    for _ in 0..6 {
        let resp = app.client.post(app.url("/v1/images/generations")).bearer_auth(&key).json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 504, "accepted and still running");
    }
    for _ in 0..3 {
        assert_eq!(app.post_json("/v1/images/generations", &body).await.status(), 504);
    }
    let mut max_limited = 0;
    let mut saw_both = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let running: HashMap<String, i64> = app.state.db.running_by_account().await.unwrap().into_iter().collect();
        let mine = running.get(&limited).copied().unwrap_or(0);
        let others: i64 = running.iter().filter(|(k, _)| **k != limited).map(|(_, v)| v).sum();
        max_limited = max_limited.max(mine);
        saw_both |= mine == 2 && others > 0;
        let counts = app.state.db.task_state_counts().await.unwrap();
        if counts.iter().all(|(s, _)| s == "succeeded") {
            break;
        }
        assert!(Instant::now() < deadline, "tasks did not finish: {counts:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(max_limited, 2, "never more than the plan's 2 at once, and the limit was reached");
    assert!(saw_both, "the other account's tasks ran while this one was at its limit");
}

#[tokio::test]
async fn too_many_waiting_tasks_is_429() {
    let app = TestApp::spawn_with(TestAppOptions {
        backends: vec![SyntheticBackend::with_delay(Duration::from_secs(5))],
        api: ApiConfig { sync_wait_secs: 0.01, max_waiting_per_account: 2, ..ApiConfig::default() },
        ..Default::default()
    })
    .await;
    let (_, key) = account_key(&app, "patient", "basic").await;
    let body = json!({"prompt": "x", "image_size": "512x1024"});
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let resp = app.client.post(app.url("/v1/images/generations")).bearer_auth(&key).json(&body).send().await.unwrap();
        statuses.push(resp.status().as_u16());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // basic runs one at a time: one running, two waiting, then 429s.
    assert_eq!(statuses, vec![504, 504, 504, 429, 429]);
}

#[tokio::test]
async fn a_full_queue_answers_503_and_admits_again_once_tasks_finish() {
    let app = TestApp::spawn_with(TestAppOptions {
        backends: vec![SyntheticBackend::with_delay(Duration::from_millis(300))],
        api: ApiConfig { max_queued: 3, sync_wait_secs: 0.05, ..ApiConfig::default() },
        queue: QueueConfig { workers: 4, batch_max: 1, poll_ms: 50, ..QueueConfig::default() },
        ..Default::default()
    })
    .await;
    let body = json!({"prompt": "x", "image_size": "512x1024"});
    let post = || app.client.post(app.url("/v1/images/generations")).bearer_auth(&app.admin_key).json(&body).send();
    for _ in 0..3 {
        // Accepted, still running past the synchronous deadline.
        assert_eq!(post().await.unwrap().status(), 504);
    }
    let full = post().await.unwrap();
    assert_eq!(full.status(), 503);
    assert!(full.headers().contains_key("retry-after"));
    let err: serde_json::Value = full.json().await.unwrap();
    assert!(err["error"]["message"].as_str().unwrap().contains("queue is full"), "{err}");

    // The three finish; within one refresh of the cached count the queue admits again.
    let t0 = Instant::now();
    loop {
        let counts = app.state.db.task_state_counts().await.unwrap();
        if counts.iter().all(|(s, _)| s != "queued" && s != "running") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "tasks never finished: {counts:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(imagegate_api::depth::REFRESH + Duration::from_millis(20)).await;
    assert_eq!(post().await.unwrap().status(), 504, "admitted (and again past the short deadline)");
}
