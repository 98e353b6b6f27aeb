//! Single-file checkpoints (A1111/ComfyUI layout) written from tiny
//! diffusers folders: they draw what their folder draws, are discovered by
//! file stem and served by the engine.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use imagegate_core::backend::Job;
use imagegate_core::{Backend, CancelFlag, Catalog, Family, PromptPart, Sampler, Size, TaskSpec, backend::no_progress};
use imagegate_engine::fixtures::{LoraLayout, TinySd, TinySdVariant, write_checkpoint, write_tiny_lora, write_tiny_sd, write_tiny_sdxl};
use imagegate_engine::pipelines::sd::SdPipeline;
use imagegate_engine::pipelines::{BatchRequest, ImageRequest};
use imagegate_engine::samplers::SigmaSpacing;
use imagegate_engine::{Engine, PipelineKind, discover};

fn draw(pipe: &SdPipeline) -> Tensor {
    let mut item = ImageRequest { prompt: vec![PromptPart { text: "a photo of a cat".into(), weight: 1.0 }], negative: Some("blue".into()), guidance: 5.0, seed: 4, init: None };
    item.prompt.push(PromptPart { text: "red sky".into(), weight: 0.5 });
    let req = BatchRequest { items: vec![item], width: 64, height: 48, steps: 3, sampler: Sampler::KEuler, spacing: SigmaSpacing::Default, strength: None };
    pipe.generate(&req, &mut |_, _| Ok(())).expect("generation runs").remove(0)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn assert_same_image(folder: &Path, file: &Path) {
    let from_folder = draw(&SdPipeline::load(folder, &crate::device(), DType::F32).unwrap());
    let from_file = draw(&SdPipeline::load_checkpoint(file, folder, &crate::device(), DType::F32, &[]).expect("checkpoint loads"));
    let d = max_diff(&from_folder, &from_file);
    assert!(d < 1e-5, "{}: single file differs from its folder by {d}", file.display());
}

#[test]
fn single_file_sd15_sd21_and_sdxl_checkpoints_draw_what_their_folder_draws() {
    let dir = tempfile::tempdir().unwrap();
    let (sd15, sd21, xl) = (dir.path().join("sd15"), dir.path().join("sd21"), dir.path().join("xl"));
    write_tiny_sd(&sd15, &TinySd::default()).unwrap();
    write_tiny_sd(&sd21, &TinySd { variant: TinySdVariant::Sd21, prediction_type: "v_prediction", seed: 1, ..TinySd::default() }).unwrap();
    write_tiny_sdxl(&xl, DType::F32, 3).unwrap();
    for folder in [&sd15, &sd21, &xl] {
        let file = folder.with_extension("safetensors");
        write_checkpoint(folder, &file).expect("checkpoint written");
        let names: Vec<String> = candle_core::safetensors::load(&file, &Device::Cpu).unwrap().into_keys().collect();
        assert!(names.iter().any(|n| n.starts_with("model.diffusion_model.input_blocks.")));
        assert!(names.iter().any(|n| n.starts_with("first_stage_model.decoder.up.")));
        assert_same_image(folder, &file);
    }
}

#[test]
fn checkpoints_are_discovered_by_file_stem_and_lora_files_are_not_models() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("tiny-sd15");
    write_tiny_sd(&folder, &TinySd::default()).unwrap();
    write_checkpoint(&folder, &dir.path().join("my-finetune.safetensors")).unwrap();
    write_tiny_lora(&dir.path().join("style.safetensors"), &folder, LoraLayout::Kohya, 4, 7).unwrap();
    let found = discover(dir.path());
    let ids: Vec<&str> = found.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, vec!["my-finetune", "tiny-sd15"]);
    assert_eq!(found[0].kind, Some(PipelineKind::StableDiffusion));
    assert!(found[0].missing.is_empty(), "{:?}", found[0].missing);

    // Without a diffusers folder of its family the checkpoint names what it lacks.
    let alone = tempfile::tempdir().unwrap();
    std::fs::copy(dir.path().join("my-finetune.safetensors"), alone.path().join("lonely.safetensors")).unwrap();
    let found = discover(alone.path());
    assert!(found[0].missing[0].contains("diffusers StableDiffusion folder"), "{:?}", found[0].missing);
}

#[tokio::test]
async fn the_engine_serves_a_checkpoint_with_the_pixels_of_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("tiny-sd15");
    write_tiny_sd(&folder, &TinySd::default()).unwrap();
    write_checkpoint(&folder, &dir.path().join("my-finetune.safetensors")).unwrap();
    let engine = Engine::start(crate::engine_config(dir.path())).unwrap();
    let mut entry = Catalog::builtin().models()[0].clone();
    (entry.id, entry.family, entry.weights) = ("my-finetune".into(), Family::Sd15, None);
    assert_eq!(engine.serves(&entry), Ok(()));
    let job = |model: &str| {
        let mut spec = TaskSpec::simple(model, "a photo of a cat", Size::new(64, 64));
        (spec.steps, spec.seed, spec.sampler) = (3, 9, Some(Sampler::KEuler));
        Job::new(model, spec)
    };
    let (p, cancel) = (no_progress(), CancelFlag::new());
    let a = engine.generate(&job("my-finetune"), &p, &cancel).await.expect("checkpoint generates");
    let b = engine.generate(&job("tiny-sd15"), &p, &cancel).await.unwrap();
    let pixels = |bytes: &[u8]| image::load_from_memory(bytes).unwrap().to_rgb8().into_raw();
    assert_eq!(pixels(&a.images[0].bytes), pixels(&b.images[0].bytes));
}

#[test]
fn a_lora_merges_into_a_checkpoint_as_into_its_folder() {
    use imagegate_engine::lora::LoraRef;
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("tiny-sd15");
    write_tiny_sd(&folder, &TinySd::default()).unwrap();
    let file = dir.path().join("ckpt.safetensors");
    write_checkpoint(&folder, &file).unwrap();
    for layout in [LoraLayout::Kohya, LoraLayout::Diffusers] {
        let lora = dir.path().join(format!("{layout:?}.safetensors"));
        write_tiny_lora(&lora, &folder, layout, 4, 7).unwrap();
        let loras = [LoraRef { path: lora, scale: 1.0 }];
        let a = draw(&SdPipeline::load_with_loras(&folder, &crate::device(), DType::F32, &loras).unwrap());
        let b = draw(&SdPipeline::load_checkpoint(&file, &folder, &crate::device(), DType::F32, &loras).unwrap());
        let base = draw(&SdPipeline::load(&folder, &crate::device(), DType::F32).unwrap());
        assert!(max_diff(&a, &b) < 1e-5, "{layout:?}");
        assert!(max_diff(&a, &base) > 1e-3, "{layout:?}: the LoRA changes the image");
    }
}
