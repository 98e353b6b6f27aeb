//! `imagegate models list`: the catalog and what this machine can run;
//! `models pull` is in its own module.

use std::sync::Arc;

use imagegate_core::{Backend, Family};
use imagegate_engine::{Engine, EngineConfig};

use crate::cli::ModelsCommand;
use crate::config::Config;
use crate::wiring;

/// Runs a models subcommand.
pub async fn run(config: Config, cmd: ModelsCommand) -> anyhow::Result<()> {
    match cmd {
        ModelsCommand::List => {
            let catalog = wiring::catalog_with_local_models(&config)?;
            // Listing loads no weights: the CPU spares opening (and holding) a GPU.
            let engine = Arc::new(Engine::start(EngineConfig::new(config.models.dir.clone()))?);
            println!("{:<40} {:<13} local", "id", "family");
            for m in catalog.models() {
                let local = match (m.family, engine.serves(m)) {
                    (Family::Upstream, _) => format!("upstream only ({})", m.provider.as_deref().unwrap_or("?")),
                    (_, Ok(())) => "installed".to_string(),
                    (_, Err(why)) => format!("not installed: {why}"),
                };
                println!("{:<40} {:<13} {local}", m.id, m.family.as_str());
            }
        }
        #[cfg(feature = "pull")]
        ModelsCommand::Pull(args) => super::pull::run(config, args).await?,
    }
    Ok(())
}
