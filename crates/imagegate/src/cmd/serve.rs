//! `imagegate serve`: the HTTP API plus in-process workers and sweepers.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use imagegate_api::AppState;

use crate::cli::ServeArgs;
use crate::config::Config;
use crate::wiring::{self, BackendChoice};

/// The base URL clients reach us at, for signed `/files` links.
fn public_base(configured: Option<&str>, bound: SocketAddr) -> String {
    if let Some(u) = configured {
        return u.trim_end_matches('/').to_string();
    }
    if bound.ip().is_unspecified() { format!("http://localhost:{}", bound.port()) } else { format!("http://{bound}") }
}

/// Runs the server until Ctrl-C or SIGTERM.
pub async fn run(mut config: Config, args: ServeArgs) -> anyhow::Result<()> {
    if let Some(l) = args.listen {
        config.server.listen = l;
    }
    if let Some(w) = args.workers {
        config.queue.workers = w;
    }
    let db = wiring::open_db(&config).await?;
    if let Some(key) = db.bootstrap_admin().await? {
        println!("Created the admin account. Its API key is shown only this once:");
        println!("{}", key.secret.expose());
    }
    let listener = tokio::net::TcpListener::bind(&config.server.listen).await.with_context(|| format!("binding {}", config.server.listen))?;
    let bound = listener.local_addr()?;
    let base = public_base(config.server.public_url.as_deref(), bound);
    let objects = wiring::open_objects(&config, &db, &base).await?;
    let catalog = wiring::catalog_with_local_models(&config)?;
    let choice = BackendChoice { synthetic: args.synthetic_backend, synthetic_delay: Duration::from_millis(args.synthetic_delay_ms), demo: args.demo };
    let workflows = config.workflows(&catalog)?;
    let registry = wiring::backends(&config, &catalog, choice)?;
    let served = registry.served_models(catalog.models()).len();
    let queue = wiring::queue(&config, db, objects, catalog, registry);
    tracing::info!(listen = %bound, public_url = %base, workers = config.queue.workers, models_served = served, workflows = workflows.all().len(), "imagegate is listening");
    let halt_on_second = queue.clone();
    let state = AppState::new(queue, config.api()).with_billing(config.prices()?, config.plans()?).with_workflows(workflows);
    let signal = async move {
        super::shutdown_signal().await;
        tokio::spawn(super::halt_on_second_signal(halt_on_second));
    };
    imagegate_api::server::serve(listener, state, signal).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_base_prefers_config_and_avoids_unspecified_hosts() {
        let a: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(public_base(None, a), "http://localhost:8080");
        assert_eq!(public_base(Some("https://img.example/"), a), "https://img.example");
        assert_eq!(public_base(None, "127.0.0.1:9".parse().unwrap()), "http://127.0.0.1:9");
    }
}
