//! FLUX.1 parity with the reference implementation (diffusers'
//! `FluxPipeline`), schnell and dev.
//!
//! [`write_flux_fixtures`] writes two tiny random-weight FLUX pipelines in the
//! diffusers layout with the engine's own fixture writer (a diffusers
//! `FluxTransformer2DModel` with split q/k/v, which the engine maps onto
//! candle's BFL-layout model; a 16-channel `AutoencoderKL`; CLIP and T5 text
//! encoders) and the engine's seeded initial latent. Then
//! `tools/parity/make_flux_fixtures.py` loads each folder with
//! `FluxPipeline.from_pretrained`, runs it from that latent and commits
//! diffusers' text embeddings and decoded image. Here the engine runs the
//! same folders through its real loader; the metric is the one of
//! `parity.rs`: `max |engine - diffusers| / max |diffusers|`.

use std::path::PathBuf;

use candle_core::DType;
use imagegate_core::{PromptPart, Sampler};
use imagegate_engine::fixtures::{FluxVariant, TinyFlux, write_tiny_flux};
use imagegate_engine::models::configs::read_json;
use imagegate_engine::pipelines::flux::{FluxPipeline, encode_prompt};
use imagegate_engine::pipelines::{BatchRequest, ImageRequest};

use crate::parity::{assert_close, assert_committed_latent, check_image, load_tensors, save_latent};

/// The seed of every image; `noise.safetensors` holds its initial latent.
const SEED: u64 = 1234;
const SIDE: usize = 64;
/// `[16, 8, 8]`: 16 latent channels at 1/8 of 64 px.
const LATENT: [usize; 3] = [16, SIDE / 8, SIDE / 8];
/// Text embeddings agree far tighter.
const STAGE_TOL: f64 = 1e-4;
const PROMPT: &str = "a photo of a red cat in the sky";

/// The fixture pipelines: folder, variant, weight seed, steps, guidance.
const CASES: [(&str, FluxVariant, u64, usize, f32); 2] = [("tiny-flux-schnell", FluxVariant::Schnell, 31, 4, 0.0), ("tiny-flux-dev", FluxVariant::Dev, 32, 6, 3.5)];

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity-flux")
}

/// Writes the folders and `noise.safetensors` for `tools/parity/make_flux_fixtures.py`.
#[test]
#[ignore = "writes the FLUX parity fixtures; run before tools/parity/make_flux_fixtures.py (docs/parity.md)"]
fn write_flux_fixtures() {
    for (name, variant, seed, steps, guidance) in CASES {
        let dir = fixtures().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        write_tiny_flux(&dir, &TinyFlux { variant, seed, ..TinyFlux::default() }).unwrap();
        let settings = serde_json::json!({"prompt": PROMPT, "seed": SEED, "width": SIDE, "height": SIDE, "steps": steps, "guidance": guidance});
        std::fs::write(dir.join("parity_case.json"), settings.to_string()).unwrap();
    }
    save_latent(&fixtures(), &LATENT);
}

#[test]
fn flux_noise_fixture_is_the_engines_seeded_latent() {
    assert_committed_latent(&fixtures(), &LATENT);
}

fn check(name: &str) {
    let (_, _, _, steps, guidance) = CASES.into_iter().find(|c| c.0 == name).expect("a case");
    let folder = fixtures().join(name);
    let reference = load_tensors(folder.join("reference.safetensors"));
    let case: serde_json::Value = read_json(&folder.join("parity_case.json")).unwrap();
    assert_eq!(case["steps"].as_u64(), Some(steps as u64), "the committed reference was made with these settings");
    let pipe = FluxPipeline::load(&folder, &crate::device(), DType::F32).expect("the diffusers folder loads");
    let item = ImageRequest { prompt: vec![PromptPart { text: PROMPT.into(), weight: 1.0 }], negative: None, guidance, seed: SEED, init: None };

    let context = encode_prompt(&pipe, std::slice::from_ref(&item)).unwrap();
    assert_close(&format!("{name} T5 states"), context.txt(), &reference["prompt_embeds"], STAGE_TOL);
    assert_close(&format!("{name} CLIP pooled"), context.pooled(), &reference["pooled_prompt_embeds"], STAGE_TOL);

    let generate = |req: &BatchRequest| pipe.generate(req, &mut |_, _| Ok(())).expect("generation runs");
    check_image(name, generate, Sampler::FlowEuler, SIDE, &item, steps, &reference["image"]);
}

#[test]
fn flux_schnell_end_to_end_matches_diffusers() {
    check("tiny-flux-schnell");
}

#[test]
fn flux_dev_end_to_end_matches_diffusers() {
    check("tiny-flux-dev");
}
