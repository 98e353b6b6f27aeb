//! Routing across channels: failover on 429/5xx/timeouts, none on request
//! errors, Retry-After holds, circuit breakers with a hand-driven clock,
//! concurrency limits and the attempt bound.

use std::sync::Arc;
use std::time::Duration;

use imagegate_core::{Backend, BackendError, Catalog};
use imagegate_upstream::ManualClock;

use crate::doubles::scripted::{self, Fail};
use crate::support::{backend, backend_with_clock, generate, spec};

/// An OpenAI channel at `base` serving gpt-image-1, with extra TOML lines.
fn ch(name: &str, base: &str, extra: &str) -> String {
    format!("[[channels]]\nname = \"{name}\"\nprovider = \"openai\"\nbase_url = \"{base}/v1\"\nmodels = [\"gpt-image-1\"]\n{extra}\n")
}

fn cfg(head: &str, channels: &[String]) -> String {
    format!("poll_interval_ms = 5\n{head}\n{}", channels.join("\n"))
}

fn task() -> imagegate_core::TaskSpec {
    spec("gpt-image-1", "a cat", 1024, 1024)
}

#[tokio::test]
async fn a_429_then_a_500_fail_over_to_the_next_channel() {
    let a = scripted::start([Fail::status(429), Fail::status(500)]).await;
    let b = scripted::start([]).await;
    let relay = backend(&cfg("", &[ch("a", &a.base, "priority = 10"), ch("b", &b.base, "priority = 1")]));
    for _ in 0..2 {
        let g = generate(&relay, task()).await.unwrap();
        assert_eq!(g.served_by, "channel:b");
        assert_eq!(g.images.len(), 1);
    }
    assert_eq!((a.calls(), b.calls()), (2, 2), "A was tried first each time, B served each task once");
    // A's script is used up: it serves again
    assert_eq!(generate(&relay, task()).await.unwrap().served_by, "channel:a");
}

#[tokio::test]
async fn request_errors_are_never_failed_over() {
    let a = scripted::start([Fail::status(400)]).await;
    let b = scripted::start([]).await;
    let relay = backend(&cfg("", &[ch("a", &a.base, "priority = 10"), ch("b", &b.base, "")]));
    let err = generate(&relay, task()).await.unwrap_err();
    assert!(matches!(err, BackendError::Upstream { retryable: false, .. }), "{err:?}");
    assert_eq!(b.calls(), 0);
}

#[tokio::test]
async fn retry_after_holds_a_channel_until_it_passes() {
    let clock = Arc::new(ManualClock::new());
    let a = scripted::start([Fail::retry_after(429, 30)]).await;
    let b = scripted::start([]).await;
    let relay = backend_with_clock(&cfg("", &[ch("a", &a.base, "priority = 10"), ch("b", &b.base, "")]), clock.clone());
    assert_eq!(generate(&relay, task()).await.unwrap().served_by, "channel:b");
    assert_eq!(generate(&relay, task()).await.unwrap().served_by, "channel:b");
    assert_eq!(a.calls(), 1, "A is skipped without a call while Retry-After holds");
    clock.advance(Duration::from_secs(31));
    assert_eq!(generate(&relay, task()).await.unwrap().served_by, "channel:a");
}

#[tokio::test]
async fn the_breaker_opens_after_n_failures_and_a_good_probe_closes_it() {
    let clock = Arc::new(ManualClock::new());
    let a = scripted::start([Fail::status(500), Fail::status(503), Fail::status(502)]).await;
    let b = scripted::start([]).await;
    let head = "[breaker]\nfailure_threshold = 2\nwindow_secs = 60\ncooldown_secs = 30";
    let relay = backend_with_clock(&cfg(head, &[ch("a", &a.base, "priority = 10"), ch("b", &b.base, "")]), clock.clone());
    for _ in 0..2 {
        assert_eq!(generate(&relay, task()).await.unwrap().served_by, "channel:b");
    }
    assert_eq!(a.calls(), 2);
    // open: A is skipped without a call until its probe time
    for _ in 0..3 {
        assert_eq!(generate(&relay, task()).await.unwrap().served_by, "channel:b");
    }
    assert_eq!(a.calls(), 2);
    clock.advance(Duration::from_secs(29));
    generate(&relay, task()).await.unwrap();
    assert_eq!(a.calls(), 2, "still cooling down");
    // the probe fails (502): open again for another cool-down
    clock.advance(Duration::from_secs(2));
    assert_eq!(generate(&relay, task()).await.unwrap().served_by, "channel:b");
    assert_eq!(a.calls(), 3);
    generate(&relay, task()).await.unwrap();
    assert_eq!(a.calls(), 3);
    // the next probe succeeds and the breaker closes
    clock.advance(Duration::from_secs(31));
    assert_eq!(generate(&relay, task()).await.unwrap().served_by, "channel:a");
    assert_eq!(generate(&relay, task()).await.unwrap().served_by, "channel:a");
    assert_eq!(a.calls(), 5);
}

#[tokio::test]
async fn an_open_channel_is_reported_by_serves_and_a_lone_one_is_unavailable() {
    let clock = Arc::new(ManualClock::new());
    let a = scripted::start([Fail::status(500)]).await;
    let relay = backend_with_clock(&cfg("[breaker]\nfailure_threshold = 1\ncooldown_secs = 60", &[ch("a", &a.base, "")]), clock.clone());
    let model = Catalog::builtin().resolve("gpt-image-1").unwrap().clone();
    assert!(relay.serves(&model).is_ok());
    assert!(matches!(generate(&relay, task()).await, Err(BackendError::Upstream { retryable: true, .. })));
    let why = relay.serves(&model).unwrap_err();
    assert!(why.contains("circuit open"), "{why}");
    let status = relay.status();
    assert_eq!((status[0].name.as_str(), status[0].available), ("a", false));
    assert!(status[0].reason.as_deref().is_some_and(|r| r.contains("circuit open")));
    assert!(matches!(generate(&relay, task()).await, Err(BackendError::Unavailable(_))));
    assert_eq!(a.calls(), 1);
    let other = Catalog::builtin().resolve("dall-e-3").unwrap().clone();
    assert!(relay.serves(&other).unwrap_err().contains("no upstream channel"));
}

#[tokio::test]
async fn a_saturated_channel_fails_over_instead_of_queueing() {
    let a = scripted::start([]).await;
    // Long calls, so that a loaded machine's overhead cannot blur one after another with all at once.
    a.set_delay(Duration::from_millis(1_000));
    let b = scripted::start([]).await;
    let relay = Arc::new(backend(&cfg("", &[ch("a", &a.base, "priority = 10\nmax_concurrency = 1"), ch("b", &b.base, "")])));
    let (r1, r2) = tokio::join!(generate(&relay, task()), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        generate(&relay, task()).await
    });
    assert_eq!(r1.unwrap().served_by, "channel:a");
    assert_eq!(r2.unwrap().served_by, "channel:b");
    assert_eq!(a.calls(), 1);
}

#[tokio::test]
async fn timeouts_fail_over() {
    let a = scripted::start([]).await;
    a.set_delay(Duration::from_secs(3));
    let b = scripted::start([]).await;
    let relay = backend(&cfg("", &[ch("a", &a.base, "priority = 10\ntimeout_secs = 1"), ch("b", &b.base, "")]));
    assert_eq!(generate(&relay, task()).await.unwrap().served_by, "channel:b");
}

#[tokio::test]
async fn attempts_are_bounded() {
    let doubles = [scripted::start([Fail::status(500)]).await, scripted::start([Fail::status(500)]).await, scripted::start([Fail::status(500)]).await];
    let channels: Vec<String> = doubles.iter().enumerate().map(|(i, d)| ch(&format!("c{i}"), &d.base, "")).collect();
    let relay = backend(&cfg("max_attempts = 2", &channels));
    let err = generate(&relay, task()).await.unwrap_err();
    assert!(matches!(&err, BackendError::Upstream { retryable: true, message, .. } if message.matches("HTTP 500").count() == 2), "{err:?}");
    assert_eq!(doubles.iter().map(|d| d.calls()).sum::<usize>(), 2);
}

#[tokio::test]
async fn connection_refused_fails_over() {
    // a port nothing listens on: bind, note it, close
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let b = scripted::start([]).await;
    let relay = backend(&cfg("", &[ch("dead", &format!("http://127.0.0.1:{port}"), "priority = 10"), ch("b", &b.base, "")]));
    assert_eq!(generate(&relay, task()).await.unwrap().served_by, "channel:b");
}

#[tokio::test]
async fn equal_priorities_share_traffic_by_weight() {
    let a = scripted::start([]).await;
    let b = scripted::start([]).await;
    let relay = backend(&cfg("", &[ch("a", &a.base, "weight = 3"), ch("b", &b.base, "weight = 1")]));
    for _ in 0..80 {
        generate(&relay, task()).await.unwrap();
    }
    assert!(a.calls() > b.calls() && b.calls() > 0, "a={} b={}", a.calls(), b.calls());
}

#[tokio::test]
async fn cancelling_stops_a_running_call_without_blaming_the_channel() {
    let a = scripted::start([]).await;
    a.set_delay(Duration::from_secs(5));
    let relay = backend(&cfg("[breaker]\nfailure_threshold = 1", &[ch("a", &a.base, "")]));
    let cancel = imagegate_core::CancelFlag::new();
    let job = imagegate_core::backend::Job::new("t", task());
    let flag = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        flag.cancel();
    });
    let started = std::time::Instant::now();
    let err = relay.generate(&job, &imagegate_core::backend::no_progress(), &cancel).await.unwrap_err();
    assert_eq!(err, BackendError::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(2));
    let model = Catalog::builtin().resolve("gpt-image-1").unwrap().clone();
    assert!(relay.serves(&model).is_ok(), "a cancel is not a channel failure");
}

#[tokio::test]
async fn a_channel_whose_api_cannot_express_the_task_is_passed_over() {
    // Imagen makes at most 4 images; a gateway channel behind it can make 5.
    let google = crate::doubles::google::start("g").await;
    let gateway = crate::doubles::openai::start("k", true).await;
    let g = crate::support::channel("imagen", "google", &format!("{}/v1beta", google.base), "g") + "priority = 10\n";
    let gw = crate::support::channel("gw", "openai-compatible", &format!("{}/v1", gateway.base), "k") + "models = [\"imagen-4.0-generate-001\"]\n";
    let relay = backend(&cfg("max_attempts = 1", &[g, gw]));
    let mut s = spec("imagen-4.0-generate-001", "five cats", 1024, 1024);
    s.count = 5;
    let g = generate(&relay, s).await.unwrap();
    assert_eq!((g.served_by.as_str(), g.images.len()), ("channel:gw", 5));
    assert!(google.log.all().is_empty());
}

#[tokio::test]
async fn a_model_one_channel_lacks_fails_over_without_opening_its_breaker() {
    let a = scripted::start([Fail::status(404), Fail::status(404)]).await;
    let b = scripted::start([]).await;
    let relay = backend(&cfg("[breaker]\nfailure_threshold = 1", &[ch("a", &a.base, "priority = 10"), ch("b", &b.base, "")]));
    assert_eq!(generate(&relay, task()).await.unwrap().served_by, "channel:b");
    assert_eq!(generate(&relay, task()).await.unwrap().served_by, "channel:b");
    assert_eq!(a.calls(), 2, "a 404 says nothing about the channel's health");
}

#[tokio::test]
async fn the_core_registry_picks_the_relay_for_models_it_serves() {
    let a = scripted::start([]).await;
    let relay = Arc::new(backend(&cfg("", &[ch("a", &a.base, "")])));
    let mut registry = imagegate_core::BackendRegistry::new();
    registry.register(relay);
    let catalog = Catalog::builtin();
    assert_eq!(registry.pick(catalog.resolve("gpt-image-1").unwrap()).unwrap().name(), "upstream");
    let why = registry.pick(catalog.resolve("sdxl").unwrap()).err().unwrap();
    assert!(why.contains("no upstream channel serves"), "{why}");
}

#[tokio::test]
async fn a_claimed_batch_is_relayed_concurrently() {
    let a = scripted::start([]).await;
    // Long calls, so that a loaded machine's overhead cannot blur one after another with all at once.
    a.set_delay(Duration::from_millis(1_000));
    let relay = backend(&cfg("", &[ch("a", &a.base, "")]));
    let jobs: Vec<_> = (0..4).map(|i| imagegate_core::backend::Job::new(format!("t{i}"), task())).collect();
    let started = std::time::Instant::now();
    let results = relay.generate_batch(&jobs, &imagegate_core::backend::no_progress(), &imagegate_core::CancelFlag::new()).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(a.calls(), 4);
    assert!(started.elapsed() < Duration::from_millis(2_500), "four 1 s calls took {:?}: not concurrent", started.elapsed());
}
