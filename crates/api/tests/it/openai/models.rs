//! `GET /v1/models` lists the catalog.

use imagegate_testkit::TestApp;
use serde_json::Value;

#[tokio::test]
async fn models_lists_the_catalog() {
    let app = TestApp::spawn().await;
    let body: Value = app.get("/v1/models").await.json().await.unwrap();
    assert_eq!(body["object"], "list");
    let ids: Vec<&str> = body["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"FLUX.1-schnell") && ids.contains(&"gpt-image-1"));
}
