//! Channel configuration: serde structs that read from the `[upstream]`
//! section of the TOML config, and the resolution of each channel's key from
//! an environment variable or a secrets file. Keys never sit in the config
//! file itself, and [`ApiKey`] never prints.
//!
//! ```toml
//! [upstream]
//! max_attempts = 3            # channels called per task at most
//! poll_interval_ms = 1000     # async jobs (BFL, DashScope)
//! breaker = { failure_threshold = 5, window_secs = 60, cooldown_secs = 30 }
//!
//! [[upstream.channels]]
//! name = "openai-main"        # tasks record served_by = "channel:openai-main"
//! provider = "openai"         # openai google bfl stability ideogram volcengine dashscope qianfan openai-compatible
//! base_url = "https://api.openai.com/v1"   # optional except for openai-compatible
//! key_env = "OPENAI_API_KEY"  # or key_file = "/run/secrets/openai"
//! models = ["gpt-image-1", "dall-e-3"]     # empty: every catalog model of this provider; "*": all
//! model_map = { "dall-e-3" = "dall-e-3" }  # catalog id/alias -> provider's name
//! priority = 10               # higher first
//! weight = 1                  # share among equal priorities
//! timeout_secs = 180          # whole task on this channel, polling included
//! max_concurrency = 8         # 0 = unlimited; a full channel is skipped
//! cost_per_image_millicredits = 29000
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::breaker::BreakerConfig;
use crate::providers::Provider;

/// The `[upstream]` section: the channels and how the relay treats them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The channels (`[[upstream.channels]]`).
    pub channels: Vec<ChannelConfig>,
    /// Most channels tried for one task (calls, not skips).
    pub max_attempts: u32,
    /// Breaker tuning for channels that do not set their own.
    pub breaker: BreakerConfig,
    /// Pause between polls of an asynchronous provider job, in milliseconds.
    pub poll_interval_ms: u64,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self { channels: Vec::new(), max_attempts: 3, breaker: BreakerConfig::default(), poll_interval_ms: 1_000 }
    }
}

/// One upstream channel: a provider account reachable at a base URL.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// Unique name; tasks record `channel:<name>` as who served them.
    pub name: String,
    /// The API the channel speaks.
    pub provider: Provider,
    /// Endpoint root (e.g. `https://api.openai.com/v1`); defaults to the provider's public one.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Environment variable holding the key.
    #[serde(default)]
    pub key_env: Option<String>,
    /// File holding the key (a mounted secret); surrounding whitespace is trimmed.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Catalog models (ids or aliases) served; empty means every catalog
    /// model whose `provider` is this channel's; `"*"` means every model.
    #[serde(default)]
    pub models: Vec<String>,
    /// Catalog id or alias → the provider's model name, where the default differs.
    #[serde(default)]
    pub model_map: BTreeMap<String, String>,
    /// Higher priorities are tried first.
    #[serde(default)]
    pub priority: i32,
    /// Share of traffic among channels of equal priority.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Limit for one task on this channel (submit, polls and downloads), in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Most tasks in flight on this channel; a full channel is skipped, not queued on. 0 = no limit.
    #[serde(default)]
    pub max_concurrency: u32,
    /// What one image costs us here, in milli-credits, for margin reports.
    #[serde(default)]
    pub cost_per_image_millicredits: u64,
    /// Breaker tuning for this channel only.
    #[serde(default)]
    pub breaker: Option<BreakerConfig>,
    /// A disabled channel is kept in the file but never used.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn default_weight() -> u32 {
    1
}

fn default_timeout() -> u64 {
    180
}

fn default_true() -> bool {
    true
}

/// A provider key. `Debug` is redacted and there is no `Display`, so it
/// cannot end up in logs by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key's text, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// A configuration that cannot be used, naming the channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Two channels share a name.
    #[error("channel `{0}` is defined twice")]
    DuplicateName(String),
    /// `key_env` names an unset variable.
    #[error("channel `{channel}`: environment variable {var} is not set")]
    MissingEnv {
        /// Channel.
        channel: String,
        /// Variable.
        var: String,
    },
    /// `key_file` cannot be read.
    #[error("channel `{channel}`: cannot read key file {path}: {reason}")]
    KeyFile {
        /// Channel.
        channel: String,
        /// File.
        path: String,
        /// OS error.
        reason: String,
    },
    /// Both `key_env` and `key_file` are set.
    #[error("channel `{0}`: set key_env or key_file, not both")]
    TwoKeySources(String),
    /// No `base_url` and the provider has no public default.
    #[error("channel `{0}`: base_url is required for this provider")]
    MissingBaseUrl(String),
    /// `base_url` is not an http(s) URL.
    #[error("channel `{channel}`: base_url `{url}` is not an http(s) URL")]
    BadBaseUrl {
        /// Channel.
        channel: String,
        /// What was given.
        url: String,
    },
    /// A model in `models` or `model_map` is not in the catalog.
    #[error("channel `{channel}`: model `{model}` is not in the catalog")]
    UnknownModel {
        /// Channel.
        channel: String,
        /// Model.
        model: String,
    },
    /// The HTTP client could not be built.
    #[error("channel `{channel}`: {reason}")]
    Client {
        /// Channel.
        channel: String,
        /// Why.
        reason: String,
    },
}

impl ChannelConfig {
    /// Reads the channel's key from its env var or file; `None` when it has neither.
    pub fn resolve_key(&self) -> Result<Option<ApiKey>, ConfigError> {
        match (&self.key_env, &self.key_file) {
            (Some(_), Some(_)) => Err(ConfigError::TwoKeySources(self.name.clone())),
            (Some(var), None) => match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => Ok(Some(ApiKey::new(v.trim()))),
                _ => Err(ConfigError::MissingEnv { channel: self.name.clone(), var: var.clone() }),
            },
            (None, Some(path)) => std::fs::read_to_string(path).map(|s| Some(ApiKey::new(s.trim()))).map_err(|e| ConfigError::KeyFile {
                channel: self.name.clone(),
                path: path.display().to_string(),
                reason: e.to_string(),
            }),
            (None, None) => Ok(None),
        }
    }

    /// The endpoint root without a trailing slash.
    pub fn resolve_base_url(&self) -> Result<String, ConfigError> {
        let url = match (&self.base_url, self.provider.default_base_url()) {
            (Some(u), _) => u.clone(),
            (None, Some(d)) => d.to_string(),
            (None, None) => return Err(ConfigError::MissingBaseUrl(self.name.clone())),
        };
        match url::Url::parse(&url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(url.trim_end_matches('/').to_string()),
            _ => Err(ConfigError::BadBaseUrl { channel: self.name.clone(), url }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
max_attempts = 2
poll_interval_ms = 500
[breaker]
failure_threshold = 4
window_secs = 30
cooldown_secs = 10

[[channels]]
name = "openai-main"
provider = "openai"
key_env = "IMAGEGATE_TEST_UNSET_KEY_VAR"
models = ["gpt-image-1", "openai/dall-e-3"]
priority = 10
weight = 3
timeout_secs = 120
max_concurrency = 8
cost_per_image_millicredits = 29000

[[channels]]
name = "gateway"
provider = "openai-compatible"
base_url = "https://aihubmix.com/v1/"
models = ["*"]
model_map = { "FLUX.1-schnell" = "flux-schnell" }
"#;

    #[test]
    fn the_sample_channel_config_parses() {
        let cfg: UpstreamConfig = toml::from_str(SAMPLE).unwrap();
        assert_eq!(cfg.max_attempts, 2);
        assert_eq!(cfg.breaker.failure_threshold, 4);
        assert_eq!(cfg.channels.len(), 2);
        let a = &cfg.channels[0];
        assert_eq!((a.provider, a.priority, a.weight, a.max_concurrency), (Provider::Openai, 10, 3, 8));
        assert!(a.enabled);
        assert!(matches!(a.resolve_key(), Err(ConfigError::MissingEnv { .. })));
        assert_eq!(a.resolve_base_url().unwrap(), "https://api.openai.com/v1");
        let b = &cfg.channels[1];
        assert_eq!(b.resolve_base_url().unwrap(), "https://aihubmix.com/v1");
        assert_eq!(b.weight, 1);
        assert_eq!(b.resolve_key().unwrap(), None);
    }

    #[test]
    fn the_module_doc_example_parses() {
        let doc: String = include_str!("config.rs")
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.trim_start_matches("//!").trim_start_matches(' '))
            .collect::<Vec<_>>()
            .join("\n");
        #[derive(serde::Deserialize)]
        struct File {
            upstream: UpstreamConfig,
        }
        let file: File = toml::from_str(&doc).unwrap();
        assert_eq!(file.upstream.channels[0].name, "openai-main");
        assert_eq!(file.upstream.breaker.failure_threshold, 5);
    }

    #[test]
    fn typos_are_rejected() {
        let err = toml::from_str::<UpstreamConfig>("[[channels]]\nname='a'\nprovider='openai'\npriorty=1\n").unwrap_err();
        assert!(err.to_string().contains("priorty"));
    }

    #[test]
    fn keys_come_from_files_and_never_print() {
        let path = std::env::temp_dir().join(format!("imagegate-key-{}", std::process::id()));
        std::fs::write(&path, "sk-secret-value\n").unwrap();
        let cfg = ChannelConfig { key_file: Some(path.clone()), ..toml::from_str("name='k'\nprovider='bfl'").unwrap() };
        let key = cfg.resolve_key().unwrap().unwrap();
        assert_eq!(key.expose(), "sk-secret-value");
        assert!(!format!("{key:?}").contains("secret"));
        std::fs::remove_file(path).ok();
    }

    #[test]
    fn keys_come_from_env_vars() {
        // cargo sets CARGO_PKG_NAME for test processes; setting our own
        // variable would need `unsafe` (edition 2024) and race other tests.
        let cfg: ChannelConfig = toml::from_str("name='e'\nprovider='openai'\nkey_env='CARGO_PKG_NAME'").unwrap();
        assert_eq!(cfg.resolve_key().unwrap().unwrap().expose(), "imagegate-upstream");
        let both = ChannelConfig { key_file: Some("/nonexistent".into()), ..cfg };
        assert_eq!(both.resolve_key(), Err(ConfigError::TwoKeySources("e".into())));
    }

    #[test]
    fn compatible_channels_need_a_base_url() {
        let cfg: ChannelConfig = toml::from_str("name='g'\nprovider='openai-compatible'").unwrap();
        assert_eq!(cfg.resolve_base_url(), Err(ConfigError::MissingBaseUrl("g".into())));
        let cfg: ChannelConfig = toml::from_str("name='g'\nprovider='openai'\nbase_url='ftp://x'").unwrap();
        assert!(matches!(cfg.resolve_base_url(), Err(ConfigError::BadBaseUrl { .. })));
    }
}
