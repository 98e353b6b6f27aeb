//! Wiring the crates together: configuration → database, object storage,
//! catalog (with discovered local models), backends and the queue.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use imagegate_core::catalog::SizeRule;
use imagegate_core::{Backend, BackendRegistry, Catalog, Family, ModelEntry};
use imagegate_engine::{DEMO_MODEL, DemoBackend, DemoRole, Engine, PipelineKind};
use imagegate_queue::Queue;
use imagegate_store::signing::UrlSigner;
use imagegate_store::{Db, ObjectConfig, Objects};
use imagegate_testkit::SyntheticBackend;
use imagegate_upstream::UpstreamBackend;

use crate::cli::GlobalArgs;
use crate::config::Config;

/// Loads the configuration and applies the global flags on top.
pub fn load_config(global: &GlobalArgs) -> anyhow::Result<Config> {
    let mut config = Config::load(global.config.as_deref())?;
    if let Some(d) = &global.data_dir {
        config.storage.data_dir = d.clone();
    }
    if let Some(u) = &global.database_url {
        config.storage.database_url = Some(u.clone());
    }
    if let Some(m) = &global.models_dir {
        config.models.dir = m.clone();
    }
    if let Some(o) = &global.objects {
        config.storage.objects = Some(o.clone());
    }
    Ok(config)
}

/// Connects to the database (creating the data folder for SQLite).
pub async fn open_db(config: &Config) -> anyhow::Result<Db> {
    let url = config.storage.database_url();
    if url.starts_with("sqlite:") {
        std::fs::create_dir_all(&config.storage.data_dir).with_context(|| format!("creating {}", config.storage.data_dir.display()))?;
    }
    Db::connect(&url).await.with_context(|| format!("opening database {}", imagegate_store::db::redact_url(&url)))
}

/// Opens object storage; the URL-signing secret is shared through the database
/// so every node signs and verifies alike.
pub async fn open_objects(config: &Config, db: &Db, public_base: &str) -> anyhow::Result<Objects> {
    let secret = db.setting_or_init("url_signing_secret", || hex::encode(rand::random::<[u8; 32]>())).await?;
    let signer = UrlSigner::new(hex::decode(&secret).context("stored url_signing_secret is not hex")?);
    let spec = ObjectConfig::parse(&config.storage.objects())?;
    Ok(Objects::open(&spec, signer, public_base, Duration::from_secs(config.storage.url_ttl_secs))?)
}

/// The catalog from config, plus every local pipeline folder not in it yet
/// (its id is its folder name).
pub fn catalog_with_local_models(config: &Config) -> anyhow::Result<Catalog> {
    let mut catalog = config.catalog()?;
    for found in imagegate_engine::discover(&config.models.dir) {
        if catalog.resolve(&found.id).is_some() {
            continue;
        }
        let Some(kind) = found.kind else { continue };
        let (family, native, steps, guidance) = match kind {
            PipelineKind::StableDiffusion => (Family::Sd15, 512, 30, 7.0),
            PipelineKind::StableDiffusionXl => (Family::Sdxl, 1024, 30, 7.0),
            PipelineKind::Flux => (Family::FluxDev, 1024, 20, 3.5),
            PipelineKind::StableDiffusion3 => (Family::Sd35, 1024, 28, 3.5),
        };
        catalog.upsert(ModelEntry {
            id: found.id.clone(),
            aliases: Vec::new(),
            family,
            weights: None,
            provider: None,
            native,
            sizes: SizeRule { list: Vec::new(), min: Some(64), max: Some(2048), multiple: Some(8), one_side_max: None },
            steps,
            max_steps: 150,
            guidance,
            sampler: None,
            asynchronous: false,
            max_prompt_chars: 4000,
        });
    }
    Ok(catalog)
}

/// Which backends to build.
#[derive(Debug, Clone, Copy, Default)]
pub struct BackendChoice {
    /// Serve everything with the synthetic backend instead.
    pub synthetic: bool,
    /// Its delay per task.
    pub synthetic_delay: Duration,
    /// Let imagegate-demo stand in for models nothing else serves.
    pub demo: bool,
}

/// The local engine and the upstream channels, ordered per model by
/// `[models.routing]` (local first unless configured otherwise); or only
/// the synthetic backend when asked for.
pub fn backends(config: &Config, catalog: &Catalog, choice: BackendChoice) -> anyhow::Result<BackendRegistry> {
    let mut registry = BackendRegistry::new();
    if choice.synthetic {
        tracing::warn!("serving every model with the synthetic backend: responses are labelled test patterns, no model runs");
        registry.register(SyntheticBackend::with_delay(choice.synthetic_delay));
        return Ok(registry);
    }
    let engine = Arc::new(Engine::start(config.models.engine_config()?).context("starting the engine")?);
    let demo = catalog.resolve(DEMO_MODEL).cloned();
    if let Some(demo) = &demo {
        // Ahead of the engine: it draws the demo at its native size and resizes.
        registry.register(Arc::new(DemoBackend::new(engine.clone(), demo.clone(), DemoRole::Itself)));
    }
    registry.register(engine.clone() as Arc<dyn Backend>);
    let upstream = UpstreamBackend::from_config(&config.upstream, catalog).context("configuring upstream channels")?;
    if !upstream.is_empty() {
        registry.register(Arc::new(upstream));
    }
    if choice.demo || config.models.demo {
        let demo = demo.with_context(|| format!("--demo needs the `{DEMO_MODEL}` catalog entry"))?;
        let stand_in = DemoBackend::new(engine, demo.clone(), DemoRole::StandIn);
        stand_in.serves(&demo).map_err(|why| anyhow::anyhow!("--demo needs the {DEMO_MODEL} weights: {why}"))?;
        tracing::warn!("demo mode: {DEMO_MODEL} draws for every model with no working backend here; those responses say so (x-imagegate-served-by)");
        registry.set_fallback(Arc::new(stand_in));
    }
    registry.set_policy(config.models.routing.clone(), Duration::from_secs_f64(config.server.sync_wait_secs));
    Ok(registry)
}

/// The queue over everything above.
pub fn queue(config: &Config, db: Db, objects: Objects, catalog: Catalog, registry: BackendRegistry) -> Arc<Queue> {
    Queue::new(db, objects, registry, Arc::new(catalog), config.queue.clone())
}
