//! A relayed task whose provider accepted an async job, then whose process
//! stopped (here: a drained shutdown that halted it), runs again by polling
//! that job: the provider is asked, and bills, once.

use std::sync::Arc;
use std::time::Duration;

use imagegate_core::{BackendRegistry, Catalog, TaskState};
use imagegate_queue::{Queue, QueueConfig};
use imagegate_testkit::doubles::bfl;
use imagegate_testkit::{TestApp, TestAppOptions};
use serde_json::{Value, json};

use super::harness::Channels;

#[tokio::test]
async fn a_halted_relay_resumes_the_providers_job_instead_of_submitting_it_again() {
    let double = bfl::start("bfl-key").await;
    let mut channels = Channels::new();
    channels.add("bfl", "bfl", &format!("{}/v1", double.base), "bfl-key", "");
    let relay = channels.relay("");
    let queue = QueueConfig { poll_ms: 50, drain_secs: 0.2, ..QueueConfig::default() };
    let mut app = TestApp::spawn_with(TestAppOptions { backends: vec![relay.clone()], queue: queue.clone(), ..TestAppOptions::default() }).await;

    // BFL's own asynchronous route; the double keeps a "linger" job Pending.
    let resp = app.client.post(app.url("/v1/flux-kontext-pro")).header("x-key", &app.admin_key).json(&json!({"prompt": "a lighthouse, linger"})).send().await.unwrap();
    let id = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    for _ in 0..2000 {
        if double.log.to("/v1/get_result").len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(double.log.to("/v1/flux-kontext-pro").len(), 1, "accepted once");
    tokio::time::timeout(Duration::from_secs(10), app.shut_down()).await.expect("drained");

    let db = app.state.db.clone();
    assert_eq!(db.get_task(&id).await.unwrap().unwrap().state, TaskState::Queued);
    // The next process: same database, objects and channels.
    let mut backends = BackendRegistry::new();
    backends.register(relay);
    let next = Queue::new(db.clone(), app.state.objects.clone(), backends, Arc::new(Catalog::builtin()), queue);
    let claimed = db.claim_tasks(&next.worker_id, 4, 30_000).await.unwrap();
    let recorded: Value = serde_json::from_str(claimed[0].provider_job.as_deref().expect("the accepted job was recorded")).unwrap();
    assert_eq!((recorded["channel"].as_str(), recorded["state"][0]["id"].as_str()), (Some("bfl"), Some("job-1")));
    tokio::time::timeout(Duration::from_secs(20), next.run_batch(claimed)).await.expect("the resumed job finishes");

    let task = db.get_task(&id).await.unwrap().unwrap();
    assert_eq!(task.state, TaskState::Succeeded, "{:?}", task.error);
    assert_eq!(task.result.unwrap().provider_request_id.as_deref(), Some("job-1"));
    assert_eq!(double.log.to("/v1/flux-kontext-pro").len(), 1, "the provider was not asked (and did not bill) twice");
}
