//! Synchronous generations per second through the whole path (auth,
//! admission, queue, worker, object store, response) with an instant
//! synthetic backend on SQLite, at concurrency 1, 16 and 64.
//!
//! `cargo bench -p imagegate-api --bench sync_generations`
//! (`BENCH_REQUESTS` sets the requests per level, default 4000).
//! The load generator runs in the same process and shares the machine's
//! cores with the server, as it would on a single small host.

use std::sync::Arc;
use std::time::{Duration, Instant};

use imagegate_queue::QueueConfig;
use imagegate_testkit::{TestApp, TestAppOptions};
use serde_json::json;

// The allocator of the `imagegate` binary, so that this measures what it serves with.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn run_level(app: &Arc<TestApp>, concurrency: usize, requests: usize) {
    let url = app.url("/v1/images/generations");
    let body = json!({"model": "FLUX.1-schnell", "prompt": "benchmark", "image_size": "1024x1024", "seed": 7});
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..concurrency {
        let (app, url, body, next) = (app.clone(), url.clone(), body.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < requests {
                let t = Instant::now();
                let resp = app.client.post(&url).bearer_auth(&app.admin_key).json(&body).send().await.expect("request");
                assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
                let _ = resp.bytes().await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat: Vec<Duration> = Vec::with_capacity(requests);
    for h in handles {
        lat.extend(h.await.expect("load task"));
    }
    let wall = started.elapsed();
    lat.sort();
    println!(
        "concurrency {concurrency:>3}: {requests} requests in {:.2}s = {:>7.0} req/s, p50 {:>6.2} ms, p99 {:>6.2} ms",
        wall.as_secs_f64(),
        requests as f64 / wall.as_secs_f64(),
        percentile(&lat, 0.50).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
    );
}

fn main() {
    let requests: usize = std::env::var("BENCH_REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(4000);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let app = Arc::new(TestApp::spawn_with(TestAppOptions { queue: QueueConfig { workers: 16, batch_max: 16, ..QueueConfig::default() }, ..Default::default() }).await);
        // Warm up connections, the PNG cache and SQLite's page cache.
        run_level(&app, 8, 200).await;
        println!("--- measured ---");
        for c in [1, 16, 64] {
            run_level(&app, c, requests).await;
        }
    });
}
