//! Ideogram 3.0: the seed's `rendering_speed` and `2x1` aspect ratio reach the form.

use imagegate_core::{BackendError, ModerationStage};
use serde_json::json;

use crate::doubles::ideogram;
use crate::support::{backend, channel, config, generate, spec, with_extras};

#[tokio::test]
async fn v3_request_matches_the_reference_and_urls_are_fetched() {
    let d = ideogram::start("ideo-key").await;
    let b = backend(&config(&[channel("ideo", "ideogram", &d.base, "ideo-key")]));
    let s = with_extras(spec("V3", "A deer drinking in the lake, in the style of Pixar 3D", 1024, 1024), json!({"rendering_speed": "QUALITY", "aspect_ratio": "2x1"}));
    let g = generate(&b, s).await.unwrap();
    assert_eq!(g.images.len(), 1);
    assert_eq!(g.images[0].seed, 42);
    let reqs = d.log.to("/v1/ideogram-v3/generate");
    assert_eq!(reqs[0].header("api-key"), "ideo-key");
    let f = reqs[0].form();
    assert_eq!(f["prompt"], "A deer drinking in the lake, in the style of Pixar 3D");
    assert_eq!((f["rendering_speed"].as_str(), f["aspect_ratio"].as_str(), f["num_images"].as_str()), ("QUALITY", "2x1", "1"));
    assert_eq!((g.images[0].width, g.images[0].height), (64, 48), "the result URL was downloaded");
}

#[tokio::test]
async fn colon_ratios_are_rewritten_and_sizes_snap() {
    let d = ideogram::start("k").await;
    let b = backend(&config(&[channel("ideo", "ideogram", &d.base, "k")]));
    generate(&b, with_extras(spec("V3", "a", 1024, 1024), json!({"aspect_ratio": "16:9"}))).await.unwrap();
    generate(&b, spec("V3", "b", 768, 1344)).await.unwrap();
    let reqs = d.log.to("/v1/ideogram-v3/generate");
    assert_eq!(reqs[0].form()["aspect_ratio"], "16x9");
    assert_eq!(reqs[1].form()["aspect_ratio"], "9x16");
}

#[tokio::test]
async fn unsafe_images_are_moderation() {
    let d = ideogram::start("k").await;
    let b = backend(&config(&[channel("ideo", "ideogram", &d.base, "k")]));
    let err = generate(&b, spec("V3", "unsafe", 1024, 1024)).await.unwrap_err();
    assert!(matches!(err, BackendError::Moderated { stage: ModerationStage::Content, .. }), "{err:?}");
}
