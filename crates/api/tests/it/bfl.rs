//! BFL's official API: `x-key` auth, `POST /v1/{model}` → `{id, polling_url}`,
//! `GET /v1/get_result` with BFL's status words.

use std::time::Duration;

use imagegate_testkit::TestApp;
use serde_json::{Value, json};

#[tokio::test]
async fn flux_model_route_with_x_key_polls_to_ready() {
    let app = TestApp::spawn().await;
    let resp = app
        .client
        .post(app.url("/v1/flux-kontext-pro"))
        .header("x-key", &app.admin_key)
        .json(&json!({"prompt": "a cat in the garden, cute cartoon", "aspect_ratio": "1:1", "safety_tolerance": 2, "seed": 42}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let id = body["id"].as_str().unwrap().to_string();
    let polling = body["polling_url"].as_str().unwrap().to_string();
    assert!(polling.ends_with(&format!("/v1/get_result?id={id}")));
    let mut last = Value::Null;
    for _ in 0..400 {
        last = app.client.get(&polling).header("x-key", &app.admin_key).send().await.unwrap().json().await.unwrap();
        if last["status"] == "Ready" {
            break;
        }
        assert_eq!(last["status"], "Pending", "{last}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last["status"], "Ready", "{last}");
    assert!(last["result"]["sample"].as_str().unwrap().contains("/files/"));
}

#[tokio::test]
async fn width_and_height_set_the_size() {
    let app = TestApp::spawn().await;
    let resp = app.client.post(app.url("/v1/flux-dev")).header("x-key", &app.admin_key).json(&json!({"prompt": "x", "width": 768, "height": 1024})).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let task = app.state.db.get_task(&id).await.unwrap().unwrap();
    assert_eq!((task.spec.size.width, task.spec.size.height), (768, 1024));
}

#[tokio::test]
async fn a_lone_side_keeps_bfls_default_for_the_other_and_a_bad_side_is_named() {
    let app = TestApp::spawn().await;
    let resp = app.client.post(app.url("/v1/flux-dev")).header("x-key", &app.admin_key).json(&json!({"prompt": "x", "width": 512})).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let task = app.state.db.get_task(&id).await.unwrap().unwrap();
    assert_eq!((task.spec.size.width, task.spec.size.height), (512, 1024), "the height is BFL's default");
    let post = |body: Value| app.client.post(app.url("/v1/flux-dev?dry_run=true")).header("x-key", &app.admin_key).json(&body).send();
    for (body, field) in [
        (json!({"prompt": "x", "width": 17}), "width"),
        (json!({"prompt": "x", "width": 1024, "height": 100}), "height"),
        (json!({"prompt": "x", "height": "tall"}), "height"),
        (json!({"prompt": "x", "width": -64, "height": 1024}), "width"),
    ] {
        let resp = post(body.clone()).await.unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["field"], field, "{body}: {err}");
        assert!(err["detail"].as_str().unwrap().starts_with(&format!("invalid `{field}`: ")), "{err}");
    }
}

#[tokio::test]
async fn get_result_without_an_id_is_a_400_naming_it() {
    let app = TestApp::spawn().await;
    let resp = app.client.get(app.url("/v1/get_result")).header("x-key", &app.admin_key).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap()["field"], "id");
}

#[tokio::test]
async fn wrong_x_key_is_401_and_unknown_id_is_task_not_found() {
    let app = TestApp::spawn().await;
    let resp = app.client.post(app.url("/v1/flux-pro-1.1")).header("x-key", "sk-ig-nope").json(&json!({"prompt": "x"})).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.json::<Value>().await.unwrap()["detail"].as_str().is_some());
    let resp = app.client.get(app.url("/v1/get_result?id=task_nope")).header("x-key", &app.admin_key).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.json::<Value>().await.unwrap()["status"], "Task not found");
}

#[tokio::test]
async fn bfl_validation_names_the_flat_field() {
    let app = TestApp::spawn().await;
    let resp = app.client.post(app.url("/v1/flux-kontext-max")).header("x-key", &app.admin_key).json(&json!({"prompt": "x", "aspect_ratio": "4:1"})).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["field"], "aspect_ratio");
}

#[tokio::test]
async fn every_bfl_model_route_resolves_to_a_catalog_model_with_a_price() {
    let app = TestApp::spawn().await;
    for (route, credits) in [("flux-pro-1.1", 29.0), ("flux-pro-1.1-ultra", 43.5), ("flux-pro", 36.0), ("flux-kontext-pro", 29.0), ("flux-kontext-max", 58.0)] {
        let resp = app.client.post(app.url(&format!("/v1/{route}?dry_run=true"))).header("x-key", &app.admin_key).json(&json!({"prompt": "x"})).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{route}");
        let quote: Value = resp.json().await.unwrap();
        assert_eq!(quote["credits"], credits, "{route}: {quote}");
    }
    // flux-dev is the local FLUX.1-dev, priced per megapixel-step.
    let resp =
        app.client.post(app.url("/v1/flux-dev?dry_run=true")).header("x-key", &app.admin_key).json(&json!({"prompt": "x", "width": 1024, "height": 1024})).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["credits"], 11.0);
}
