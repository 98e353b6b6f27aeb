//! kill -9 with 50 metered tasks running, then a restart: every task ends,
//! the ledger balances, nothing is captured twice, failed tasks are released.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server::{Server, free_port, imagegate};

const TASKS: usize = 50;
const GRANT: f64 = 500.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_balances_after_kill_9_with_50_metered_tasks() {
    let dir = tempfile::tempdir().unwrap();
    // One attempt only: tasks running at the kill fail after restart (lease
    // lapsed), so both settlement paths are exercised.
    let env = [
        ("IMAGEGATE__QUEUE__LEASE_SECS", "1.5"),
        ("IMAGEGATE__QUEUE__SWEEP_SECS", "0.3"),
        ("IMAGEGATE__QUEUE__WORKERS", "8"),
        ("IMAGEGATE__QUEUE__MAX_ATTEMPTS", "1"),
        ("IMAGEGATE__SERVER__SYNC_WAIT_SECS", "0.02"),
        ("IMAGEGATE_SYNTHETIC_DELAY_MS", "600"),
    ];
    let port = free_port();
    let server = Server::start(dir.path(), port, &env);
    let admin = server.admin_key.clone().unwrap();
    let run = |args: &[&str]| {
        let out = imagegate().args(args).arg("--data-dir").arg(dir.path()).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["accounts", "create", "payer", "--plan", "senior"]);
    run(&["credits", "grant", "payer", &GRANT.to_string()]);
    let key = run(&["keys", "create", "--account", "payer"]).trim().to_string();

    let client = reqwest::Client::new();
    let base = server.base_url.clone();
    let body = json!({"model": "FLUX.1-dev", "prompt": "x", "image_size": "512x1024", "num_inference_steps": 4});
    let quote: Value = client.post(format!("{base}/v1/images/generations?dry_run=true")).bearer_auth(&key).json(&body).send().await.unwrap().json().await.unwrap();
    let price = quote["credits"].as_f64().unwrap();
    let mut ids = Vec::new();
    for _ in 0..TASKS {
        let resp = client.post(format!("{base}/v1/images/generations")).bearer_auth(&key).json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 504);
        ids.push(resp.json::<Value>().await.unwrap()["error"]["task_id"].as_str().unwrap().to_string());
    }
    // Wait until tasks are running (the senior plan runs 5 at once), then kill.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t: Value = client.get(format!("{base}/v1/tasks/{}", ids[0])).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
        if t["state"] != "queued" || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill_9();

    let server = Server::start(dir.path(), port, &env);
    let deadline = Instant::now() + Duration::from_secs(90);
    let (mut succeeded, mut failed, mut charged) = (0, 0, 0.0);
    for id in &ids {
        let t = loop {
            let t: Value = client.get(format!("{base}/v1/tasks/{id}")).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
            if ["succeeded", "failed"].contains(&t["state"].as_str().unwrap()) {
                break t;
            }
            assert!(Instant::now() < deadline, "task {id} never ended: {t}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let c = t["credits"]["charged"].as_f64().unwrap();
        match t["state"].as_str().unwrap() {
            "succeeded" => {
                succeeded += 1;
                assert_eq!(c, price, "a delivered task is charged its quote exactly once");
                assert_eq!(t["credits"]["state"], "captured");
            }
            _ => {
                failed += 1;
                assert_eq!(c, 0.0, "a failed task is not charged");
                assert_eq!(t["credits"]["state"], "released");
            }
        }
        charged += c;
    }
    assert_eq!(succeeded + failed, TASKS);
    assert!(failed > 0, "the kill interrupted running tasks");
    let acct: Value = client.get(format!("{base}/v1/admin/accounts/payer")).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    let balance: Value = client.get(format!("{base}/v1/user/balance")).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
    let available = balance["credits"].as_f64().unwrap();
    assert!((available + charged - GRANT).abs() < 1e-9, "available {available} + charged {charged} = granted {GRANT}; account: {acct}");
    assert!(acct.to_string().contains("\"held\":0"), "nothing still held: {acct}");
    drop(server);
}
