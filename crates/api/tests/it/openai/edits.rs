//! `POST /v1/images/edits`: OpenAI's multipart edit becomes an
//! image-to-image task (inpainting with a mask) and is answered as the
//! generations route answers; a bad form is a 400 naming the field.

use base64::Engine as _;
use imagegate_testkit::TestApp;
use imagegate_testkit::uploads::{left_half_mask, picture};
use serde_json::Value;

fn decode_data_uri(uri: &str) -> image::DynamicImage {
    let (_, b64) = uri.split_once(";base64,").unwrap();
    image::load_from_memory(&base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap()
}

#[tokio::test]
async fn an_edit_with_a_mask_becomes_an_inpainting_task_at_the_images_size() {
    let app = TestApp::spawn().await;
    let (image, mask) = (picture(768, 512), left_half_mask(768, 512));
    let resp = app.post_edit(&app.admin_key, &[("prompt", "a red door"), ("model", "FLUX.1-schnell")], &[("image", &image), ("mask", &mask)]).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let url = body["data"][0]["url"].as_str().unwrap();
    assert_eq!(body["images"][0]["url"], url);
    assert_eq!(app.client.get(url).send().await.unwrap().status(), 200);

    let task = app.state.db.get_task(body["id"].as_str().unwrap()).await.unwrap().unwrap();
    assert_eq!((task.spec.size.width, task.spec.size.height), (768, 512), "the image's own size");
    let init = task.spec.init_image.expect("an image-to-image task");
    assert_eq!(init.strength, 1.0, "a masked area is repainted outright");
    assert_eq!(decode_data_uri(&init.source).to_rgb8().get_pixel(300, 200).0, [44, 200, 90], "the uploaded pixels");
    let mask = decode_data_uri(init.mask.as_deref().expect("the mask")).to_luma8();
    assert_eq!((mask.get_pixel(10, 10).0, mask.get_pixel(700, 10).0), ([255], [0]), "transparent is white (repaint), opaque black (keep)");
}

#[tokio::test]
async fn an_edit_without_a_mask_is_image_to_image_with_the_forms_fields() {
    let app = TestApp::spawn().await;
    let texts = [("prompt", "as a watercolour"), ("n", "2"), ("size", "1024x1024"), ("strength", "0.4")];
    let resp = app.post_edit(&app.admin_key, &texts, &[("image[]", &picture(64, 64))]).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    let task = app.state.db.get_task(body["id"].as_str().unwrap()).await.unwrap().unwrap();
    assert_eq!((task.spec.count, task.spec.size.width), (2, 1024));
    let init = task.spec.init_image.unwrap();
    assert_eq!((init.strength, init.mask), (0.4, None));
}

#[tokio::test]
async fn a_bad_form_is_a_400_naming_the_field() {
    let app = TestApp::spawn().await;
    let (image, small_mask) = (picture(64, 64), left_half_mask(32, 32));
    let x = ("prompt", "x");
    type Texts<'a> = &'a [(&'a str, &'a str)];
    type Files<'a> = &'a [(&'a str, &'a [u8])];
    let cases: [(Texts, Files, &str); 7] = [
        (&[x], &[], "image"),
        (&[], &[("image", &image)], "prompt"),
        (&[x], &[("image", b"not an image")], "image"),
        (&[x], &[("image", &image), ("mask", &small_mask)], "mask"),
        (&[x, ("n", "many")], &[("image", &image)], "n"),
        (&[x, ("strength", "2")], &[("image", &image)], "strength"),
        (&[x], &[("image", &image), ("image", &image)], "image"),
    ];
    for (texts, files, field) in cases {
        let resp = app.post_edit(&app.admin_key, texts, files).await;
        assert_eq!(resp.status(), 400, "{field}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["param"], field, "{err}");
    }
    let json = app.client.post(app.url("/v1/images/edits")).bearer_auth(&app.admin_key).json(&serde_json::json!({"prompt": "x"})).send().await.unwrap();
    assert_eq!(json.status(), 400, "a JSON body is not the form");
    assert_eq!(app.post_edit("sk-ig-unknown", &[x], &[("image", &image)]).await.status(), 401);
}

#[tokio::test]
async fn an_image_over_the_body_limit_is_413() {
    let app = TestApp::spawn().await;
    let resp = app.post_edit(&app.admin_key, &[("prompt", "x")], &[("image", &vec![0u8; 17 * 1024 * 1024])]).await;
    assert_eq!(resp.status(), 413);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "payload_too_large");
}
