//! imagegate-engine: local image generation with candle.
//!
//! An [`Engine`] handle (implementing core's `Backend`) sends commands to an
//! [`engine::thread::EngineThread`] that owns the device and an LRU of
//! loaded pipelines. Pipelines are named stages (`pipelines`), samplers one
//! file each (`samplers`), model folders are found and checked by `loader`.
//! See `README.md` for what is implemented and what is not yet.

pub mod checkpoint;
pub mod demo;
pub mod engine;
pub mod error;
#[cfg(feature = "fixtures")]
pub mod fixtures;
pub mod input;
pub mod loader;
pub mod lora;
pub mod models;
pub mod output;
pub mod pipelines;
pub mod samplers;
pub mod tokenize;

pub use demo::{DEMO_MODEL, DemoBackend, DemoRole};
pub use engine::{DeviceChoice, Engine, EngineConfig};
pub use error::{EngineError, Result};
pub use loader::{DiscoveredModel, PipelineKind, discover};
