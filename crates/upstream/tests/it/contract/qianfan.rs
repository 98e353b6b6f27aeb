//! Baidu Qianfan iRAG: the seed's example body on `/v2/images/generations`,
//! and the edit model's required image.

use imagegate_core::{BackendError, ImageFormat};
use serde_json::json;

use crate::doubles::qianfan;
use crate::support::{backend, channel, config, generate, spec, with_extras};

#[tokio::test]
async fn irag_request_matches_the_reference() {
    let d = qianfan::start("qf-key").await;
    let b = backend(&config(&[channel("qf", "qianfan", &format!("{}/v2", d.base), "qf-key")]));
    let s = with_extras(spec("irag-1.0", "A beautiful sunset over a calm ocean", 1024, 1024), json!({"refer_image": "", "n": 1, "guidance": 7.5, "watermark": false}));
    let g = generate(&b, s).await.unwrap();
    assert_eq!(g.images.len(), 1);
    assert_eq!(g.images[0].format, ImageFormat::Jpeg);
    assert_eq!(g.provider_request_id.as_deref(), Some("as-irag-1"));
    let reqs = d.log.to("/v2/images/generations");
    assert_eq!(reqs[0].header("authorization"), "Bearer qf-key");
    assert_eq!(reqs[0].json(), json!({"model": "irag-1.0", "prompt": "A beautiful sunset over a calm ocean", "n": 1, "size": "1024x1024", "guidance": 7.5, "watermark": false}));
}

#[tokio::test]
async fn the_edit_model_needs_an_image_and_uses_the_edits_endpoint() {
    let d = qianfan::start("qf-key").await;
    let b = backend(&config(&[channel("qf", "qianfan", &format!("{}/v2", d.base), "qf-key")]));
    let err = generate(&b, spec("ernie-irag-edit", "make it night", 1024, 1024)).await.unwrap_err();
    assert!(matches!(err, BackendError::Invalid { .. }), "{err:?}");
    assert!(d.log.all().is_empty());
    let s = with_extras(spec("ernie-irag-edit", "make it night", 1024, 1024), json!({"refer_image": "https://example.invalid/a.png", "feature": "variation"}));
    generate(&b, s).await.unwrap();
    let body = d.log.to("/v2/images/edits")[0].json();
    assert_eq!((body["image"].as_str(), body["feature"].as_str()), (Some("https://example.invalid/a.png"), Some("variation")));
}
