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
