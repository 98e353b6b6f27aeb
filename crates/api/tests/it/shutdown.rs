//! Shutting down (SIGTERM): runs in flight finish within the drain time;
//! runs that outlast it go back to the queue at once with their attempt
//! given back, and a waiting client is answered with the task id.

use std::time::Duration;

use imagegate_core::TaskState;
use imagegate_queue::QueueConfig;
use imagegate_testkit::synthetic::SyntheticBackend;
use imagegate_testkit::{TestApp, TestAppOptions};
use serde_json::{Value, json};

async fn app_with(delay: Duration, drain_secs: f64) -> TestApp {
    let queue = QueueConfig { poll_ms: 50, sweep_secs: 0.5, drain_secs, ..QueueConfig::default() };
    TestApp::spawn_with(TestAppOptions { backends: vec![SyntheticBackend::with_delay(delay)], queue, ..TestAppOptions::default() }).await
}

/// Submits through BFL's asynchronous route and returns the task id.
async fn submit(app: &TestApp) -> String {
    let resp = app.client.post(app.url("/v1/flux-dev")).header("x-key", &app.admin_key).json(&json!({"prompt": "a lighthouse", "steps": 10})).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string()
}

async fn wait_for_state(app: &TestApp, id: &str, want: TaskState) {
    for _ in 0..1000 {
        if app.state.db.get_task(id).await.unwrap().unwrap().state == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("task {id} never became {want:?}");
}

async fn shut_down_within(app: &mut TestApp, bound: Duration) {
    tokio::time::timeout(bound, app.shut_down()).await.expect("the server drained within the bound");
}

#[tokio::test]
async fn a_run_that_outlasts_the_drain_goes_back_to_the_queue_with_its_attempt() {
    let mut app = app_with(Duration::from_secs(30), 0.2).await;
    let id = submit(&app).await;
    wait_for_state(&app, &id, TaskState::Running).await;
    assert_eq!(app.state.db.get_task(&id).await.unwrap().unwrap().attempts, 1);

    shut_down_within(&mut app, Duration::from_secs(10)).await;

    let db = &app.state.db;
    let task = db.get_task(&id).await.unwrap().unwrap();
    assert_eq!(task.state, TaskState::Queued, "given back, not left running under a dead lease");
    assert_eq!(task.attempts, 0, "the shutdown did not spend an attempt");
    // The next process claims it straight away, as its first attempt.
    let claimed = db.claim_tasks("next-process", 4, 30_000).await.unwrap();
    assert_eq!(claimed.iter().map(|t| (t.id.as_str(), t.attempt)).collect::<Vec<_>>(), vec![(id.as_str(), 1)]);
}

#[tokio::test]
async fn a_run_that_ends_within_the_drain_completes_and_stores_its_image() {
    let mut app = app_with(Duration::from_millis(400), 60.0).await;
    let id = submit(&app).await;
    wait_for_state(&app, &id, TaskState::Running).await;

    // Well under the 60 s drain: the server returns once the run is done.
    shut_down_within(&mut app, Duration::from_secs(20)).await;

    let task = app.state.db.get_task(&id).await.unwrap().unwrap();
    assert_eq!(task.state, TaskState::Succeeded);
    let key = &task.result.unwrap().images[0].key;
    let png = app.state.objects.get(key).await.expect("the image was stored before exit");
    assert_eq!(image::load_from_memory(&png).unwrap().width(), 1024);
}

#[tokio::test]
async fn a_synchronous_client_waiting_at_the_halt_gets_its_task_id() {
    let mut app = app_with(Duration::from_secs(30), 0.3).await;
    let request = {
        let (client, url, key) = (app.client.clone(), app.url("/v1/images/generations"), app.admin_key.clone());
        tokio::spawn(async move { client.post(url).bearer_auth(key).json(&json!({"prompt": "a lighthouse", "model": "gpt-image-1"})).send().await.unwrap() })
    };
    let db = app.state.db.clone();
    while db.running_by_account().await.unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    shut_down_within(&mut app, Duration::from_secs(10)).await;

    let resp = request.await.unwrap();
    assert_eq!(resp.status(), 504);
    let body: Value = resp.json().await.unwrap();
    let task_id = body["error"]["task_id"].as_str().unwrap_or_else(|| panic!("the answer names the task: {body}"));
    assert!(body["error"]["message"].as_str().unwrap().starts_with("this server is shutting down;"), "{body}");
    assert_eq!(app.state.db.get_task(task_id).await.unwrap().unwrap().state, TaskState::Queued, "it runs again in the next process");
}

#[tokio::test]
async fn once_its_runs_are_done_a_process_with_workers_answers_the_rest_at_once() {
    // One loop, one task at a time: A runs, B waits in the queue.
    let queue = QueueConfig { workers: 1, batch_max: 1, poll_ms: 50, drain_secs: 600.0, ..QueueConfig::default() };
    let mut app = TestApp::spawn_with(TestAppOptions { backends: vec![SyntheticBackend::with_delay(Duration::from_millis(500))], queue, ..TestAppOptions::default() }).await;
    let send = |prompt: &str| {
        let (client, url, key) = (app.client.clone(), app.url("/v1/images/generations"), app.admin_key.clone());
        let body = json!({"prompt": prompt, "model": "gpt-image-1"});
        tokio::spawn(async move { client.post(url).bearer_auth(key).json(&body).send().await.unwrap() })
    };
    let a = send("first");
    let db = app.state.db.clone();
    while db.running_by_account().await.unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let b = send("second");
    while db.count_unfinished().await.unwrap() < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Far inside the 600 s drain: A's run ends, then B is answered.
    shut_down_within(&mut app, Duration::from_secs(20)).await;

    assert_eq!(a.await.unwrap().status(), 200, "the run in flight finished");
    let b = b.await.unwrap();
    assert_eq!(b.status(), 504);
    let body: Value = b.json().await.unwrap();
    let id = body["error"]["task_id"].as_str().unwrap();
    assert_eq!(db.get_task(id).await.unwrap().unwrap().state, TaskState::Queued, "kept for the next start");
}
