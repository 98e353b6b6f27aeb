//! [`TestApp`]: the real server (router, queue workers, sweepers) on a random
//! port over a scratch database and a temporary object folder.

use std::sync::Arc;
use std::time::Duration;

use imagegate_api::{ApiConfig, AppState};
use imagegate_core::{Backend, BackendRegistry, Catalog, PlanTable, PriceList, RoutingPolicy, WorkflowSet};
use imagegate_queue::{Queue, QueueConfig};
use imagegate_store::signing::UrlSigner;
use imagegate_store::{Db, Objects};
use tokio::sync::oneshot;

use crate::scratch::ScratchDb;
use crate::synthetic::SyntheticBackend;

/// How to start a [`TestApp`].
pub struct TestAppOptions {
    /// Backends (default: one instant synthetic backend).
    pub backends: Vec<Arc<dyn Backend>>,
    /// HTTP settings.
    pub api: ApiConfig,
    /// Queue settings.
    pub queue: QueueConfig,
    /// Use PostgreSQL (`DATABASE_URL`) instead of SQLite.
    pub postgres: bool,
    /// URL lifetime.
    pub url_ttl: Duration,
    /// Task-publishing workflows (default: the compiled-in set).
    pub workflows: Option<WorkflowSet>,
    /// Model catalog (default: the compiled-in one).
    pub catalog: Option<Catalog>,
    /// Local/upstream routing (default: local first).
    pub routing: RoutingPolicy,
    /// Plans (default: the compiled-in ones).
    pub plans: Option<PlanTable>,
}

impl Default for TestAppOptions {
    fn default() -> Self {
        let queue = QueueConfig { poll_ms: 100, sweep_secs: 0.5, ..QueueConfig::default() };
        Self {
            backends: vec![SyntheticBackend::instant()],
            api: ApiConfig::default(),
            queue,
            postgres: false,
            url_ttl: Duration::from_secs(3600),
            workflows: None,
            catalog: None,
            routing: RoutingPolicy::default(),
            plans: None,
        }
    }
}

/// A running server for one test.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// A key of the admin account.
    pub admin_key: String,
    /// The server's state (db, objects, queue).
    pub state: AppState,
    /// A plain HTTP client.
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    _db: ScratchDb,
    _objects: tempfile::TempDir,
}

impl TestApp {
    /// Starts with the defaults.
    pub async fn spawn() -> Self {
        Self::spawn_with(TestAppOptions::default()).await
    }

    /// Starts with options.
    pub async fn spawn_with(opts: TestAppOptions) -> Self {
        let scratch = match (opts.postgres, crate::scratch::postgres_url()) {
            (true, Some(url)) => ScratchDb::postgres(&url).await,
            _ => ScratchDb::sqlite().await,
        };
        let db: Db = scratch.db.clone();
        let admin = db.bootstrap_admin().await.expect("bootstrap").expect("empty database");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base_url = format!("http://{}", listener.local_addr().expect("addr"));
        let dir = tempfile::tempdir().expect("temp dir");
        let objects = Objects::local(dir.path(), UrlSigner::new(vec![42; 32]), &base_url, opts.url_ttl).expect("objects");
        let mut backends = BackendRegistry::new();
        for b in opts.backends {
            backends.register(b);
        }
        backends.set_policy(opts.routing.clone(), Duration::from_secs_f64(opts.api.sync_wait_secs));
        let queue = Queue::new(db, objects, backends, Arc::new(opts.catalog.unwrap_or_else(Catalog::builtin)), opts.queue);
        let mut state = AppState::new(queue, opts.api);
        if let Some(w) = opts.workflows {
            state = state.with_workflows(w);
        }
        if let Some(plans) = opts.plans {
            state = state.with_billing(PriceList::builtin(), plans);
        }
        let (tx, rx) = oneshot::channel::<()>();
        let server_state = state.clone();
        let server = tokio::spawn(async move {
            let _ = imagegate_api::server::serve(listener, server_state, async move {
                let _ = rx.await;
            })
            .await;
        });
        Self {
            base_url,
            admin_key: admin.secret.expose().to_string(),
            state,
            client: reqwest::Client::new(),
            shutdown: Some(tx),
            server: Some(server),
            _db: scratch,
            _objects: dir,
        }
    }

    /// Shuts the server down as SIGTERM does and returns once it drained
    /// (the database and objects stay readable through `state`).
    pub async fn shut_down(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("the server task ended cleanly");
        }
    }

    /// A full URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// POSTs JSON with the admin key.
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client.post(self.url(path)).bearer_auth(&self.admin_key).json(body).send().await.expect("request")
    }

    /// GETs with the admin key.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).bearer_auth(&self.admin_key).send().await.expect("request")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
