//! The GPU's own path (`--features cuda`, on a host with a CUDA GPU): every
//! pipeline family in the half-precision dtypes a GPU serves in, against
//! the same tiny model on the CPU in f32, and the engine end to end with
//! `dtype = auto` (f16 on a GPU), as `[models] device = "cuda"` runs it.
//!
//! f32 on the GPU is covered by the rest of the suite under
//! `IMAGEGATE_TEST_DEVICE=cuda:0`; these fail loudly on a host without a GPU.

use candle_core::{DType, Device, Tensor};
use imagegate_core::backend::{Job, no_progress};
use imagegate_core::{Backend, CancelFlag, PromptPart, Sampler, Size, TaskSpec};
use imagegate_engine::pipelines::{BatchRequest, ImageRequest, Pipeline};
use imagegate_engine::samplers::SigmaSpacing;
use imagegate_engine::{DeviceChoice, Engine, EngineConfig};

use crate::fixtures::{model, models_dir};

fn cuda() -> Device {
    DeviceChoice::Cuda(0).open().expect("these tests need a CUDA GPU (cuda:0)")
}

#[test]
fn auto_takes_the_gpu_and_half_precision() {
    let opened = DeviceChoice::Auto.open().unwrap();
    assert_eq!(DeviceChoice::of(&opened), DeviceChoice::Cuda(0));
    assert_eq!(imagegate_engine::engine::device::default_dtype(&opened), DType::F16);
}

fn request(sampler: Sampler, guidance: f32) -> BatchRequest {
    let item = |text: &str, seed| ImageRequest { prompt: vec![PromptPart { text: text.into(), weight: 1.0 }], negative: None, guidance, seed, init: None };
    BatchRequest {
        items: vec![item("a photo of a cat", 7), item("a lighthouse at dusk", 8)],
        width: 64,
        height: 48,
        steps: 4,
        sampler,
        spacing: SigmaSpacing::Default,
        strength: None,
    }
}

fn draw(folder: &std::path::Path, device: &Device, dtype: DType, req: &BatchRequest) -> Vec<Tensor> {
    let pipe = Pipeline::load(folder, device, dtype, &[]).unwrap_or_else(|e| panic!("{} loads on {device:?} in {dtype:?}: {e}", folder.display()));
    pipe.generate(req, &mut |_, _| Ok(())).expect("generation runs")
}

/// Mean and largest absolute pixel difference (images are 0..1) between
/// the GPU's and the CPU's images, after checking the GPU's are finite and
/// in range.
fn difference(gpu: &[Tensor], cpu: &[Tensor]) -> (f32, f32) {
    assert_eq!(gpu.len(), cpu.len());
    let (mut sum, mut worst, mut n) = (0f64, 0f32, 0usize);
    for (g, c) in gpu.iter().zip(cpu) {
        let g: Vec<f32> = g.to_device(&Device::Cpu).unwrap().to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let c: Vec<f32> = c.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert!(g.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)), "the GPU's image has values outside 0..1 (NaN or overflow)");
        for (a, b) in g.iter().zip(&c) {
            sum += f64::from((a - b).abs());
            worst = worst.max((a - b).abs());
        }
        n += g.len();
    }
    ((sum / n as f64) as f32, worst)
}

/// FLUX drifts furthest in bf16: on the tiny random-weight models 0.05 on
/// average against 0.02 for the UNets (measured on an H200).
const FLUX_BF16_MEAN: f32 = 0.08;

/// Each dtype on the GPU against f32 on the CPU: f32 must agree to
/// rounding; f16 and bf16 (8 bits of mantissa, 3 fewer than f16) on
/// average closely, while single pixels may move more, since random tiny
/// weights amplify rounding over the steps; none may overflow (FLUX's
/// and SD3's T5 run in bf16 when asked for f16). A wrong kernel moves
/// the mean by tenths.
fn check_family(folder: &std::path::Path, sampler: Sampler, guidance: f32, bf16_mean_allowed: f32) {
    let req = request(sampler, guidance);
    let reference = draw(folder, &Device::Cpu, DType::F32, &req);
    let gpu = cuda();
    for (dtype, mean_allowed, worst_allowed) in [(DType::F32, 1e-4, 2e-3), (DType::F16, 0.01, 0.15), (DType::BF16, bf16_mean_allowed, 0.5)] {
        let (mean, worst) = difference(&draw(folder, &gpu, dtype, &req), &reference);
        println!("{} on cuda:0 in {dtype:?}: pixels differ from the CPU's f32 by {mean:.2e} on average, {worst:.2e} at most", folder.display());
        assert!(
            mean <= mean_allowed && worst <= worst_allowed,
            "{} in {dtype:?} on the GPU: mean {mean}, worst {worst} from the CPU's f32 image (allowed {mean_allowed}, {worst_allowed})",
            folder.display()
        );
    }
}

#[test]
fn sd15_on_the_gpu_matches_the_cpu() {
    check_family(&model("tiny-sd15"), Sampler::KDpmpp2m, 5.0, 0.04);
}

#[test]
fn sdxl_on_the_gpu_matches_the_cpu() {
    check_family(&model("tiny-sdxl"), Sampler::KEulerAncestral, 5.0, 0.04);
}

#[test]
fn flux_on_the_gpu_matches_the_cpu() {
    check_family(&crate::flux::flux_dir().join("flux-dev"), Sampler::FlowEuler, 3.5, FLUX_BF16_MEAN);
    check_family(&crate::flux::flux_dir().join("flux-schnell"), Sampler::FlowEuler, 0.0, FLUX_BF16_MEAN);
}

#[test]
fn sd3_on_the_gpu_matches_the_cpu() {
    check_family(&crate::sd3::sd3_dir().join("sd35-tiny"), Sampler::FlowEuler, 4.0, 0.04);
}

/// The engine as `serve` starts it on a GPU: `device = cuda`, dtype auto.
#[tokio::test]
async fn the_engine_serves_pngs_from_the_gpu_in_f16() {
    let config = EngineConfig { device: DeviceChoice::Cuda(0), dtype: None, ..EngineConfig::new(models_dir()) };
    let engine = Engine::start(config).expect("the engine starts on cuda:0");
    assert_eq!(engine.device(), DeviceChoice::Cuda(0));
    let mut spec = TaskSpec::simple("tiny-sd15", "a photo of a cat", Size::new(64, 64));
    (spec.steps, spec.seed, spec.count) = (3, 5, 2);
    let g = engine.generate(&Job::new("gpu", spec.clone()), &no_progress(), &CancelFlag::new()).await.expect("generates on the GPU");
    assert_eq!(g.images.len(), 2);
    let again = engine.generate(&Job::new("gpu-again", spec), &no_progress(), &CancelFlag::new()).await.unwrap();
    for (a, b) in g.images.iter().zip(&again.images) {
        let pixels = image::load_from_memory(&a.bytes).expect("a PNG").to_rgb8();
        assert_eq!(pixels.dimensions(), (64, 64));
        let lo = pixels.as_raw().iter().min().unwrap();
        let hi = pixels.as_raw().iter().max().unwrap();
        assert!(hi - lo > 8, "the GPU's image is flat ({lo}..{hi})");
        assert_eq!(a.bytes, b.bytes, "the same seed on the same GPU gives the same bytes");
    }
}

/// bf16 and f16 against f32, all on the GPU, on the FLUX parity fixtures
/// (same folders, prompt, seeded latent and steps as
/// `tools/parity/flux_dtype_drift.py`, which prints diffusers' drift for
/// comparison). Bounds as in [`check_family`], FLUX's bf16 looser: see
/// docs/benchmarks.md for both sides' figures.
#[test]
fn flux_half_precision_drift_on_the_parity_fixtures() {
    let gpu = cuda();
    for (name, steps, guidance) in [("tiny-flux-schnell", 4, 0.0), ("tiny-flux-dev", 6, 3.5)] {
        let folder = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity-flux").join(name);
        let item = ImageRequest { prompt: vec![PromptPart { text: "a photo of a red cat in the sky".into(), weight: 1.0 }], negative: None, guidance, seed: 1234, init: None };
        let req = BatchRequest { items: vec![item], width: 64, height: 64, steps, sampler: Sampler::FlowEuler, spacing: SigmaSpacing::Default, strength: None };
        let full = draw(&folder, &gpu, DType::F32, &req);
        for (dtype, mean_allowed, worst_allowed) in [(DType::BF16, FLUX_BF16_MEAN, 0.5), (DType::F16, 0.01, 0.15)] {
            let (mean, worst) = difference(&draw(&folder, &gpu, dtype, &req), &full);
            println!("imagegate {name} in {dtype:?}: pixels differ from its f32 by {mean:.2e} on average, {worst:.2e} at most");
            assert!(mean <= mean_allowed && worst <= worst_allowed, "{name} in {dtype:?}: mean {mean}, worst {worst}");
        }
    }
}
