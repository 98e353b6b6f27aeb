//! LoRA merging on the tiny models: scale 0 is the base model, both key
//! layouts merge identically, a LoRA for another model is refused, and the
//! engine finds LoRAs by name and batches them apart.

use std::path::PathBuf;

use candle_core::{DType, Tensor};
use imagegate_core::backend::{Job, no_progress};
use imagegate_core::{Backend, BackendError, CancelFlag, LoraSpec, PromptPart, Sampler, Size, TaskSpec};
use imagegate_engine::Engine;
use imagegate_engine::EngineError;
use imagegate_engine::fixtures::{LoraLayout, write_tiny_lora};
use imagegate_engine::lora::LoraRef;
use imagegate_engine::pipelines::sd::SdPipeline;
use imagegate_engine::pipelines::{BatchRequest, ImageRequest};

use crate::fixtures::{model, models_dir};

fn draw(loras: &[LoraRef], base: &str) -> Result<Tensor, EngineError> {
    let pipe = SdPipeline::load_with_loras(&model(base), &crate::device(), DType::F32, loras)?;
    let item = ImageRequest { prompt: vec![PromptPart { text: "a photo of a cat".into(), weight: 1.0 }], negative: None, guidance: 4.0, seed: 5, init: None };
    let req = BatchRequest { items: vec![item], width: 32, height: 32, steps: 3, sampler: Sampler::KEuler, spacing: Default::default(), strength: None };
    Ok(pipe.generate(&req, &mut |_, _| Ok(()))?.remove(0))
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn lora_file(dir: &tempfile::TempDir, name: &str, base: &str, layout: LoraLayout, seed: u64) -> PathBuf {
    let path = dir.path().join(name);
    write_tiny_lora(&path, &model(base), layout, 4, seed).unwrap();
    path
}

#[test]
fn a_lora_at_scale_zero_is_the_base_model_and_changes_it_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let path = lora_file(&dir, "k.safetensors", "tiny-sd15", LoraLayout::Kohya, 1);
    let base = draw(&[], "tiny-sd15").unwrap();
    let zero = draw(&[LoraRef { path: path.clone(), scale: 0.0 }], "tiny-sd15").unwrap();
    assert_eq!(max_diff(&base, &zero), 0.0);
    let one = draw(&[LoraRef { path, scale: 1.0 }], "tiny-sd15").unwrap();
    assert!(max_diff(&base, &one) > 1e-3);
}

#[test]
fn kohya_and_diffusers_layouts_merge_identically() {
    let dir = tempfile::tempdir().unwrap();
    for base in ["tiny-sd15", "tiny-sdxl"] {
        let k = lora_file(&dir, &format!("{base}-k.safetensors"), base, LoraLayout::Kohya, 2);
        let d = lora_file(&dir, &format!("{base}-d.safetensors"), base, LoraLayout::Diffusers, 2);
        let a = draw(&[LoraRef { path: k, scale: 0.8 }], base).unwrap();
        let b = draw(&[LoraRef { path: d, scale: 0.8 }], base).unwrap();
        assert!(max_diff(&a, &b) < 1e-5, "{base}: {}", max_diff(&a, &b));
        assert!(max_diff(&a, &draw(&[], base).unwrap()) > 1e-3, "{base}: the LoRA did nothing");
    }
}

#[test]
fn a_lora_made_for_another_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let xl = lora_file(&dir, "xl.safetensors", "tiny-sdxl", LoraLayout::Kohya, 3);
    match draw(&[LoraRef { path: xl, scale: 1.0 }], "tiny-sd15") {
        Err(EngineError::Invalid { field, message }) => assert!(field == "loras" && message.contains("matches no weight"), "{message}"),
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
}

fn job(id: &str, loras: Vec<LoraSpec>) -> Job {
    let mut spec = TaskSpec::simple("tiny-sd15", "a photo of a cat", Size::new(32, 32));
    (spec.steps, spec.seed, spec.sampler, spec.loras) = (2, 9, Some(Sampler::KEuler), loras);
    Job::new(id, spec)
}

#[tokio::test]
async fn the_engine_finds_loras_by_name_and_batches_them_apart() {
    let engine = Engine::start(crate::engine_config(models_dir())).unwrap();
    let (p, c) = (no_progress(), CancelFlag::new());
    let styled = job("s", vec![LoraSpec { name: "style".into(), scale: 1.0 }]);
    let plain = job("p", vec![]);
    let both = engine.generate_batch(&[styled.clone(), plain.clone()], &p, &c).await;
    let alone_styled = engine.generate(&styled, &p, &c).await.unwrap();
    let alone_plain = engine.generate(&plain, &p, &c).await.unwrap();
    assert_eq!(both[0].as_ref().unwrap().images[0].bytes, alone_styled.images[0].bytes);
    assert_eq!(both[1].as_ref().unwrap().images[0].bytes, alone_plain.images[0].bytes);
    assert_ne!(alone_styled.images[0].bytes, alone_plain.images[0].bytes);

    let missing = job("m", vec![LoraSpec { name: "nowhere".into(), scale: 1.0 }]);
    match engine.generate(&missing, &p, &c).await {
        Err(BackendError::MissingWeights { missing, looked_in, .. }) => {
            assert_eq!(missing, "nowhere.safetensors");
            assert!(looked_in.contains("loras"), "{looked_in}");
        }
        other => panic!("{other:?}"),
    }
}
