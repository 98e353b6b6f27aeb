//! The key commands work against a running server's data folder, and the
//! server accepts what they create.

use serde_json::json;

use crate::server::{Server, free_port, imagegate};

#[tokio::test]
async fn keys_created_while_serving_work_and_revoked_keys_stop() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = Server::start(dir.path(), port, &[]);
    assert!(server.admin_key.as_deref().is_some_and(|k| k.starts_with("sk-ig-")));

    let out = imagegate().args(["keys", "create", "--name", "ci", "--account", "alice", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "the key is the only line on stdout: {stdout:?}");
    let key = lines[0];
    assert!(key.starts_with("sk-ig-"));

    let client = reqwest::Client::new();
    let generate = |k: String| {
        let client = client.clone();
        let url = format!("{}/v1/images/generations", server.base_url);
        async move { client.post(url).bearer_auth(k).json(&json!({"prompt": "x", "image_size": "512x1024"})).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(generate(key.to_string()).await, 200);

    let list = imagegate().args(["keys", "list", "--account", "alice", "--data-dir"]).arg(dir.path()).output().unwrap();
    let listing = String::from_utf8(list.stdout).unwrap();
    assert!(!listing.contains(key), "listings never show secrets");
    let id = listing.lines().nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    let revoke = imagegate().args(["keys", "revoke", &id, "--data-dir"]).arg(dir.path()).output().unwrap();
    assert!(revoke.status.success());
    // The server trusts a key it authenticated for `auth_cache_ms` (1 s by
    // default); the revocation, made by another process, must take within that.
    let revoked_at = std::time::Instant::now();
    loop {
        // When the request left, not when its image came back: a slow machine
        // may take longer to generate than the cache's lifetime.
        let sent = revoked_at.elapsed();
        let status = generate(key.to_string()).await;
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(sent < std::time::Duration::from_millis(1500), "a revoked key still works {sent:?} after its revocation, past the auth cache's lifetime");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[test]
fn defaults_and_help_work() {
    let out = imagegate().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for cmd in ["serve", "worker", "keys", "generate", "models"] {
        assert!(help.contains(cmd), "{cmd} in --help");
    }
}
