//! The engine's integration tests: tiny random-weight models written in the
//! real diffusers layout, loaded by the real loader and run end to end.

mod engine;
mod fixtures;
mod img2img;
mod lora;
mod parity;
mod sd;
