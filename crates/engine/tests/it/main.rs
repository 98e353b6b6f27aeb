//! The engine's integration tests: tiny random-weight models written in the
//! real diffusers layout, loaded by the real loader and run end to end.

mod checkpoint;
mod demo_model;
mod engine;
mod fixtures;
mod flux;
mod img2img;
mod inpaint;
mod lora;
mod parity;
mod parity_flux;
mod parity_inpaint;
mod parity_sd3;
mod parity_sdxl;
mod sd;
mod sd3;
