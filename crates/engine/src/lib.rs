//! imagegate-engine: local image generation with candle.
//!
//! Samplers, weight loading and pipelines run on the engine's own OS thread;
//! async code talks to it through a handle implementing core's `Backend`.

pub mod error;
pub mod samplers;

pub use error::{EngineError, Result};
