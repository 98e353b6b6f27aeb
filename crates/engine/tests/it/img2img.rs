//! Image-to-image on the tiny SD model: strength picks how much of the
//! schedule runs, the init image matters, batching and seeds behave as in
//! text-to-image, and the engine takes data URIs.

use base64::Engine as _;
use candle_core::{DType, Tensor};
use imagegate_core::backend::{Job, no_progress};
use imagegate_core::{Backend, CancelFlag, InitImage, PromptPart, Sampler, Size, TaskSpec};
use imagegate_engine::Engine;
use imagegate_engine::input::{InitPixels, decode_init_image};
use imagegate_engine::pipelines::sd::SdPipeline;
use imagegate_engine::pipelines::{BatchRequest, ImageRequest};

use crate::fixtures::{model, models_dir};

fn png_data_uri(shade: u8) -> String {
    let img = image::RgbImage::from_fn(40, 24, |x, y| image::Rgb([shade, (x * 6) as u8, (y * 9) as u8]));
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(out))
}

fn init(shade: u8) -> InitPixels {
    decode_init_image(&png_data_uri(shade), 32, 32).unwrap()
}

fn item(prompt: &str, seed: u64, shade: u8) -> ImageRequest {
    ImageRequest { prompt: vec![PromptPart { text: prompt.into(), weight: 1.0 }], negative: None, guidance: 5.0, seed, init: Some(init(shade)) }
}

fn run(items: Vec<ImageRequest>, strength: f32) -> (Vec<Tensor>, usize) {
    let pipe = SdPipeline::load(&model("tiny-sd15"), &crate::device(), DType::F32).unwrap();
    let req = BatchRequest { items, width: 32, height: 32, steps: 4, sampler: Sampler::KEulerAncestral, spacing: Default::default(), strength: Some(strength) };
    let mut steps = 0;
    let out = pipe.generate(&req, &mut |_, _| {
        steps += 1;
        Ok(())
    });
    (out.unwrap(), steps)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn strength_sets_how_many_steps_run_and_zero_keeps_the_image() {
    let (a, steps_half) = run(vec![item("a cat", 1, 50)], 0.5);
    assert_eq!(steps_half, 2);
    let (_, steps_full) = run(vec![item("a cat", 1, 50)], 1.0);
    assert_eq!(steps_full, 4);
    // At strength 0 nothing is denoised, so the prompt cannot matter.
    let (k1, none) = run(vec![item("a cat", 1, 50)], 0.0);
    let (k2, _) = run(vec![item("a red dog", 1, 50)], 0.0);
    assert_eq!(none, 0);
    assert_eq!(max_diff(&k1[0], &k2[0]), 0.0);
    assert!(max_diff(&a[0], &k1[0]) > 1e-4);
}

#[test]
fn the_init_image_and_the_seed_shape_the_result() {
    let (a, _) = run(vec![item("a cat", 1, 0)], 0.5);
    let (b, _) = run(vec![item("a cat", 1, 250)], 0.5);
    let (c, _) = run(vec![item("a cat", 1, 0)], 0.5);
    let (d, _) = run(vec![item("a cat", 2, 0)], 0.5);
    assert!(max_diff(&a[0], &b[0]) > 1e-3);
    assert_eq!(max_diff(&a[0], &c[0]), 0.0);
    assert!(max_diff(&a[0], &d[0]) > 1e-4);
}

#[test]
fn an_img2img_batch_equals_its_images_alone() {
    let items = vec![item("a cat", 3, 10), item("a dog", 4, 200)];
    let (batched, _) = run(items.clone(), 0.75);
    for (i, it) in items.into_iter().enumerate() {
        let (alone, _) = run(vec![it], 0.75);
        assert!(max_diff(&batched[i], &alone[0]) < 1e-4, "item {i}");
    }
}

#[tokio::test]
async fn the_engine_takes_init_images_as_data_uris() {
    let engine = Engine::start(crate::engine_config(models_dir())).unwrap();
    let mut spec = TaskSpec::simple("tiny-sd15", "a cat", Size::new(32, 32));
    (spec.steps, spec.sampler) = (4, Some(Sampler::KEuler));
    spec.init_image = Some(InitImage { source: png_data_uri(90), strength: 0.5, mask: None });
    let g = engine.generate(&Job::new("i2i", spec), &no_progress(), &CancelFlag::new()).await.unwrap();
    let reader = png::Decoder::new(std::io::Cursor::new(&g.images[0].bytes)).read_info().unwrap();
    let text = &reader.info().uncompressed_latin1_text[0].text;
    assert!(text.ends_with("Denoising strength: 0.5"), "{text}");
}
