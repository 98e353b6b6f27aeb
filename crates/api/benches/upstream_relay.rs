//! Relay overhead through the whole imagegate HTTP path: `POST
//! /v1/images/generations` (gpt-image-1, `response_format: b64_json`) to a
//! real server whose only backend is an `UpstreamBackend` with one channel
//! to an instant local OpenAI Images double, next to the same request sent
//! straight to the double. Both answers carry the image as base64 JSON. What
//! imagegate adds per request: auth, admission (task insert on SQLite), a
//! worker claim, the relay call, storing the image, completion, the waiter's
//! wake-up and the response.
//!
//! `cargo bench -p imagegate-api --bench upstream_relay`
//! (`BENCH_REQUESTS` per level, default 2000; `BENCH_WORKERS` and
//! `BENCH_BATCH` set the queue's worker loops and claim size, default 8 and 16:
//! the relay runs a claimed batch's calls at once, so larger claims mean
//! fewer claim and completion statements per request).
//! Client, server and double share the process and the machine's cores.
//! With `BENCH_SERVE_SECS=N` it measures nothing: it prints the server's URL
//! and admin key and serves for N seconds, for an outside load generator
//! (`wrk`) to drive the same setup. `BENCH_LEVELS` (default `1,16,64`) picks
//! the concurrency levels, e.g. to profile one of them alone.
//! `BENCH_METERED=1` sends imagegate's requests with a paying account's key
//! instead of the admin's: each then also holds credits at admission and
//! captures them at completion (its plan allows any rate and concurrency,
//! so only the ledger work is added).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use imagegate_core::{Catalog, PlanTable};
use imagegate_queue::QueueConfig;
use imagegate_testkit::doubles::instant;
use imagegate_testkit::{TestApp, TestAppOptions};
use imagegate_upstream::{UpstreamBackend, UpstreamConfig};
use serde_json::{Value, json};

// The allocator of the `imagegate` binary, so that this measures what it serves with.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Stats {
    throughput: f64,
    p50: Duration,
    p99: Duration,
}

/// Sends `total` requests from `concurrency` clients; `auth` is the bearer key.
async fn run(client: &reqwest::Client, url: &str, auth: &str, body: &Value, concurrency: usize, total: usize) -> Stats {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..concurrency {
        let (client, url, auth, body, next) = (client.clone(), url.to_string(), auth.to_string(), body.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let t = Instant::now();
                let resp = client.post(&url).bearer_auth(&auth).json(&body).send().await.expect("request");
                assert_eq!(resp.status(), 200);
                let v: Value = resp.json().await.expect("JSON answer");
                assert!(v["data"][0]["b64_json"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat: Vec<Duration> = Vec::with_capacity(total);
    for h in handles {
        lat.extend(h.await.expect("load task"));
    }
    let wall = started.elapsed();
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
    Stats { throughput: total as f64 / wall.as_secs_f64(), p50: pct(0.50), p99: pct(0.99) }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let total = env_or("BENCH_REQUESTS", 2000);
    let workers = env_or("BENCH_WORKERS", 8);
    let batch = env_or("BENCH_BATCH", 16) as u32;
    let levels: Vec<usize> = std::env::var("BENCH_LEVELS")
        .unwrap_or_else(|_| "1,16,64".into())
        .split(',')
        .map(|l| l.trim().parse().expect("BENCH_LEVELS: comma-separated concurrency levels"))
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let double = instant::start_on(0).await;
        let cfg: UpstreamConfig =
            toml::from_str(&format!("[[channels]]\nname = \"bench\"\nprovider = \"openai\"\nbase_url = \"{double}/v1\"\nmodels = [\"gpt-image-1\"]\n")).expect("config");
        let relay = Arc::new(UpstreamBackend::from_config(&cfg, &Catalog::builtin()).expect("relay"));
        let queue = QueueConfig { workers, batch_max: batch, ..QueueConfig::default() };
        let metered = std::env::var("BENCH_METERED").is_ok_and(|v| v == "1");
        let plans = PlanTable::from_toml("[bench]\nconcurrency = 100000\nrate_per_minute = 100000000\n").expect("plans");
        let app = TestApp::spawn_with(TestAppOptions { backends: vec![relay], queue, plans: Some(plans), ..Default::default() }).await;
        let key = if metered {
            let db = &app.state.db;
            let acct = db.create_account("bench", "bench", false).await.expect("account");
            db.grant_credits(&acct.id, 1_000_000_000_000, None, "bench").await.expect("credits");
            db.create_key(&acct.id, "bench").await.expect("key").secret.expose().to_string()
        } else {
            app.admin_key.clone()
        };
        if let Some(secs) = std::env::var("BENCH_SERVE_SECS").ok().and_then(|v| v.parse::<u64>().ok()) {
            println!("imagegate {} key {key} double {double}", app.base_url);
            tokio::time::sleep(Duration::from_secs(secs)).await;
            return;
        }
        let client = reqwest::Client::new();
        let ours = (app.url("/v1/images/generations"), key.clone());
        let direct = (format!("{double}/v1/images/generations"), "sk-direct".to_string());
        let body = json!({"model": "gpt-image-1", "prompt": "a cat", "size": "1024x1024", "response_format": "b64_json"});
        // warm connections, caches and SQLite's pages
        run(&client, &direct.0, &direct.1, &body, 8, 200).await;
        run(&client, &ours.0, &ours.1, &body, 8, 200).await;
        println!("workers {workers}, batch_max {batch}, {total} requests per row, {} key", if metered { "metered" } else { "admin" });
        println!("| concurrency | direct req/s | direct p50 ms | direct p99 ms | imagegate req/s | imagegate p50 ms | imagegate p99 ms | added p50 ms | added p99 ms |");
        println!("|---|---|---|---|---|---|---|---|---|");
        for &c in &levels {
            let d = run(&client, &direct.0, &direct.1, &body, c, total).await;
            let r = run(&client, &ours.0, &ours.1, &body, c, total).await;
            println!(
                "| {c} | {:.0} | {:.3} | {:.3} | {:.0} | {:.3} | {:.3} | {:.3} | {:.3} |",
                d.throughput,
                ms(d.p50),
                ms(d.p99),
                r.throughput,
                ms(r.p50),
                ms(r.p99),
                ms(r.p50) - ms(d.p50),
                ms(r.p99) - ms(d.p99)
            );
        }
    });
}
