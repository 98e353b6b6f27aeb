//! `imagegate channels list|test`: configured upstream channels, their
//! state, and a hand-made test call through one of them.

use anyhow::bail;
use imagegate_upstream::{ProbeMode, Provider, UpstreamBackend};

use crate::cli::ChannelsCommand;
use crate::config::Config;

/// Runs a channels subcommand.
pub async fn run(config: Config, cmd: ChannelsCommand) -> anyhow::Result<()> {
    let catalog = config.catalog()?;
    let upstream = UpstreamBackend::from_config(&config.upstream, &catalog)?;
    match cmd {
        ChannelsCommand::List => {
            if upstream.is_empty() {
                eprintln!("no channels configured ([[upstream.channels]] in the config file)");
            }
            println!("{}", serde_json::to_string_pretty(&upstream.status())?);
        }
        ChannelsCommand::Test { name, yes, generate, model } => {
            let provider = upstream.status().into_iter().find(|c| c.name == name).map(|c| c.provider);
            let mode = choose_mode(&name, provider, yes, generate || model.is_some())?;
            let report = upstream.test_channel(&name, mode, model.as_deref(), &catalog).await.map_err(anyhow::Error::msg)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if !report.ok {
                bail!("channel `{name}` failed its test: {}", report.detail);
            }
        }
    }
    Ok(())
}

/// Free where possible; a generation only with `--yes`, because it is billed.
fn choose_mode(name: &str, provider: Option<Provider>, yes: bool, generate: bool) -> anyhow::Result<ProbeMode> {
    // an unknown channel: let test_channel name the configured ones
    let Some(provider) = provider else { return Ok(ProbeMode::Free) };
    if !generate && provider.free_endpoint().is_some() {
        return Ok(ProbeMode::Free);
    }
    if !yes {
        let why = if generate { "a generation was asked for" } else { "the provider has no free endpoint to test with" };
        bail!("testing channel `{name}` ({}) makes one 1-image request that the provider bills ({why}); rerun with --yes to allow it", provider.as_str());
    }
    Ok(ProbeMode::Generate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn billed_tests_need_yes() {
        assert_eq!(choose_mode("a", Some(Provider::Openai), false, false).unwrap(), ProbeMode::Free);
        let err = choose_mode("i", Some(Provider::Ideogram), false, false).unwrap_err().to_string();
        assert!(err.contains("--yes") && err.contains("bills"), "{err}");
        assert_eq!(choose_mode("i", Some(Provider::Ideogram), true, false).unwrap(), ProbeMode::Generate);
        assert!(choose_mode("a", Some(Provider::Openai), false, true).is_err());
        assert_eq!(choose_mode("a", Some(Provider::Openai), true, true).unwrap(), ProbeMode::Generate);
    }
}
