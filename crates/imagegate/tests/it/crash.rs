//! kill -9 of `imagegate serve` with tasks running, then a restart: every
//! accepted task must reach a terminal state.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server::{Server, free_port};

const TASKS: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_task_finishes_after_kill_9_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    // Short leases so the restarted server reclaims the dead one's tasks
    // quickly; a short sync wait so submissions answer 504 with the task id.
    let env = [
        ("IMAGEGATE__QUEUE__LEASE_SECS", "1.5"),
        ("IMAGEGATE__QUEUE__SWEEP_SECS", "0.3"),
        ("IMAGEGATE__QUEUE__WORKERS", "4"),
        ("IMAGEGATE__SERVER__SYNC_WAIT_SECS", "0.05"),
        ("IMAGEGATE_SYNTHETIC_DELAY_MS", "1500"),
    ];
    let port = free_port();
    let server = Server::start(dir.path(), port, &env);
    let key = server.admin_key.clone().expect("first start prints the admin key");
    let client = reqwest::Client::new();
    let url = format!("{}/v1/images/generations", server.base_url);

    let mut ids = Vec::new();
    for i in 0..TASKS {
        let resp = client.post(&url).bearer_auth(&key).json(&json!({"prompt": format!("task {i}"), "image_size": "512x1024", "seed": i})).send().await.unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        let id = match status {
            504 => body["error"]["task_id"].as_str().unwrap().to_string(),
            200 => body["id"].as_str().unwrap().to_string(),
            other => panic!("unexpected {other}: {body}"),
        };
        ids.push(id);
    }
    // Let workers pick tasks up, so some die mid-flight.
    let task_url = |id: &str| format!("http://127.0.0.1:{port}/v1/tasks/{id}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t: Value = client.get(task_url(&ids[0])).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
        if t["state"] == "running" || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill_9();

    let server = Server::start(dir.path(), port, &env);
    assert!(server.admin_key.is_none(), "a restart must not create a second admin key");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut pending = ids.clone();
    while !pending.is_empty() {
        assert!(Instant::now() < deadline, "tasks never finished: {pending:?}");
        let mut still = Vec::new();
        for id in pending {
            let t: Value = client.get(task_url(&id)).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
            match t["state"].as_str().unwrap() {
                "succeeded" => assert!(t["result"]["sample"].is_string()),
                "failed" | "cancelled" => panic!("task {id} did not succeed: {t}"),
                _ => still.push(id),
            }
        }
        pending = still;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(server);
}
