//! The engine's integration tests: tiny random-weight models written in the
//! real diffusers layout, loaded by the real loader and run end to end.
//!
//! They run on the CPU. On a GPU host, `IMAGEGATE_TEST_DEVICE=cuda:0` with
//! `--features cuda` runs the same suite with every pipeline and engine on
//! the GPU (weights still f32, so the diffusers parity tolerances hold;
//! `IMAGEGATE_TEST_DTYPE=f16` or `bf16` to change that); `gpu` holds the
//! checks of the GPU's own f16 and bf16 path.

mod checkpoint;
mod demo_model;
mod engine;
mod fixtures;
mod flux;
#[cfg(feature = "cuda")]
mod gpu;
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

/// The device the suite computes on: `IMAGEGATE_TEST_DEVICE`, else the CPU.
pub(crate) fn device_choice() -> imagegate_engine::DeviceChoice {
    match std::env::var("IMAGEGATE_TEST_DEVICE") {
        Ok(v) => imagegate_engine::DeviceChoice::parse(&v).unwrap_or_else(|e| panic!("IMAGEGATE_TEST_DEVICE: {e}")),
        Err(_) => imagegate_engine::DeviceChoice::Cpu,
    }
}

/// [`device_choice`], opened.
pub(crate) fn device() -> candle_core::Device {
    device_choice().open().expect("the test device opens")
}

/// An engine config for `dir` on the test device, in f32 unless
/// `IMAGEGATE_TEST_DTYPE` says otherwise.
pub(crate) fn engine_config(dir: impl Into<std::path::PathBuf>) -> imagegate_engine::EngineConfig {
    let dtype = match std::env::var("IMAGEGATE_TEST_DTYPE") {
        Ok(v) => imagegate_engine::engine::device::parse_dtype(&v).unwrap_or_else(|e| panic!("IMAGEGATE_TEST_DTYPE: {e}")),
        Err(_) => Some(candle_core::DType::F32),
    };
    imagegate_engine::EngineConfig { device: device_choice(), dtype, ..imagegate_engine::EngineConfig::new(dir) }
}
