//! Signed `/files` URLs: tampered, re-pointed, unsigned or expired links get 403.

use std::time::Duration;

use imagegate_testkit::{TestApp, TestAppOptions};
use serde_json::{Value, json};

async fn first_url(app: &TestApp) -> String {
    let body: Value = app.post_json("/v1/images/generations", &json!({"prompt": "x", "image_size": "768x512"})).await.json().await.unwrap();
    body["images"][0]["url"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn tampered_signatures_are_403() {
    let app = TestApp::spawn().await;
    let url = first_url(&app).await;
    assert_eq!(app.client.get(&url).send().await.unwrap().status(), 200);
    let (base, sig) = url.rsplit_once("sig=").unwrap();
    let flipped = match sig.strip_prefix('0') {
        Some(rest) => format!("1{rest}"),
        None => format!("0{}", &sig[1..]),
    };
    assert_eq!(app.client.get(format!("{base}sig={flipped}")).send().await.unwrap().status(), 403);
    let longer = url.replace("exp=", "exp=9");
    assert_eq!(app.client.get(&longer).send().await.unwrap().status(), 403, "extending the expiry breaks the signature");
    let other = url.replace("-0.png", "-1.png");
    assert_eq!(app.client.get(&other).send().await.unwrap().status(), 403);
    let bare = url.split_once('?').unwrap().0;
    assert_eq!(app.client.get(bare).send().await.unwrap().status(), 403);
    let garbled = url.replace("exp=", "exp=soon");
    let resp = app.client.get(&garbled).send().await.unwrap();
    assert_eq!(resp.status(), 403, "an expiry that is not a number is a tampered link too");
    assert_eq!(resp.json::<serde_json::Value>().await.unwrap()["error"]["code"], "forbidden");
}

#[tokio::test]
async fn expired_urls_are_403() {
    let app = TestApp::spawn_with(TestAppOptions { url_ttl: Duration::from_secs(1), ..Default::default() }).await;
    let url = first_url(&app).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(app.client.get(&url).send().await.unwrap().status(), 403);
}
