//! SIGTERM to `imagegate serve` with a task running: the server drains,
//! exits cleanly, and the task runs again after a restart without having
//! spent an attempt (with one attempt allowed, a spent one would fail it).
//! A second signal ends the drain at once.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server::{Server, free_port};

fn signal(server: &Server, name: &str) {
    let status = std::process::Command::new("kill").arg(format!("-{name}")).arg(server.child.id().to_string()).status().expect("run kill");
    assert!(status.success());
}

/// Waits for the child to exit on its own; its exit status.
fn exits_within(server: &mut Server, bound: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            return status;
        }
        assert!(started.elapsed() < bound, "serve did not exit within {bound:?} of the signal");
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn task(client: &reqwest::Client, server: &Server, key: &str, id: &str) -> Value {
    client.get(format!("{}/v1/tasks/{id}", server.base_url)).bearer_auth(key).send().await.unwrap().json().await.unwrap()
}

/// Starts a server whose one task never ends by itself, submits it and waits until it runs.
async fn running_task(dir: &std::path::Path, drain_secs: &str) -> (Server, String, String) {
    let env = [("IMAGEGATE__QUEUE__MAX_ATTEMPTS", "1"), ("IMAGEGATE__QUEUE__DRAIN_SECS", drain_secs), ("IMAGEGATE_SYNTHETIC_DELAY_MS", "600000")];
    let server = Server::start(dir, free_port(), &env);
    let key = server.admin_key.clone().expect("first start prints the admin key");
    let client = reqwest::Client::new();
    let resp = client.post(format!("{}/v1/flux-dev", server.base_url)).header("x-key", &key).json(&json!({"prompt": "a lighthouse"})).send().await.unwrap();
    let id = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while task(&client, &server, &key, &id).await["state"] != "running" {
        assert!(Instant::now() < deadline, "the task never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (server, key, id)
}

/// Restarts over `dir` with an instant backend and waits for `id` to succeed.
async fn succeeds_after_restart(dir: &std::path::Path, key: &str, id: &str) {
    let server = Server::start(dir, free_port(), &[("IMAGEGATE__QUEUE__MAX_ATTEMPTS", "1")]);
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t = task(&client, &server, key, id).await;
        match t["state"].as_str().unwrap() {
            "succeeded" => break,
            "failed" | "cancelled" => panic!("the task did not survive the shutdown: {t}"),
            _ => assert!(Instant::now() < deadline, "the task never ran again: {t}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_gives_the_running_task_back() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, key, id) = running_task(dir.path(), "0.5").await;
    signal(&server, "TERM");
    let status = exits_within(&mut server, Duration::from_secs(15));
    assert!(status.success(), "a drained shutdown exits 0, got {status}");
    succeeds_after_restart(dir.path(), &key, &id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_ends_the_drain_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // A drain far longer than the bound below: only the second signal can end it in time.
    let (mut server, key, id) = running_task(dir.path(), "600").await;
    signal(&server, "TERM");
    std::thread::sleep(Duration::from_millis(300));
    assert!(server.child.try_wait().unwrap().is_none(), "still draining after the first signal");
    signal(&server, "INT");
    let status = exits_within(&mut server, Duration::from_secs(15));
    assert!(status.success(), "got {status}");
    succeeds_after_restart(dir.path(), &key, &id).await;
}
