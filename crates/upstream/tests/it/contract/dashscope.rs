//! DashScope: Qwen-Image as an async task (submit, poll, download), and
//! Qwen-Image-Edit through the synchronous multimodal endpoint.

use imagegate_core::BackendError;
use serde_json::json;

use crate::doubles::dashscope;
use crate::support::{backend, channel, config, generate, run_recording, spec, with_extras};

#[tokio::test]
async fn qwen_image_task_is_submitted_polled_and_downloaded() {
    let d = dashscope::start("ds-key").await;
    let b = backend(&config(&[channel("ds", "dashscope", &format!("{}/api/v1", d.base), "ds-key")]));
    let s = with_extras(spec("Qwen-Image", "A beautiful sunset over a calm ocean", 1328, 1328), json!({"refer_image": "", "n": 1, "guidance": 7.5, "watermark": false}));
    let g = generate(&b, s).await.unwrap();
    assert_eq!(g.images.len(), 1);
    assert_eq!(g.provider_request_id.as_deref(), Some("task-1"));
    let submit = d.log.to("/api/v1/services/aigc/text2image/image-synthesis");
    assert_eq!(submit[0].header("authorization"), "Bearer ds-key");
    assert_eq!(submit[0].header("x-dashscope-async"), "enable");
    assert_eq!(
        submit[0].json(),
        json!({"model": "qwen-image", "input": {"prompt": "A beautiful sunset over a calm ocean"}, "parameters": {"size": "1328*1328", "n": 1, "seed": 42, "watermark": false}})
    );
    assert_eq!(d.log.to("/api/v1/tasks/task-1").len(), 2, "RUNNING once, then SUCCEEDED");
    assert_eq!((g.images[0].width, g.images[0].height), (64, 48), "the result URL was downloaded");
}

#[tokio::test]
async fn an_accepted_task_is_recorded_and_a_later_attempt_polls_it_instead_of_paying_again() {
    let d = dashscope::start("ds-key").await;
    let b = backend(&config(&[channel("ds", "dashscope", &format!("{}/api/v1", d.base), "ds-key")]));
    let s = spec("Qwen-Image", "A beautiful sunset over a calm ocean", 1328, 1328);
    let (first, tokens) = run_recording(&b, imagegate_core::backend::Job::new("t", s.clone())).await;
    first.unwrap();
    assert_eq!(tokens.len(), 1);
    let token: serde_json::Value = serde_json::from_str(&tokens[0]).unwrap();
    assert_eq!(token, json!({"channel": "ds", "state": {"task_id": "task-1"}}));
    let mut again = imagegate_core::backend::Job::new("t", s);
    again.resume = Some(tokens[0].clone());
    let (second, more) = run_recording(&b, again).await;
    assert_eq!(second.unwrap().provider_request_id.as_deref(), Some("task-1"));
    assert!(more.is_empty());
    assert_eq!(d.log.to("/api/v1/services/aigc/text2image/image-synthesis").len(), 1, "submitted once");
}

#[tokio::test]
async fn a_failed_inspection_is_final_moderation() {
    let d = dashscope::start("ds-key").await;
    let b = backend(&config(&[channel("ds", "dashscope", &format!("{}/api/v1", d.base), "ds-key")]));
    let err = generate(&b, spec("Qwen-Image", "please inspect", 1328, 1328)).await.unwrap_err();
    assert!(matches!(&err, BackendError::Moderated { message, .. } if message.contains("DataInspectionFailed")), "{err:?}");
}

#[tokio::test]
async fn sizes_qwen_image_lacks_snap_to_the_nearest_ratio_with_a_note() {
    let d = dashscope::start("ds-key").await;
    let b = backend(&config(&[channel("ds", "dashscope", &format!("{}/api/v1", d.base), "ds-key")]));
    // the seed's own example asks for 1024x1024
    let g = generate(&b, spec("Qwen-Image", "a cat", 1024, 1024)).await.unwrap();
    assert!(g.note.as_deref().is_some_and(|n| n.contains("1328x1328")), "{:?}", g.note);
    generate(&b, spec("Qwen-Image", "a wide cat", 1344, 768)).await.unwrap();
    let sizes: Vec<_> = d.log.to("/api/v1/services/aigc/text2image/image-synthesis").iter().map(|r| r.json()["parameters"]["size"].clone()).collect();
    assert_eq!(sizes, vec![json!("1328*1328"), json!("1664*928")]);
}

#[tokio::test]
async fn qwen_image_edit_sends_image_and_text() {
    let d = dashscope::start("ds-key").await;
    let b = backend(&config(&[channel("ds", "dashscope", &format!("{}/api/v1", d.base), "ds-key")]));
    let s = with_extras(spec("Qwen-Image-Edit", "make it snow", 1024, 1024), json!({"refer_image": "https://example.invalid/cat.png"}));
    let g = generate(&b, s).await.unwrap();
    assert_eq!(g.provider_request_id.as_deref(), Some("req-edit"));
    let body = d.log.to("/api/v1/services/aigc/multimodal-generation/generation")[0].json();
    assert_eq!(body["model"], "qwen-image-edit");
    assert_eq!(body["input"]["messages"][0]["content"], json!([{"image": "https://example.invalid/cat.png"}, {"text": "make it snow"}]));
}
