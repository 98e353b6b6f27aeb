//! A throwaway server for API fuzzing (schemathesis): the real router over a
//! scratch SQLite database and the synthetic backend, as `TestApp` runs it.
//! Prints the base URL and an admin key, then serves until killed.
//!
//! `cargo run -p imagegate-api --example testserver`

use imagegate_testkit::TestApp;

#[tokio::main]
async fn main() {
    let app = TestApp::spawn().await;
    println!("IMAGEGATE_URL={}", app.base_url);
    println!("IMAGEGATE_KEY={}", app.admin_key);
    // Keep the app (and its temp folders) alive until the process is killed.
    std::future::pending::<()>().await;
    drop(app);
}
