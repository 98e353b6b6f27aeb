//! Stability v1 image-to-image and masking, as multipart forms: the init
//! image's size is the result's, Stability's strengths and mask sources
//! become the engine's, and every refusal names its field in Stability's
//! error shape.

use base64::Engine as _;
use imagegate_testkit::TestApp;
use imagegate_testkit::uploads::{picture, png};
use serde_json::Value;

const I2I: &str = "/v1/generation/stable-diffusion-v1-6/image-to-image";
const MASKING: &str = "/sd/v1/generation/stable-diffusion-v1-6/image-to-image/masking";

fn decoded(uri: &str) -> image::DynamicImage {
    let (_, b64) = uri.split_once(";base64,").unwrap();
    image::load_from_memory(&base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap()
}

async fn task_of(app: &TestApp, resp: reqwest::Response) -> imagegate_core::TaskView {
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["artifacts"][0]["finishReason"], "SUCCESS", "{body}");
    assert_eq!(app.state.db.task_state_counts().await.unwrap(), vec![("succeeded".to_string(), 1)]);
    // Stability's answer carries no task id; the app's one finished task is it.
    let mut finished = app.state.db.purgeable_tasks(i64::MAX, 2).await.unwrap();
    assert_eq!(finished.len(), 1);
    finished.remove(0)
}

#[tokio::test]
async fn image_to_image_starts_from_the_upload_at_its_size_with_stabilitys_strength() {
    let app = TestApp::spawn().await;
    let texts = [
        ("text_prompts[0][text]", "a lighthouse at dusk"),
        ("text_prompts[1][text]", "fog"),
        ("text_prompts[1][weight]", "-1"),
        ("image_strength", "0.8"),
        ("steps", "20"),
        ("samples", "1"),
    ];
    let resp = app.post_form(I2I, &app.admin_key, &texts, &[("init_image", &picture(640, 384))]).await;
    let task = task_of(&app, resp).await;
    assert_eq!((task.spec.size.width, task.spec.size.height, task.spec.steps), (640, 384, 20));
    assert_eq!(task.spec.negative_prompt.as_deref(), Some("fog"));
    let init = task.spec.init_image.unwrap();
    assert!((init.strength - 0.2).abs() < 1e-6, "image_strength 0.8 keeps 80% of the image: {}", init.strength);
    assert_eq!(init.mask, None);
    assert_eq!(decoded(&init.source).to_rgb8().get_pixel(300, 200).0, [44, 200, 90]);
}

#[tokio::test]
async fn masking_reads_each_mask_source_as_stability_documents_it() {
    // SD 1.6 makes sides of 320 and up.
    let black_left = png(image::GrayImage::from_fn(384, 384, |x, _| image::Luma([if x < 192 { 0 } else { 255 }])));
    let transparent_left = png(image::RgbaImage::from_fn(384, 384, |x, _| image::Rgba([9, 9, 9, if x < 192 { 0 } else { 255 }])));
    let prompt = ("text_prompts[0][text]", "a red door");
    // Each leaves the left half to repaint: white where the engine repaints.
    for (source, files) in
        [("MASK_IMAGE_BLACK", vec![("init_image", picture(384, 384)), ("mask_image", black_left.clone())]), ("INIT_IMAGE_ALPHA", vec![("init_image", transparent_left.clone())])]
    {
        let app = TestApp::spawn().await;
        let files: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_slice())).collect();
        let resp = app.post_form(MASKING, &app.admin_key, &[prompt, ("mask_source", source)], &files).await;
        let init = task_of(&app, resp).await.spec.init_image.unwrap();
        assert_eq!(init.strength, 1.0);
        let mask = decoded(init.mask.as_deref().unwrap()).to_luma8();
        assert_eq!((mask.get_pixel(5, 5).0, mask.get_pixel(380, 5).0), ([255], [0]), "{source}");
    }
}

#[tokio::test]
async fn a_bad_form_is_a_400_naming_the_field_in_stabilitys_shape() {
    let app = TestApp::spawn().await;
    let (image, small) = (picture(512, 512), picture(64, 64));
    let prompt = ("text_prompts[0][text]", "x");
    type Texts<'a> = &'a [(&'a str, &'a str)];
    type Files<'a> = &'a [(&'a str, &'a [u8])];
    let cases: [(&str, Texts, Files, &str); 9] = [
        (I2I, &[prompt], &[], "init_image"),
        (I2I, &[], &[("init_image", &image)], "text_prompts"),
        (I2I, &[prompt, ("image_strength", "2")], &[("init_image", &image)], "image_strength"),
        (I2I, &[prompt, ("init_image_mode", "BOTH")], &[("init_image", &image)], "init_image_mode"),
        (I2I, &[prompt, ("width", "512")], &[("init_image", &image)], "width"),
        (I2I, &[prompt, ("steps", "5")], &[("init_image", &image)], "steps"),
        (I2I, &[prompt], &[("init_image", &image), ("mask_image", &image)], "mask_image"),
        (MASKING, &[prompt], &[("init_image", &image)], "mask_source"),
        (MASKING, &[prompt, ("mask_source", "MASK_IMAGE_WHITE")], &[("init_image", &image), ("mask_image", &small)], "mask_image"),
    ];
    for (path, texts, files, field) in cases {
        let resp = app.post_form(path, &app.admin_key, texts, files).await;
        assert_eq!(resp.status(), 400, "{field}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["name"], "bad_request");
        assert!(err["message"].as_str().unwrap().starts_with(&format!("invalid `{field}`")), "{field}: {err}");
    }
    // SDXL makes only its listed sizes, so the init image must be one of them.
    let resp = app.post_form("/v1/generation/stable-diffusion-xl-1024-v1-0/image-to-image", &app.admin_key, &[prompt], &[("init_image", &image)]).await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert!(err["message"].as_str().unwrap().starts_with("invalid `init_image`: is 512x512"), "{err}");
    assert_eq!(app.post_form(I2I, "sk-ig-unknown", &[prompt], &[("init_image", &image)]).await.status(), 401);
}
