//! Imagen on the Gemini API: `models/{model}:predict` with `x-goog-api-key`.

use imagegate_core::{BackendError, ModerationStage};
use serde_json::json;

use crate::doubles::google;
use crate::support::{backend, channel, config, generate, spec, with_extras};

#[tokio::test]
async fn imagen_request_matches_the_reference() {
    let d = google::start("g-key").await;
    let b = backend(&config(&[channel("gg", "google", &format!("{}/v1beta", d.base), "g-key")]));
    let mut s = spec("imagen-4.0-fast-generate-001", "A deer drinking in the lake", 1344, 768);
    s.count = 2;
    let g = generate(&b, s).await.unwrap();
    assert_eq!(g.images.len(), 2);
    assert_eq!((g.images[0].width, g.images[0].height), (64, 36));
    let reqs = d.log.all();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].uri, "/v1beta/models/imagen-4.0-fast-generate-001:predict");
    assert_eq!(reqs[0].header("x-goog-api-key"), "g-key");
    let body = reqs[0].json();
    assert_eq!(body, json!({"instances": [{"prompt": "A deer drinking in the lake"}], "parameters": {"sampleCount": 2, "aspectRatio": "16:9"}}));
}

#[tokio::test]
async fn an_explicit_aspect_ratio_wins_and_filtered_results_are_moderation() {
    let d = google::start("g-key").await;
    let b = backend(&config(&[channel("gg", "google", &format!("{}/v1beta", d.base), "g-key")]));
    let g = generate(&b, with_extras(spec("imagen-3.0-generate-002", "a cat", 1024, 1024), json!({"aspectRatio": "9:16"}))).await.unwrap();
    assert_eq!((g.images[0].width, g.images[0].height), (36, 64));
    let err = generate(&b, spec("imagen-3.0-generate-002", "forbidden", 1024, 1024)).await.unwrap_err();
    assert!(matches!(&err, BackendError::Moderated { stage: ModerationStage::Content, .. }), "{err:?}");
}

#[tokio::test]
async fn more_than_four_images_is_invalid_before_any_call() {
    let d = google::start("g-key").await;
    let b = backend(&config(&[channel("gg", "google", &format!("{}/v1beta", d.base), "g-key")]));
    let mut s = spec("imagen-4.0-generate-001", "a cat", 1024, 1024);
    s.count = 5;
    assert!(matches!(generate(&b, s).await, Err(BackendError::Invalid { .. })));
    assert!(d.log.all().is_empty());
}

#[tokio::test]
async fn a_reference_image_is_refused_not_dropped() {
    let d = google::start("g-key").await;
    let b = backend(&config(&[channel("gg", "google", &format!("{}/v1beta", d.base), "g-key")]));
    let s = with_extras(spec("imagen-4.0-generate-001", "a cat", 1024, 1024), json!({"input_image": "https://example.invalid/cat.png"}));
    assert!(matches!(generate(&b, s).await, Err(BackendError::Invalid { .. })));
    assert!(d.log.all().is_empty());
}

#[tokio::test]
async fn partly_filtered_answers_keep_the_rest_with_a_note() {
    let d = google::start("g-key").await;
    let b = backend(&config(&[channel("gg", "google", &format!("{}/v1beta", d.base), "g-key")]));
    let mut s = spec("imagen-4.0-generate-001", "partly a cat", 1024, 1024);
    s.count = 3;
    let g = generate(&b, s).await.unwrap();
    assert_eq!(g.images.len(), 2);
    assert!(g.note.as_deref().is_some_and(|n| n.contains("2 of 3")), "{:?}", g.note);
}
