//! Task publishing: seed 000's body, idempotent `taskID`, `GET
//! /session/{taskID}`, workflow and path validation.

use imagegate_testkit::seeds::seed_000_body;
use imagegate_testkit::{SyntheticBackend, TestApp, TestAppOptions};
use serde_json::{Value, json};

#[tokio::test]
async fn seed_000_body_returns_three_urls_in_the_image_path() {
    let app = TestApp::spawn().await;
    let resp = app.post_json("/session/publish", &seed_000_body()).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!((body["code"].clone(), body["msg"].clone(), body["taskID"].clone()), (json!(200), json!("success"), json!("nextGPU20250531145458888")));
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    let url = data[0]["url"].as_str().unwrap();
    assert!(url.contains("/files/2025/05/"), "{url}");
    let png = app.client.get(url).send().await.unwrap().bytes().await.unwrap();
    let img = image::load_from_memory(&png).unwrap();
    assert_eq!((img.width(), img.height()), (1344, 768));
}

#[tokio::test]
async fn retried_task_id_returns_the_same_urls_and_runs_once() {
    check_retry_runs_once(false).await;
}

#[tokio::test]
async fn retried_task_id_runs_once_on_postgres_too() {
    if imagegate_testkit::scratch::postgres_url().is_none() {
        eprintln!("DATABASE_URL not set: PostgreSQL variant not run");
        return;
    }
    check_retry_runs_once(true).await;
}

async fn check_retry_runs_once(postgres: bool) {
    let backend = SyntheticBackend::instant();
    let app = TestApp::spawn_with(TestAppOptions { backends: vec![backend.clone()], postgres, ..Default::default() }).await;
    let first: Value = app.post_json("/session/publish", &seed_000_body()).await.json().await.unwrap();
    let second: Value = app.post_json("/session/publish", &seed_000_body()).await.json().await.unwrap();
    assert_eq!(backend.calls(), 1);
    let keys = |v: &Value| v["data"].as_array().unwrap().iter().map(|d| d["url"].as_str().unwrap().split('?').next().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(keys(&first), keys(&second));

    let mut changed = seed_000_body();
    changed["imageCount"] = json!(2);
    let resp = app.post_json("/session/publish", &changed).await;
    assert_eq!(resp.status(), 409);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["code"], 409);
    assert_eq!(backend.calls(), 1);
}

#[tokio::test]
async fn session_query_returns_the_same_shape_with_status() {
    let app = TestApp::spawn().await;
    let posted: Value = app.post_json("/session/publish", &seed_000_body()).await.json().await.unwrap();
    let resp = app.get("/session/nextGPU20250531145458888").await;
    assert_eq!(resp.status(), 200);
    let got: Value = resp.json().await.unwrap();
    assert_eq!(got["status"], "Ready");
    assert_eq!(got["taskID"], "nextGPU20250531145458888");
    assert_eq!(got["data"].as_array().unwrap().len(), posted["data"].as_array().unwrap().len());
    let resp = app.get("/session/neverPublished").await;
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], 404);
}

#[tokio::test]
async fn session_query_finds_a_publish_still_running_after_its_504() {
    // The taskID is recorded with the task at admission, so a client whose
    // synchronous wait timed out can follow the task by its own id.
    let api = imagegate_api::ApiConfig { sync_wait_secs: 0.2, ..Default::default() };
    let backend = SyntheticBackend::with_delay(std::time::Duration::from_millis(1500));
    let app = TestApp::spawn_with(TestAppOptions { backends: vec![backend], api, ..Default::default() }).await;
    let resp = app.post_json("/session/publish", &seed_000_body()).await;
    assert_eq!(resp.status(), 504);
    let got: Value = app.get("/session/nextGPU20250531145458888").await.json().await.unwrap();
    assert_eq!(got["taskID"], "nextGPU20250531145458888");
    assert!(["Pending", "Running"].contains(&got["status"].as_str().unwrap()), "{got}");
    let mut last = got;
    for _ in 0..400 {
        if last["status"] == "Ready" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        last = app.get("/session/nextGPU20250531145458888").await.json().await.unwrap();
    }
    assert_eq!(last["status"], "Ready", "{last}");
    assert_eq!(last["data"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_task_id_is_private_to_the_account_that_used_it() {
    let app = TestApp::spawn().await;
    app.post_json("/session/publish", &seed_000_body()).await;
    let other = app.state.db.create_account("other", "free", false).await.unwrap();
    let key = app.state.db.create_key(&other.id, "k").await.unwrap();
    let resp = app.client.get(app.url("/session/nextGPU20250531145458888")).bearer_auth(key.secret.expose()).send().await.unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn bad_image_paths_and_parameters_are_400_naming_the_field() {
    let app = TestApp::spawn().await;
    for (patch, field) in [
        (json!({"imagePath": "../x"}), "imagePath"),
        (json!({"imagePath": "/abs"}), "imagePath"),
        (json!({"imagePath": "a//b"}), "imagePath"),
        (json!({"imagePath": "a b"}), "imagePath"),
        (json!({"imageCount": 11}), "imageCount"),
        (json!({"data": {"parameters": {"promptText": "x", "imageRatio": "5:4"}}}), "data.parameters.imageRatio"),
        (json!({"data": {"parameters": {"imageRatio": "1:1"}}}), "data.parameters.promptText"),
        (json!({"imagePath": ""}), "imagePath"),
        (json!({"imageCount": 0}), "imageCount"),
        (json!({"imageCount": -1}), "imageCount"),
        (json!({"taskID": "has space"}), "taskID"),
        (json!({"taskID": "x".repeat(101)}), "taskID"),
        (json!({"title": 5}), "title"),
        (json!({"data": {"parameters": {"promptText": 5}}}), "data.parameters.promptText"),
        (json!({"data": {"parameters": {"promptText": "x", "style": "noir"}}}), "data.parameters.style"),
        (json!({"data": {"parameters": {"promptText": "x", "seed": -3}}}), "data.parameters.seed"),
        (json!({"data": {"parameters": {"promptText": "x".repeat(4001)}}}), "data.parameters.promptText"),
    ] {
        let mut body = seed_000_body();
        body["taskID"] = json!(format!("t{}", field.len()));
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let resp = app.post_json("/session/publish", &body).await;
        assert_eq!(resp.status(), 400, "{patch}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["code"], 400);
        assert!(err["msg"].as_str().unwrap().contains(field), "{err}");
    }
}

#[tokio::test]
async fn unknown_workflow_title_returns_404() {
    let app = TestApp::spawn().await;
    let mut body = seed_000_body();
    body["title"] = json!("Video generation");
    let resp = app.post_json("/session/publish", &body).await;
    assert_eq!(resp.status(), 404);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["code"], 404);
    assert!(err["msg"].as_str().unwrap().contains("Video generation"));
}

#[tokio::test]
async fn config_workflow_applies_its_model_loras_and_settings() {
    let workflows = imagegate_core::WorkflowSet::from_toml(
        r#"
        [[workflows]]
        title = "Pixel portraits"
        base_model = "sdxl"
        loras = [{ name = "pixel-art-xl.safetensors", scale = 0.8 }, { name = "detail-tweaker", scale = 0.3 }]
        sampler = "K_EULER_ANCESTRAL"
        steps = 25
        guidance = 6.5
        parameters = ["promptText", "imageRatio"]
        "#,
    )
    .unwrap();
    let app = TestApp::spawn_with(TestAppOptions { workflows: Some(workflows), ..Default::default() }).await;
    let body = json!({"title": "pixel portraits", "imageCount": 1, "imagePath": "pix", "taskID": "p1", "data": {"parameters": {"imageRatio": "3:4", "promptText": "a knight"}}});
    let resp: Value = app.post_json("/session/publish", &body).await.json().await.unwrap();
    assert_eq!(resp["code"], 200, "{resp}");
    let url = resp["data"][0]["url"].as_str().unwrap();
    let task_id = url.split("/files/pix/").nth(1).unwrap().split('?').next().unwrap().rsplit_once('-').unwrap().0;
    let task = app.state.db.get_task(task_id).await.unwrap().unwrap();
    assert_eq!((task.spec.model.as_str(), task.spec.steps, task.spec.guidance), ("stable-diffusion-xl-1024-v1-0", 25, 6.5));
    assert_eq!(task.spec.loras.len(), 2);
    assert_eq!(task.spec.sampler, Some(imagegate_core::Sampler::KEulerAncestral));
    assert_eq!((task.spec.size.width, task.spec.size.height), (896, 1152));
}
