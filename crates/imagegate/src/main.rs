//! The imagegate binary: parses the command line and runs one command.

mod cli;
mod cmd;
mod config;
#[cfg(feature = "pull")]
mod hub;
#[cfg(feature = "pull")]
mod pull_plan;
mod telemetry;
mod wiring;

use clap::Parser;

// A relayed request allocates and frees a few hundred small buffers across
// both runtime threads (HTTP, JSON, base64, SQLite rows). Under glibc's
// allocator that was about a sixth of the server's CPU at concurrency 64,
// much of it arena lock contention; mimalloc cut CPU per request by about
// 12% (docs/benchmarks.md, "Upstream relay overhead").
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    telemetry::init();
    match cmd::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
