//! `prompt_enhancement` through a configured chat channel (a local axum
//! double of an OpenAI-compatible API), and the built-in fallback.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::Json;
use axum::routing::post;
use imagegate_api::ApiConfig;
use imagegate_api::enhance::PromptEnhancementConfig;
use imagegate_testkit::{TestApp, TestAppOptions};
use serde_json::{Value, json};

/// Serves `POST /v1/chat/completions`, echoing the user's prompt rewritten.
async fn spawn_chat_double(calls: Arc<AtomicU32>) -> String {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move |Json(body): Json<Value>| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::Relaxed);
                assert_eq!(body["model"], "rewriter-1");
                let user = body["messages"][1]["content"].as_str().unwrap_or_default().to_string();
                Json(json!({"choices": [{"message": {"role": "assistant", "content": format!("LLM: {user}, watercolour, dawn light")}}]}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn config(base_url: String) -> ApiConfig {
    ApiConfig { prompt_enhancement: Some(PromptEnhancementConfig { base_url, model: "rewriter-1".into(), key_env: None, timeout_secs: 2.0 }), ..Default::default() }
}

#[tokio::test]
async fn configured_chat_channel_rewrites_the_prompt_and_it_is_stored() {
    let calls = Arc::new(AtomicU32::new(0));
    let url = spawn_chat_double(calls.clone()).await;
    let app = TestApp::spawn_with(TestAppOptions { api: config(url), ..Default::default() }).await;
    let resp = app.post_json("/v1/images/generations", &json!({"prompt": "a heron", "prompt_enhancement": true})).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["data"][0]["revised_prompt"], "LLM: a heron, watercolour, dawn light");
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    let task: Value = app.get(&format!("/v1/tasks/{}", body["id"].as_str().unwrap())).await.json().await.unwrap();
    assert_eq!(task["revised_prompt"], "LLM: a heron, watercolour, dawn light");
}

#[tokio::test]
async fn failing_chat_channel_falls_back_to_the_built_in_expansion() {
    // Nothing listens on this port once the listener is dropped.
    let port = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let app = TestApp::spawn_with(TestAppOptions { api: config(format!("http://127.0.0.1:{port}/v1")), ..Default::default() }).await;
    let resp = app.post_json("/v1/images/generations", &json!({"prompt": "a heron", "prompt_enhancement": true})).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["data"][0]["revised_prompt"], imagegate_core::prompt::enhance("a heron"));
}
