//! A synchronous relayed request starts at once in the request's process
//! (`[queue] start_relays_at_once`, on by default): busy worker loops do not
//! hold it up, and its task is recorded as a claimed one would be. With the
//! setting off, the same request waits for a free loop.

use std::sync::Arc;
use std::time::Duration;

use imagegate_core::backend::Job;
use imagegate_core::{Backend, BackendError, CancelFlag, Generation, ModelEntry, ProgressSink, TaskState};
use imagegate_queue::QueueConfig;
use imagegate_testkit::doubles::{openai, scripted};
use imagegate_testkit::{SyntheticBackend, TestApp, TestAppOptions};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::harness::Channels;

/// A local backend for FLUX.1-schnell only, whose tasks wait until the test
/// opens the gate: it keeps a worker loop busy for as long as needed.
struct Gated {
    inner: Arc<SyntheticBackend>,
    /// A permit per task that reached the backend.
    entered: Semaphore,
    gate: Semaphore,
}

#[async_trait::async_trait]
impl Backend for Gated {
    fn name(&self) -> &str {
        "gated"
    }
    fn serves(&self, model: &ModelEntry) -> Result<(), String> {
        if model.id == "FLUX.1-schnell" { Ok(()) } else { Err(format!("gated serves FLUX.1-schnell only, not {}", model.id)) }
    }
    async fn generate(&self, job: &Job, progress: &ProgressSink, cancel: &CancelFlag) -> Result<Generation, BackendError> {
        self.entered.add_permits(1);
        let _pass = self.gate.acquire().await.expect("gate open");
        self.inner.generate(job, progress, cancel).await
    }
}

async fn app(start_at_once: bool) -> (TestApp, Arc<Gated>, openai::Double) {
    let double = openai::start("oa-key", false).await;
    let mut c = Channels::new();
    c.add("oa", "openai", &format!("{}/v1", double.base), "oa-key", "");
    let gated = Arc::new(Gated { inner: SyntheticBackend::instant(), entered: Semaphore::new(0), gate: Semaphore::new(0) });
    let queue = QueueConfig { workers: 1, batch_max: 1, poll_ms: 50, start_relays_at_once: start_at_once, ..QueueConfig::default() };
    let app = TestApp::spawn_with(TestAppOptions { backends: vec![gated.clone(), c.relay("")], queue, ..Default::default() }).await;
    (app, gated, double)
}

/// Occupies the one worker loop with a FLUX.1-schnell request held at the gate.
async fn occupy_the_worker(app: &TestApp, gated: &Gated) -> tokio::task::JoinHandle<u16> {
    let (client, url, key) = (app.client.clone(), app.url("/v1/images/generations"), app.admin_key.clone());
    let held = tokio::spawn(async move {
        let body = json!({"model": "FLUX.1-schnell", "prompt": "a fox", "size": "512x512"});
        client.post(url).bearer_auth(key).json(&body).send().await.unwrap().status().as_u16()
    });
    let entered = tokio::time::timeout(Duration::from_secs(30), gated.entered.acquire()).await.expect("the worker loop took the gated task");
    entered.expect("semaphore open").forget();
    held
}

async fn relay_request(app: &TestApp) -> reqwest::Response {
    app.post_json("/v1/images/generations", &json!({"model": "gpt-image-1", "prompt": "a cat", "size": "1024x1024"})).await
}

#[tokio::test]
async fn a_relayed_request_starts_at_once_while_every_worker_loop_is_busy() {
    let (app, gated, _double) = app(true).await;
    let held = occupy_the_worker(&app, &gated).await;
    let resp = tokio::time::timeout(Duration::from_secs(30), relay_request(&app)).await.expect("served without a free worker loop");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-imagegate-served-by"], "channel:oa");
    let body: Value = resp.json().await.unwrap();
    let task = app.state.db.get_task(body["id"].as_str().unwrap()).await.unwrap().unwrap();
    assert_eq!((task.state, task.attempts), (TaskState::Succeeded, 1), "recorded as one attempt, like a claimed task");
    assert_eq!(task.result.unwrap().served_by, "channel:oa");
    gated.gate.add_permits(1);
    assert_eq!(held.await.unwrap(), 200, "the held task finishes once the gate opens");
}

#[tokio::test]
async fn with_starting_at_once_off_a_relayed_request_waits_for_a_worker_loop() {
    let (app, gated, _double) = app(false).await;
    let held = occupy_the_worker(&app, &gated).await;
    let waiting = tokio::spawn({
        let (client, url, key) = (app.client.clone(), app.url("/v1/images/generations"), app.admin_key.clone());
        async move { client.post(url).bearer_auth(key).json(&json!({"model": "gpt-image-1", "prompt": "a cat", "size": "1024x1024"})).send().await.unwrap().status() }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "queued behind the busy loop");
    gated.gate.add_permits(1);
    assert_eq!(held.await.unwrap(), 200);
    assert_eq!(waiting.await.unwrap(), 200, "served once the loop is free");
}

#[tokio::test]
async fn a_client_that_hangs_up_does_not_cancel_the_started_relay() {
    let double = scripted::start([]).await;
    double.set_delay(Duration::from_millis(400));
    let mut c = Channels::new();
    c.add("gw", "openai-compatible", &format!("{}/v1", double.base), "k", "models = [\"FLUX.1-schnell\"]");
    let queue = QueueConfig { poll_ms: 50, ..QueueConfig::default() };
    let app = TestApp::spawn_with(TestAppOptions { backends: vec![c.relay("")], queue, ..Default::default() }).await;
    let hung_up = app
        .client
        .post(app.url("/v1/images/generations"))
        .bearer_auth(&app.admin_key)
        .timeout(Duration::from_millis(100))
        .json(&json!({"model": "FLUX.1-schnell", "prompt": "a fox", "size": "1024x1024"}))
        .send()
        .await;
    assert!(hung_up.is_err_and(|e| e.is_timeout()), "the client gave up before the provider answered");
    let mut counts = Vec::new();
    for _ in 0..400 {
        counts = app.state.db.task_state_counts().await.unwrap();
        if counts.iter().any(|(s, n)| s == "succeeded" && *n == 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counts, vec![("succeeded".to_string(), 1)], "the task ran to its end and was recorded");
    assert_eq!(double.calls(), 1, "one provider call, neither cancelled nor repeated");
}
