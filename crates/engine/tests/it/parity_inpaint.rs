//! Inpainting parity with diffusers' `StableDiffusionInpaintPipeline`: the
//! engine's fixture writer makes a tiny random-weight SD inpaint pipeline
//! (a 9-input UNet) in the diffusers layout, plus an init image and a mask;
//! diffusers loads the folder with `from_pretrained` and inpaints at full
//! strength with K_EULER's counterpart from the engine's seeded latent and
//! its seeded VAE-posterior noise (`tools/parity/make_inpaint_fixtures.py`);
//! the engine runs the same folder, image and mask through its real loader
//! and pipeline. See docs/parity.md.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device};
use imagegate_core::{PromptPart, Sampler};
use imagegate_engine::fixtures::{TinySd, write_tiny_sd};
use imagegate_engine::input::{decode_init_image, decode_mask};
use imagegate_engine::models::configs::read_json;
use imagegate_engine::pipelines::sd::SdPipeline;
use imagegate_engine::pipelines::{BatchRequest, ImageRequest};
use imagegate_engine::samplers::NoiseSource;

use crate::parity::{TOL, assert_close, assert_discriminates, load_tensors, rel_err};

const SEED: u64 = 1234;
const SIDE: usize = 64;
const STEPS: usize = 5;
const GUIDANCE: f32 = 5.0;
/// `[4, 4, 4]`: 4 latent channels at 1/16 of 64 px (the lean fixture's
/// 16× VAE keeps the committed files small).
const LATENT: [usize; 3] = [4, SIDE / 16, SIDE / 16];
const PROMPT: &str = "a photo of a red cat in the sky";
const NEGATIVE: &str = "blue dog";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity-inpaint")
}

fn model() -> PathBuf {
    fixtures().join("tiny-sd-inpaint")
}

/// What the engine draws for seed 1234, in order: the initial latent, then
/// the VAE posterior noise of the masked image.
fn seeded_noise() -> HashMap<String, candle_core::Tensor> {
    let mut noise = NoiseSource::new(&[SEED]);
    let latent = noise.randn(&LATENT, &Device::Cpu).unwrap();
    let posterior = noise.randn(&LATENT, &Device::Cpu).unwrap();
    HashMap::from([("latent".to_string(), latent), ("posterior".to_string(), posterior)])
}

/// Writes the folder, the init image, the mask, the settings and
/// `noise.safetensors` for `tools/parity/make_inpaint_fixtures.py`.
#[test]
#[ignore = "writes the inpainting parity fixtures; run before tools/parity/make_inpaint_fixtures.py (docs/parity.md)"]
fn write_inpaint_fixtures() {
    let _ = std::fs::remove_dir_all(fixtures());
    write_tiny_sd(&model(), &TinySd { inpaint: true, lean: true, seed: 51, ..TinySd::default() }).unwrap();
    let side = SIDE as u32;
    let init = image::RgbImage::from_fn(side, side, |x, y| image::Rgb([(x * 4) as u8, (y * 4) as u8, if (x / 8 + y / 8) % 2 == 0 { 200 } else { 40 }]));
    init.save(fixtures().join("init.png")).unwrap();
    // Repaint a off-centre block; keep the rest.
    let mask = image::GrayImage::from_fn(side, side, |x, y| image::Luma([if (16..48).contains(&x) && (8..40).contains(&y) { 255 } else { 0 }]));
    mask.save(fixtures().join("mask.png")).unwrap();
    let settings = serde_json::json!({"prompt": PROMPT, "negative": NEGATIVE, "seed": SEED, "width": SIDE, "height": SIDE, "steps": STEPS, "guidance": GUIDANCE});
    std::fs::write(fixtures().join("parity_cases.json"), serde_json::to_string_pretty(&settings).unwrap()).unwrap();
    candle_core::safetensors::save(&seeded_noise(), fixtures().join("noise.safetensors")).unwrap();
}

#[test]
fn inpaint_noise_fixture_is_the_engines_seeded_stream() {
    let committed = load_tensors(fixtures().join("noise.safetensors"));
    for (name, drawn) in seeded_noise() {
        assert_eq!(rel_err(&drawn, &committed[&name]).1, 0.0, "NoiseSource no longer draws the committed {name}; redo the fixtures");
    }
}

fn file_uri(name: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(fixtures().join(name)).unwrap())
}

#[test]
fn inpainting_matches_diffusers() {
    let settings: serde_json::Value = read_json(&fixtures().join("parity_cases.json")).unwrap();
    assert_eq!(settings["steps"].as_u64(), Some(STEPS as u64), "the committed reference was made with these settings");
    let reference = load_tensors(fixtures().join("reference.safetensors"));
    let pipe = SdPipeline::load(&model(), &crate::device(), DType::F32).expect("the diffusers folder loads");
    let mut init = decode_init_image(&file_uri("init.png"), SIDE, SIDE).unwrap();
    init.mask = Some(decode_mask(&file_uri("mask.png"), SIDE, SIDE).unwrap());
    let item = ImageRequest { prompt: vec![PromptPart { text: PROMPT.into(), weight: 1.0 }], negative: Some(NEGATIVE.into()), guidance: GUIDANCE, seed: SEED, init: Some(init) };
    let run = |item: ImageRequest, steps: usize| {
        let req = BatchRequest { items: vec![item], width: SIDE, height: SIDE, steps, sampler: Sampler::KEuler, spacing: Default::default(), strength: Some(1.0) };
        pipe.generate(&req, &mut |_, _| Ok(())).expect("inpainting runs").remove(0).unsqueeze(0).unwrap()
    };
    assert_close("inpaint image", &run(item.clone(), STEPS), &reference["image"], TOL);
    let mut other_mask = item.clone();
    other_mask.init.as_mut().unwrap().mask.as_mut().unwrap().iter_mut().for_each(|m| *m = 1 - *m);
    for (why, other) in
        [("seed + 1", run(ImageRequest { seed: SEED + 1, ..item.clone() }, STEPS)), ("one step fewer", run(item.clone(), STEPS - 1)), ("the inverted mask", run(other_mask, STEPS))]
    {
        assert_discriminates(&format!("inpaint: {why}"), &other, &reference["image"]);
    }
}
