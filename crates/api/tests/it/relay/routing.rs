//! `[models.routing]` through the API: a model served both by a local
//! backend and by a channel goes local by default, upstream under
//! `upstream-first`, and under `spill` overflows to the channel once the
//! local backend's queue would pass the deadline.

use std::sync::Arc;
use std::time::Duration;

use imagegate_core::backend::Job;
use imagegate_core::{Backend, BackendError, CancelFlag, Generation, ModelEntry, ProgressSink, Routing, RoutingPolicy};
use imagegate_queue::QueueConfig;
use imagegate_testkit::doubles::scripted;
use imagegate_testkit::{SyntheticBackend, TestApp, TestAppOptions};
use serde_json::json;

use super::harness::Channels;

/// A local backend with one slot, like the engine's single thread: tasks
/// take `per_task` each, one at a time.
struct OneAtATime {
    inner: Arc<SyntheticBackend>,
    slot: tokio::sync::Mutex<()>,
    per_task: Duration,
}

#[async_trait::async_trait]
impl Backend for OneAtATime {
    fn name(&self) -> &str {
        "local"
    }
    fn serves(&self, _model: &ModelEntry) -> Result<(), String> {
        Ok(())
    }
    async fn generate(&self, job: &Job, progress: &ProgressSink, cancel: &CancelFlag) -> Result<Generation, BackendError> {
        let _slot = self.slot.lock().await;
        tokio::time::sleep(self.per_task).await;
        let mut g = self.inner.generate(job, progress, cancel).await?;
        g.served_by = "local".into();
        Ok(g)
    }
}

async fn app_with(routing: RoutingPolicy, local: Arc<dyn Backend>, channel: &scripted::Double) -> TestApp {
    let mut c = Channels::new();
    c.add("gw", "openai-compatible", &format!("{}/v1", channel.base), "k", "models = [\"FLUX.1-schnell\"]");
    let queue = QueueConfig { workers: 16, batch_max: 1, poll_ms: 50, ..QueueConfig::default() };
    TestApp::spawn_with(TestAppOptions { backends: vec![local, c.relay("")], queue, routing, ..Default::default() }).await
}

async fn served_by(app: &TestApp) -> String {
    let resp = app.post_json("/v1/images/generations", &json!({"model": "FLUX.1-schnell", "prompt": "a fox", "size": "1024x1024"})).await;
    assert_eq!(resp.status(), 200);
    resp.headers()["x-imagegate-served-by"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn local_first_by_default_and_upstream_first_when_configured() {
    let ch = scripted::start([]).await;
    let app = app_with(RoutingPolicy::default(), SyntheticBackend::instant(), &ch).await;
    assert_eq!(served_by(&app).await, "synthetic");
    let policy = RoutingPolicy { models: [("flux-schnell".to_string(), Routing::UpstreamFirst)].into(), ..RoutingPolicy::default() };
    let app = app_with(policy, SyntheticBackend::instant(), &ch).await;
    assert_eq!(served_by(&app).await, "channel:gw");
    assert_eq!(ch.calls(), 1);
}

#[tokio::test]
async fn spill_overflows_to_the_channel_when_the_local_queue_would_miss_the_deadline() {
    let ch = scripted::start([]).await;
    let local = Arc::new(OneAtATime { inner: SyntheticBackend::instant(), slot: Default::default(), per_task: Duration::from_millis(500) });
    let policy = RoutingPolicy { default: Routing::Spill, deadline_secs: Some(2.0), ..RoutingPolicy::default() };
    let app = Arc::new(app_with(policy, local, &ch).await);
    // the first task measures the local backend (no estimate yet: local)
    assert_eq!(served_by(&app).await, "local");
    // 8 at once: 0.5 s each, one at a time, against a 2 s deadline: about
    // four fit locally, the rest would wait too long and go upstream
    let all = futures::future::join_all((0..8).map(|_| {
        let app = app.clone();
        async move { served_by(&app).await }
    }))
    .await;
    let local = all.iter().filter(|s| *s == "local").count();
    let upstream = all.iter().filter(|s| *s == "channel:gw").count();
    assert_eq!(local + upstream, 8, "{all:?}");
    assert!((1..8).contains(&local), "some local, some spilled: {all:?}");
    assert_eq!(ch.calls(), upstream);
}
