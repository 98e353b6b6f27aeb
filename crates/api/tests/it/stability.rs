//! Stability v1: seed 001's request against `/sd/v1/...` and `/v1/...`,
//! raw PNG answers, every documented validation rule, engines and account.

use base64::Engine as _;
use imagegate_testkit::TestApp;
use imagegate_testkit::seeds::{SEED_001_PATH as SD16, seed_001_body};
use serde_json::{Value, json};

#[tokio::test]
async fn seed_001_body_returns_base64_artifacts() {
    let app = TestApp::spawn().await;
    for path in [SD16, "/v1/generation/stable-diffusion-v1-6/text-to-image"] {
        let resp = app.post_json(path, &seed_001_body()).await;
        assert_eq!(resp.status(), 200, "{path}");
        let body: Value = resp.json().await.unwrap();
        let artifacts = body["artifacts"].as_array().unwrap();
        assert_eq!(artifacts.len(), 1);
        assert_eq!(artifacts[0]["finishReason"], "SUCCESS");
        assert!(artifacts[0]["seed"].as_u64().unwrap() > 0);
        let png = base64::engine::general_purpose::STANDARD.decode(artifacts[0]["base64"].as_str().unwrap()).unwrap();
        let img = image::load_from_memory(&png).unwrap();
        assert_eq!((img.width(), img.height()), (512, 512));
    }
}

#[tokio::test]
async fn accept_image_png_returns_raw_png_with_seed_and_finish_reason() {
    let app = TestApp::spawn().await;
    let mut body = seed_001_body();
    body["seed"] = json!(1234);
    let resp = app.client.post(app.url(SD16)).bearer_auth(&app.admin_key).header("accept", "image/png").json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "image/png");
    assert_eq!(resp.headers()["seed"], "1234");
    assert_eq!(resp.headers()["finish-reason"], "SUCCESS");
    let bytes = resp.bytes().await.unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
}

#[tokio::test]
async fn samples_make_that_many_artifacts_on_sdxl() {
    let app = TestApp::spawn().await;
    let body = json!({"width": 1344, "height": 768, "samples": 3, "seed": 7, "style_preset": "cinematic", "text_prompts": [{"text": "a fox"}, {"text": "blur", "weight": -1}]});
    let resp = app.post_json("/v1/generation/stable-diffusion-xl-1024-v1-0/text-to-image", &body).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let seeds: Vec<u64> = body["artifacts"].as_array().unwrap().iter().map(|a| a["seed"].as_u64().unwrap()).collect();
    assert_eq!(seeds, vec![7, 8, 9]);
}

async fn assert_bad_request(app: &TestApp, engine: &str, patch: Value, field: &str) {
    let mut body = seed_001_body();
    for (k, v) in patch.as_object().unwrap() {
        body[k] = v.clone();
    }
    let resp = app.post_json(&format!("/v1/generation/{engine}/text-to-image"), &body).await;
    assert_eq!(resp.status(), 400, "{engine} {patch}");
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["name"], "bad_request");
    assert!(err["id"].as_str().is_some_and(|id| id.len() > 8), "{err}");
    let msg = err["message"].as_str().unwrap();
    assert!(msg.contains(field), "{patch}: `{msg}` should name `{field}`");
}

#[tokio::test]
async fn every_documented_rule_is_a_400_naming_the_field() {
    let app = TestApp::spawn().await;
    let sdxl = "stable-diffusion-xl-1024-v1-0";
    let sd16 = "stable-diffusion-v1-6";
    let beta = "stable-diffusion-xl-beta-v2-2-2";
    assert_bad_request(&app, sdxl, json!({"width": 1024, "height": 768}), "width").await;
    assert_bad_request(&app, sd16, json!({"height": 1600}), "height").await;
    assert_bad_request(&app, sd16, json!({"width": 256}), "width").await;
    assert_bad_request(&app, beta, json!({"width": 576, "height": 576}), "width").await;
    assert_bad_request(&app, sd16, json!({"width": 100}), "width").await;
    assert_bad_request(&app, sd16, json!({"height": 520}), "height").await;
    assert_bad_request(&app, sd16, json!({"cfg_scale": 36}), "cfg_scale").await;
    assert_bad_request(&app, sd16, json!({"steps": 9}), "steps").await;
    assert_bad_request(&app, sd16, json!({"steps": 51}), "steps").await;
    assert_bad_request(&app, sd16, json!({"samples": 11}), "samples").await;
    assert_bad_request(&app, sd16, json!({"seed": 4_294_967_296u64}), "seed").await;
    assert_bad_request(&app, sd16, json!({"sampler": "K_EULER_A"}), "sampler").await;
    assert_bad_request(&app, sd16, json!({"clip_guidance_preset": "FAST_RED"}), "clip_guidance_preset").await;
    assert_bad_request(&app, sd16, json!({"style_preset": "watercolour"}), "style_preset").await;
    assert_bad_request(&app, sd16, json!({"text_prompts": [{"text": "x".repeat(2001)}]}), "text_prompts[0].text").await;
    assert_bad_request(&app, sd16, json!({"text_prompts": []}), "text_prompts").await;
    assert_bad_request(&app, sd16, json!({"text_prompts": "a cat"}), "text_prompts").await;
    assert_bad_request(&app, sd16, json!({"text_prompts": [{"weight": 1}]}), "text").await;
    assert_bad_request(&app, sd16, json!({"text_prompts": [{"text": "a cat", "weight": "heavy"}]}), "weight").await;
    assert_bad_request(&app, sd16, json!({"cfg_scale": -1}), "cfg_scale").await;
    assert_bad_request(&app, sd16, json!({"samples": 0}), "samples").await;
    assert_bad_request(&app, sd16, json!({"seed": -1}), "seed").await;
    assert_bad_request(&app, sd16, json!({"width": 1600}), "width").await;
    assert_bad_request(&app, beta, json!({"width": 960, "height": 512}), "width").await;
    assert_bad_request(&app, beta, json!({"width": 64}), "width").await;
    assert_bad_request(&app, sdxl, json!({"width": 512, "height": 512}), "width").await;
}

#[tokio::test]
async fn a_body_without_text_prompts_is_a_400_naming_it() {
    let app = TestApp::spawn().await;
    let resp = app.post_json(SD16, &json!({"width": 512, "height": 512})).await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["name"], "bad_request");
    assert!(err["message"].as_str().unwrap().contains("text_prompts"), "{err}");
}

#[tokio::test]
async fn beta_engine_allows_one_side_up_to_896() {
    let app = TestApp::spawn().await;
    let mut body = seed_001_body();
    body["width"] = json!(896);
    let resp = app.post_json("/v1/generation/stable-diffusion-xl-beta-v2-2-2/text-to-image", &body).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn unknown_engine_returns_404_in_stability_shape() {
    let app = TestApp::spawn().await;
    let resp = app.post_json("/v1/generation/stable-diffusion-v9/text-to-image", &seed_001_body()).await;
    assert_eq!(resp.status(), 404);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["name"], "not_found");
    assert!(err["message"].as_str().unwrap().contains("stable-diffusion-v9"));
}

#[tokio::test]
async fn missing_key_returns_401_naming_the_request_id() {
    let app = TestApp::spawn().await;
    let resp = app.client.post(app.url(SD16)).json(&seed_001_body()).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["name"], "unauthorized");
    assert_eq!(err["id"], request_id);
}

#[tokio::test]
async fn engines_list_names_the_three_v1_engines() {
    let app = TestApp::spawn().await;
    let list: Value = app.get("/v1/engines/list").await.json().await.unwrap();
    let ids: Vec<&str> = list.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["stable-diffusion-xl-1024-v1-0", "stable-diffusion-v1-6", "stable-diffusion-xl-beta-v2-2-2"]);
    assert!(list.as_array().unwrap().iter().all(|e| e["type"] == "PICTURE"));
}

#[tokio::test]
async fn user_account_describes_the_caller() {
    let app = TestApp::spawn().await;
    let resp = app.get("/v1/user/account").await;
    assert_eq!(resp.status(), 200);
    let acct: Value = resp.json().await.unwrap();
    assert!(acct["id"].as_str().is_some());
    assert_eq!(acct["organizations"][0]["is_default"], true);
}
