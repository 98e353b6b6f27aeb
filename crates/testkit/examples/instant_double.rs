//! Runs the instant OpenAI Images double on 127.0.0.1:PORT (default 9100)
//! until killed, for load tests of other gateways against the same double.
//!
//! `cargo run --release -p imagegate-testkit --features doubles --example instant_double -- 9100`

#[tokio::main]
async fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(9100);
    let base = imagegate_testkit::doubles::instant::start_on(port).await;
    eprintln!("instant OpenAI Images double at {base}/v1/images/generations");
    std::future::pending::<()>().await;
}
