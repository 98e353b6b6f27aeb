//! `GET /v1/usage`: tasks, images and credits per day, model and key, for
//! the caller's account (any account for admin keys).

use imagegate_store::{Day, now_ms};
use imagegate_testkit::TestApp;
use serde_json::{Value, json};

/// A metered account with 100 credits and two keys: (account id, key 1, key 2).
async fn account_with_two_keys(app: &TestApp, name: &str) -> (String, String, String) {
    let db = &app.state.db;
    let acct = db.create_account(name, "basic", false).await.unwrap();
    db.grant_credits(&acct.id, 100_000, None, "test").await.unwrap();
    let k1 = db.create_key(&acct.id, "k1").await.unwrap().secret.expose().to_string();
    let k2 = db.create_key(&acct.id, "k2").await.unwrap().secret.expose().to_string();
    (acct.id, k1, k2)
}

async fn generate(app: &TestApp, key: &str) {
    let body = json!({"model": "FLUX.1-dev", "prompt": "a lighthouse", "image_size": "1024x1024", "num_inference_steps": 20});
    let resp = app.client.post(app.url("/v1/images/generations")).bearer_auth(key).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

async fn usage(app: &TestApp, key: &str, query: &str) -> (u16, Value) {
    let resp = app.client.get(app.url(&format!("/v1/usage{query}"))).bearer_auth(key).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn usage_reports_tasks_images_and_credits_by_day_model_and_key() {
    let app = TestApp::spawn().await;
    let (acct, k1, k2) = account_with_two_keys(&app, "payer").await;
    generate(&app, &k1).await;
    generate(&app, &k1).await;
    generate(&app, &k2).await;
    let (status, body) = usage(&app, &k2, "").await;
    assert_eq!(status, 200, "{body}");
    let today = Day::of_ms(now_ms()).to_string();
    assert_eq!(body["account"]["id"], acct.as_str());
    assert_eq!(body["to"], today.as_str());
    assert_eq!((body["total_tasks"].clone(), body["total_images"].clone(), body["total_credits"].clone()), (json!(3), json!(3), json!(33.0)), "{body}");
    let rows = body["by_day"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "one row per key: {body}");
    for r in rows {
        assert_eq!((r["date"].as_str(), r["model"].as_str()), (Some(today.as_str()), Some("FLUX.1-dev")));
        assert!(r["key_id"].as_str().unwrap().starts_with("key_"));
    }
    let mut per_key: Vec<(i64, f64)> = rows.iter().map(|r| (r["tasks"].as_i64().unwrap(), r["credits"].as_f64().unwrap())).collect();
    per_key.sort_by_key(|k| k.0);
    assert_eq!(per_key, vec![(1, 11.0), (2, 22.0)]);
    assert_eq!(body["by_key"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn usage_outside_the_requested_days_is_empty() {
    let app = TestApp::spawn().await;
    let (_, k1, _) = account_with_two_keys(&app, "payer").await;
    generate(&app, &k1).await;
    let (status, body) = usage(&app, &k1, "?from=2020-01-01&to=2020-01-31").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["from"].as_str(), body["to"].as_str()), (Some("2020-01-01"), Some("2020-01-31")));
    assert_eq!(body["total_credits"], 0.0);
    assert_eq!(body["by_day"], json!([]));
}

#[tokio::test]
async fn usage_without_a_key_is_401() {
    let app = TestApp::spawn().await;
    let resp = app.client.get(app.url("/v1/usage")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["code"], "unauthorized");
}

#[tokio::test]
async fn malformed_usage_dates_are_400_naming_the_field() {
    let app = TestApp::spawn().await;
    let (_, key, _) = account_with_two_keys(&app, "payer").await;
    for (query, field) in [("?from=2026-13-01", "from"), ("?to=yesterday", "to"), ("?from=2026-11-24&to=2026-11-23", "from"), ("?to=2026-02-30", "to")] {
        let (status, body) = usage(&app, &key, query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["param"], field, "{query}: {body}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
}

#[tokio::test]
async fn only_admins_see_another_accounts_usage() {
    let app = TestApp::spawn().await;
    let (a, ka, _) = account_with_two_keys(&app, "alice").await;
    let (b, kb, _) = account_with_two_keys(&app, "bob").await;
    generate(&app, &kb).await;
    let (status, body) = usage(&app, &ka, "?account=bob").await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "{body}");
    let (status, _) = usage(&app, &ka, &format!("?account={b}")).await;
    assert_eq!(status, 403);
    let (status, _) = usage(&app, &ka, "?account=nobody").await;
    assert_eq!(status, 403, "non-admins do not learn which accounts exist");
    let (status, body) = usage(&app, &ka, "?account=alice").await;
    assert_eq!((status, body["account"]["id"].as_str()), (200, Some(a.as_str())), "one's own account by name is fine");
    let (status, body) = usage(&app, &app.admin_key, "?account=bob").await;
    assert_eq!((status, body["account"]["id"].as_str()), (200, Some(b.as_str())));
    assert_eq!(body["total_credits"], 11.0);
    let (status, body) = usage(&app, &app.admin_key, "?account=nobody").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{body}");
}
