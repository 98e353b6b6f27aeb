//! Garbage in, a 4xx out: every generation route answers bodies that are
//! not what it reads (empty, broken or deeply nested JSON, the wrong JSON
//! type, bytes that are not text, a multipart body with a wrong boundary)
//! with a 4xx in its dialect's JSON, never a 5xx or a plain-text rejection.

use imagegate_testkit::TestApp;

const ROUTES: [&str; 9] = [
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/generation/stable-diffusion-v1-6/text-to-image",
    "/v1/generation/stable-diffusion-v1-6/image-to-image",
    "/sd/v1/generation/stable-diffusion-v1-6/image-to-image/masking",
    "/v1/models/openai/gpt-image-1/predictions",
    "/v1/models/bfl/flux-kontext-max/predictions",
    "/session/publish",
    "/v1/flux-dev",
];

#[tokio::test]
async fn malformed_bodies_get_a_json_4xx_on_every_generation_route() {
    let app = TestApp::spawn().await;
    let deep = "[".repeat(10_000);
    let bodies: [(&str, Vec<u8>); 8] = [
        ("application/json", Vec::new()),
        ("application/json", b"{not json".to_vec()),
        ("application/json", b"null".to_vec()),
        ("application/json", b"[1, 2]".to_vec()),
        ("application/json", br#"{"prompt": 5, "input": 5, "text_prompts": 5, "title": 5}"#.to_vec()),
        ("application/json", deep.into_bytes()),
        ("application/json", vec![0xff, 0xfe, 0x00, 0x7b]),
        ("multipart/form-data; boundary=right", b"--wrong\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nx\r\n--wrong--\r\n".to_vec()),
    ];
    for route in ROUTES {
        for (content_type, body) in &bodies {
            let resp = app
                .client
                .post(app.url(route))
                .bearer_auth(&app.admin_key)
                .header("x-key", &app.admin_key)
                .header("content-type", *content_type)
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let status = resp.status();
            let what = format!("{route} with {content_type} {:?}", String::from_utf8_lossy(&body[..body.len().min(24)]));
            assert!(status.is_client_error(), "{what}: {status}");
            assert_eq!(resp.headers()["content-type"], "application/json", "{what}");
            let _: serde_json::Value = resp.json().await.unwrap_or_else(|e| panic!("{what}: not JSON: {e}"));
        }
    }
}
