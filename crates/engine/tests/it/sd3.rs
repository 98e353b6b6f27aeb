//! SD 3.5 on a tiny model in the diffusers layout: sizes, seeds, guidance
//! and negative prompts, batching, and the engine's PNGs.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use imagegate_core::backend::Job;
use imagegate_core::{Backend, CancelFlag, Catalog, Family, PromptPart, Sampler, Size, TaskSpec, backend::no_progress};
use imagegate_engine::Engine;
use imagegate_engine::fixtures::write_tiny_sd3;
use imagegate_engine::pipelines::sd3::Sd3Pipeline;
use imagegate_engine::pipelines::{BatchRequest, ImageRequest};
use imagegate_engine::samplers::SigmaSpacing;

/// A models folder holding `sd35-tiny`.
pub(crate) fn sd3_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // Kept for the whole test run; removed with the OS temp folder.
        let dir = tempfile::tempdir().expect("temp dir").keep();
        write_tiny_sd3(&dir.join("sd35-tiny"), 9).expect("write tiny sd3");
        dir
    })
}

fn load() -> Sd3Pipeline {
    Sd3Pipeline::load(&sd3_dir().join("sd35-tiny"), &crate::device(), DType::F32).expect("tiny sd3 loads")
}

fn item(prompt: &str, seed: u64, guidance: f32) -> ImageRequest {
    ImageRequest { prompt: vec![PromptPart { text: prompt.into(), weight: 1.0 }], negative: None, guidance, seed, init: None }
}

fn request(items: Vec<ImageRequest>) -> BatchRequest {
    BatchRequest { items, width: 64, height: 48, steps: 3, sampler: Sampler::FlowEuler, spacing: SigmaSpacing::Default, strength: None }
}

fn run(pipe: &Sd3Pipeline, req: &BatchRequest) -> Vec<Tensor> {
    pipe.generate(req, &mut |_, _| Ok(())).expect("generation runs")
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn tiny_sd3_draws_images_of_the_requested_size() {
    let out = run(&load(), &request(vec![item("a photo of a cat", 1, 4.0)]));
    assert_eq!(out[0].dims(), &[3, 48, 64]);
    let v: Vec<f32> = out[0].flatten_all().unwrap().to_vec1().unwrap();
    assert!(v.iter().all(|x| x.is_finite() && (0.0..=1.0).contains(x)));
    let spread = v.iter().cloned().fold(f32::MIN, f32::max) - v.iter().cloned().fold(f32::MAX, f32::min);
    assert!(spread > 0.01, "image is flat ({spread})");
}

#[test]
fn sd3_same_seed_repeats_and_seed_negative_and_guidance_matter() {
    let pipe = load();
    let a = run(&pipe, &request(vec![item("a red dog", 7, 4.0)]));
    let b = run(&pipe, &request(vec![item("a red dog", 7, 4.0)]));
    let c = run(&pipe, &request(vec![item("a red dog", 8, 4.0)]));
    let mut neg = item("a red dog", 7, 4.0);
    neg.negative = Some("blue sky".into());
    let n = run(&pipe, &request(vec![neg]));
    let g = run(&pipe, &request(vec![item("a red dog", 7, 1.0)]));
    assert_eq!(max_diff(&a[0], &b[0]), 0.0);
    assert!(max_diff(&a[0], &c[0]) > 0.05, "another seed gives another image");
    assert!(max_diff(&a[0], &n[0]) > 1e-4, "the negative prompt is used");
    assert!(max_diff(&a[0], &g[0]) > 1e-4, "guidance is applied");
}

#[test]
fn an_sd3_batch_equals_its_images_run_one_by_one() {
    let pipe = load();
    let mut neg = item("blue sky", 9, 3.0);
    neg.negative = Some("night".into());
    let items = vec![item("a photo of a cat", 3, 4.0), item("a dog in the night", 4, 1.0), neg];
    let batched = run(&pipe, &request(items.clone()));
    for (i, it) in items.into_iter().enumerate() {
        let alone = run(&pipe, &request(vec![it]));
        let d = max_diff(&batched[i], &alone[0]);
        assert!(d < 1e-4, "item {i}: batch differs from alone by {d}");
    }
}

#[tokio::test]
async fn sd3_tasks_come_back_as_pngs_and_repeat_by_seed() {
    let engine = Engine::start(crate::engine_config(sd3_dir())).expect("engine starts");
    let mut entry = Catalog::builtin().models()[0].clone();
    (entry.id, entry.family, entry.weights) = ("sd35-tiny".into(), Family::Sd35, None);
    assert_eq!(engine.serves(&entry), Ok(()));
    let job = |seed| {
        let mut spec = TaskSpec::simple("sd35-tiny", "a photo of a cat", Size::new(64, 64));
        (spec.steps, spec.seed, spec.sampler) = (3, seed, None);
        Job::new(format!("sd3-{seed}"), spec)
    };
    let (p, cancel) = (no_progress(), CancelFlag::new());
    let a = engine.generate(&job(1), &p, &cancel).await.expect("sd3 generates");
    let b = engine.generate(&job(1), &p, &cancel).await.unwrap();
    let c = engine.generate(&job(2), &p, &cancel).await.unwrap();
    let decoded = image::load_from_memory(&a.images[0].bytes).expect("a PNG");
    assert_eq!((decoded.width(), decoded.height()), (64, 64));
    assert_eq!(a.images[0].bytes, b.images[0].bytes);
    assert_ne!(a.images[0].bytes, c.images[0].bytes);
}

#[test]
fn sd3_image_to_image_follows_the_init_image() {
    let pipe = load();
    crate::flux::check_flow_img2img(&|req| run(&pipe, req));
}

#[test]
fn an_sai_single_file_draws_what_the_diffusers_folder_draws() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("sd35-single");
    write_tiny_sd3(&folder, 9).unwrap();
    imagegate_engine::fixtures::write_sai_file(&folder, &folder.join("sd3.5_tiny.safetensors")).unwrap();
    std::fs::remove_dir_all(folder.join("transformer")).unwrap();
    std::fs::remove_file(folder.join("vae/diffusion_pytorch_model.safetensors")).unwrap();
    assert!(imagegate_engine::loader::missing_files(&folder).is_empty());
    let single = Sd3Pipeline::load(&folder, &crate::device(), DType::F32).expect("SAI file loads");
    let req = request(vec![item("a red dog", 7, 4.0)]);
    let d = max_diff(&run(&load(), &req)[0], &run(&single, &req)[0]);
    assert!(d < 1e-5, "SAI single file differs from the diffusers folder by {d}");
}

#[test]
fn an_sd3_lora_at_scale_zero_is_the_base_model_and_at_one_changes_the_image() {
    use imagegate_engine::lora::LoraRef;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sd3-style.safetensors");
    let t = |rows: usize, cols: usize, k: f32| {
        let v: Vec<f32> = (0..rows * cols).map(|i| ((i as f32 * 0.37 + k).sin()) * 0.5).collect();
        Tensor::from_vec(v, (rows, cols), &Device::Cpu).unwrap()
    };
    let mut lora = std::collections::HashMap::new();
    // diffusers/PEFT on split names, kohya on SAI's fused names.
    lora.insert("transformer.transformer_blocks.0.attn.to_q.lora_A.weight".to_string(), t(4, 32, 0.1));
    lora.insert("transformer.transformer_blocks.0.attn.to_q.lora_B.weight".to_string(), t(32, 4, 0.2));
    lora.insert("lora_unet_joint_blocks_0_x_block_mlp_fc1.lora_down.weight".to_string(), t(4, 32, 0.3));
    lora.insert("lora_unet_joint_blocks_0_x_block_mlp_fc1.lora_up.weight".to_string(), t(128, 4, 0.4));
    candle_core::safetensors::save(&lora, &path).unwrap();
    let folder = sd3_dir().join("sd35-tiny");
    let with = |scale: f32| Sd3Pipeline::load_with_loras(&folder, &crate::device(), DType::F32, &[LoraRef { path: path.clone(), scale }]).expect("lora merges");
    let req = request(vec![item("a photo of a cat", 5, 4.0)]);
    let base = run(&load(), &req);
    assert_eq!(max_diff(&base[0], &run(&with(0.0), &req)[0]), 0.0);
    assert!(max_diff(&base[0], &run(&with(1.0), &req)[0]) > 1e-3);
}
