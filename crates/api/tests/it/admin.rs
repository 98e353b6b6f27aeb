//! `/v1/admin/…`: accounts, credits, keys and plans over HTTP, admin keys
//! only, errors in OpenAI's shape.

use imagegate_testkit::TestApp;
use reqwest::Method;
use serde_json::{Value, json};

async fn call(app: &TestApp, method: Method, path: &str, key: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let mut req = app.client.request(method, app.url(path));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn admin_post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    call(app, Method::POST, path, Some(&app.admin_key), Some(body)).await
}

async fn admin_get(app: &TestApp, path: &str) -> (u16, Value) {
    call(app, Method::GET, path, Some(&app.admin_key), None).await
}

fn assert_invalid(status: u16, body: &Value, field: &str) {
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], field, "{body}");
    assert_eq!(body["error"]["code"], "invalid_request", "{body}");
}

#[tokio::test]
async fn admin_routes_are_401_without_a_key_and_403_for_other_keys() {
    let app = TestApp::spawn().await;
    let acct = app.state.db.create_account("user", "basic", false).await.unwrap();
    let key = app.state.db.create_key(&acct.id, "k").await.unwrap().secret.expose().to_string();
    let routes = [
        (Method::POST, "/v1/admin/accounts".to_string(), Some(json!({"name": "x", "plan": "free"}))),
        (Method::GET, "/v1/admin/accounts".to_string(), None),
        (Method::GET, format!("/v1/admin/accounts/{}", acct.id), None),
        (Method::POST, format!("/v1/admin/accounts/{}/credits", acct.id), Some(json!({"amount": 5}))),
        (Method::POST, format!("/v1/admin/accounts/{}/keys", acct.id), Some(json!({}))),
        (Method::GET, "/v1/admin/plans".to_string(), None),
    ];
    for (method, path, body) in routes {
        let (status, err) = call(&app, method.clone(), &path, None, body.clone()).await;
        assert_eq!((status, err["error"]["code"].as_str()), (401, Some("unauthorized")), "{method} {path}");
        let (status, err) = call(&app, method.clone(), &path, Some(&key), body).await;
        assert_eq!((status, err["error"]["code"].as_str()), (403, Some("forbidden")), "{method} {path}");
    }
    assert_eq!(app.state.db.list_accounts().await.unwrap().len(), 2, "nothing was created");
    assert_eq!(app.state.db.list_keys(Some(&acct.id)).await.unwrap().len(), 1);
}

#[tokio::test]
async fn creating_an_account_grants_its_plans_free_credits() {
    let app = TestApp::spawn().await;
    let (status, body) = admin_post(&app, "/v1/admin/accounts", json!({"name": "alice", "plan": "free"})).await;
    assert_eq!(status, 201, "{body}");
    assert!(body["id"].as_str().unwrap().starts_with("acct_"));
    assert_eq!((body["name"].as_str(), body["plan"].as_str()), (Some("alice"), Some("free")));
    assert_eq!(body["balance"]["available"], 100.0, "{body}");
    assert_eq!(body["balance"]["expiring_soonest"]["credits"], 100.0, "free credits expire");
    let (status, body) = admin_post(&app, "/v1/admin/accounts", json!({"name": "bob", "plan": "Senior"})).await;
    assert_eq!((status, body["plan"].as_str()), (201, Some("senior")), "{body}");
    assert_eq!(body["balance"]["available"], 0.0, "paid plans grant nothing");
    let (status, body) = admin_post(&app, "/v1/admin/accounts", json!({"name": "carol"})).await;
    assert_eq!((status, body["plan"].as_str()), (201, Some("free")), "the plan defaults to free");
}

#[tokio::test]
async fn creating_an_account_validates_its_name_and_plan() {
    let app = TestApp::spawn().await;
    let (status, body) = admin_post(&app, "/v1/admin/accounts", json!({"name": "alice", "plan": "platinum"})).await;
    assert_invalid(status, &body, "plan");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("platinum") && msg.contains("basic") && msg.contains("senior"), "lists the plans: {msg}");
    for name in [json!(""), json!("has space"), json!("acct_x"), json!(7)] {
        let (status, body) = admin_post(&app, "/v1/admin/accounts", json!({"name": name})).await;
        assert_invalid(status, &body, "name");
    }
    let (status, body) = admin_post(&app, "/v1/admin/accounts", json!({"plan": "free"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("name"), "{body}");
    let (status, body) = admin_post(&app, "/v1/admin/accounts", json!({"name": "admin"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")), "{body}");
    assert_eq!(app.state.db.list_accounts().await.unwrap().len(), 1, "only the bootstrap admin");
}

#[tokio::test]
async fn accounts_are_listed_and_shown_with_balance_and_keys_but_no_secrets() {
    let app = TestApp::spawn().await;
    let (_, alice) = admin_post(&app, "/v1/admin/accounts", json!({"name": "alice", "plan": "junior"})).await;
    let id = alice["id"].as_str().unwrap();
    let (status, key) = admin_post(&app, &format!("/v1/admin/accounts/{id}/keys"), json!({"name": "laptop"})).await;
    assert_eq!(status, 201, "{key}");
    let secret = key["key"].as_str().unwrap();
    let (status, list) = admin_get(&app, "/v1/admin/accounts").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list["data"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["admin", "alice"]);
    for path in [format!("/v1/admin/accounts/{id}"), "/v1/admin/accounts/alice".to_string()] {
        let (status, body) = admin_get(&app, &path).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!((body["id"].as_str(), body["plan"].as_str()), (Some(id), Some("junior")));
        assert_eq!(body["plan_limits"]["concurrency"], 2);
        assert_eq!(body["balance"]["available"], 0.0);
        let keys = body["keys"].as_array().unwrap();
        assert_eq!((keys.len(), keys[0]["name"].as_str()), (1, Some("laptop")));
        assert!(secret.starts_with(keys[0]["hint"].as_str().unwrap()));
        assert!(!body.to_string().contains(secret), "the secret is never shown again");
    }
    let (status, body) = admin_get(&app, "/v1/admin/accounts/nobody").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{body}");
}

#[tokio::test]
async fn granting_credits_adds_to_the_balance() {
    let app = TestApp::spawn().await;
    admin_post(&app, "/v1/admin/accounts", json!({"name": "alice", "plan": "basic"})).await;
    let (status, body) = admin_post(&app, "/v1/admin/accounts/alice/credits", json!({"amount": 12.5})).await;
    assert_eq!(status, 201, "{body}");
    assert!(body["id"].as_str().unwrap().starts_with("grant_"));
    assert_eq!((body["credits"].clone(), body["expires_at"].clone()), (json!(12.5), Value::Null));
    let (status, body) = admin_post(&app, "/v1/admin/accounts/alice/credits", json!({"amount": 5, "expires_in_days": 7, "reason": "promo"})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["account"]["balance"]["available"], 17.5);
    assert_eq!(body["account"]["balance"]["expiring_soonest"]["credits"], 5.0);
    let acct = app.state.db.find_account("alice").await.unwrap();
    let reasons: Vec<_> = app.state.db.ledger_entries(&acct.id).await.unwrap().into_iter().filter_map(|e| e.reason).collect();
    assert_eq!(reasons, vec!["granted by an admin", "promo"]);
}

#[tokio::test]
async fn granting_credits_validates_amount_expiry_and_account() {
    let app = TestApp::spawn().await;
    admin_post(&app, "/v1/admin/accounts", json!({"name": "alice", "plan": "basic"})).await;
    for (body, field) in [
        (json!({"amount": -1}), "amount"),
        (json!({"amount": 0}), "amount"),
        (json!({"amount": 0.0001}), "amount"),
        (json!({"amount": "ten"}), "amount"),
        (json!({"amount": 1e300}), "amount"),
        (json!({"amount": 5, "expires_in_days": 0}), "expires_in_days"),
        (json!({"amount": 5, "expires_in_days": -3}), "expires_in_days"),
        (json!({"amount": 5, "reason": ""}), "reason"),
    ] {
        let (status, err) = admin_post(&app, "/v1/admin/accounts/alice/credits", body.clone()).await;
        assert_invalid(status, &err, field);
    }
    let (status, err) = admin_post(&app, "/v1/admin/accounts/alice/credits", json!({"expires_in_days": 3})).await;
    assert_eq!(status, 400, "{err}");
    let (status, err) = admin_post(&app, "/v1/admin/accounts/nobody/credits", json!({"amount": 5})).await;
    assert_eq!((status, err["error"]["code"].as_str()), (404, Some("not_found")), "{err}");
    let acct = app.state.db.find_account("alice").await.unwrap();
    assert!(app.state.db.ledger_entries(&acct.id).await.unwrap().is_empty(), "nothing was granted");
}

#[tokio::test]
async fn a_new_key_is_shown_once_and_works() {
    let app = TestApp::spawn().await;
    let (_, alice) = admin_post(&app, "/v1/admin/accounts", json!({"name": "alice"})).await;
    let resp = app.client.post(app.url("/v1/admin/accounts/alice/keys")).bearer_auth(&app.admin_key).send().await.unwrap();
    assert_eq!(resp.status(), 201, "no body is fine");
    let key: Value = resp.json().await.unwrap();
    assert_eq!((key["account_id"].clone(), key["name"].as_str()), (alice["id"].clone(), Some("default")));
    let secret = key["key"].as_str().unwrap();
    assert!(secret.starts_with("sk-ig-"));
    let usage: Value = app.client.get(app.url("/v1/usage")).bearer_auth(secret).send().await.unwrap().json().await.unwrap();
    assert_eq!(usage["account"]["id"], alice["id"], "{usage}");
    let (status, err) = admin_post(&app, "/v1/admin/accounts/alice/keys", json!({"name": ""})).await;
    assert_invalid(status, &err, "name");
    let (status, err) = admin_post(&app, "/v1/admin/accounts/nobody/keys", json!({})).await;
    assert_eq!((status, err["error"]["code"].as_str()), (404, Some("not_found")), "{err}");
}

#[tokio::test]
async fn plans_are_listed_with_their_limits_and_free_credits() {
    let app = TestApp::spawn().await;
    let (status, body) = admin_get(&app, "/v1/admin/plans").await;
    assert_eq!(status, 200);
    let plans: Vec<(&str, u64, f64)> =
        body["data"].as_array().unwrap().iter().map(|p| (p["name"].as_str().unwrap(), p["concurrency"].as_u64().unwrap(), p["free_credits"].as_f64().unwrap())).collect();
    assert_eq!(plans, vec![("basic", 1, 0.0), ("free", 1, 100.0), ("intermediate", 3, 0.0), ("junior", 2, 0.0), ("senior", 5, 0.0)]);
}
