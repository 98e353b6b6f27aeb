//! Starting the provider doubles, a relay with one channel per double, and
//! a `TestApp` over it; fetching our signed image URLs.

use std::sync::Arc;

use imagegate_core::Catalog;
use imagegate_queue::QueueConfig;
use imagegate_testkit::doubles::{self, bfl, dashscope, google, ideogram, openai, qianfan, stability, volcengine};
use imagegate_testkit::{TestApp, TestAppOptions};
use imagegate_upstream::{UpstreamBackend, UpstreamConfig};

/// Channel tables (TOML) with key files in a folder that lives as long as this.
pub struct Channels {
    keys: tempfile::TempDir,
    tables: Vec<String>,
}

impl Channels {
    pub fn new() -> Self {
        Self { keys: tempfile::tempdir().unwrap(), tables: Vec::new() }
    }

    /// Adds `[[channels]]` for `provider` at `base_url` with `key`, plus extra TOML lines.
    pub fn add(&mut self, name: &str, provider: &str, base_url: &str, key: &str, extra: &str) -> &mut Self {
        let path = self.keys.path().join(name);
        std::fs::write(&path, format!("{key}\n")).unwrap();
        self.tables.push(format!("[[channels]]\nname = \"{name}\"\nprovider = \"{provider}\"\nbase_url = \"{base_url}\"\nkey_file = \"{}\"\n{extra}\n", path.display()));
        self
    }

    /// The relay over these channels (`head` goes before the tables: breaker, max_attempts).
    pub fn relay(&self, head: &str) -> Arc<UpstreamBackend> {
        let text = format!("poll_interval_ms = 5\n{head}\n{}", self.tables.join("\n"));
        let cfg: UpstreamConfig = toml::from_str(&text).unwrap();
        Arc::new(UpstreamBackend::from_config(&cfg, &Catalog::builtin()).unwrap())
    }
}

/// Every provider double, running.
pub struct AllDoubles {
    pub openai: openai::Double,
    pub google: google::Double,
    pub bfl: bfl::Double,
    pub dashscope: dashscope::Double,
    pub volcengine: volcengine::Double,
    pub ideogram: ideogram::Double,
    pub stability: stability::Double,
    pub qianfan: qianfan::Double,
    /// An OpenAI-compatible gateway answering with URLs.
    pub gateway: openai::Double,
}

/// Starts every double and one channel for each (each provider's models by
/// default; the gateway serves FLUX.1-schnell, a model the catalog would
/// otherwise run locally).
pub async fn all_doubles() -> (AllDoubles, Channels) {
    let d = AllDoubles {
        openai: openai::start("oa-key", false).await,
        google: google::start("g-key").await,
        bfl: bfl::start("bfl-key").await,
        dashscope: dashscope::start("ds-key").await,
        volcengine: volcengine::start("ark-key").await,
        ideogram: ideogram::start("ideo-key").await,
        stability: stability::start("st-key").await,
        qianfan: qianfan::start("qf-key").await,
        gateway: openai::start("sk-ig-gw", true).await,
    };
    let mut c = Channels::new();
    c.add("oa", "openai", &format!("{}/v1", d.openai.base), "oa-key", "")
        .add("gg", "google", &format!("{}/v1beta", d.google.base), "g-key", "")
        .add("bfl", "bfl", &format!("{}/v1", d.bfl.base), "bfl-key", "")
        .add("ds", "dashscope", &format!("{}/api/v1", d.dashscope.base), "ds-key", "")
        .add("ark", "volcengine", &format!("{}/api/v3", d.volcengine.base), "ark-key", "")
        .add("ideo", "ideogram", &d.ideogram.base, "ideo-key", "")
        .add("st", "stability", &d.stability.base, "st-key", "")
        .add("qf", "qianfan", &format!("{}/v2", d.qianfan.base), "qf-key", "")
        .add("gw", "openai-compatible", &format!("{}/v1", d.gateway.base), "sk-ig-gw", "models = [\"FLUX.1-schnell\"]");
    (d, c)
}

/// A server whose only backend is `relay`; `postgres` uses `DATABASE_URL` when set.
pub async fn app(relay: Arc<UpstreamBackend>, postgres: bool) -> TestApp {
    let queue = QueueConfig { poll_ms: 50, sweep_secs: 0.5, ..QueueConfig::default() };
    TestApp::spawn_with(TestAppOptions { backends: vec![relay], queue, postgres, ..Default::default() }).await
}

/// GETs one of our signed URLs and checks it serves a double's image byte
/// for byte (re-hosted, not re-encoded, not a synthetic pattern).
pub async fn assert_rehosted(app: &TestApp, url: &str, what: &str) {
    assert!(url.starts_with(&app.base_url) && url.contains("/files/") && url.contains("sig="), "{what}: not our signed URL: {url}");
    let resp = app.client.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{what}: {url}");
    let bytes = resp.bytes().await.unwrap();
    assert!(doubles::is_double_image(&bytes), "{what}: {url} does not serve the double's image ({} bytes)", bytes.len());
}

/// A non-admin account with `millicredits` and a key: (account id, key).
pub async fn metered_key(app: &TestApp, name: &str, millicredits: i64) -> (String, String) {
    let db = &app.state.db;
    let acct = db.create_account(name, "basic", false).await.unwrap();
    db.grant_credits(&acct.id, millicredits, None, "test").await.unwrap();
    let key = db.create_key(&acct.id, "k").await.unwrap().secret.expose().to_string();
    (acct.id, key)
}
