//! Conformance on the real engine: each dialect's request bodies exactly as
//! the seed documents show them (hosts swapped) run against a server whose
//! only backend is the candle engine over tiny generated models (testkit's
//! `tiny_engine`), and answer in the documented shape with URLs that serve
//! real PNGs of the asked size. The validation matrix runs on the synthetic
//! backend in `crates/api/tests`; this file proves the models really run.

use std::time::Duration;

use base64::Engine as _;
use imagegate_testkit::seeds::{SEED_001_PATH as SD16, seed_000_body, seed_001_body, seed_003_body};
use imagegate_testkit::uploads::{left_half_mask, picture, png};
use imagegate_testkit::{TestApp, TestAppOptions};
use serde_json::{Value, json};

async fn engine_app() -> TestApp {
    TestApp::spawn_with(TestAppOptions::tiny_engine()).await
}

/// Fetches a signed URL and checks it serves a PNG of `width` x `height`.
async fn assert_png_at(app: &TestApp, url: &str, width: u32, height: u32) {
    let resp = app.client.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{url}");
    assert_eq!(resp.headers()["content-type"], "image/png");
    assert_png(&resp.bytes().await.unwrap(), width, height);
}

fn assert_png(bytes: &[u8], width: u32, height: u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let img = image::load_from_memory(bytes).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (width, height));
    // A model's output, not a blank canvas.
    let first = img.get_pixel(0, 0);
    assert!(img.pixels().any(|p| p != first), "the image is one flat colour");
}

#[tokio::test]
async fn stability_seed_001_runs_on_the_engine_as_json_and_as_png() {
    let app = engine_app().await;
    let resp = app.post_json(SD16, &seed_001_body()).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let artifacts = body["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 1);
    assert_eq!(artifacts[0]["finishReason"], "SUCCESS");
    assert!(artifacts[0]["seed"].as_u64().unwrap() > 0, "seed 0 (omitted) means random, and the one used is reported");
    assert_png(&base64::engine::general_purpose::STANDARD.decode(artifacts[0]["base64"].as_str().unwrap()).unwrap(), 512, 512);

    let resp = app.client.post(app.url(SD16)).bearer_auth(&app.admin_key).header("accept", "image/png").json(&seed_001_body()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "image/png");
    assert_eq!(resp.headers()["finish-reason"], "SUCCESS");
    assert!(resp.headers()["seed"].to_str().unwrap().parse::<u64>().is_ok());
    assert_png(&resp.bytes().await.unwrap(), 512, 512);
}

#[tokio::test]
async fn siliconflow_seed_003_runs_flux_schnell_on_the_engine() {
    let app = engine_app().await;
    let resp = app.post_json("/v1/images/generations", &seed_003_body()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-imagegate-served-by"], "engine");
    let body: Value = resp.json().await.unwrap();
    let url = body["images"][0]["url"].as_str().unwrap().to_string();
    assert_eq!(body["data"][0]["url"], url.as_str(), "OpenAI's `data` and SiliconFlow's `images` list the same image");
    assert!(body["data"][0]["revised_prompt"].as_str().unwrap().starts_with("an island near sea"));
    assert!(body["timings"]["inference"].is_u64());
    assert!(body["seed"].is_u64());
    assert_png_at(&app, &url, 1024, 1024).await;
}

#[tokio::test]
async fn predictions_seed_002_stable_diffusion_3_5_runs_on_the_engine() {
    let app = engine_app().await;
    let input = json!({"prompt": "A deer drinking in the lake, Sakura petals falling, green and clean water, japanese temple, dappled sunlight, cinematic lighting, expansive view, peace", "n": 1});
    let resp = app.post_json("/v1/models/stability/Stable-Diffusion-3-5-Large/predictions", &json!({ "input": input })).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let output = body["output"].as_array().unwrap();
    assert_eq!(output.len(), 1);
    assert_png_at(&app, output[0]["url"].as_str().unwrap(), 1024, 1024).await;
    // The synchronous answer's task is readable through the task endpoint too.
    let task: Value = app.get(&format!("/v1/tasks/{}", body["id"].as_str().unwrap())).await.json().await.unwrap();
    assert_eq!((task["status"].as_str(), task["result"]["served_by"].as_str()), (Some("Ready"), Some("engine")));
}

#[tokio::test]
async fn publish_seed_000_runs_flux_dev_once_and_a_retry_returns_the_same_urls() {
    let app = engine_app().await;
    let resp = app.post_json("/session/publish", &seed_000_body()).await;
    assert_eq!(resp.status(), 200);
    let first: Value = resp.json().await.unwrap();
    assert_eq!((first["code"].clone(), first["msg"].clone(), first["taskID"].clone()), (json!(200), json!("success"), json!("nextGPU20250531145458888")));
    let urls: Vec<String> = first["data"].as_array().unwrap().iter().map(|d| d["url"].as_str().unwrap().to_string()).collect();
    assert_eq!(urls.len(), 3);
    for url in &urls {
        assert!(url.contains("/files/2025/05/"), "{url}");
        // FLUX.1-dev's native 16:9 size.
        assert_png_at(&app, url, 1344, 768).await;
    }

    let again: Value = app.post_json("/session/publish", &seed_000_body()).await.json().await.unwrap();
    let path = |u: &str| u.split('?').next().unwrap().to_string();
    let again_urls: Vec<String> = again["data"].as_array().unwrap().iter().map(|d| path(d["url"].as_str().unwrap())).collect();
    assert_eq!(again_urls, urls.iter().map(|u| path(u)).collect::<Vec<_>>());
    let counts = app.state.db.task_state_counts().await.unwrap();
    assert_eq!(counts, vec![("succeeded".to_string(), 1)], "the retry ran nothing");

    let session: Value = app.get("/session/nextGPU20250531145458888").await.json().await.unwrap();
    assert_eq!((session["status"].as_str(), session["data"].as_array().map(Vec::len)), (Some("Ready"), Some(3)));
}

#[tokio::test]
async fn bfl_flux_dev_is_asynchronous_on_the_engine_and_polls_to_ready() {
    let app = engine_app().await;
    let resp = app
        .client
        .post(app.url("/v1/flux-dev"))
        .header("x-key", &app.admin_key)
        .json(&json!({"prompt": "A cat on its back legs running like a human", "width": 768, "height": 512}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let id = body["id"].as_str().unwrap().to_string();
    let polling = body["polling_url"].as_str().unwrap().to_string();
    assert!(polling.ends_with(&format!("/v1/get_result?id={id}")), "{polling}");
    let mut last = Value::Null;
    for _ in 0..600 {
        last = app.client.get(&polling).header("x-key", &app.admin_key).send().await.unwrap().json().await.unwrap();
        if last["status"] != "Pending" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last["status"], "Ready", "{last}");
    assert_png_at(&app, last["result"]["sample"].as_str().unwrap(), 768, 512).await;
    // The unified task endpoint reads the same task.
    let task: Value = app.get(&format!("/v1/tasks/{id}")).await.json().await.unwrap();
    assert_eq!((task["status"].as_str(), task["progress"].as_f64()), (Some("Ready"), Some(1.0)));
    let path = |v: &Value| v.as_str().unwrap().split('?').next().unwrap().to_string();
    assert_eq!(path(&task["result"]["sample"]), path(&last["result"]["sample"]));
}

#[tokio::test]
async fn an_openai_edit_with_a_mask_inpaints_on_the_engine() {
    let app = engine_app().await;
    let (image, mask) = (picture(512, 512), left_half_mask(512, 512));
    let texts = [("model", "stable-diffusion-inpainting"), ("prompt", "a red door in a white wall"), ("response_format", "url")];
    let resp = app.post_edit(&app.admin_key, &texts, &[("image", &image), ("mask", &mask)]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-imagegate-served-by"], "engine");
    let body: Value = resp.json().await.unwrap();
    assert_png_at(&app, body["data"][0]["url"].as_str().unwrap(), 512, 512).await;

    // The inpainting checkpoint takes nothing without a mask, and says so by name.
    let resp = app.post_edit(&app.admin_key, &texts, &[("image", &image)]).await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["param"], "mask", "{err}");
}

#[tokio::test]
async fn stability_masking_inpaints_on_the_engine_and_answers_artifacts() {
    let app = engine_app().await;
    let (image, mask) = (picture(384, 384), png(image::GrayImage::from_fn(384, 384, |x, _| image::Luma([if x < 192 { 255 } else { 0 }]))));
    let texts = [("text_prompts[0][text]", "a red door in a white wall"), ("mask_source", "MASK_IMAGE_WHITE"), ("steps", "10")];
    let resp = app.post_form("/v1/generation/stable-diffusion-inpainting/image-to-image/masking", &app.admin_key, &texts, &[("init_image", &image), ("mask_image", &mask)]).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["artifacts"][0]["finishReason"], "SUCCESS");
    assert_png(&base64::engine::general_purpose::STANDARD.decode(body["artifacts"][0]["base64"].as_str().unwrap()).unwrap(), 384, 384);
}
