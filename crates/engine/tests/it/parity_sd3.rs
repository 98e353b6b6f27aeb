//! SD 3.x parity with diffusers' `StableDiffusion3Pipeline`: the engine's
//! fixture writer makes a tiny random-weight SD3 pipeline in the diffusers
//! layout (two CLIP encoders and T5, an `SD3Transformer2DModel`, a
//! 16-channel VAE with SD3's scaling and shift), diffusers loads it with
//! `from_pretrained` and runs it from the engine's seeded latent
//! (`tools/parity/make_sd3_fixtures.py`), and the engine runs the same folder
//! through its real loader, in f32 as diffusers does, to the same
//! tolerances as the other pipelines. See docs/parity.md.

use std::path::PathBuf;

use candle_core::{DType, Tensor};
use imagegate_core::{PromptPart, Sampler};
use imagegate_engine::fixtures::{TinySd3, write_tiny_sd3_with};
use imagegate_engine::models::configs::read_json;
use imagegate_engine::pipelines::sd3::{Sd3Pipeline, encode_prompt};
use imagegate_engine::pipelines::{BatchRequest, ImageRequest};

use crate::parity::{assert_close, assert_committed_latent, check_image, load_tensors, save_latent};

const SEED: u64 = 1234;
const SIDE: usize = 64;
const STEPS: usize = 4;
const GUIDANCE: f32 = 5.0;
/// Decoded images (and the transformer call) must agree to this relative error.
const TOL: f64 = 1e-3;
/// Text states and the VAE agree far tighter.
const STAGE_TOL: f64 = 1e-4;
/// `[16, 8, 8]`: 16 latent channels at 1/8 of 64 px.
const LATENT: [usize; 3] = [16, SIDE / 8, SIDE / 8];
const PROMPT: &str = "a photo of a red cat in the sky";
const NEGATIVE: &str = "blue dog";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity-sd3")
}

fn model() -> PathBuf {
    fixtures().join("tiny-sd3")
}

/// Writes the folder, the settings and `noise.safetensors` for `tools/parity/make_sd3_fixtures.py`.
#[test]
#[ignore = "writes the SD3 parity fixtures; run before tools/parity/make_sd3_fixtures.py (docs/parity.md)"]
fn write_sd3_fixtures() {
    let _ = std::fs::remove_dir_all(fixtures());
    write_tiny_sd3_with(&model(), &TinySd3 { seed: 51, ..TinySd3::default() }).unwrap();
    let settings = serde_json::json!({"prompt": PROMPT, "negative": NEGATIVE, "seed": SEED, "width": SIDE, "height": SIDE, "steps": STEPS, "guidance": GUIDANCE});
    std::fs::write(fixtures().join("parity_case.json"), serde_json::to_string_pretty(&settings).unwrap()).unwrap();
    save_latent(&fixtures(), &LATENT);
}

#[test]
fn sd3_noise_fixture_is_the_engines_seeded_latent() {
    assert_committed_latent(&fixtures(), &LATENT);
}

#[test]
fn sd3_end_to_end_matches_diffusers() {
    let settings: serde_json::Value = read_json(&fixtures().join("parity_case.json")).unwrap();
    assert_eq!(settings["steps"].as_u64(), Some(STEPS as u64), "the committed reference was made with these settings");
    let reference = load_tensors(fixtures().join("reference.safetensors"));
    let pipe = Sd3Pipeline::load(&model(), &crate::device(), DType::F32).expect("the diffusers folder loads");
    let item = ImageRequest { prompt: vec![PromptPart { text: PROMPT.into(), weight: 1.0 }], negative: Some(NEGATIVE.into()), guidance: GUIDANCE, seed: SEED, init: None };

    // Rows: negative first, as diffusers concatenates them.
    let context = encode_prompt(&pipe, std::slice::from_ref(&item)).unwrap();
    assert_close("sd3 text states", context.context(), &reference["prompt_embeds"], STAGE_TOL);
    assert_close("sd3 pooled text", context.pooled(), &reference["pooled_prompt_embeds"], STAGE_TOL);

    let latent = load_tensors(fixtures().join("noise.safetensors"))["latent"].to_device(&crate::device()).unwrap();
    let rows = Tensor::cat(&[&latent, &latent], 0).unwrap();
    assert_close("sd3 first transformer call", &pipe.velocity(&rows, 1.0, &context).unwrap(), &reference["first_call"], TOL);
    assert_close("sd3 VAE decode", &imagegate_engine::pipelines::sd3::decode(&pipe, &latent).unwrap(), &reference["decoded_latent"], STAGE_TOL);

    let generate = |req: &BatchRequest| pipe.generate(req, &mut |_, _| Ok(())).expect("generation runs");
    check_image("sd3", generate, Sampler::FlowEuler, SIDE, &item, STEPS, &reference["image"]);
}
