//! Moderation: a task ends `Content Moderated` (BFL: `Request Moderated` or
//! `Content Moderated`) only when its backend signalled moderation; the
//! synthetic backend refuses prompts with a chosen word the way an upstream
//! channel reports its provider's refusal.

use std::time::Duration;

use imagegate_core::ModerationStage;
use imagegate_testkit::{SyntheticBackend, TestApp, TestAppOptions};
use serde_json::{Value, json};

async fn app_refusing(stage: ModerationStage) -> TestApp {
    TestApp::spawn_with(TestAppOptions { backends: vec![SyntheticBackend::moderating("forbidden", stage)], ..Default::default() }).await
}

/// Polls `url` with the admin key until the status leaves Pending/Running.
async fn poll(app: &TestApp, url: &str) -> Value {
    for _ in 0..600 {
        // BFL clients send `x-key`; the other dialects a bearer token. Both are accepted where needed.
        let v: Value = app.client.get(url).bearer_auth(&app.admin_key).header("x-key", &app.admin_key).send().await.unwrap().json().await.unwrap();
        if !["Pending", "Running"].contains(&v["status"].as_str().unwrap_or("")) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("{url} never finished");
}

async fn predict_async(app: &TestApp, prompt: &str) -> String {
    let resp = app.post_json("/v1/models/bfl/flux-kontext-max/predictions", &json!({"input": {"prompt": prompt, "aspect_ratio": "2:3"}})).await;
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().await.unwrap()["output"][0]["polling_url"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_refused_task_polls_to_content_moderated_and_others_to_ready() {
    let app = app_refusing(ModerationStage::Content).await;
    let refused = poll(&app, &predict_async(&app, "a forbidden deer").await).await;
    assert_eq!(refused["status"], "Content Moderated", "{refused}");
    assert_eq!(refused["state"], "failed");
    assert_eq!(refused["error"]["code"], "content_moderated");
    assert!(refused["images"].as_array().unwrap().is_empty());
    let fine = poll(&app, &predict_async(&app, "a deer").await).await;
    assert_eq!(fine["status"], "Ready", "{fine}");
}

#[tokio::test]
async fn a_failure_that_is_not_moderation_stays_error() {
    let app = TestApp::spawn_with(TestAppOptions {
        backends: vec![SyntheticBackend::failing_first(10)],
        queue: imagegate_queue::QueueConfig { poll_ms: 50, max_attempts: 1, ..Default::default() },
        ..Default::default()
    })
    .await;
    let failed = poll(&app, &predict_async(&app, "a deer").await).await;
    assert_eq!(failed["status"], "Error", "{failed}");
}

#[tokio::test]
async fn bfl_get_result_says_which_side_was_moderated() {
    for (stage, word) in [(ModerationStage::Request, "Request Moderated"), (ModerationStage::Content, "Content Moderated")] {
        let app = app_refusing(stage).await;
        let resp = app.client.post(app.url("/v1/flux-kontext-pro")).header("x-key", &app.admin_key).json(&json!({"prompt": "forbidden fruit"})).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let polling = resp.json::<Value>().await.unwrap()["polling_url"].as_str().unwrap().to_string();
        let got = poll(&app, &polling).await;
        assert_eq!(got["status"], word, "{got}");
        assert!(got["result"].is_null());
    }
}

#[tokio::test]
async fn a_synchronous_route_answers_400_content_moderated() {
    let app = app_refusing(ModerationStage::Content).await;
    let resp = app.post_json("/v1/images/generations", &json!({"model": "FLUX.1-schnell", "prompt": "something forbidden"})).await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "content_moderated", "{err}");
    let resp = app
        .post_json(
            "/session/publish",
            &json!({"title": "Image generation", "imageCount": 1, "imagePath": "m", "taskID": "mod-1", "data": {"parameters": {"imageRatio": "1:1", "promptText": "forbidden"}}}),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let got: Value = app.get("/session/mod-1").await.json().await.unwrap();
    assert_eq!(got["status"], "Content Moderated", "{got}");
}
