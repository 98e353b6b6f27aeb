//! `imagegate channels test NAME` against provider doubles running in this
//! test process: the free endpoint where the provider has one, a billed
//! 1-image request only with --yes, failures exit non-zero without the key.

use std::path::Path;
use std::process::Output;

use imagegate_testkit::doubles::{ideogram, openai};

use crate::server::imagegate;

/// Writes a config with the given `[[upstream.channels]]` tables and the keys as files.
fn config(dir: &Path, channels: &[(&str, &str, &str, &str)]) -> std::path::PathBuf {
    let mut text = String::new();
    for (name, provider, base, key) in channels {
        let key_path = dir.join(format!("{name}.key"));
        std::fs::write(&key_path, key).unwrap();
        text.push_str(&format!("[[upstream.channels]]\nname = \"{name}\"\nprovider = \"{provider}\"\nbase_url = \"{base}\"\nkey_file = \"{}\"\n\n", key_path.display()));
    }
    let path = dir.join("imagegate.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the binary off the runtime's threads (the doubles live on them).
async fn run(config: &Path, args: &[&str]) -> Output {
    let mut cmd = imagegate();
    cmd.arg("--config").arg(config).args(["channels", "test"]).args(args);
    tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test]
async fn a_free_endpoint_is_used_where_the_provider_has_one() {
    let d = openai::start("sk-free-test-key", false).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &[("oa", "openai", &format!("{}/v1", d.base), "sk-free-test-key")]);
    let out = run(&cfg, &["oa"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((report["ok"].as_bool(), report["call"].as_str()), (Some(true), Some("GET /models")), "{report}");
    assert!(report["detail"].as_str().unwrap().contains("3 entries"), "{report}");
    assert_eq!(d.log.to("/v1/models").len(), 1);
    assert!(d.log.to("/v1/images").is_empty(), "nothing was generated");
}

#[tokio::test]
async fn a_billed_test_needs_yes_and_then_makes_one_request() {
    let d = ideogram::start("ideo-key").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &[("ideo", "ideogram", &d.base, "ideo-key")]);
    let refused = run(&cfg, &["ideo"]).await;
    assert!(!refused.status.success());
    assert!(text(&refused).contains("--yes"), "{}", text(&refused));
    assert!(d.log.all().is_empty(), "no call without --yes");
    let out = run(&cfg, &["ideo", "--yes"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert!(report["call"].as_str().unwrap().starts_with("generate V3 (1 image"), "{report}");
    assert_eq!(d.log.to("/v1/ideogram-v3/generate").len(), 1);
}

#[tokio::test]
async fn a_wrong_key_fails_the_test_without_printing_the_key() {
    let d = openai::start("sk-right", false).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &[("oa", "openai", &format!("{}/v1", d.base), "sk-wrong-secret-123")]);
    let out = run(&cfg, &["oa"]).await;
    assert!(!out.status.success());
    let all = text(&out);
    assert!(all.contains("401"), "{all}");
    assert!(!all.contains("sk-wrong-secret-123"), "the key never shows: {all}");
    let unknown = run(&cfg, &["nope"]).await;
    assert!(!unknown.status.success());
    assert!(text(&unknown).contains("configured: oa"), "{}", text(&unknown));
}
