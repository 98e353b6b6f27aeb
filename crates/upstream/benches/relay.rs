//! Relay overhead: tasks through [`UpstreamBackend`] against an instant
//! local OpenAI double, next to the same requests sent with a bare reqwest
//! client, at concurrency 1, 16 and 64. The difference is what the relay
//! adds (routing, breaker bookkeeping, base64 decoding, image header checks).
//!
//! Run: `cargo bench -p imagegate-upstream --bench relay` (`BENCH_TASKS`
//! sets tasks per level, default 2000). Prints a Markdown table.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use base64::Engine as _;
use imagegate_core::backend::{Job, no_progress};
use imagegate_core::{Backend, CancelFlag, Catalog, Size, TaskSpec};
use imagegate_upstream::{UpstreamBackend, UpstreamConfig};

/// A 64x64 PNG as the double's canned `b64_json`.
fn canned_body() -> String {
    let img = image::RgbImage::from_pixel(64, 64, image::Rgb([1, 2, 3]));
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png).expect("encoding to memory cannot fail");
    let b64 = base64::engine::general_purpose::STANDARD.encode(png.into_inner());
    serde_json::json!({"created": 1, "data": [{"b64_json": b64}]}).to_string()
}

async fn start_double() -> String {
    let body: &'static str = Box::leak(canned_body().into_boxed_str());
    let router = Router::new().route("/v1/images/generations", post(move || async move { ([("content-type", "application/json")], body) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("bound socket has an address");
    tokio::spawn(async move { axum::serve(listener, router).await.expect("double serves") });
    format!("http://{addr}")
}

struct Stats {
    throughput: f64,
    p50: Duration,
    p99: Duration,
}

/// Runs `total` calls of `op` with `concurrency` workers; latencies per call.
async fn run<F, Fut>(total: usize, concurrency: usize, op: F) -> Stats
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (op, next) = (op.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let t = Instant::now();
                op().await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::with_capacity(total);
    for w in workers {
        all.extend(w.await.expect("worker finished"));
    }
    let elapsed = started.elapsed();
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1];
    Stats { throughput: total as f64 / elapsed.as_secs_f64(), p50: pct(0.50), p99: pct(0.99) }
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let total: usize = std::env::var("BENCH_TASKS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let base = start_double().await;
    let toml_text = format!("[[channels]]\nname = \"bench\"\nprovider = \"openai\"\nbase_url = \"{base}/v1\"\nmodels = [\"gpt-image-1\"]\n");
    let cfg: UpstreamConfig = toml::from_str(&toml_text).expect("bench config parses");
    let relay = Arc::new(UpstreamBackend::from_config(&cfg, &Catalog::builtin()).expect("bench backend builds"));
    let job = Arc::new(Job::new("bench", TaskSpec::simple("gpt-image-1", "a cat", Size::new(1024, 1024))));
    let client = reqwest::Client::new();
    let url = format!("{base}/v1/images/generations");
    let direct_body = serde_json::json!({"model": "gpt-image-1", "prompt": "a cat", "n": 1, "size": "1024x1024"});

    println!("| concurrency | path | tasks/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|");
    for concurrency in [1, 16, 64] {
        let (c, u, b) = (client.clone(), url.clone(), direct_body.clone());
        let direct = move || {
            let (c, u, b) = (c.clone(), u.clone(), b.clone());
            async move {
                let resp = c.post(u).json(&b).send().await.expect("double answers");
                let _: serde_json::Value = resp.json().await.expect("double answers JSON");
            }
        };
        let (r, j) = (relay.clone(), job.clone());
        let relayed = move || {
            let (r, j) = (r.clone(), j.clone());
            async move {
                let g = r.generate(&j, &no_progress(), &CancelFlag::new()).await.expect("relay serves");
                assert_eq!(g.images[0].width, 64);
            }
        };
        // warm connections and caches before measuring
        run(100, concurrency, direct.clone()).await;
        run(100, concurrency, relayed.clone()).await;
        let d = run(total, concurrency, direct).await;
        let r = run(total, concurrency, relayed).await;
        println!("| {concurrency} | direct reqwest | {:.0} | {} | {} |", d.throughput, ms(d.p50), ms(d.p99));
        println!("| {concurrency} | relay | {:.0} | {} | {} |", r.throughput, ms(r.p50), ms(r.p99));
    }
}
