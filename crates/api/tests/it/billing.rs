//! Credits through the HTTP path: quotes, holds captured on success,
//! released on failure, 402 when an account cannot pay.

use imagegate_queue::QueueConfig;
use imagegate_testkit::{SyntheticBackend, TestApp, TestAppOptions};
use serde_json::{Value, json};

/// A non-admin account with `credits` (in milli-credits) and a key for it.
async fn metered_key(app: &TestApp, name: &str, millicredits: i64) -> (String, String) {
    let db = &app.state.db;
    let acct = db.create_account(name, "basic", false).await.unwrap();
    if millicredits > 0 {
        db.grant_credits(&acct.id, millicredits, None, "test").await.unwrap();
    }
    let key = db.create_key(&acct.id, "k").await.unwrap().secret.expose().to_string();
    (acct.id, key)
}

fn flux_dev_body() -> Value {
    json!({"model": "FLUX.1-dev", "prompt": "a lighthouse", "image_size": "1024x1024", "num_inference_steps": 20, "seed": 1})
}

#[tokio::test]
async fn dry_run_quotes_the_seed_reference_prices_without_a_task() {
    let app = TestApp::spawn().await;
    let (_, key) = metered_key(&app, "q", 0).await;
    let resp = app.client.post(app.url("/v1/images/generations?dry_run=true")).bearer_auth(&key).json(&flux_dev_body()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["credits"], 11.0, "{body}");
    assert_eq!(body["breakdown"]["steps"], 20);
    let sdxl = json!({"model": "sdxl", "prompt": "x", "size": "1024x1024", "num_inference_steps": 20});
    let body: Value = app.client.post(app.url("/v1/images/generations?dry_run=true")).bearer_auth(&key).json(&sdxl).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["credits"], 5.0, "{body}");
    assert_eq!(app.state.db.count_unfinished().await.unwrap(), 0);
    assert!(app.state.db.task_state_counts().await.unwrap().is_empty(), "dry runs create no task");
}

#[tokio::test]
async fn success_charges_the_quote_once_and_says_so() {
    let app = TestApp::spawn().await;
    let (acct, key) = metered_key(&app, "payer", 30_000).await;
    let resp = app.client.post(app.url("/v1/images/generations")).bearer_auth(&key).json(&flux_dev_body()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-credits-charged"], "11.000");
    let id = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let task: Value = app.client.get(app.url(&format!("/v1/tasks/{id}"))).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
    assert_eq!(task["credits"]["charged"], 11.0);
    let b = app.state.db.balance(&acct, imagegate_store::now_ms()).await.unwrap();
    assert_eq!((b.available, b.held), (19_000, 0));
}

#[tokio::test]
async fn insufficient_credits_is_402_with_balance_and_price() {
    let app = TestApp::spawn().await;
    let (_, key) = metered_key(&app, "poor", 3_000).await;
    let resp = app.client.post(app.url("/v1/images/generations")).bearer_auth(&key).json(&flux_dev_body()).send().await.unwrap();
    assert_eq!(resp.status(), 402);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "insufficient_credits");
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(msg.contains("3.000") && msg.contains("11.000"), "{msg}");
    assert!(app.state.db.task_state_counts().await.unwrap().is_empty(), "nothing was queued");
}

#[tokio::test]
async fn failed_tasks_are_not_charged() {
    let app = TestApp::spawn_with(TestAppOptions {
        backends: vec![SyntheticBackend::failing_first(100)],
        queue: QueueConfig { max_attempts: 2, poll_ms: 50, ..QueueConfig::default() },
        ..Default::default()
    })
    .await;
    let (acct, key) = metered_key(&app, "unlucky", 20_000).await;
    let resp = app.client.post(app.url("/v1/images/generations")).bearer_auth(&key).json(&flux_dev_body()).send().await.unwrap();
    assert_eq!(resp.status(), 500);
    let id = resp.json::<Value>().await.unwrap()["error"]["task_id"].as_str().unwrap().to_string();
    let b = app.state.db.balance(&acct, imagegate_store::now_ms()).await.unwrap();
    assert_eq!((b.available, b.held), (20_000, 0), "the hold was released in full");
    let hold = app.state.db.hold(&id).await.unwrap().unwrap();
    assert_eq!(hold.captured, 0);
}

#[tokio::test]
async fn stability_balance_reads_the_ledger() {
    let app = TestApp::spawn().await;
    let (_, key) = metered_key(&app, "stab", 12_500).await;
    let body: Value = app.client.get(app.url("/v1/user/balance")).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["credits"], 12.5);
    let sd: Value = app.client.get(app.url("/sd/v1/user/balance")).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
    assert_eq!(sd, body);
}

#[tokio::test]
async fn every_generation_route_answers_dry_runs_without_a_task() {
    let app = TestApp::spawn().await;
    let (_, key) = metered_key(&app, "asker", 0).await;
    let sdxl = json!({"text_prompts": [{"text": "a cat"}], "width": 1024, "height": 1024, "steps": 20});
    let cases = [
        ("/v1/generation/stable-diffusion-xl-1024-v1-0/text-to-image?dry_run=true", sdxl, 5.0),
        ("/v1/models/FLUX.1-dev/predictions?dry_run=true", json!({"input": {"prompt": "x", "size": "1024x1024", "steps": 20}}), 11.0),
        ("/session/publish?dry_run=true", json!({"title": "Image generation", "imageCount": 1, "data": {"parameters": {"imageRatio": "1:1", "promptText": "x"}}}), 11.0),
        ("/v1/flux-dev?dry_run=true", json!({"prompt": "x", "width": 1024, "height": 1024, "steps": 20}), 11.0),
    ];
    for (path, body, credits) in cases {
        let resp = app.client.post(app.url(path)).bearer_auth(&key).header("x-key", &key).json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let quote: Value = resp.json().await.unwrap();
        assert!(quote["credits"].as_f64().is_some(), "{path}: {quote}");
        assert_eq!(quote["credits"], credits, "{path}: {quote}");
    }
    assert!(app.state.db.task_state_counts().await.unwrap().is_empty(), "dry runs create no task");
}

#[tokio::test]
async fn a_key_limited_to_some_models_gets_403_for_others_and_sync_routes_report_the_charge() {
    let app = TestApp::spawn().await;
    let (_, key) = metered_key(&app, "narrow", 50_000).await;
    let key_id = app.state.db.authenticate(&key).await.unwrap().unwrap().key_id;
    app.state.db.set_key_limits(&key_id, Some(&["stable-diffusion-xl-1024-v1-0".to_string()]), None).await.unwrap();
    let resp = app.client.post(app.url("/v1/images/generations")).bearer_auth(&key).json(&flux_dev_body()).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let sdxl = json!({"text_prompts": [{"text": "a cat"}], "width": 1024, "height": 1024, "steps": 20});
    let resp = app.client.post(app.url("/v1/generation/stable-diffusion-xl-1024-v1-0/text-to-image")).bearer_auth(&key).json(&sdxl).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-credits-charged"], "5.000");
}
