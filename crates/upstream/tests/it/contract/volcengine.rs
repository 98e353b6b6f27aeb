//! Volcengine Ark (Seedream 4.0): the seed's example body, URL answers downloaded.

use imagegate_core::{BackendError, ImageFormat};
use serde_json::json;

use crate::doubles::volcengine;
use crate::support::{backend, channel, config, generate, spec, with_extras};

#[tokio::test]
async fn seedream_request_matches_the_reference() {
    let d = volcengine::start("ark-key").await;
    let b = backend(&config(&[channel("ark", "volcengine", &format!("{}/api/v3", d.base), "ark-key")]));
    let extras = json!({"size": "2K", "sequential_image_generation": "disabled", "stream": false, "response_format": "url", "watermark": true});
    let g = generate(&b, with_extras(spec("doubao-seedream-4-0-250828", "星际穿越，黑洞", 2048, 2048), extras)).await.unwrap();
    assert_eq!(g.images.len(), 1);
    assert_eq!(g.images[0].format, ImageFormat::Jpeg);
    let reqs = d.log.to("/api/v3/images/generations");
    assert_eq!(reqs[0].header("authorization"), "Bearer ark-key");
    let body = reqs[0].json();
    assert_eq!(
        body,
        json!({"model": "doubao-seedream-4-0-250828", "prompt": "星际穿越，黑洞", "size": "2K", "sequential_image_generation": "disabled", "stream": false, "response_format": "url", "watermark": true})
    );
    assert_eq!((g.images[0].width, g.images[0].height), (64, 48), "the result URL was downloaded");
}

#[tokio::test]
async fn several_images_are_several_requests_and_bad_keys_are_auth_errors() {
    let d = volcengine::start("ark-key").await;
    let b = backend(&config(&[channel("ark", "volcengine", &format!("{}/api/v3", d.base), "ark-key")]));
    let mut s = spec("doubao-seedream-4-0-250828", "a cat", 2048, 2048);
    s.count = 2;
    assert_eq!(generate(&b, s).await.unwrap().images.len(), 2);
    assert_eq!(d.log.to("/api/v3/images/generations")[0].json()["size"], "2048x2048");
    let wrong = backend(&config(&[channel("ark", "volcengine", &format!("{}/api/v3", d.base), "nope")]));
    let err = generate(&wrong, spec("doubao-seedream-4-0-250828", "a cat", 2048, 2048)).await.unwrap_err();
    assert!(matches!(&err, BackendError::Upstream { retryable: true, message, .. } if message.contains("401")), "{err:?}");
}
