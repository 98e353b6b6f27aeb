//! imagegate-upstream: relays image generation to upstream providers
//! through configured channels.
//!
//! One adapter per provider API lives under [`providers`]; a [`Channel`]
//! (config in [`ChannelConfig`]) is one account at one endpoint; the
//! [`UpstreamBackend`] implements core's `Backend` by ordering the channels
//! that serve a model ([`picker`]), skipping unhealthy ones ([`breaker`],
//! `Retry-After`, concurrency limits) and failing over on channel failures.
//! Results are downloaded at once (provider URLs expire) and returned as bytes.
//!
//! [`Channel`]: channel

pub mod breaker;
mod channel;
pub mod clock;
pub mod config;
pub mod error;
mod http;
mod images;
pub mod picker;
pub mod probe;
pub mod providers;
mod relay;

pub use breaker::{BreakerConfig, CircuitBreaker};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{ApiKey, ChannelConfig, ConfigError, UpstreamConfig};
pub use error::UpstreamError;
pub use probe::{ProbeMode, ProbeReport};
pub use providers::Provider;
pub use relay::{ChannelStatus, UpstreamBackend};
