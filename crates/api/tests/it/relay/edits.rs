//! `POST /v1/images/edits` through the relay: the mask reaches OpenAI's
//! images/edits as OpenAI reads it; a channel that cannot send a mask is
//! not called, the client gets a 400 naming `mask`, and nothing is charged.

use imagegate_store::now_ms;
use imagegate_testkit::doubles::openai;
use imagegate_testkit::uploads::{left_half_mask, picture};
use serde_json::Value;

use super::harness::{Channels, app, metered_key};

#[tokio::test]
async fn an_edits_mask_reaches_openai_and_the_result_is_served_from_our_url() {
    let double = openai::start("oa-key", false).await;
    let mut channels = Channels::new();
    channels.add("oa", "openai", &format!("{}/v1", double.base), "oa-key", "");
    let app = app(channels.relay(""), false).await;
    let (image, mask) = (picture(64, 64), left_half_mask(64, 64));
    let resp = app.post_edit(&app.admin_key, &[("prompt", "a red door"), ("model", "gpt-image-1")], &[("image", &image), ("mask", &mask)]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-imagegate-served-by"], "channel:oa");
    let body: Value = resp.json().await.unwrap();
    super::harness::assert_rehosted(&app, body["data"][0]["url"].as_str().unwrap(), "edit").await;
    let sent = double.log.to("/v1/images/edits");
    assert_eq!(sent.len(), 1);
    let form = sent[0].form();
    assert!(form["image"].contains("PNG") && form["mask"].contains("PNG"), "both files were uploaded");
}

#[tokio::test]
async fn a_channel_that_cannot_send_the_mask_is_not_called_and_nothing_is_charged() {
    let gateway = openai::start("sk-ig-gw", true).await;
    let mut channels = Channels::new();
    channels.add("gw", "openai-compatible", &format!("{}/v1", gateway.base), "sk-ig-gw", "models = [\"FLUX.1-schnell\"]");
    let app = app(channels.relay(""), false).await;
    let (account, key) = metered_key(&app, "editor", 1_000_000).await;
    let (image, mask) = (picture(512, 512), left_half_mask(512, 512));
    let resp = app.post_edit(&key, &[("prompt", "a red door"), ("model", "FLUX.1-schnell")], &[("image", &image), ("mask", &mask)]).await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["param"], "mask", "{err}");
    assert!(err["error"]["task_id"].is_string(), "{err}");
    assert!(gateway.log.all().is_empty());
    let balance = app.state.db.balance(&account, now_ms()).await.unwrap();
    assert_eq!((balance.available, balance.held), (1_000_000, 0));
}
