//! The floor for the relay benchmark: the least an axum server can do to
//! relay `POST /v1/images/generations` with reqwest, on the same stack as
//! imagegate (axum, hyper, reqwest, tokio's multi-thread runtime) and, like
//! the `upstream_relay` bench binary, with the instant double in-process.
//! No auth, no task, no storage: it forwards the body and returns the
//! double's answer. With `REHOST=1` it also does what re-hosting a result
//! needs in memory (parse the answer, decode the base64 image, encode it
//! again into a JSON answer), still without writing anything.
//!
//! `cargo run --release -p imagegate-testkit --features doubles --example bare_relay -- 9300`
//! (`UPSTREAM=http://127.0.0.1:9100` to relay to a separate `instant_double`),
//! then `tools/relay-bench/wrk-row.sh http://127.0.0.1:9300 64`.
//! It measures what the stack costs, for docs/benchmarks.md; it is not a
//! product path.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use imagegate_testkit::doubles::support::b64;
use serde_json::{Value, json};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Clone)]
struct Relay {
    client: reqwest::Client,
    upstream: String,
    rehost: bool,
}

/// Whatever went wrong with the double's answer.
fn bad(e: impl std::fmt::Display) -> (StatusCode, String) {
    (StatusCode::BAD_GATEWAY, e.to_string())
}

async fn relay(State(r): State<Relay>, body: Bytes) -> Result<([(&'static str, &'static str); 1], Bytes), (StatusCode, String)> {
    let answer = r.client.post(&r.upstream).header("content-type", "application/json").body(body).send().await.map_err(bad)?.bytes().await.map_err(bad)?;
    if !r.rehost {
        return Ok(([("content-type", "application/json")], answer));
    }
    let parsed: Value = serde_json::from_slice(&answer).map_err(bad)?;
    let png = STANDARD.decode(parsed["data"][0]["b64_json"].as_str().unwrap_or_default()).map_err(bad)?;
    let out = json!({"created": 1, "data": [{"b64_json": b64(&png)}]});
    Ok(([("content-type", "application/json")], Bytes::from(out.to_string())))
}

#[tokio::main]
async fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(9300);
    // UPSTREAM=<base URL> relays to a double running elsewhere (as nginx.conf does) instead.
    let double = match std::env::var("UPSTREAM") {
        Ok(base) => base,
        Err(_) => imagegate_testkit::doubles::instant::start_on(0).await,
    };
    let state = Relay { client: reqwest::Client::new(), upstream: format!("{double}/v1/images/generations"), rehost: std::env::var("REHOST").is_ok_and(|v| v == "1") };
    let app = Router::new().route("/v1/images/generations", post(relay)).with_state(state);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    eprintln!("bare relay at http://127.0.0.1:{port} to {double}");
    axum::serve(listener, app).await.expect("serve");
}
