//! SDXL parity with diffusers' `StableDiffusionXLPipeline`: the engine's
//! fixture writer makes a tiny random-weight SDXL pipeline in the diffusers
//! layout (two CLIP encoders, the second with a projection; a UNet with
//! `text_time` added conditioning; a KL VAE), diffusers loads it with
//! `from_pretrained` and runs K_EULER's counterpart from the engine's
//! seeded latent (`tools/parity/make_sdxl_fixtures.py`), and the engine
//! runs the same folder through its real loader. Two cases: a negative
//! prompt, and none (SDXL's `force_zeros_for_empty_prompt`: zero
//! unconditional embeddings). See docs/parity.md.

use std::path::PathBuf;

use candle_core::DType;
use imagegate_core::{PromptPart, Sampler};
use imagegate_engine::fixtures::{TinySdxl, write_tiny_sdxl_with};
use imagegate_engine::models::configs::read_json;
use imagegate_engine::pipelines::sd::{SdPipeline, encode_prompt};
use imagegate_engine::pipelines::{BatchRequest, ImageRequest};

use crate::parity::{assert_close, assert_committed_latent, check_image, load_tensors, save_latent};

const SEED: u64 = 1234;
const SIDE: usize = 64;
const STEPS: usize = 5;
const GUIDANCE: f32 = 5.0;
const STAGE_TOL: f64 = 1e-4;
/// `[4, 8, 8]`: 4 latent channels at 1/8 of 64 px.
const LATENT: [usize; 3] = [4, SIDE / 8, SIDE / 8];
const PROMPT: &str = "a photo of a red cat in the sky";
/// Case name and negative prompt.
const CASES: [(&str, Option<&str>); 2] = [("negative", Some("blue dog")), ("no_negative", None)];

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity-sdxl")
}

fn model() -> PathBuf {
    fixtures().join("tiny-sdxl")
}

/// Writes the folder, the cases and `noise.safetensors` for `tools/parity/make_sdxl_fixtures.py`.
#[test]
#[ignore = "writes the SDXL parity fixtures; run before tools/parity/make_sdxl_fixtures.py (docs/parity.md)"]
fn write_sdxl_fixtures() {
    let _ = std::fs::remove_dir_all(fixtures());
    write_tiny_sdxl_with(&model(), &TinySdxl { dtype: DType::F32, seed: 41, lean: false }).unwrap();
    let cases: Vec<serde_json::Value> = CASES.iter().map(|(name, negative)| serde_json::json!({"name": name, "negative": negative})).collect();
    let settings = serde_json::json!({"prompt": PROMPT, "seed": SEED, "width": SIDE, "height": SIDE, "steps": STEPS, "guidance": GUIDANCE, "cases": cases});
    std::fs::write(fixtures().join("parity_cases.json"), serde_json::to_string_pretty(&settings).unwrap()).unwrap();
    save_latent(&fixtures(), &LATENT);
}

#[test]
fn sdxl_noise_fixture_is_the_engines_seeded_latent() {
    assert_committed_latent(&fixtures(), &LATENT);
}

fn check(name: &str) {
    let (_, negative) = CASES.into_iter().find(|c| c.0 == name).expect("a case");
    let settings: serde_json::Value = read_json(&fixtures().join("parity_cases.json")).unwrap();
    assert_eq!(settings["steps"].as_u64(), Some(STEPS as u64), "the committed reference was made with these settings");
    let reference = load_tensors(fixtures().join(format!("{name}.safetensors")));
    let pipe = SdPipeline::load(&model(), &crate::device(), DType::F32).expect("the diffusers folder loads");
    let item = ImageRequest { prompt: vec![PromptPart { text: PROMPT.into(), weight: 1.0 }], negative: negative.map(str::to_string), guidance: GUIDANCE, seed: SEED, init: None };

    // Rows: unconditional first, as diffusers concatenates them.
    let context = encode_prompt(&pipe, std::slice::from_ref(&item), (SIDE, SIDE)).unwrap();
    assert_close(&format!("sdxl {name} text embeddings"), context.embeddings(), &reference["prompt_embeds"], STAGE_TOL);
    assert_close(&format!("sdxl {name} pooled text"), context.pooled().expect("SDXL has pooled text"), &reference["pooled_prompt_embeds"], STAGE_TOL);

    let generate = |req: &BatchRequest| pipe.generate(req, &mut |_, _| Ok(())).expect("generation runs");
    check_image(&format!("sdxl {name}"), generate, Sampler::KEuler, SIDE, &item, STEPS, &reference["image"]);
}

#[test]
fn sdxl_with_a_negative_prompt_matches_diffusers() {
    check("negative");
}

#[test]
fn sdxl_without_a_negative_prompt_matches_diffusers() {
    check("no_negative");
}
