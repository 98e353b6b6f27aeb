//! Failover and billing through the HTTP API with a metered account: a
//! channel answering 429 and then 500 is failed over to the next one and the
//! client pays once per request; when every channel fails the hold is
//! released in full; an open breaker skips its channel without a call until
//! the probe time and a good probe restores it.

use std::time::Duration;

use imagegate_queue::QueueConfig;
use imagegate_store::{EntryKind, now_ms};
use imagegate_testkit::doubles::scripted::{self, Fail};
use imagegate_testkit::{TestApp, TestAppOptions};
use serde_json::{Value, json};

use super::harness::{Channels, app, metered_key};

const GRANT: i64 = 1_000_000;

fn body() -> Value {
    json!({"model": "gpt-image-1", "prompt": "a lighthouse at dusk", "size": "1024x1024"})
}

/// Two OpenAI-shaped scripted channels serving gpt-image-1: `a` (priority 10) before `b`.
fn two_channels(a: &scripted::Double, b: &scripted::Double) -> Channels {
    let mut c = Channels::new();
    c.add("a", "openai", &format!("{}/v1", a.base), "ka", "models = [\"gpt-image-1\"]\npriority = 10").add(
        "b",
        "openai",
        &format!("{}/v1", b.base),
        "kb",
        "models = [\"gpt-image-1\"]\npriority = 1",
    );
    c
}

async fn generate(app: &TestApp, key: &str) -> reqwest::Response {
    app.client.post(app.url("/v1/images/generations")).bearer_auth(key).json(&body()).send().await.unwrap()
}

/// The quote for [`body`], in milli-credits.
async fn price(app: &TestApp, key: &str) -> i64 {
    let q: Value = app.client.post(app.url("/v1/images/generations?dry_run=true")).bearer_auth(key).json(&body()).send().await.unwrap().json().await.unwrap();
    q["millicredits"].as_i64().unwrap()
}

/// Ledger entries of one kind for the account.
async fn entries(app: &TestApp, account: &str, kind: EntryKind) -> Vec<imagegate_store::LedgerEntry> {
    app.state.db.ledger_entries(account).await.unwrap().into_iter().filter(|e| e.kind == kind).collect()
}

fn postgres_available() -> bool {
    let ok = imagegate_testkit::scratch::postgres_url().is_some();
    if !ok {
        eprintln!("DATABASE_URL not set: skipped");
    }
    ok
}

#[tokio::test]
async fn a_429_then_a_500_fail_over_and_each_request_is_charged_once() {
    failover_charges_once(false).await;
}

#[tokio::test]
async fn a_429_then_a_500_fail_over_and_each_request_is_charged_once_on_postgres() {
    if postgres_available() {
        failover_charges_once(true).await;
    }
}

async fn failover_charges_once(postgres: bool) {
    let a = scripted::start([Fail::status(429), Fail::status(500)]).await;
    let b = scripted::start([]).await;
    let app = app(two_channels(&a, &b).relay(""), postgres).await;
    let (acct, key) = metered_key(&app, "payer", GRANT).await;
    let price = price(&app, &key).await;
    assert!(price > 0);
    let mut ids = Vec::new();
    for n in 1..=2 {
        let resp = generate(&app, &key).await;
        assert_eq!(resp.status(), 200, "request {n}");
        assert_eq!(resp.headers()["x-imagegate-served-by"], "channel:b");
        assert_eq!(resp.headers()["x-credits-charged"], format!("{:.3}", price as f64 / 1000.0));
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["data"].as_array().unwrap().len(), 1);
        ids.push(body["id"].as_str().unwrap().to_string());
        assert_eq!((a.calls(), b.calls()), (n, n), "A tried first (429, then 500), B served once");
    }
    for id in &ids {
        let t: Value = app.client.get(app.url(&format!("/v1/tasks/{id}"))).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
        assert_eq!(t["attempts"], 1, "failover happened inside one queue attempt: {t}");
        assert_eq!(t["credits"]["charged"].as_f64().unwrap(), price as f64 / 1000.0);
    }
    // the ledger: one hold and one capture of the price per request, nothing else held
    let captures = entries(&app, &acct, EntryKind::Capture).await;
    assert_eq!(captures.len(), 2);
    assert!(captures.iter().all(|e| e.held_delta == -price), "{captures:?}");
    let b_now = app.state.db.balance(&acct, now_ms()).await.unwrap();
    assert_eq!((b_now.available, b_now.held), (GRANT - 2 * price, 0));
    let usage: Value = app.client.get(app.url("/v1/usage")).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
    assert_eq!(usage["total_tasks"], 2, "{usage}");
    assert_eq!(usage["total_credits"].as_f64().unwrap(), 2.0 * price as f64 / 1000.0, "{usage}");
}

#[tokio::test]
async fn when_every_channel_fails_nothing_is_charged_and_the_hold_is_released() {
    nothing_charged_when_all_fail(false).await;
}

#[tokio::test]
async fn when_every_channel_fails_nothing_is_charged_on_postgres() {
    if postgres_available() {
        nothing_charged_when_all_fail(true).await;
    }
}

async fn nothing_charged_when_all_fail(postgres: bool) {
    let a = scripted::start((0..20).map(|_| Fail::status(500))).await;
    let b = scripted::start((0..20).map(|_| Fail::status(503))).await;
    let queue = QueueConfig { max_attempts: 2, poll_ms: 50, sweep_secs: 0.5, ..QueueConfig::default() };
    let app = TestApp::spawn_with(TestAppOptions { backends: vec![two_channels(&a, &b).relay("")], queue, postgres, ..Default::default() }).await;
    let (acct, key) = metered_key(&app, "unlucky", GRANT).await;
    let resp = generate(&app, &key).await;
    assert_eq!(resp.status(), 502);
    assert!(resp.headers().get("x-credits-charged").is_none());
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "upstream_error", "{err}");
    let id = err["error"]["task_id"].as_str().unwrap();
    // two queue attempts, each trying both channels once
    assert_eq!((a.calls(), b.calls()), (2, 2));
    let hold = app.state.db.hold(id).await.unwrap().unwrap();
    assert_eq!(hold.captured, 0);
    assert!(entries(&app, &acct, EntryKind::Capture).await.is_empty());
    assert_eq!(entries(&app, &acct, EntryKind::Release).await.len(), 1);
    let bal = app.state.db.balance(&acct, now_ms()).await.unwrap();
    assert_eq!((bal.available, bal.held), (GRANT, 0), "the hold was released in full");
}

#[tokio::test]
async fn an_open_breaker_skips_its_channel_until_a_good_probe_restores_it() {
    let a = scripted::start([Fail::status(500), Fail::status(502)]).await;
    let b = scripted::start([]).await;
    let relay = two_channels(&a, &b).relay("[breaker]\nfailure_threshold = 2\nwindow_secs = 60\ncooldown_secs = 1");
    let app = app(relay, false).await;
    let (_, key) = metered_key(&app, "payer", GRANT).await;
    let served_by = |resp: &reqwest::Response| resp.headers()["x-imagegate-served-by"].to_str().unwrap().to_string();
    for _ in 0..2 {
        assert_eq!(served_by(&generate(&app, &key).await), "channel:b");
    }
    assert_eq!(a.calls(), 2);
    // open: A gets no call
    assert_eq!(served_by(&generate(&app, &key).await), "channel:b");
    assert_eq!(a.calls(), 2, "an open channel is skipped without a call");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    // the probe goes to A, succeeds, and A takes traffic again
    assert_eq!(served_by(&generate(&app, &key).await), "channel:a");
    assert_eq!(served_by(&generate(&app, &key).await), "channel:a");
    assert_eq!((a.calls(), b.calls()), (4, 3));
}
