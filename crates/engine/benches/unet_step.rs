//! Time per denoising step: one UNet call on a classifier-free-guidance
//! batch of 2 (what every guided step costs), for
//!
//! - `sd15-512`: the SD 1.5 UNet (`benches/sd15_unet_config.json`, 860 M
//!   parameters) with random weights, at 512×512 (latent 64×64, text 77×768);
//! - `demo`: the shipped `models/imagegate-demo` UNet at its native 64×64
//!   (latent 16×16×16);
//! - `tiny`: the parity fixture's tiny SD UNet (written by diffusers) at
//!   64×64 (latent 8×8).
//!
//! `tools/parity/bench_unet_step.py` times diffusers' `UNet2DConditionModel`
//! on the same configs, weights and shapes; docs/benchmarks.md has both.
//!
//! `cargo bench -p imagegate-engine --bench unet_step`
//! (`BENCH_STEPS` timed calls per case, default 5; `BENCH_CASES`, a comma
//! list, default all three). candle's CPU kernels use every core
//! (`RAYON_NUM_THREADS` to change that).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use imagegate_engine::loader::weight_files;
use imagegate_engine::lora;
use imagegate_engine::models::configs::{UNetFile, read_json};
use imagegate_engine::models::unet::UNet;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A UNet from a diffusers folder's `unet/`.
fn load_unet(folder: &Path) -> (UNet, UNetFile) {
    let file: UNetFile = read_json(&folder.join("unet/config.json")).expect("unet config");
    let files = weight_files(&folder.join("unet"), "diffusion_pytorch_model").expect("unet weights");
    let vb = lora::var_builder(&files, &[], lora::UNET, DType::F32, &Device::Cpu).expect("var builder");
    (UNet::new(vb, &file).expect("unet"), file)
}

/// The SD 1.5 UNet with random weights (candle's default initialisers).
fn random_sd15() -> (UNet, UNetFile, VarMap) {
    let file: UNetFile = read_json(&root().join("benches/sd15_unet_config.json")).expect("sd15 config");
    let varmap = VarMap::new();
    let unet = UNet::new(VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu), &file).expect("unet");
    (unet, file, varmap)
}

fn time_case(name: &str, unet: &UNet, file: &UNetFile, side: usize, steps: usize) {
    let dev = Device::Cpu;
    let x = Tensor::randn(0f32, 1.0, (2, file.in_channels, side, side), &dev).unwrap();
    let ctx = Tensor::randn(0f32, 1.0, (2, 77, file.cross_attention_dim), &dev).unwrap();
    // One untimed call: first-touch of the weights and of candle's buffers.
    unet.forward(&x, 999.0, &ctx, None).unwrap();
    let mut times: Vec<Duration> = (0..steps)
        .map(|i| {
            let t = Instant::now();
            let out = unet.forward(&x, 999.0 - 50.0 * i as f64, &ctx, None).unwrap();
            out.flatten_all().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            t.elapsed()
        })
        .collect();
    times.sort();
    let mean = times.iter().sum::<Duration>() / steps as u32;
    println!(
        "{name:<9} latent {side}x{side}x{} batch 2: median {:>9.2} ms, mean {:>9.2} ms, min {:>9.2} ms over {steps} calls",
        file.in_channels,
        times[steps / 2].as_secs_f64() * 1e3,
        mean.as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3
    );
}

fn main() {
    let steps: usize = std::env::var("BENCH_STEPS").ok().and_then(|v| v.parse().ok()).unwrap_or(5).max(1);
    let cases = std::env::var("BENCH_CASES").unwrap_or_else(|_| "sd15-512,demo,tiny".into());
    println!("candle on CPU, {} rayon threads", rayon_threads());
    for case in cases.split(',').map(str::trim) {
        match case {
            "sd15-512" => {
                let (unet, file, _weights) = random_sd15();
                time_case(case, &unet, &file, 64, steps);
            }
            "demo" => {
                let (unet, file) = load_unet(&root().join("../../models/imagegate-demo"));
                time_case(case, &unet, &file, 16, steps);
            }
            "tiny" => {
                let (unet, file) = load_unet(&root().join("tests/fixtures/parity/tiny-sd15"));
                time_case(case, &unet, &file, 8, steps);
            }
            other => panic!("unknown case `{other}` (sd15-512, demo, tiny)"),
        }
    }
}

fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
