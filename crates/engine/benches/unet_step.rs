//! Time per denoising step: one UNet call on a classifier-free-guidance
//! batch of 2 (what every guided step costs), for
//!
//! - `sd15-512`: the SD 1.5 UNet (`benches/sd15_unet_config.json`, 860 M
//!   parameters) with random weights, at 512×512 (latent 64×64, text 77×768);
//! - `sdxl-1024` (not in the default list: minutes a step on a small CPU):
//!   the SDXL base UNet (`benches/sdxl_unet_config.json`, 2.6 B parameters)
//!   with random weights, at 1024×1024 (latent 128×128, text 77×2048, with
//!   the pooled text and time ids);
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
//! list, default `sd15-512,demo,tiny`; `BENCH_DEVICE`, default `cpu`, or
//! `cuda:0` with `--features cuda`; `BENCH_DTYPE`, default the device's:
//! f32 on the CPU, f16 on a GPU). candle's CPU kernels use every core
//! (`RAYON_NUM_THREADS` to change that). A GPU's calls end with a copy of
//! the output's sum to the host, so each time covers the kernels' work.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use imagegate_engine::DeviceChoice;
use imagegate_engine::loader::weight_files;
use imagegate_engine::lora;
use imagegate_engine::models::configs::{UNetFile, read_json};
use imagegate_engine::models::unet::{Added, UNet};

/// Where and in what dtype the cases run.
struct Target {
    device: Device,
    dtype: DType,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A UNet from a diffusers folder's `unet/`.
fn load_unet(folder: &Path, at: &Target) -> (UNet, UNetFile) {
    let file: UNetFile = read_json(&folder.join("unet/config.json")).expect("unet config");
    let files = weight_files(&folder.join("unet"), "diffusion_pytorch_model").expect("unet weights");
    let vb = lora::var_builder(&files, &[], lora::UNET, at.dtype, &at.device).expect("var builder");
    (UNet::new(vb, &file).expect("unet"), file)
}

/// A UNet from a config in `benches/` with random weights (candle's
/// default initialisers), made on the target device.
fn random_unet(config: &str, at: &Target) -> (UNet, UNetFile, VarMap) {
    let file: UNetFile = read_json(&root().join("benches").join(config)).expect("unet config");
    let varmap = VarMap::new();
    let unet = UNet::new(VarBuilder::from_varmap(&varmap, at.dtype, &at.device), &file).expect("unet");
    (unet, file, varmap)
}

fn time_case(name: &str, unet: &UNet, file: &UNetFile, side: usize, steps: usize, at: &Target) {
    let dev = &at.device;
    let randn = |shape: &[usize]| Tensor::randn(0f32, 1.0, shape, dev).unwrap().to_dtype(at.dtype).unwrap();
    let x = randn(&[2, file.in_channels, side, side]);
    let ctx = randn(&[2, 77, file.cross_attention_dim]);
    // SDXL's added conditioning: the pooled text (what the projection's
    // input holds beyond the six time ids) and 1024×1024 time ids.
    let added = file.addition_time_embed_dim.zip(file.projection_class_embeddings_input_dim).map(|(per_id, width)| {
        let pooled = randn(&[2, width - 6 * per_id]);
        let ids = Tensor::new(&[[1024f32, 1024., 0., 0., 1024., 1024.]; 2], dev).unwrap().to_dtype(at.dtype).unwrap();
        (pooled, ids)
    });
    let added = added.as_ref().map(|(text_embeds, time_ids)| Added { text_embeds, time_ids });
    // One untimed call: first-touch of the weights and of candle's buffers
    // (on a GPU also the kernels' loading and cuBLAS's handles).
    unet.forward(&x, 999.0, &ctx, added.as_ref()).unwrap();
    let mut times: Vec<Duration> = (0..steps)
        .map(|i| {
            let t = Instant::now();
            let out = unet.forward(&x, 999.0 - 50.0 * i as f64, &ctx, added.as_ref()).unwrap();
            out.flatten_all().unwrap().to_dtype(DType::F32).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
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
    let choice = DeviceChoice::parse(&std::env::var("BENCH_DEVICE").unwrap_or_else(|_| "cpu".into())).unwrap_or_else(|e| panic!("BENCH_DEVICE: {e}"));
    let dtype = match std::env::var("BENCH_DTYPE") {
        Ok(v) => imagegate_engine::engine::device::parse_dtype(&v).unwrap_or_else(|e| panic!("BENCH_DTYPE: {e}")),
        Err(_) => None,
    };
    let device = choice.open().expect("the bench device opens");
    let at = Target { dtype: dtype.unwrap_or(imagegate_engine::engine::device::default_dtype(&device)), device };
    if at.device.is_cpu() {
        println!("candle on CPU, {} rayon threads, {:?}", rayon_threads(), at.dtype);
    } else {
        println!("candle on {}, {:?}", DeviceChoice::of(&at.device), at.dtype);
    }
    for case in cases.split(',').map(str::trim) {
        match case {
            "sd15-512" => {
                let (unet, file, _weights) = random_unet("sd15_unet_config.json", &at);
                time_case(case, &unet, &file, 64, steps, &at);
            }
            "sdxl-1024" => {
                let (unet, file, _weights) = random_unet("sdxl_unet_config.json", &at);
                time_case(case, &unet, &file, 128, steps, &at);
            }
            "demo" => {
                let (unet, file) = load_unet(&root().join("../../models/imagegate-demo"), &at);
                time_case(case, &unet, &file, 16, steps, &at);
            }
            "tiny" => {
                let (unet, file) = load_unet(&root().join("tests/fixtures/parity/tiny-sd15"), &at);
                time_case(case, &unet, &file, 8, steps, &at);
            }
            other => panic!("unknown case `{other}` (sd15-512, sdxl-1024, demo, tiny)"),
        }
    }
}

fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
