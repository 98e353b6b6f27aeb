//! Stability: SD 3.5 through v2beta (multipart) and SDXL through v1 (JSON).

use imagegate_core::{BackendError, ModerationStage};
use serde_json::json;

use crate::doubles::stability;
use crate::support::{backend, channel, config, generate, spec};

#[tokio::test]
async fn sd35_goes_to_v2beta_as_a_multipart_form() {
    let d = stability::start("st-key").await;
    let b = backend(&config(&[channel("st", "stability", &d.base, "st-key")]));
    let mut s = spec("stable-diffusion-3-5-large", "A deer drinking in the lake", 1344, 768);
    s.negative_prompt = Some("blurry".into());
    s.count = 2;
    let g = generate(&b, s).await.unwrap();
    assert_eq!(g.images.len(), 2);
    assert_eq!((g.images[0].seed, g.images[1].seed), (42, 43));
    let reqs = d.log.to("/v2beta/stable-image/generate/sd3");
    assert_eq!(reqs.len(), 2, "v2beta makes one image per request");
    assert_eq!(reqs[0].header("authorization"), "Bearer st-key");
    assert_eq!(reqs[0].header("accept"), "application/json");
    let f = reqs[0].form();
    assert_eq!(f["prompt"], "A deer drinking in the lake");
    assert_eq!(f["model"], "sd3.5-large");
    assert_eq!(f["aspect_ratio"], "16:9");
    assert_eq!(f["negative_prompt"], "blurry");
    assert_eq!(f["seed"], "42");
    assert_eq!(f["output_format"], "png");
    assert_eq!(f["mode"], "text-to-image");
}

#[tokio::test]
async fn sdxl_goes_to_v1_with_weighted_text_prompts() {
    let d = stability::start("st-key").await;
    let b = backend(&config(&[channel("st", "stability", &d.base, "st-key")]));
    let mut s = spec("stable-diffusion-xl-1024-v1-0", "a lighthouse", 1152, 896);
    s.negative_prompt = Some("fog".into());
    s.count = 2;
    s.steps = 30;
    let g = generate(&b, s).await.unwrap();
    assert_eq!(g.images.len(), 2);
    assert_eq!((g.images[0].width, g.images[0].height), (72, 56));
    let reqs = d.log.to("/v1/generation/stable-diffusion-xl-1024-v1-0/text-to-image");
    assert_eq!(reqs.len(), 1);
    let body = reqs[0].json();
    assert_eq!(body["text_prompts"], json!([{"text": "a lighthouse", "weight": 1.0}, {"text": "fog", "weight": -1.0}]));
    assert_eq!((body["width"].as_u64(), body["height"].as_u64(), body["samples"].as_u64(), body["steps"].as_u64()), (Some(1152), Some(896), Some(2), Some(30)));
    assert_eq!(body["cfg_scale"], 7.0);
}

#[tokio::test]
async fn content_filtered_is_moderation() {
    let d = stability::start("st-key").await;
    let b = backend(&config(&[channel("st", "stability", &d.base, "st-key")]));
    let err = generate(&b, spec("stable-diffusion-3-5-large", "forbidden", 1024, 1024)).await.unwrap_err();
    assert!(matches!(&err, BackendError::Moderated { stage: ModerationStage::Content, message, .. } if message.contains("CONTENT_FILTERED")), "{err:?}");
}

#[tokio::test]
async fn sd35_image_to_image_uploads_the_init_image_with_strength() {
    let d = stability::start("st-key").await;
    let b = backend(&config(&[channel("st", "stability", &d.base, "st-key")]));
    let mut s = spec("stable-diffusion-3-5-large", "a watercolour", 1024, 1024);
    s.init_image = Some(imagegate_core::InitImage { source: crate::support::b64(&crate::support::png(8, 8)), strength: 0.35, mask: None });
    generate(&b, s).await.unwrap();
    let f = d.log.to("/v2beta/stable-image/generate/sd3")[0].form();
    assert_eq!((f["mode"].as_str(), f["strength"].as_str()), ("image-to-image", "0.35"));
    assert!(f["image"].contains("PNG"));
    assert!(!f.contains_key("aspect_ratio"));
}
