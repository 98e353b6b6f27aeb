//! Unified predictions: seed 002's bodies for every family (hosts swapped),
//! async FLUX Kontext with polling, slash paths, the `opanai/` alias, 404s
//! and the 503 that names the upstream provider.

use std::time::Duration;

use base64::Engine as _;
use imagegate_testkit::{TestApp, TestAppOptions};
use serde_json::{Value, json};

const DEER: &str = "A deer drinking in the lake, Sakura petals falling, green and clean water, japanese temple, dappled sunlight, cinematic lighting, expansive view, peace";

/// Seed 002's synchronous examples: model path and input.
fn seed_002_sync_examples() -> Vec<(&'static str, Value)> {
    vec![
        ("opanai/gpt-image-1", json!({"prompt": DEER, "size": "1024x1024", "n": 1, "quality": "high", "moderation": "low", "background": "auto"})),
        ("opanai/dall-e-3", json!({"prompt": DEER})),
        ("google/imagen-4.0-fast-generate-001", json!({"prompt": DEER, "numberOfImages": 1})),
        ("imagen-4.0-ultra-generate-001", json!({"prompt": DEER})),
        ("qianfan/qwen-image", json!({"prompt": "A beautiful sunset over a calm ocean", "refer_image": "", "n": 1, "size": "1024x1024", "guidance": 7.5, "watermark": false})),
        (
            "doubao/doubao-seedream-4-0-250828",
            json!({"prompt": "星际穿越,黑洞,黑洞里冲出一辆快支离破碎的复古列车", "size": "2K", "sequential_image_generation": "disabled", "stream": false, "response_format": "url", "watermark": true}),
        ),
        ("ideogram/V3", json!({"prompt": format!("{DEER}, in the style of Pixar 3D"), "rendering_speed": "QUALITY", "aspect_ratio": "2x1"})),
        ("stability/Stable-Diffusion-3-5-Large", json!({"prompt": DEER, "n": 1})),
        ("qianfan/irag-1.0", json!({"prompt": "A beautiful sunset over a calm ocean", "refer_image": "", "n": 1, "size": "1024x1024", "guidance": 7.5, "watermark": false})),
        ("FLUX.1-schnell", json!({"prompt": "a cat", "n": 2, "aspect_ratio": "16:9", "steps": 4, "seed": 5})),
    ]
}

#[tokio::test]
async fn seed_002_synchronous_examples_answer_output_urls() {
    let app = TestApp::spawn().await;
    for (path, input) in seed_002_sync_examples() {
        let resp = app.post_json(&format!("/v1/models/{path}/predictions"), &json!({ "input": input })).await;
        assert_eq!(resp.status(), 200, "{path}");
        let body: Value = resp.json().await.unwrap();
        let output = body["output"].as_array().unwrap();
        assert!(!output.is_empty(), "{path}: {body}");
        for item in output {
            let url = item["url"].as_str().unwrap();
            assert_eq!(app.client.get(url).send().await.unwrap().status(), 200, "{path}");
        }
    }
}

#[tokio::test]
async fn b64_json_items_when_asked() {
    let app = TestApp::spawn().await;
    let body = json!({"input": {"prompt": "x", "size": "1K", "response_format": "b64_json"}});
    let resp: Value = app.post_json("/v1/models/doubao/doubao-seedream-4-0-250828/predictions", &body).await.json().await.unwrap();
    let png = base64::engine::general_purpose::STANDARD.decode(resp["output"][0]["b64_json"].as_str().unwrap()).unwrap();
    assert_eq!(image::load_from_memory(&png).unwrap().width(), 1024);
}

#[tokio::test]
async fn flux_kontext_is_asynchronous_and_polls_to_ready() {
    let app = TestApp::spawn().await;
    let input = json!({"prompt": format!("{DEER}. reference style as the given image:"), "aspect_ratio": "2:3", "safety_tolerance": 6});
    let resp = app.post_json("/v1/models/bfl/flux-kontext-max/predictions", &json!({ "input": input })).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let task_id = body["output"][0]["taskId"].as_str().unwrap().to_string();
    let polling = body["output"][0]["polling_url"].as_str().unwrap().to_string();
    assert!(polling.ends_with(&format!("/v1/tasks/{task_id}")), "{polling}");
    let mut last = Value::Null;
    for _ in 0..400 {
        last = app.client.get(&polling).bearer_auth(&app.admin_key).send().await.unwrap().json().await.unwrap();
        if last["status"] == "Ready" {
            break;
        }
        assert!(["Pending", "Running"].contains(&last["status"].as_str().unwrap()), "{last}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last["status"], "Ready", "{last}");
    assert!(last["result"]["sample"].as_str().unwrap().contains("/files/"));
}

#[tokio::test]
async fn family_rules_are_400_naming_the_input_field() {
    let app = TestApp::spawn().await;
    for (path, input, field) in [
        ("bfl/flux-kontext-max", json!({"prompt": "x", "aspect_ratio": "1:3"}), "input.aspect_ratio"),
        ("bfl/flux-kontext-max", json!({"prompt": "x", "safety_tolerance": 7}), "input.safety_tolerance"),
        ("bfl/flux-kontext-max", json!({"prompt": "x", "safety_tolerance": 3, "input_image": "https://example.com/a.png"}), "input.safety_tolerance"),
        ("google/imagen-4.0-generate-001", json!({"prompt": "x", "numberOfImages": 5}), "input.numberOfImages"),
        ("openai/gpt-image-1", json!({"prompt": "x", "quality": "ultra"}), "input.quality"),
        ("openai/gpt-image-1", json!({"prompt": "x", "size": "999x999"}), "input.size"),
        ("ideogram/V3", json!({"prompt": "x", "rendering_speed": "FAST"}), "input.rendering_speed"),
        ("FLUX.1-schnell", json!({"prompt": ""}), "input.prompt"),
    ] {
        let resp = app.post_json(&format!("/v1/models/{path}/predictions"), &json!({ "input": input })).await;
        assert_eq!(resp.status(), 400, "{path} {input}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["param"], field, "{err}");
    }
}

#[tokio::test]
async fn every_input_rule_is_a_400_naming_the_field() {
    let app = TestApp::spawn().await;
    for (path, input, field) in [
        ("FLUX.1-schnell", json!({"prompt": "x", "n": 0}), "input.n"),
        ("FLUX.1-schnell", json!({"prompt": "x", "n": 11}), "input.n"),
        ("FLUX.1-schnell", json!({"prompt": "x", "steps": 0}), "input.steps"),
        ("FLUX.1-schnell", json!({"prompt": "x", "steps": 51}), "input.steps"),
        ("FLUX.1-schnell", json!({"prompt": "x", "guidance": 36}), "input.guidance"),
        ("FLUX.1-schnell", json!({"prompt": "x", "size": "1000x1000"}), "input.size"),
        ("FLUX.1-schnell", json!({"prompt": "x", "size": "big"}), "input.size"),
        ("FLUX.1-schnell", json!({"prompt": "x", "aspect_ratio": "wide"}), "input.aspect_ratio"),
        ("FLUX.1-schnell", json!({"prompt": "x", "response_format": "xml"}), "input.response_format"),
        ("FLUX.1-schnell", json!({"prompt": "x", "output_format": "gif"}), "input.output_format"),
        ("FLUX.1-schnell", json!({"prompt": "x".repeat(4001)}), "input.prompt"),
        ("google/imagen-4.0-generate-001", json!({"prompt": "x", "numberOfImages": 0}), "input.numberOfImages"),
        ("google/imagen-4.0-generate-001", json!({"prompt": "x", "aspectRatio": "2:1"}), "input.aspectRatio"),
        ("doubao/doubao-seedream-4-0-250828", json!({"prompt": "x", "size": "8K"}), "input.size"),
        ("bfl/flux-kontext-max", json!({"prompt": "x", "aspect_ratio": "22:9"}), "input.aspect_ratio"),
    ] {
        let resp = app.post_json(&format!("/v1/models/{path}/predictions"), &json!({ "input": input })).await;
        assert_eq!(resp.status(), 400, "{path} {input}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["param"], field, "{path} {input}: {err}");
        assert!(err["error"]["message"].as_str().unwrap().contains(field), "{err}");
    }
}

#[tokio::test]
async fn malformed_bodies_are_400_naming_what_is_wrong() {
    let app = TestApp::spawn().await;
    for (body, named) in [
        (json!({"prompt": "x"}), "input"),
        (json!({"input": {}}), "prompt"),
        (json!({"input": {"prompt": 7}}), "input.prompt"),
        (json!({"input": {"prompt": "x", "seed": -1}}), "input.seed"),
        (json!({"input": {"prompt": "x", "n": "two"}}), "input.n"),
    ] {
        let resp = app.post_json("/v1/models/FLUX.1-schnell/predictions", &body).await;
        assert_eq!(resp.status(), 400, "{body}");
        let err: Value = resp.json().await.unwrap();
        assert!(err["error"]["message"].as_str().unwrap().contains(named), "{body}: {err}");
    }
}

#[tokio::test]
async fn unknown_model_path_returns_404() {
    let app = TestApp::spawn().await;
    for path in ["/v1/models/acme/nope/predictions", "/v1/models/openai/gpt-image-1/other"] {
        let resp = app.post_json(path, &json!({"input": {"prompt": "x"}})).await;
        assert_eq!(resp.status(), 404, "{path}");
    }
}

#[tokio::test]
async fn upstream_model_without_channel_is_503_naming_the_provider() {
    let app = TestApp::spawn_with(TestAppOptions { backends: vec![], ..Default::default() }).await;
    let resp = app.post_json("/v1/models/opanai/gpt-image-1/predictions", &json!({"input": {"prompt": "x"}})).await;
    assert_eq!(resp.status(), 503);
    let err: Value = resp.json().await.unwrap();
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(msg.contains("`openai`") && msg.contains("channel"), "{msg}");
}
