//! `GET /v1/tasks/{id}`: a task is visible to its own account (and admins) only.

use imagegate_testkit::TestApp;
use serde_json::{Value, json};

#[tokio::test]
async fn tasks_are_private_to_their_account() {
    let app = TestApp::spawn().await;
    let resp = app.post_json("/v1/images/generations", &json!({"prompt": "a dog", "image_size": "512x1024"})).await;
    assert_eq!(resp.status(), 200);
    let id = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();

    let owner: Value = app.get(&format!("/v1/tasks/{id}")).await.json().await.unwrap();
    assert_eq!(owner["status"], "Ready");
    assert_eq!(owner["state"], "succeeded");
    assert_eq!(owner["images"].as_array().unwrap().len(), 1);

    let db = &app.state.db;
    let other = db.create_account("other", "free", false).await.unwrap();
    let key = db.create_key(&other.id, "k").await.unwrap();
    let resp = app.client.get(app.url(&format!("/v1/tasks/{id}"))).bearer_auth(key.secret.expose()).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(app.get("/v1/tasks/task_nope").await.status(), 404);
}
