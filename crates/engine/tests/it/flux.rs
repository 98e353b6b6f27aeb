//! FLUX.1 on tiny models in the real layouts: diffusers folders (schnell
//! and dev), BFL single files, through the pipeline and the engine.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::{DType, Tensor};
use imagegate_core::backend::Job;
use imagegate_core::{Backend, CancelFlag, Catalog, Family, PromptPart, Sampler, Size, TaskSpec, backend::no_progress};
use imagegate_engine::fixtures::{FluxVariant, TinyFlux, write_tiny_flux};
use imagegate_engine::pipelines::flux::FluxPipeline;
use imagegate_engine::pipelines::{BatchRequest, ImageRequest};
use imagegate_engine::samplers::SigmaSpacing;
use imagegate_engine::{Engine, EngineError};

/// `flux-schnell`, `flux-dev`, `flux-dev-bfl` (BFL transformer file, same
/// weights as `flux-dev`) and `flux-schnell-bfl-ae` (BFL transformer and autoencoder).
pub(crate) fn flux_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // Kept for the whole test run; removed with the OS temp folder.
        let dir = tempfile::tempdir().expect("temp dir").keep();
        let dev = TinyFlux { variant: FluxVariant::Dev, seed: 5, ..TinyFlux::default() };
        write_tiny_flux(&dir.join("flux-schnell"), &TinyFlux::default()).expect("write schnell");
        write_tiny_flux(&dir.join("flux-dev"), &dev).expect("write dev");
        write_tiny_flux(&dir.join("flux-dev-bfl"), &TinyFlux { bfl_transformer: true, ..dev }).expect("write dev bfl");
        let both = TinyFlux { bfl_transformer: true, bfl_ae: true, ..TinyFlux::default() };
        write_tiny_flux(&dir.join("flux-schnell-bfl-ae"), &both).expect("write bfl ae");
        dir
    })
}

fn load(id: &str) -> FluxPipeline {
    FluxPipeline::load(&flux_dir().join(id), &crate::device(), DType::F32).expect("tiny flux loads")
}

fn item(prompt: &str, seed: u64, guidance: f32) -> ImageRequest {
    ImageRequest { prompt: vec![PromptPart { text: prompt.into(), weight: 1.0 }], negative: None, guidance, seed, init: None }
}

fn request(items: Vec<ImageRequest>) -> BatchRequest {
    BatchRequest { items, width: 64, height: 48, steps: 4, sampler: Sampler::FlowEuler, spacing: SigmaSpacing::Default, strength: None }
}

fn run(pipe: &FluxPipeline, req: &BatchRequest) -> Vec<Tensor> {
    pipe.generate(req, &mut |_, _| Ok(())).expect("generation runs")
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn tiny_flux_schnell_and_dev_draw_images_of_the_requested_size() {
    for (id, dev) in [("flux-schnell", false), ("flux-dev", true)] {
        let pipe = load(id);
        assert_eq!(pipe.embeds_guidance(), dev);
        let out = run(&pipe, &request(vec![item("a photo of a cat", 1, 3.5)]));
        assert_eq!(out[0].dims(), &[3, 48, 64]);
        let v: Vec<f32> = out[0].flatten_all().unwrap().to_vec1().unwrap();
        assert!(v.iter().all(|x| x.is_finite() && (0.0..=1.0).contains(x)));
        let spread = v.iter().cloned().fold(f32::MIN, f32::max) - v.iter().cloned().fold(f32::MAX, f32::min);
        assert!(spread > 0.01, "{id}: image is flat ({spread})");
    }
}

#[test]
fn flux_same_seed_repeats_and_another_seed_or_guidance_differs() {
    let pipe = load("flux-dev");
    let a = run(&pipe, &request(vec![item("a red dog", 7, 3.5)]));
    let b = run(&pipe, &request(vec![item("a red dog", 7, 3.5)]));
    let c = run(&pipe, &request(vec![item("a red dog", 8, 3.5)]));
    let g = run(&pipe, &request(vec![item("a red dog", 7, 6.0)]));
    assert_eq!(max_diff(&a[0], &b[0]), 0.0);
    assert!(max_diff(&a[0], &c[0]) > 0.05, "another seed gives another image");
    assert!(max_diff(&a[0], &g[0]) > 1e-4, "dev embeds the guidance scale");
}

#[test]
fn a_flux_batch_equals_its_images_run_one_by_one() {
    for id in ["flux-schnell", "flux-dev"] {
        let pipe = load(id);
        let items = vec![item("a photo of a cat", 3, 3.5), item("a dog in the night", 4, 5.0), item("blue sky", 9, 2.0)];
        let batched = run(&pipe, &request(items.clone()));
        for (i, it) in items.into_iter().enumerate() {
            let alone = run(&pipe, &request(vec![it]));
            let d = max_diff(&batched[i], &alone[0]);
            assert!(d < 1e-4, "{id} item {i}: batch differs from alone by {d}");
        }
    }
}

#[test]
fn a_bfl_single_file_transformer_draws_what_the_diffusers_folder_draws() {
    let req = request(vec![item("a painting of the sky", 11, 3.5)]);
    let folder = run(&load("flux-dev"), &req);
    let single = run(&load("flux-dev-bfl"), &req);
    let d = max_diff(&folder[0], &single[0]);
    assert!(d < 1e-5, "split q/k/v mapped onto fused names differ by {d}");
}

#[test]
fn a_bfl_autoencoder_file_loads_and_decodes() {
    let pipe = load("flux-schnell-bfl-ae");
    let out = run(&pipe, &request(vec![item("a cat", 2, 1.0)]));
    assert_eq!(out[0].dims(), &[3, 48, 64]);
}

#[test]
fn flux_refuses_other_samplers_and_sizes_off_the_patch_grid() {
    let pipe = load("flux-schnell");
    let mut req = request(vec![item("a cat", 1, 1.0)]);
    req.sampler = Sampler::KEuler;
    assert!(matches!(pipe.generate(&req, &mut |_, _| Ok(())), Err(EngineError::Invalid { .. })));
    let mut req = request(vec![item("a cat", 1, 1.0)]);
    req.width = 56;
    assert!(matches!(pipe.generate(&req, &mut |_, _| Ok(())), Err(EngineError::Invalid { .. })));
}

fn job(model: &str, seed: u64) -> Job {
    let mut spec = TaskSpec::simple(model, "a photo of a cat", Size::new(64, 64));
    (spec.steps, spec.seed, spec.sampler) = (4, seed, None);
    Job::new(format!("{model}-{seed}"), spec)
}

#[tokio::test]
async fn flux_tasks_come_back_as_pngs_and_repeat_by_seed() {
    let engine = Engine::start(crate::engine_config(flux_dir())).expect("engine starts");
    let mut entry = Catalog::builtin().models()[0].clone();
    (entry.id, entry.family, entry.weights) = ("flux-schnell".into(), Family::FluxSchnell, None);
    assert_eq!(engine.serves(&entry), Ok(()));
    (entry.id, entry.family) = ("flux-dev-bfl".into(), Family::FluxDev);
    assert_eq!(engine.serves(&entry), Ok(()), "a BFL single file is served too");
    let (p, cancel) = (no_progress(), CancelFlag::new());
    // No sampler named: FLUX defaults to FLOW_EULER.
    let a = engine.generate(&job("flux-schnell", 1), &p, &cancel).await.expect("flux generates");
    let b = engine.generate(&job("flux-schnell", 1), &p, &cancel).await.unwrap();
    let c = engine.generate(&job("flux-schnell", 2), &p, &cancel).await.unwrap();
    let img = &a.images[0];
    let decoded = image::load_from_memory(&img.bytes).expect("a PNG");
    assert_eq!((decoded.width(), decoded.height()), (64, 64));
    assert_eq!(img.bytes, b.images[0].bytes);
    assert_ne!(img.bytes, c.images[0].bytes);
}

#[test]
fn serves_tells_schnell_from_dev_and_names_missing_flux_files() {
    let engine = Engine::start(crate::engine_config(flux_dir())).expect("engine starts");
    let mut entry = Catalog::builtin().models()[0].clone();
    (entry.id, entry.family, entry.weights) = ("flux-schnell".into(), Family::FluxDev, None);
    assert!(engine.serves(&entry).unwrap_err().contains("schnell"));
    (entry.id, entry.family) = ("flux-dev-bfl".into(), Family::FluxSchnell);
    assert!(engine.serves(&entry).unwrap_err().contains("dev"));
    (entry.id, entry.family) = ("flux-dev".into(), Family::Sd15);
    assert!(engine.serves(&entry).is_err());

    let dir = tempfile::tempdir().unwrap();
    write_tiny_flux(&dir.path().join("half"), &TinyFlux::default()).unwrap();
    std::fs::remove_file(dir.path().join("half/transformer/diffusion_pytorch_model.safetensors")).unwrap();
    let partial = Engine::start(crate::engine_config(dir.path())).unwrap();
    (entry.id, entry.family) = ("half".into(), Family::FluxSchnell);
    let why = partial.serves(&entry).unwrap_err();
    assert!(why.contains("transformer/diffusion_pytorch_model.safetensors"), "{why}");
}

#[test]
fn a_flux_lora_at_scale_zero_is_the_base_model_and_at_one_changes_the_image() {
    use imagegate_engine::lora::LoraRef;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flux-style.safetensors");
    imagegate_engine::fixtures::write_tiny_flux_lora(&path, 4, 3).unwrap();
    let req = request(vec![item("a photo of a cat", 5, 3.5)]);
    for id in ["flux-dev", "flux-dev-bfl"] {
        let folder = flux_dir().join(id);
        let with = |scale: f32| {
            let loras = [LoraRef { path: path.clone(), scale }];
            FluxPipeline::load_with_loras(&folder, &crate::device(), DType::F32, &loras).expect("lora merges")
        };
        let base = run(&load(id), &req);
        assert_eq!(max_diff(&base[0], &run(&with(0.0), &req)[0]), 0.0, "{id}: scale 0 is the base model");
        assert!(max_diff(&base[0], &run(&with(1.0), &req)[0]) > 1e-3, "{id}: the LoRA changes the image");
    }
    // An SD LoRA on FLUX, and a FLUX LoRA on SD, are refused rather than skipped.
    let sd_lora = crate::fixtures::models_dir().join("loras/style.safetensors");
    let loras = [LoraRef { path: sd_lora, scale: 1.0 }];
    assert!(FluxPipeline::load_with_loras(&flux_dir().join("flux-dev"), &crate::device(), DType::F32, &loras).is_err());
    let loras = [LoraRef { path, scale: 1.0 }];
    assert!(imagegate_engine::pipelines::Pipeline::load(&crate::fixtures::model("tiny-sd15"), &crate::device(), DType::F32, &loras).is_err());
}

/// A 64×48 init image: a diagonal gradient in `shade`.
fn init_image(shade: u8) -> imagegate_engine::input::InitPixels {
    let rgb = (0..48usize).flat_map(|y| (0..64usize).flat_map(move |x| [shade, ((x + y) * 2) as u8, 255 - shade])).collect();
    imagegate_engine::input::InitPixels { width: 64, height: 48, rgb, mask: None }
}

/// Image-to-image on a flow model: follows the init image, repeats by seed,
/// batches like one-by-one; shared by the FLUX and SD3 tests.
pub fn check_flow_img2img(generate: &dyn Fn(&BatchRequest) -> Vec<Tensor>) {
    let with_init = |shade: u8, seed: u64| {
        let mut it = item("a photo of a cat", seed, 3.5);
        it.init = Some(init_image(shade));
        it
    };
    let req = |items: Vec<ImageRequest>| BatchRequest { strength: Some(0.5), ..request(items) };
    let dark = generate(&req(vec![with_init(0, 1)]));
    let again = generate(&req(vec![with_init(0, 1)]));
    let light = generate(&req(vec![with_init(250, 1)]));
    assert_eq!(dark[0].dims(), &[3, 48, 64]);
    assert_eq!(max_diff(&dark[0], &again[0]), 0.0);
    assert!(max_diff(&dark[0], &light[0]) > 0.05, "the init image shapes the result");
    let both = generate(&req(vec![with_init(0, 1), with_init(250, 1)]));
    assert!(max_diff(&both[0], &dark[0]) < 1e-4 && max_diff(&both[1], &light[0]) < 1e-4);
}

#[test]
fn flux_image_to_image_follows_the_init_image_in_both_vae_layouts() {
    for id in ["flux-dev", "flux-schnell-bfl-ae"] {
        let pipe = load(id);
        check_flow_img2img(&|req| run(&pipe, req));
    }
}
