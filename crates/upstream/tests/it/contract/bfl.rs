//! BFL: submit, poll `polling_url`, download `result.sample`; nothing is
//! resubmitted elsewhere once BFL accepted the job.

use imagegate_core::{BackendError, ImageFormat, ModerationStage};
use serde_json::json;

use crate::doubles::bfl;
use crate::support::{backend, channel, config, generate, run_recording, spec, with_extras};

#[tokio::test]
async fn kontext_job_is_submitted_polled_and_downloaded() {
    let d = bfl::start("bfl-key").await;
    let b = backend(&config(&[channel("bfl", "bfl", &format!("{}/v1", d.base), "bfl-key")]));
    let mut s = with_extras(spec("flux-kontext-max", "A deer drinking in the lake", 832, 1216), json!({"aspect_ratio": "2:3", "safety_tolerance": 6}));
    s.output_format = ImageFormat::Jpeg;
    let g = generate(&b, s).await.unwrap();
    assert_eq!(g.images.len(), 1);
    assert_eq!((g.images[0].format, g.images[0].width, g.images[0].height, g.images[0].seed), (ImageFormat::Jpeg, 64, 48, 42));
    assert_eq!(g.provider_request_id.as_deref(), Some("job-1"));
    let submit = d.log.to("/v1/flux-kontext-max");
    assert_eq!(submit.len(), 1);
    assert_eq!(submit[0].header("x-key"), "bfl-key");
    let body = submit[0].json();
    assert_eq!(body, json!({"prompt": "A deer drinking in the lake", "aspect_ratio": "2:3", "seed": 42, "output_format": "jpeg", "safety_tolerance": 6}));
    let polls = d.log.to("/v1/get_result?id=job-1");
    assert_eq!(polls.len(), 2, "Pending once, then Ready");
    assert!(polls.iter().all(|p| p.header("x-key") == "bfl-key"));
}

#[tokio::test]
async fn flux_pro_takes_width_and_height_and_one_job_per_image() {
    let d = bfl::start("k").await;
    let b = backend(&config(&[channel("bfl", "bfl", &format!("{}/v1", d.base), "k")]));
    let mut s = spec("FLUX-1.1-pro", "a cat", 1024, 768);
    s.count = 2;
    let g = generate(&b, s).await.unwrap();
    assert_eq!(g.images.len(), 2);
    assert_eq!((g.images[0].seed, g.images[1].seed), (42, 43));
    let submits = d.log.to("/v1/flux-pro-1.1");
    assert_eq!(submits.len(), 2);
    let body = submits[0].json();
    assert_eq!((body["width"].as_u64(), body["height"].as_u64()), (Some(1024), Some(768)));
    assert!(body.get("aspect_ratio").is_none());
}

#[tokio::test]
async fn a_failed_job_is_final_even_with_another_channel() {
    let a = bfl::start("k").await;
    let other = bfl::start("k").await;
    let mut first = channel("a", "bfl", &format!("{}/v1", a.base), "k");
    first.push_str("priority = 5\n");
    let b = backend(&config(&[first, channel("b", "bfl", &format!("{}/v1", other.base), "k")]));
    let err = generate(&b, spec("flux-kontext-pro", "please explode", 1024, 1024)).await.unwrap_err();
    assert!(matches!(&err, BackendError::Upstream { retryable: false, message, .. } if message.contains("job-1")), "{err:?}");
    let err = generate(&b, spec("flux-kontext-pro", "moderate me", 1024, 1024)).await.unwrap_err();
    assert!(matches!(&err, BackendError::Moderated { stage: ModerationStage::Request, message, .. } if message.contains("Request Moderated")), "{err:?}");
    assert!(other.log.all().is_empty(), "accepted jobs are never resubmitted elsewhere");
}

#[tokio::test]
async fn validation_errors_from_submit_are_not_failed_over() {
    let d = bfl::start("k").await;
    let b = backend(&config(&[channel("bfl", "bfl", &format!("{}/v1", d.base), "k")]));
    let err = generate(&b, with_extras(spec("flux-kontext-max", "a cat", 1024, 1024), json!({"safety_tolerance": 9}))).await.unwrap_err();
    assert!(matches!(&err, BackendError::Upstream { retryable: false, message, .. } if message.contains("422")), "{err:?}");
}

#[tokio::test]
async fn each_accepted_job_is_recorded_and_a_later_attempt_polls_it_instead_of_paying_again() {
    let d = bfl::start("k").await;
    let b = backend(&config(&[channel("bfl-main", "bfl", &format!("{}/v1", d.base), "k")]));
    let mut s = spec("FLUX-1.1-pro", "a cat", 1024, 768);
    s.count = 2;
    let (first, tokens) = run_recording(&b, imagegate_core::backend::Job::new("t", s.clone())).await;
    assert_eq!(first.unwrap().images.len(), 2);
    assert_eq!(tokens.len(), 2, "one record per accepted job");
    let last: serde_json::Value = serde_json::from_str(&tokens[1]).unwrap();
    assert_eq!(last["channel"], "bfl-main");
    assert_eq!(last["state"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap()).collect::<Vec<_>>(), ["job-1", "job-2"]);

    // The task runs again (its process stopped after the provider accepted both jobs).
    let mut again = imagegate_core::backend::Job::new("t", s.clone());
    again.resume = Some(tokens[1].clone());
    let (second, more) = run_recording(&b, again).await;
    let g = second.unwrap();
    assert_eq!((g.images.len(), g.images[0].seed, g.images[1].seed), (2, 42, 43));
    assert_eq!(d.log.to("/v1/flux-pro-1.1").len(), 2, "nothing submitted again");
    assert!(more.is_empty());

    // Stopped after the first of two jobs: only the second is submitted.
    let mut half = imagegate_core::backend::Job::new("t", s);
    half.resume = Some(tokens[0].clone());
    let (third, more) = run_recording(&b, half).await;
    assert_eq!(third.unwrap().images.len(), 2);
    assert_eq!(d.log.to("/v1/flux-pro-1.1").len(), 3, "one more job, not two");
    let recorded: serde_json::Value = serde_json::from_str(&more[0]).unwrap();
    assert_eq!(recorded["state"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap()).collect::<Vec<_>>(), ["job-1", "job-3"]);
}

#[tokio::test]
async fn a_resumed_job_whose_channel_is_gone_is_submitted_anew() {
    let d = bfl::start("k").await;
    let b = backend(&config(&[channel("bfl-new", "bfl", &format!("{}/v1", d.base), "k")]));
    let mut job = imagegate_core::backend::Job::new("t", spec("flux-kontext-pro", "a cat", 1024, 1024));
    job.resume = Some(json!({"channel": "bfl-removed", "state": [{"id": "job-9", "polling_url": "http://127.0.0.1:9/x", "seed": 1}]}).to_string());
    let (out, tokens) = run_recording(&b, job).await;
    assert_eq!(out.unwrap().provider_request_id.as_deref(), Some("job-1"));
    assert_eq!(tokens.len(), 1);
    assert!(d.log.to("/v1/get_result?id=job-9").is_empty());
}

#[tokio::test]
async fn a_resumed_job_waits_for_its_channels_concurrency_slot() {
    let d = bfl::start("k").await;
    let b = backend(&config(&[channel("bfl-one", "bfl", &format!("{}/v1", d.base), "k") + "max_concurrency = 1\n"]));
    let (first, tokens) = run_recording(&b, imagegate_core::backend::Job::new("t1", spec("flux-kontext-pro", "a cat", 1024, 1024))).await;
    first.unwrap();
    let first_polls = d.log.to("/v1/get_result?id=job-1").len();

    // job-2 holds the only slot for its first 200 polls; meanwhile t1's process "restarts" and resumes job-1.
    let (held, resumed) = tokio::join!(generate(&b, spec("flux-kontext-pro", "a lighthouse, linger", 1024, 1024)), async {
        while d.log.to("/v1/get_result?id=job-2").is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let mut again = imagegate_core::backend::Job::new("t1", spec("flux-kontext-pro", "a cat", 1024, 1024));
        again.resume = Some(tokens[0].clone());
        run_recording(&b, again).await
    });
    held.unwrap();
    assert_eq!(resumed.0.unwrap().provider_request_id.as_deref(), Some("job-1"));
    let log = d.log.all();
    let last_hold_poll = log.iter().rposition(|r| r.uri == "/v1/get_result?id=job-2").unwrap();
    let resumed_poll = log.iter().enumerate().filter(|(_, r)| r.uri == "/v1/get_result?id=job-1").nth(first_polls).map(|(i, _)| i).unwrap();
    assert!(resumed_poll > last_hold_poll, "the resumed job polled while the only slot was taken");
    assert_eq!(d.log.to("/v1/flux-kontext-pro").len(), 2, "nothing submitted again");
}
