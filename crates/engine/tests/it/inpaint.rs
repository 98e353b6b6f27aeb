//! Inpainting on a tiny SD inpaint pipeline (a UNet with 9 inputs, written
//! with random weights in diffusers' layout): what the mask repaints, what
//! it keeps, seeds, batching, and the errors that name the `mask` field.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use base64::Engine as _;
use candle_core::{DType, Tensor};
use imagegate_core::backend::{Job, no_progress};
use imagegate_core::{Backend, CancelFlag, InitImage, PromptPart, Sampler, Size, TaskSpec};
use imagegate_engine::Engine;
use imagegate_engine::error::EngineError;
use imagegate_engine::fixtures::{TinySd, write_tiny_sd};
use imagegate_engine::input::{decode_init_image, decode_mask};
use imagegate_engine::pipelines::sd::SdPipeline;
use imagegate_engine::pipelines::{BatchRequest, ImageRequest};

use crate::fixtures::model;

/// A models folder with only `tiny-sd15-inpaint`.
fn models_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir").keep();
        write_tiny_sd(&dir.join("tiny-sd15-inpaint"), &TinySd { inpaint: true, seed: 11, ..TinySd::default() }).expect("write inpaint model");
        dir
    })
}

fn data_uri(img: image::DynamicImage) -> String {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(out))
}

fn picture(shade: u8) -> String {
    data_uri(image::RgbImage::from_fn(32, 32, |x, y| image::Rgb([shade, (x * 7) as u8, (y * 5) as u8])).into())
}

/// White (repaint) where `repaint(x, y)`, black (keep) elsewhere.
fn mask(repaint: impl Fn(u32, u32) -> bool) -> String {
    data_uri(image::GrayImage::from_fn(32, 32, |x, y| image::Luma([if repaint(x, y) { 255 } else { 0 }])).into())
}

fn item(seed: u64, shade: u8, mask_uri: &str) -> ImageRequest {
    let mut init = decode_init_image(&picture(shade), 32, 32).unwrap();
    init.mask = Some(decode_mask(mask_uri, 32, 32).unwrap());
    ImageRequest { prompt: vec![PromptPart { text: "a cat".into(), weight: 1.0 }], negative: None, guidance: 5.0, seed, init: Some(init) }
}

fn run(folder: &Path, items: Vec<ImageRequest>, strength: f32) -> Result<Vec<Tensor>, EngineError> {
    let pipe = SdPipeline::load(folder, &crate::device(), DType::F32).unwrap();
    let req = BatchRequest { items, width: 32, height: 32, steps: 3, sampler: Sampler::KEuler, spacing: Default::default(), strength: Some(strength) };
    pipe.generate(&req, &mut |_, _| Ok(()))
}

fn inpaint(items: Vec<ImageRequest>) -> Vec<Tensor> {
    run(&models_dir().join("tiny-sd15-inpaint"), items, 1.0).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn a_full_mask_ignores_the_init_image_and_a_partial_one_does_not() {
    let everything = mask(|_, _| true);
    let a = inpaint(vec![item(1, 0, &everything)]);
    let b = inpaint(vec![item(1, 250, &everything)]);
    assert_eq!(a[0].dims(), &[3, 32, 32]);
    // Everything repainted from pure noise: the init image's pixels are all
    // blanked before the VAE sees them, so it cannot matter.
    assert_eq!(max_diff(&a[0], &b[0]), 0.0);
    let left = mask(|x, _| x < 16);
    let c = inpaint(vec![item(1, 0, &left)]);
    let d = inpaint(vec![item(1, 250, &left)]);
    assert!(max_diff(&c[0], &d[0]) > 1e-3, "the kept half of the init image must reach the UNet");
    assert!(max_diff(&a[0], &c[0]) > 1e-3, "the mask must matter");
}

#[test]
fn seeds_and_batches_behave_as_in_text_to_image() {
    let left = mask(|x, _| x < 16);
    let top = mask(|_, y| y < 10);
    let a = inpaint(vec![item(1, 40, &left)]);
    assert_eq!(max_diff(&a[0], &inpaint(vec![item(1, 40, &left)])[0]), 0.0);
    assert!(max_diff(&a[0], &inpaint(vec![item(2, 40, &left)])[0]) > 1e-4);
    let items = vec![item(3, 10, &left), item(4, 200, &top)];
    let batched = inpaint(items.clone());
    for (i, it) in items.into_iter().enumerate() {
        assert!(max_diff(&batched[i], &inpaint(vec![it])[0]) < 1e-4, "item {i}");
    }
}

#[test]
fn a_mask_needs_an_inpainting_model_and_an_inpainting_model_needs_a_mask() {
    let left = mask(|x, _| x < 16);
    let plain = run(&model("tiny-sd15"), vec![item(1, 0, &left)], 1.0);
    assert!(matches!(&plain, Err(EngineError::Invalid { field, .. }) if field == "mask"), "{plain:?}");
    let mut no_mask = item(1, 0, &left);
    no_mask.init.as_mut().unwrap().mask = None;
    let missing = run(&models_dir().join("tiny-sd15-inpaint"), vec![no_mask], 1.0);
    assert!(matches!(&missing, Err(EngineError::Invalid { field, .. }) if field == "mask"), "{missing:?}");
}

#[tokio::test]
async fn the_engine_inpaints_a_task_with_a_mask() {
    let engine = Engine::start(crate::engine_config(models_dir())).unwrap();
    let mut spec = TaskSpec::simple("tiny-sd15-inpaint", "a cat", Size::new(32, 32));
    (spec.steps, spec.sampler) = (3, Some(Sampler::KEuler));
    spec.init_image = Some(InitImage { source: picture(90), strength: 1.0, mask: Some(mask(|x, _| x < 16)) });
    let g = engine.generate(&Job::new("inpaint", spec.clone()), &no_progress(), &CancelFlag::new()).await.unwrap();
    let img = image::load_from_memory(&g.images[0].bytes).unwrap();
    assert_eq!((img.width(), img.height()), (32, 32));
    spec.init_image.as_mut().unwrap().mask = Some("data:image/png;base64,AAAA".into());
    let bad = engine.generate(&Job::new("bad-mask", spec), &no_progress(), &CancelFlag::new()).await;
    assert!(format!("{:?}", bad.unwrap_err()).contains("mask"));
}
