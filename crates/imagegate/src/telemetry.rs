//! Logging: human-readable or JSON (`IMAGEGATE_LOG_FORMAT=json`) to standard
//! error, filtered by `RUST_LOG` (default `info`). Standard output is kept
//! for what commands print (keys, listings).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::env::var("IMAGEGATE_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
