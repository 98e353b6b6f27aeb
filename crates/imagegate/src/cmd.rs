//! One module per command.

mod accounts;
mod channels;
mod generate;
mod keys;
mod models;
#[cfg(feature = "pull")]
mod pull;
mod serve;
mod worker;

use std::sync::Arc;

use imagegate_queue::Queue;

use crate::cli::{Cli, Command};
use crate::wiring;

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = wiring::load_config(&cli.global)?;
    match cli.command {
        Command::Serve(args) => serve::run(config, args).await,
        Command::Worker(args) => worker::run(config, args).await,
        Command::Keys(c) => keys::run(config, c).await,
        Command::Generate(args) => generate::run(config, args).await,
        Command::Models(c) => models::run(config, c).await,
        Command::Channels(c) => channels::run(config, c).await,
        Command::Accounts(c) => accounts::run(config, c).await,
        Command::Credits(c) => accounts::run_credits(config, c).await,
        Command::Plans(c) => accounts::run_plans(config, c).await,
        Command::Migrate => {
            wiring::open_db(&config).await?;
            eprintln!("migrations applied");
            Ok(())
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}

/// After the first signal began draining, a second one (an operator who will
/// not wait) halts at once: runs give their tasks back and the process ends.
pub async fn halt_on_second_signal(queue: Arc<Queue>) {
    shutdown_signal().await;
    tracing::warn!("second signal: not waiting for the drain");
    queue.halt();
}
