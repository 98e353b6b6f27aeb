//! `/healthz` and `/readyz`.

use imagegate_testkit::TestApp;

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = TestApp::spawn().await;
    let h = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(h.status(), 200);
    assert!(h.headers().contains_key("x-request-id"));
    assert_eq!(app.client.get(app.url("/readyz")).send().await.unwrap().status(), 200);
}
