//! `POST /v1/images/generations`: seed 003's body end to end, the OpenAI
//! fields, auth, and validation that names the field.

use std::time::Duration;

use imagegate_queue::QueueConfig;
use imagegate_testkit::{SyntheticBackend, TestApp, TestAppOptions};
use serde_json::{Value, json};

/// Seed 003's body with a `seed` added (the must-show sends one).
fn seed_003_body() -> Value {
    let mut body = imagegate_testkit::seeds::seed_003_body();
    body["seed"] = json!(4242);
    body
}

async fn check_seed_003_succeeds(app: &TestApp) {
    let resp = app.post_json("/v1/images/generations", &seed_003_body()).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    assert_eq!(resp.headers()["x-imagegate-served-by"], "synthetic");
    let body: Value = resp.json().await.unwrap();
    let url = body["images"][0]["url"].as_str().unwrap().to_string();
    assert_eq!(body["data"][0]["url"], url);
    assert!(body["data"][0]["revised_prompt"].as_str().unwrap().starts_with("an island near sea"));
    assert!(body["timings"]["inference"].is_u64());
    assert_eq!(body["seed"], 4242);

    let img = app.client.get(&url).send().await.unwrap();
    assert_eq!(img.status(), 200);
    assert_eq!(img.headers()["content-type"], "image/png");
    let decoded = image::load_from_memory(&img.bytes().await.unwrap()).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (1024, 1024));
}

#[tokio::test]
async fn seed_003_siliconflow_body_returns_union_response_and_png() {
    check_seed_003_succeeds(&TestApp::spawn().await).await;
}

#[tokio::test]
async fn seed_003_works_on_postgres_too() {
    if imagegate_testkit::scratch::postgres_url().is_none() {
        eprintln!("DATABASE_URL not set: PostgreSQL variant not run");
        return;
    }
    check_seed_003_succeeds(&TestApp::spawn_with(TestAppOptions { postgres: true, ..Default::default() }).await).await;
}

#[tokio::test]
async fn openai_body_with_n_and_b64_json() {
    let app = TestApp::spawn().await;
    let resp = app.post_json("/v1/images/generations", &json!({"model": "sdxl", "prompt": "a cat", "n": 3, "size": "1152x896", "response_format": "b64_json"})).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    use base64::Engine as _;
    let png = base64::engine::general_purpose::STANDARD.decode(data[2]["b64_json"].as_str().unwrap()).unwrap();
    assert_eq!(image::load_from_memory(&png).unwrap().width(), 1152);
}

#[tokio::test]
async fn missing_or_wrong_key_is_401() {
    let app = TestApp::spawn().await;
    let resp = app.client.post(app.url("/v1/images/generations")).json(&seed_003_body()).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let resp = app.client.post(app.url("/v1/images/generations")).bearer_auth("sk-ig-not-a-key").json(&seed_003_body()).send().await.unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn unknown_model_is_404() {
    let app = TestApp::spawn().await;
    let resp = app.post_json("/v1/images/generations", &json!({"model": "no-such-model", "prompt": "x"})).await;
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("no-such-model"));
}

#[tokio::test]
async fn bad_fields_are_400_naming_field_and_allowed_values() {
    let app = TestApp::spawn().await;
    let mut body = seed_003_body();
    body["image_size"] = json!("1000x1000");
    let resp = app.post_json("/v1/images/generations", &body).await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["param"], "image_size");
    let msg = err["error"]["message"].as_str().unwrap();
    for allowed in ["1024x1024", "512x1024", "768x512", "768x1024", "1024x576", "576x1024"] {
        assert!(msg.contains(allowed), "{msg} should list {allowed}");
    }

    let mut body = seed_003_body();
    body["seed"] = json!(10_000_000_000u64);
    let resp = app.post_json("/v1/images/generations", &body).await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["param"], "seed");
    assert!(err["error"]["message"].as_str().unwrap().contains("9999999999"));

    for (body, field) in
        [(json!({"prompt": 5}), "prompt"), (json!({"prompt": "x", "seed": -1}), "seed"), (json!({"prompt": "x", "prompt_enhancement": "yes"}), "prompt_enhancement")]
    {
        let resp = app.post_json("/v1/images/generations", &body).await;
        assert_eq!(resp.status(), 400, "{body}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["param"], field, "{err}");
    }
    let resp = app.client.post(app.url("/v1/images/generations")).bearer_auth(&app.admin_key).body("{not json").send().await.unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn oversized_body_is_413() {
    let app = TestApp::spawn().await;
    let big = json!({"prompt": "x".repeat(17 * 1024 * 1024)});
    let resp = app.post_json("/v1/images/generations", &big).await;
    assert_eq!(resp.status(), 413);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "payload_too_large");
}

#[tokio::test]
async fn slow_task_answers_504_with_task_id_and_finishes_later() {
    let app = TestApp::spawn_with(TestAppOptions {
        backends: vec![SyntheticBackend::with_delay(Duration::from_millis(1500))],
        api: imagegate_api::ApiConfig { sync_wait_secs: 0.3, ..Default::default() },
        ..Default::default()
    })
    .await;
    let resp = app.post_json("/v1/images/generations", &seed_003_body()).await;
    assert_eq!(resp.status(), 504);
    let err: Value = resp.json().await.unwrap();
    let id = err["error"]["task_id"].as_str().unwrap().to_string();
    let mut last = Value::Null;
    for _ in 0..200 {
        last = app.get(&format!("/v1/tasks/{id}")).await.json().await.unwrap();
        if last["status"] == "Ready" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last["status"], "Ready", "{last}");
    assert_eq!(last["progress"], 1.0);
    assert!(last["result"]["sample"].as_str().unwrap().contains("/files/"));
}

#[tokio::test]
async fn failing_backend_is_retried_then_succeeds() {
    let backend = SyntheticBackend::failing_first(2);
    let app = TestApp::spawn_with(TestAppOptions {
        backends: vec![backend.clone()],
        queue: QueueConfig { max_attempts: 3, poll_ms: 50, ..QueueConfig::default() },
        ..Default::default()
    })
    .await;
    let resp = app.post_json("/v1/images/generations", &seed_003_body()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(backend.calls(), 3);
}

#[tokio::test]
async fn no_backend_for_a_model_is_503() {
    let app = TestApp::spawn_with(TestAppOptions { backends: vec![], ..Default::default() }).await;
    let resp = app.post_json("/v1/images/generations", &seed_003_body()).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
}
