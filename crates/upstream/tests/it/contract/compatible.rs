//! OpenAI-compatible gateways (another imagegate, aggregators): the spec's
//! own fields and every family extra are passed through, model names are
//! mapped, and URL answers are downloaded at once.

use imagegate_core::ImageFormat;
use serde_json::json;

use crate::doubles::openai;
use crate::support::{backend, channel, config, generate, spec, with_extras};

#[tokio::test]
async fn a_gateway_gets_extras_and_mapped_names_and_urls_are_fetched() {
    let d = openai::start("sk-ig-gateway", true).await;
    let mut ch = channel("gw", "openai-compatible", &format!("{}/v1", d.base), "sk-ig-gateway");
    ch.push_str("models = [\"FLUX.1-Kontext-pro\"]\nmodel_map = { \"FLUX.1-Kontext-pro\" = \"flux-kontext-pro\" }\n");
    let b = backend(&config(&[ch]));
    let mut s = with_extras(spec("flux-kontext-pro", "a cat in the garden, cute cartoon", 1024, 1024), json!({"safety_tolerance": 6}));
    s.negative_prompt = Some("blurry".into());
    let g = generate(&b, s).await.unwrap();
    assert_eq!(g.images.len(), 1);
    assert_eq!((g.images[0].format, g.images[0].width, g.images[0].height), (ImageFormat::Png, 64, 48));
    assert_eq!(g.served_by, "channel:gw");
    let body = d.log.to("/v1/images/generations")[0].json();
    assert_eq!(body["model"], "flux-kontext-pro");
    assert_eq!(body["safety_tolerance"], 6);
    assert_eq!(body["negative_prompt"], "blurry");
    assert_eq!(body["seed"], 42);
    assert_eq!(body["response_format"], "b64_json");
}
