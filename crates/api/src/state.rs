//! Shared state of every handler.

use std::sync::Arc;

use imagegate_core::Catalog;
use imagegate_queue::Queue;
use imagegate_store::{Db, Objects};

use crate::config::ApiConfig;

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
}

impl AppState {
    /// State over a queue (which already holds the db, objects and catalog).
    pub fn new(queue: Arc<Queue>, config: ApiConfig) -> Self {
        Self { db: queue.db.clone(), objects: queue.objects.clone(), catalog: queue.catalog.clone(), queue, config: Arc::new(config) }
    }
}
