//! Shared state of every handler.

use std::sync::Arc;

use imagegate_core::{Catalog, PlanTable, PriceList, WorkflowSet};
use imagegate_queue::Queue;
use imagegate_store::{Db, Objects};

use crate::auth_cache::AuthCache;
use crate::config::ApiConfig;
use crate::depth::QueueDepth;
use crate::enhance::ChatEnhancer;
use crate::limits::RateLimits;

/// What handlers share: the store, objects, the queue and the catalog.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Database.
    pub db: Db,
    /// Image objects and URL signing.
    pub objects: Objects,
    /// The task queue (workers, completion signals, backends).
    pub queue: Arc<Queue>,
    /// Model catalog.
    pub catalog: Arc<Catalog>,
    /// HTTP settings.
    pub config: Arc<ApiConfig>,
    /// What tasks cost.
    pub prices: Arc<PriceList>,
    /// Plans (concurrency, rate limits, free grants).
    pub plans: Arc<PlanTable>,
    /// Per-key rate limiters.
    pub rate_limits: Arc<RateLimits>,
    /// Task-publishing workflows (the compiled-in set unless the binary
    /// passes config workflows with [`AppState::with_workflows`]).
    pub workflows: Arc<WorkflowSet>,
    /// The prompt-enhancement chat channel, when configured.
    pub enhancer: Option<ChatEnhancer>,
    /// Recently authenticated keys.
    pub auth_cache: Arc<AuthCache>,
    /// Unfinished tasks, as admission counts them.
    pub depth: Arc<QueueDepth>,
}

impl AppState {
    /// State over a queue (which already holds the db, objects and catalog).
    pub fn new(queue: Arc<Queue>, config: ApiConfig) -> Self {
        let enhancer = config.prompt_enhancement.clone().map(ChatEnhancer::new);
        let auth_cache = Arc::new(AuthCache::new(std::time::Duration::from_millis(config.auth_cache_ms)));
        Self {
            db: queue.db.clone(),
            objects: queue.objects.clone(),
            catalog: queue.catalog.clone(),
            queue,
            config: Arc::new(config),
            prices: Arc::new(PriceList::builtin()),
            plans: Arc::new(PlanTable::builtin()),
            rate_limits: Arc::default(),
            workflows: Arc::new(WorkflowSet::builtin()),
            enhancer,
            depth: Arc::default(),
            auth_cache,
        }
    }

    /// Replaces the compiled-in price list and plans with configured ones.
    pub fn with_billing(mut self, prices: PriceList, plans: PlanTable) -> Self {
        self.prices = Arc::new(prices);
        self.plans = Arc::new(plans);
        self
    }

    /// The same state serving `workflows` for task publishing.
    pub fn with_workflows(mut self, workflows: WorkflowSet) -> Self {
        self.workflows = Arc::new(workflows);
        self
    }
}
