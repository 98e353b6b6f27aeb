//! `imagegate worker`: claims and runs tasks from the shared database
//! without serving HTTP (GPU hosts). Waiting API requests notice completions
//! by polling the database.

use crate::cli::WorkerArgs;
use crate::config::Config;
use crate::wiring::{self, BackendChoice};

/// Runs workers until Ctrl-C or SIGTERM, then drains them (see the queue's
/// `drain`).
pub async fn run(mut config: Config, args: WorkerArgs) -> anyhow::Result<()> {
    if let Some(w) = args.workers {
        config.queue.workers = w;
    }
    let db = wiring::open_db(&config).await?;
    let base = config.server.public_url.clone().unwrap_or_else(|| format!("http://{}", config.server.listen));
    let objects = wiring::open_objects(&config, &db, &base).await?;
    let catalog = wiring::catalog_with_local_models(&config)?;
    let registry = wiring::backends(&config, &catalog, BackendChoice::default())?;
    let queue = wiring::queue(&config, db, objects, catalog, registry);
    let workers = queue.spawn_workers();
    let sweepers = queue.spawn_sweepers();
    tracing::info!(worker_id = %queue.worker_id, workers = config.queue.workers, "worker running");
    super::shutdown_signal().await;
    tokio::spawn(super::halt_on_second_signal(queue.clone()));
    queue.begin_shutdown();
    queue.drained(workers).await;
    for h in sweepers {
        h.abort();
    }
    Ok(())
}
