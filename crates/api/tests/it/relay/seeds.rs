//! Seed 002's example bodies for every provider family, sent to imagegate's
//! unified predictions route (and the one-step FLUX call on the OpenAI
//! route) with the relay's channels pointing at the provider doubles:
//! synchronous families answer output URLs, FLUX Kontext polls to Ready, the
//! task says which channel served it, and our URL serves the double's image.

use std::time::Duration;

use serde_json::{Value, json};

use super::harness::{all_doubles, app, assert_rehosted};
use imagegate_testkit::TestApp;

const DEER: &str = "A deer drinking in the lake, Sakura petals falling, green and clean water, japanese temple, dappled sunlight, cinematic lighting, expansive view, peace";
const SUNSET: &str = "A beautiful sunset over a calm ocean";

/// Seed 002's synchronous examples: (model path, input, the channel that must serve it).
fn seed_002_sync() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        ("opanai/gpt-image-1", json!({"prompt": DEER, "size": "1024x1024", "n": 1, "quality": "high", "moderation": "low", "background": "auto"}), "oa"),
        ("opanai/dall-e-3", json!({"prompt": DEER}), "oa"),
        ("google/imagen-4.0-fast-generate-001", json!({"prompt": DEER, "numberOfImages": 1}), "gg"),
        ("imagen-4.0-ultra-generate-001", json!({"prompt": DEER}), "gg"),
        ("qianfan/qwen-image", json!({"prompt": SUNSET, "refer_image": "", "n": 1, "size": "1024x1024", "guidance": 7.5, "watermark": false}), "ds"),
        (
            "doubao/doubao-seedream-4-0-250828",
            json!({"prompt": "星际穿越,黑洞,黑洞里冲出一辆快支离破碎的复古列车,抢视觉冲击力,电影大片,末日既视感", "size": "2K", "sequential_image_generation": "disabled", "stream": false, "response_format": "url", "watermark": true}),
            "ark",
        ),
        ("ideogram/V3", json!({"prompt": format!("{DEER}, in the style of Pixar 3D"), "rendering_speed": "QUALITY", "aspect_ratio": "2x1"}), "ideo"),
        ("stability/Stable-Diffusion-3-5-Large", json!({"prompt": DEER, "n": 1}), "st"),
        ("qianfan/irag-1.0", json!({"prompt": SUNSET, "refer_image": "", "n": 1, "size": "1024x1024", "guidance": 7.5, "watermark": false}), "qf"),
        ("FLUX.1-schnell", json!({"prompt": "a cat", "n": 2, "aspect_ratio": "16:9", "steps": 4, "seed": 5}), "gw"),
    ]
}

async fn task(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v1/tasks/{id}")).await.json().await.unwrap()
}

async fn check_sync_examples(app: &TestApp) {
    for (path, input, channel) in seed_002_sync() {
        let resp = app.post_json(&format!("/v1/models/{path}/predictions"), &json!({ "input": input })).await;
        assert_eq!(resp.status(), 200, "{path}: {}", resp.text().await.unwrap());
        let body: Value = resp.json().await.unwrap();
        let output = body["output"].as_array().unwrap();
        let expected = input.get("n").and_then(Value::as_u64).unwrap_or(1) as usize;
        assert_eq!(output.len(), expected, "{path}: {body}");
        for item in output {
            assert_rehosted(app, item["url"].as_str().unwrap(), path).await;
        }
        let t = task(app, body["id"].as_str().unwrap()).await;
        assert_eq!(t["result"]["served_by"], format!("channel:{channel}"), "{path}: {t}");
    }
}

async fn check_flux_kontext_polls_to_ready(app: &TestApp) {
    let input = json!({"prompt": format!("{DEER}. reference style as the given image:"), "aspect_ratio": "2:3", "safety_tolerance": 6});
    let resp = app.post_json("/v1/models/bfl/flux-kontext-max/predictions", &json!({ "input": input })).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let polling = body["output"][0]["polling_url"].as_str().unwrap().to_string();
    let mut last = Value::Null;
    for _ in 0..800 {
        last = app.client.get(&polling).bearer_auth(&app.admin_key).send().await.unwrap().json().await.unwrap();
        if last["status"] != "Pending" && last["status"] != "Running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(last["status"], "Ready", "{last}");
    assert_eq!(last["result"]["served_by"], "channel:bfl");
    assert_rehosted(app, last["result"]["sample"].as_str().unwrap(), "flux-kontext-max").await;
}

async fn check_one_step_flux_on_the_openai_route(app: &TestApp) {
    // seed 002's `FLUX 一步绘图` curl, verbatim body
    let body = json!({"prompt": "a cat in the garden, cute cartoon", "model": "FLUX.1-Kontext-pro", "safety_tolerance": 6});
    let resp = app.post_json("/v1/images/generations", &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-imagegate-served-by"], "channel:bfl");
    let body: Value = resp.json().await.unwrap();
    assert_rehosted(app, body["data"][0]["url"].as_str().unwrap(), "FLUX.1-Kontext-pro").await;
}

async fn check_all(postgres: bool) {
    let (doubles, channels) = all_doubles().await;
    let app = app(channels.relay(""), postgres).await;
    check_sync_examples(&app).await;
    check_flux_kontext_polls_to_ready(&app).await;
    check_one_step_flux_on_the_openai_route(&app).await;
    // every double was really called, with our channel's key
    assert_eq!(doubles.openai.log.to("/v1/images/generations").len(), 2);
    assert_eq!(doubles.google.log.all().len(), 2);
    assert_eq!(doubles.bfl.log.to("/v1/flux-kontext-max").len(), 1);
    assert_eq!(doubles.bfl.log.to("/v1/flux-kontext-pro").len(), 1);
    for (name, log) in [
        ("dashscope", &doubles.dashscope.log),
        ("volcengine", &doubles.volcengine.log),
        ("ideogram", &doubles.ideogram.log),
        ("stability", &doubles.stability.log),
        ("qianfan", &doubles.qianfan.log),
        ("gateway", &doubles.gateway.log),
    ] {
        assert!(!log.all().is_empty(), "{name} was never called");
    }
}

#[tokio::test]
async fn seed_002_examples_relay_end_to_end_and_are_served_from_our_urls() {
    check_all(false).await;
}

#[tokio::test]
async fn seed_002_examples_relay_end_to_end_on_postgres() {
    if imagegate_testkit::scratch::postgres_url().is_none() {
        eprintln!("DATABASE_URL not set: skipped");
        return;
    }
    check_all(true).await;
}
