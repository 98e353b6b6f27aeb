//! `imagegate-demo` through the binary, on a tiny random-weight pipeline
//! written under that name (the serving path, not the trained weights):
//! `serve --demo` draws a seed request for a model whose weights are not
//! here and says so; without `--demo` that request gets 503 naming the
//! missing weights; `generate` picks the demo when nothing else is installed.

use std::path::{Path, PathBuf};

use imagegate_testkit::seeds::seed_003_body;
use serde_json::Value;

use crate::server::{Server, free_port, imagegate};

/// A models folder holding only the tiny `imagegate-demo`.
fn demo_models(dir: &Path) -> PathBuf {
    let models = dir.join("models");
    imagegate_testkit::tiny_engine::write_tiny_demo(&models).unwrap();
    models
}

fn png_size(bytes: &[u8]) -> (u32, u32, bool) {
    let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Png).expect("a PNG").to_rgb8();
    let first = *img.get_pixel(0, 0);
    let varied = img.pixels().any(|p| *p != first);
    (img.width(), img.height(), varied)
}

#[tokio::test]
async fn demo_mode_draws_for_models_without_weights_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let models = demo_models(dir.path());
    let server = Server::start_with(dir.path(), free_port(), &["--demo", "--models-dir", models.to_str().unwrap()], &[]);
    let key = server.admin_key.clone().expect("admin key printed on first start");
    let client = reqwest::Client::new();

    let resp = client.post(format!("{}/v1/images/generations", server.base_url)).bearer_auth(&key).json(&seed_003_body()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-imagegate-served-by"], "imagegate-demo");
    let note = resp.headers()["x-imagegate-note"].to_str().unwrap().to_string();
    assert!(note.contains("standing in for FLUX.1-schnell") && note.contains("resized to 1024x1024"), "{note}");
    let body: Value = resp.json().await.unwrap();
    let url = body["images"][0]["url"].as_str().unwrap();
    let bytes = client.get(url).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(png_size(&bytes), (1024, 1024, true), "the requested size, and not a flat picture");

    // The task record says the same.
    let id = body["id"].as_str().unwrap();
    let resp = client.get(format!("{}/v1/tasks/{id}", server.base_url)).bearer_auth(&key).send().await.unwrap();
    assert_eq!(resp.headers()["x-imagegate-served-by"], "imagegate-demo");
    let task: Value = resp.json().await.unwrap();
    assert_eq!(task["result"]["served_by"], "imagegate-demo");
    assert_eq!(task["result"]["note"], note.as_str());
}

#[tokio::test]
async fn without_demo_a_model_without_weights_is_503_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let models = demo_models(dir.path());
    let server = Server::start_with(dir.path(), free_port(), &["--models-dir", models.to_str().unwrap()], &[]);
    let key = server.admin_key.clone().unwrap();
    let client = reqwest::Client::new();
    let resp = client.post(format!("{}/v1/images/generations", server.base_url)).bearer_auth(&key).json(&seed_003_body()).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("weights for FLUX.1-schnell are missing") && message.contains("--demo"), "{message}");

    // The demo model itself is served either way, drawn small and resized.
    let req = serde_json::json!({"model": "imagegate-demo", "prompt": "a large red circle in the centre of a blue background", "size": "256x256", "seed": 7});
    let resp = client.post(format!("{}/v1/images/generations", server.base_url)).bearer_auth(&key).json(&req).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-imagegate-served-by"], "imagegate-demo");
    assert_eq!(resp.headers()["x-imagegate-note"], "drawn at 64x64 (the demo model's native size is 64x64) and resized to 256x256");
}

#[test]
fn generate_uses_the_demo_when_nothing_else_is_installed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo.png");
    let status = imagegate()
        .args(["generate", "two small yellow stars at the top of a purple background", "--seed", "3", "--out"])
        .arg(&out)
        .arg("--models-dir")
        .arg(demo_models(dir.path()))
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let (w, h, varied) = png_size(&std::fs::read(&out).unwrap());
    assert_eq!((w, h, varied), (64, 64, true));
}
