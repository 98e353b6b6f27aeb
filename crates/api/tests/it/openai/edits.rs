//! `POST /v1/images/edits`: OpenAI's multipart edit becomes an
//! image-to-image task (inpainting with a mask) and is answered as the
//! generations route answers; a bad form is a 400 naming the field.

use base64::Engine as _;
use imagegate_testkit::TestApp;
use serde_json::Value;

pub const BOUNDARY: &str = "imagegate-test-boundary";

pub enum Part<'a> {
    Text(&'a str, &'a str),
    File(&'a str, Vec<u8>),
}

pub fn form(parts: &[Part<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match part {
            Part::Text(name, value) => out.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes()),
            Part::File(name, bytes) => {
                out.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{name}.png\"\r\nContent-Type: image/png\r\n\r\n").as_bytes());
                out.extend_from_slice(bytes);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    out
}

fn png(img: image::DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    out
}

pub fn picture(w: u32, h: u32) -> Vec<u8> {
    png(image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])).into())
}

/// OpenAI's mask: the left half transparent (repaint), the right half opaque (keep).
pub fn left_half_mask(w: u32, h: u32) -> Vec<u8> {
    png(image::RgbaImage::from_fn(w, h, |x, _| image::Rgba([0, 0, 0, if x < w / 2 { 0 } else { 255 }])).into())
}

pub async fn post(app: &TestApp, parts: &[Part<'_>]) -> reqwest::Response {
    app.client
        .post(app.url("/v1/images/edits"))
        .bearer_auth(&app.admin_key)
        .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(form(parts))
        .send()
        .await
        .unwrap()
}

fn decode_data_uri(uri: &str) -> image::DynamicImage {
    let (_, b64) = uri.split_once(";base64,").unwrap();
    image::load_from_memory(&base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap()
}

#[tokio::test]
async fn an_edit_with_a_mask_becomes_an_inpainting_task_at_the_images_size() {
    let app = TestApp::spawn().await;
    let resp = post(
        &app,
        &[Part::Text("prompt", "a red door"), Part::Text("model", "FLUX.1-schnell"), Part::File("image", picture(768, 512)), Part::File("mask", left_half_mask(768, 512))],
    )
    .await;
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
    let parts =
        [Part::Text("prompt", "as a watercolour"), Part::Text("n", "2"), Part::Text("size", "1024x1024"), Part::Text("strength", "0.4"), Part::File("image[]", picture(64, 64))];
    let resp = post(&app, &parts).await;
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
    let image = || Part::File("image", picture(64, 64));
    let cases: Vec<(Vec<Part<'_>>, &str)> = vec![
        (vec![Part::Text("prompt", "x")], "image"),
        (vec![image()], "prompt"),
        (vec![Part::Text("prompt", "x"), Part::File("image", b"not an image".to_vec())], "image"),
        (vec![Part::Text("prompt", "x"), image(), Part::File("mask", left_half_mask(32, 32))], "mask"),
        (vec![Part::Text("prompt", "x"), image(), Part::Text("n", "many")], "n"),
        (vec![Part::Text("prompt", "x"), image(), Part::Text("strength", "2")], "strength"),
        (vec![Part::Text("prompt", "x"), image(), image()], "image"),
    ];
    for (parts, field) in cases {
        let resp = post(&app, &parts).await;
        assert_eq!(resp.status(), 400, "{field}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["param"], field, "{err}");
    }
    let json = app.client.post(app.url("/v1/images/edits")).bearer_auth(&app.admin_key).json(&serde_json::json!({"prompt": "x"})).send().await.unwrap();
    assert_eq!(json.status(), 400, "a JSON body is not the form");
    let unauthenticated =
        app.client.post(app.url("/v1/images/edits")).header("content-type", format!("multipart/form-data; boundary={BOUNDARY}")).body(form(&[image()])).send().await.unwrap();
    assert_eq!(unauthenticated.status(), 401);
}

#[tokio::test]
async fn an_image_over_the_body_limit_is_413() {
    let app = TestApp::spawn().await;
    let resp = post(&app, &[Part::Text("prompt", "x"), Part::File("image", vec![0u8; 17 * 1024 * 1024])]).await;
    assert_eq!(resp.status(), 413);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "payload_too_large");
}
