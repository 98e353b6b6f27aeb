//! The request bodies of the seed documents' curl examples, exactly as they
//! send them, for every test that must show the seeds work unchanged.

use serde_json::{Value, json};

/// Seed 000 (task publishing): `POST /session/publish`.
pub fn seed_000_body() -> Value {
    json!({
        "title": "Image generation",
        "imageCount": 3,
        "imagePath": "2025/05",
        "taskID": "nextGPU20250531145458888",
        "data": {"parameters": {"imageRatio": "16:9", "promptText": "A little boy running"}}
    })
}

/// Seed 001 (Stability v1): the path its curl example posts to.
pub const SEED_001_PATH: &str = "/sd/v1/generation/stable-diffusion-v1-6/text-to-image";

/// Seed 001 (Stability v1 text-to-image).
pub fn seed_001_body() -> Value {
    json!({
        "cfg_scale": 7,
        "height": 512,
        "width": 512,
        "sampler": "K_DPM_2_ANCESTRAL",
        "samples": 1,
        "steps": 30,
        "text_prompts": [{"text": "A lighthouse on a cliff", "weight": 1}]
    })
}

/// Seed 003 (SiliconFlow-style `POST /v1/images/generations`).
pub fn seed_003_body() -> Value {
    json!({
        "model": "FLUX.1-schnell",
        "prompt": "an island near sea, with seagulls, moon shining over the sea, light house, boats in the background, fish flying over the sea",
        "image_size": "1024x1024",
        "prompt_enhancement": true
    })
}
