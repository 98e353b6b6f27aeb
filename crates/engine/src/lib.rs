//! imagegate-engine: local image generation with candle.
//!
//! Samplers, weight loading and pipelines run on the engine's own OS thread;
//! async code talks to it through a handle implementing core's `Backend`.

pub mod error;
#[cfg(feature = "fixtures")]
pub mod fixtures;
pub mod models;
pub mod samplers;
pub mod tokenize;

pub use error::{EngineError, Result};
