//! `imagegate channels list`: configured upstream channels and their state.

use imagegate_upstream::UpstreamBackend;

use crate::cli::ChannelsCommand;
use crate::config::Config;

/// Runs a channels subcommand.
pub async fn run(config: Config, cmd: ChannelsCommand) -> anyhow::Result<()> {
    match cmd {
        ChannelsCommand::List => {
            let catalog = config.catalog()?;
            let upstream = UpstreamBackend::from_config(&config.upstream, &catalog)?;
            if upstream.is_empty() {
                eprintln!("no channels configured ([[upstream.channels]] in the config file)");
            }
            println!("{}", serde_json::to_string_pretty(&upstream.status())?);
        }
    }
    Ok(())
}
