//! `imagegate models pull` against a local double of the Hugging Face Hub
//! (testkit's `hf_hub`), serving a tiny random-weight SD pipeline in the
//! real diffusers layout plus the clutter real repos carry. The pulled
//! folder must be exactly what the engine needs, resumable, checked against
//! the listed hashes, and it must generate.

use std::collections::HashMap;
use std::path::Path;

use imagegate_engine::fixtures::{TinySd, write_tiny_sd};
use imagegate_testkit::doubles::hf_hub::{self, HubRepo};

use crate::server::imagegate;

/// A tiny SD repo with what real ones add: `.bin` twins, an fp16 copy of
/// the UNet, a safety checker, a root single-file checkpoint.
fn write_repo(dir: &Path) {
    write_tiny_sd(dir, &TinySd { seed: 5, ..TinySd::default() }).unwrap();
    let mut index: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("model_index.json")).unwrap()).unwrap();
    index["safety_checker"] = serde_json::json!(["stable_diffusion", "StableDiffusionSafetyChecker"]);
    index["feature_extractor"] = serde_json::json!([null, null]);
    std::fs::write(dir.join("model_index.json"), index.to_string()).unwrap();
    let unet = dir.join("unet/diffusion_pytorch_model.safetensors");
    std::fs::copy(&unet, dir.join("unet/diffusion_pytorch_model.fp16.safetensors")).unwrap();
    std::fs::write(dir.join("unet/diffusion_pytorch_model.bin"), b"pickle").unwrap();
    std::fs::write(dir.join("text_encoder/pytorch_model.bin"), b"pickle").unwrap();
    std::fs::create_dir_all(dir.join("safety_checker")).unwrap();
    std::fs::write(dir.join("safety_checker/config.json"), "{}").unwrap();
    std::fs::write(dir.join("safety_checker/model.safetensors"), b"not fetched").unwrap();
    std::fs::copy(&unet, dir.join("v1-5-pruned.safetensors")).unwrap();
    std::fs::write(dir.join("README.md"), "# tiny").unwrap();
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

fn pull(models: &Path, endpoint: &str, token: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut cmd = imagegate();
    cmd.env("HF_ENDPOINT", endpoint).env("HF_HOME", models.join(".no-hf-home")).env_remove("HF_TOKEN");
    if let Some(t) = token {
        cmd.env("HF_TOKEN", t);
    }
    cmd.arg("--models-dir").arg(models).args(["models", "pull"]).args(args).output().unwrap()
}

#[tokio::test]
async fn pull_fetches_what_the_engine_needs_resumes_and_generates() {
    let src = tempfile::tempdir().unwrap();
    write_repo(src.path());
    let hub = hf_hub::start(HashMap::from([("acme/tiny-sd".to_string(), HubRepo { dir: src.path().to_path_buf(), ..Default::default() })])).await;
    let models = tempfile::tempdir().unwrap();

    // A stopped earlier pull left half the VAE's weights behind.
    let vae = std::fs::read(src.path().join("vae/diffusion_pytorch_model.safetensors")).unwrap();
    std::fs::create_dir_all(models.path().join("tiny-sd/vae")).unwrap();
    std::fs::write(models.path().join("tiny-sd/vae/diffusion_pytorch_model.safetensors.part"), &vae[..vae.len() / 2]).unwrap();

    let out = tokio::task::spawn_blocking({
        let (m, base) = (models.path().to_path_buf(), hub.base.clone());
        move || pull(&m, &base, None, &["acme/tiny-sd"])
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let folder = models.path().join("tiny-sd");
    assert_eq!(
        files_under(&folder),
        [
            "model_index.json",
            "scheduler/scheduler_config.json",
            "text_encoder/config.json",
            "text_encoder/model.safetensors",
            "tokenizer/merges.txt",
            "tokenizer/tokenizer.json",
            "tokenizer/tokenizer_config.json",
            "tokenizer/vocab.json",
            "unet/config.json",
            "unet/diffusion_pytorch_model.fp16.safetensors",
            "vae/config.json",
            "vae/diffusion_pytorch_model.safetensors",
        ],
        "one safetensors variant per used component, configs and tokenizer; no pickles, safety checker, root checkpoint or part files"
    );
    assert_eq!(std::fs::read(folder.join("vae/diffusion_pytorch_model.safetensors")).unwrap(), vae, "the resumed file is whole");
    let vae_gets: Vec<_> = hub.log.all().into_iter().filter(|r| r.uri.contains("vae/diffusion_pytorch_model.safetensors")).collect();
    assert!(vae_gets.iter().any(|r| r.header("range") == format!("bytes={}-", vae.len() / 2)), "the part file was resumed with a range request");
    assert!(hub.log.all().iter().all(|r| !r.uri.contains(".bin") && !r.uri.contains("safety_checker") && !r.uri.contains("v1-5-pruned")));

    // What was pulled is a model: generate draws with it.
    let png = models.path().join("out.png");
    let drawn = imagegate()
        .arg("--models-dir")
        .arg(models.path())
        .args(["generate", "a red circle", "--model", "tiny-sd", "--size", "64x64", "--steps", "2", "--out"])
        .arg(&png)
        .output()
        .unwrap();
    assert!(drawn.status.success(), "{}", String::from_utf8_lossy(&drawn.stderr));
    let img = image::open(&png).unwrap();
    assert_eq!((img.width(), img.height()), (64, 64));

    // A second pull finds everything in place and downloads nothing big.
    let before = hub.log.all().len();
    let again = tokio::task::spawn_blocking({
        let (m, base) = (models.path().to_path_buf(), hub.base.clone());
        move || pull(&m, &base, None, &["acme/tiny-sd"])
    })
    .await
    .unwrap();
    assert!(again.status.success());
    assert!(hub.log.all()[before..].iter().all(|r| !r.uri.contains("/cdn/")), "complete files are not fetched again");
}

#[tokio::test]
async fn a_hash_mismatch_fails_and_leaves_no_file_under_its_name() {
    let src = tempfile::tempdir().unwrap();
    write_repo(src.path());
    let repo = HubRepo { dir: src.path().to_path_buf(), corrupt: vec!["text_encoder/model.safetensors".into()], ..Default::default() };
    let hub = hf_hub::start(HashMap::from([("acme/tiny-sd".to_string(), repo)])).await;
    let models = tempfile::tempdir().unwrap();
    let out = tokio::task::spawn_blocking({
        let (m, base) = (models.path().to_path_buf(), hub.base.clone());
        move || pull(&m, &base, None, &["acme/tiny-sd", "--name", "broken"])
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("text_encoder/model.safetensors") && err.contains("SHA-256"), "{err}");
    let dir = models.path().join("broken/text_encoder");
    assert!(!dir.join("model.safetensors").exists() && !dir.join("model.safetensors.part").exists());
}

#[tokio::test]
async fn gated_and_unknown_repos_say_what_to_do() {
    let src = tempfile::tempdir().unwrap();
    write_repo(src.path());
    let gated = HubRepo { dir: src.path().to_path_buf(), token: Some("hf_accepted".into()), ..Default::default() };
    let hub = hf_hub::start(HashMap::from([("acme/gated".to_string(), gated)])).await;
    let models = tempfile::tempdir().unwrap();
    let run = |token: Option<&'static str>, repo: &'static str| {
        let (m, base) = (models.path().to_path_buf(), hub.base.clone());
        tokio::task::spawn_blocking(move || pull(&m, &base, token, &[repo]))
    };
    let out = run(None, "acme/gated").await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("gated") && err.contains("HF_TOKEN"), "{err}");
    let out = run(Some("hf_other"), "acme/gated").await.unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("accept its licence"));
    let out = run(Some("hf_accepted"), "acme/gated").await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(None, "acme/nothing-here").await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("acme/nothing-here"), "{err}");
    let out = run(None, "imagegate-demo").await.unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to pull"));
}
