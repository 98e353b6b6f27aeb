//! `/openapi.json` covers every route and matches the committed snapshot
//! (`UPDATE_SNAPSHOTS=1 cargo test -p imagegate-api openapi` rewrites it);
//! `/docs` renders it without any external asset.

use imagegate_testkit::TestApp;
use serde_json::Value;

const SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/snapshots/openapi.json");

#[tokio::test]
async fn openapi_document_lists_every_route_and_matches_the_snapshot() {
    let app = TestApp::spawn().await;
    let resp = app.client.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let doc: Value = resp.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/healthz",
        "/readyz",
        "/files/{key}",
        "/v1/images/generations",
        "/v1/models",
        "/v1/tasks/{id}",
        "/v1/generation/{engine_id}/text-to-image",
        "/sd/v1/generation/{engine_id}/text-to-image",
        "/v1/engines/list",
        "/sd/v1/engines/list",
        "/v1/user/account",
        "/sd/v1/user/account",
        "/v1/models/{model_path}/predictions",
        "/session/publish",
        "/session/{task_id}",
        "/v1/get_result",
        "/v1/flux-pro-1.1",
        "/v1/flux-pro-1.1-ultra",
        "/v1/flux-pro",
        "/v1/flux-kontext-pro",
        "/v1/flux-kontext-max",
        "/v1/flux-dev",
        "/v1/user/balance",
        "/sd/v1/user/balance",
        "/v1/usage",
        "/v1/admin/accounts",
        "/v1/admin/accounts/{id}",
        "/v1/admin/accounts/{id}/credits",
        "/v1/admin/accounts/{id}/keys",
        "/v1/admin/plans",
    ] {
        assert!(paths.contains_key(p), "{p} missing from /openapi.json");
    }
    let pretty = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(SNAPSHOT, &pretty).unwrap();
    }
    let stored = std::fs::read_to_string(SNAPSHOT).expect("snapshot exists; run with UPDATE_SNAPSHOTS=1 to create it");
    assert_eq!(pretty, stored, "OpenAPI document changed; review and rerun with UPDATE_SNAPSHOTS=1");
}

#[tokio::test]
async fn docs_page_loads_the_spec_without_external_assets() {
    let app = TestApp::spawn().await;
    let html = app.client.get(app.url("/docs")).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("/openapi.json"));
    assert!(!html.contains("http://") && !html.contains("https://"), "docs page must work offline");
}

#[tokio::test]
async fn an_unknown_route_is_a_json_404_that_points_at_the_route_list() {
    let app = TestApp::spawn().await;
    let resp = app.client.post(app.url("/v1/images/edit")).bearer_auth(&app.admin_key).json(&serde_json::json!({"prompt": "x"})).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert!(resp.headers().contains_key("x-request-id"));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(body["error"]["message"], "no route for POST /v1/images/edit; the routes are listed at /openapi.json");
}
