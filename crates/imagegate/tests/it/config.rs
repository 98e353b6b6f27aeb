//! `imagegate serve --config`: `[[workflows]]` and `[prompt_enhancement]`
//! from the file reach the running server.

use axum::Json;
use axum::routing::post;
use serde_json::{Value, json};

use crate::server::{Server, free_port};

/// An OpenAI-compatible chat double that rewrites every prompt it is sent.
async fn spawn_chat_double() -> String {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(|Json(body): Json<Value>| async move {
            let user = body["messages"][1]["content"].as_str().unwrap_or_default().to_string();
            Json(json!({"choices": [{"message": {"role": "assistant", "content": format!("REWRITTEN by {}: {user}", body["model"].as_str().unwrap_or("?"))}}]}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn config_workflows_and_prompt_enhancement_reach_the_server() {
    let chat = spawn_chat_double().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("imagegate.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[workflows]]
title = "Pixel portraits"
base_model = "sdxl"
loras = [{{ name = "pixel-art-xl.safetensors", scale = 0.8 }}]
sampler = "K_EULER_ANCESTRAL"
steps = 25
guidance = 6.5

[prompt_enhancement]
base_url = "{chat}"
model = "rewriter-1"
"#
        ),
    )
    .unwrap();
    let server = Server::start(&dir.path().join("data"), free_port(), &[("IMAGEGATE_CONFIG", config.to_str().unwrap())]);
    let key = server.admin_key.clone().unwrap();
    let client = reqwest::Client::new();

    let publish = |title: &str, task_id: &str| {
        let body = json!({"title": title, "imageCount": 1, "imagePath": "cfg", "taskID": task_id, "data": {"parameters": {"imageRatio": "3:4", "promptText": "a knight"}}});
        client.post(format!("{}/session/publish", server.base_url)).bearer_auth(&key).json(&body).send()
    };
    let resp = publish("Pixel portraits", "cfg-1").await.unwrap();
    assert_eq!(resp.status(), 200, "the config workflow is served");
    let url = resp.json::<Value>().await.unwrap()["data"][0]["url"].as_str().unwrap().to_string();
    let png = client.get(&url).send().await.unwrap().bytes().await.unwrap();
    // SDXL's native 3:4 size, which the workflow's base model decides.
    assert_eq!(image::load_from_memory(&png).unwrap().height(), 1152);
    assert_eq!(publish("Image generation", "cfg-2").await.unwrap().status(), 200, "the built-in workflow stays");

    let resp =
        client.post(format!("{}/v1/images/generations", server.base_url)).bearer_auth(&key).json(&json!({"prompt": "a heron", "prompt_enhancement": true})).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["data"][0]["revised_prompt"], "REWRITTEN by rewriter-1: a heron", "{body}");
}
