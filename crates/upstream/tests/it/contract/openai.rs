//! OpenAI Images: gpt-image-1 and dall-e-3 requests as the reference
//! documents them; moderation is final.

use imagegate_core::{BackendError, ImageFormat};
use serde_json::json;

use crate::doubles::openai;
use crate::support::{backend, channel, config, generate, spec, with_extras};

#[tokio::test]
async fn gpt_image_request_matches_the_reference() {
    let d = openai::start("sk-test", false).await;
    let b = backend(&config(&[channel("oa", "openai", &format!("{}/v1", d.base), "sk-test")]));
    let mut s = with_extras(spec("gpt-image-1", "A deer drinking in the lake", 1024, 1024), json!({"quality": "high", "moderation": "low", "background": "auto"}));
    s.count = 2;
    let g = generate(&b, s).await.unwrap();
    assert_eq!(g.images.len(), 2);
    assert_eq!((g.images[0].format, g.images[0].width, g.images[0].height), (ImageFormat::Png, 64, 64));
    assert_eq!(g.served_by, "channel:oa");
    assert_eq!(g.provider_request_id.as_deref(), Some("req_abc123"));
    let reqs = d.log.to("/v1/images/generations");
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].header("authorization"), "Bearer sk-test");
    let body = reqs[0].json();
    assert_eq!(body["model"], "gpt-image-1");
    assert_eq!(body["prompt"], "A deer drinking in the lake");
    assert_eq!(body["n"], 2);
    assert_eq!(body["size"], "1024x1024");
    assert_eq!((body["quality"].as_str(), body["moderation"].as_str(), body["background"].as_str()), (Some("high"), Some("low"), Some("auto")));
    assert_eq!(body["output_format"], "png");
    assert!(body.get("response_format").is_none(), "gpt-image refuses response_format");
}

#[tokio::test]
async fn dall_e_3_makes_one_request_per_image() {
    let d = openai::start("sk-test", false).await;
    let b = backend(&config(&[channel("oa", "openai", &format!("{}/v1", d.base), "sk-test")]));
    let mut s = spec("dall-e-3", "a lighthouse", 1792, 1024);
    s.count = 2;
    let g = generate(&b, s).await.unwrap();
    assert_eq!(g.images.len(), 2);
    assert_eq!((g.images[1].width, g.images[1].height), (112, 64));
    let reqs = d.log.to("/v1/images/generations");
    assert_eq!(reqs.len(), 2);
    for r in reqs {
        let body = r.json();
        assert_eq!((body["n"].as_u64(), body["response_format"].as_str()), (Some(1), Some("b64_json")));
    }
}

#[tokio::test]
async fn moderation_is_final_and_never_failed_over() {
    let a = openai::start("ka", false).await;
    let bdouble = openai::start("kb", false).await;
    let mut a_cfg = channel("a", "openai", &format!("{}/v1", a.base), "ka");
    a_cfg.push_str("priority = 10\n");
    let b = backend(&config(&[a_cfg, channel("b", "openai", &format!("{}/v1", bdouble.base), "kb")]));
    let err = generate(&b, spec("gpt-image-1", "something forbidden", 1024, 1024)).await.unwrap_err();
    assert!(matches!(&err, BackendError::Moderated { message, .. } if message.contains("safety system")), "{err:?}");
    assert!(bdouble.log.all().is_empty(), "no failover after a moderation refusal");
}

#[tokio::test]
async fn a_rejected_key_fails_over_to_the_next_channel() {
    let a = openai::start("right-key", false).await;
    let good = openai::start("kb", false).await;
    let mut a_cfg = channel("a", "openai", &format!("{}/v1", a.base), "wrong-key");
    a_cfg.push_str("priority = 10\n");
    let b = backend(&config(&[a_cfg, channel("b", "openai", &format!("{}/v1", good.base), "kb")]));
    let g = generate(&b, spec("gpt-image-1", "a cat", 1024, 1024)).await.unwrap();
    assert_eq!(g.served_by, "channel:b");
    assert_eq!(a.log.all().len(), 1);
}

#[tokio::test]
async fn sizes_the_provider_refuses_are_final_4xx() {
    let d = openai::start("k", false).await;
    let b = backend(&config(&[channel("oa", "openai", &format!("{}/v1", d.base), "k")]));
    let err = generate(&b, spec("gpt-image-1", "a cat", 512, 512)).await.unwrap_err();
    assert!(matches!(&err, BackendError::Upstream { retryable: false, message, .. } if message.contains("512x512")), "{err:?}");
}

#[tokio::test]
async fn an_inline_reference_goes_to_images_edits_as_an_upload() {
    let d = openai::start("sk-test", false).await;
    let b = backend(&config(&[channel("oa", "openai", &format!("{}/v1", d.base), "sk-test")]));
    let mut s = with_extras(spec("gpt-image-1", "make it snow", 1024, 1024), json!({"quality": "low"}));
    s.init_image = Some(imagegate_core::InitImage { source: format!("data:image/png;base64,{}", crate::support::b64(&crate::support::png(8, 8))), strength: 0.6, mask: None });
    let g = generate(&b, s).await.unwrap();
    assert_eq!((g.images[0].width, g.provider_request_id.as_deref()), (32, Some("req_edit")));
    let reqs = d.log.to("/v1/images/edits");
    assert_eq!(reqs.len(), 1);
    let f = reqs[0].form();
    assert_eq!((f["model"].as_str(), f["prompt"].as_str(), f["n"].as_str(), f["size"].as_str(), f["quality"].as_str()), ("gpt-image-1", "make it snow", "1", "1024x1024", "low"));
    assert!(f["image"].contains("PNG"));
    assert!(d.log.to("/v1/images/generations").is_empty());
}

/// The raw bytes of the form part called `name` (the doubles' form parser reads text).
fn part_bytes(req: &crate::doubles::support::Recorded, name: &str) -> Vec<u8> {
    let boundary = req.header("content-type").split("boundary=").nth(1).unwrap().trim_matches('"').to_string();
    let find = |hay: &[u8], needle: &[u8], from: usize| hay[from..].windows(needle.len()).position(|w| w == needle).map(|i| i + from);
    let head = find(&req.body, format!("name=\"{name}\"").as_bytes(), 0).unwrap();
    let start = find(&req.body, b"\r\n\r\n", head).unwrap() + 4;
    let end = find(&req.body, format!("\r\n--{boundary}").as_bytes(), start).unwrap();
    req.body[start..end].to_vec()
}

#[tokio::test]
async fn a_mask_goes_to_images_edits_transparent_where_to_repaint() {
    let d = openai::start("sk-test", false).await;
    let b = backend(&config(&[channel("oa", "openai", &format!("{}/v1", d.base), "sk-test")]));
    let mut s = spec("gpt-image-1", "a red door", 1024, 1024);
    // Ours: white (the left half) is repainted.
    let grey = image::GrayImage::from_fn(8, 8, |x, _| image::Luma([if x < 4 { 255 } else { 0 }]));
    let mut mask = Vec::new();
    grey.write_to(&mut std::io::Cursor::new(&mut mask), image::ImageFormat::Png).unwrap();
    let uri = |bytes: &[u8]| format!("data:image/png;base64,{}", crate::support::b64(bytes));
    s.init_image = Some(imagegate_core::InitImage { source: uri(&crate::support::png(8, 8)), strength: 1.0, mask: Some(uri(&mask)) });
    generate(&b, s).await.unwrap();
    let reqs = d.log.to("/v1/images/edits");
    let sent = image::load_from_memory(&part_bytes(&reqs[0], "mask")).unwrap().to_rgba8();
    assert_eq!((sent.dimensions(), sent.get_pixel(1, 1)[3], sent.get_pixel(6, 1)[3]), ((8, 8), 0, 255), "OpenAI's: transparent where to repaint");
}

#[tokio::test]
async fn a_masked_task_passes_over_a_channel_that_cannot_send_the_mask() {
    let gateway = openai::start("sk-gw", false).await;
    let b = backend(&config(&[channel("gw", "openai-compatible", &format!("{}/v1", gateway.base), "sk-gw") + "models = [\"gpt-image-1\"]\n"]));
    let mut s = spec("gpt-image-1", "a red door", 1024, 1024);
    let png = format!("data:image/png;base64,{}", crate::support::b64(&crate::support::png(8, 8)));
    s.init_image = Some(imagegate_core::InitImage { source: png.clone(), strength: 1.0, mask: Some(png) });
    match generate(&b, s).await {
        Err(BackendError::Invalid { field, .. }) => assert_eq!(field, "mask"),
        other => panic!("expected a refusal naming the mask, got {other:?}"),
    }
    assert!(gateway.log.all().is_empty(), "nothing was sent that would repaint the whole image");
}

#[tokio::test]
async fn a_reference_url_is_not_fetched_by_the_relay() {
    let d = openai::start("sk-test", false).await;
    let b = backend(&config(&[channel("oa", "openai", &format!("{}/v1", d.base), "sk-test")]));
    let s = with_extras(spec("gpt-image-1", "make it snow", 1024, 1024), json!({"image": "http://169.254.169.254/latest/meta-data"}));
    assert!(matches!(generate(&b, s).await, Err(BackendError::Invalid { .. })));
    assert!(d.log.all().is_empty());
}
