//! Multipart upload forms as clients send them (OpenAI's
//! `POST /v1/images/edits`, Stability's image-to-image), for the tests of
//! those routes in the API and binary crates.

use crate::TestApp;

const BOUNDARY: &str = "imagegate-upload-boundary";

/// A multipart body: the text fields, then each file as a PNG upload.
pub fn form(texts: &[(&str, &str)], files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in texts {
        out.extend_from_slice(format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes());
    }
    for (name, bytes) in files {
        out.extend_from_slice(format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}.png\"\r\nContent-Type: image/png\r\n\r\n").as_bytes());
        out.extend_from_slice(bytes);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    out
}

/// `img` encoded as PNG.
pub fn png(img: impl Into<image::DynamicImage>) -> Vec<u8> {
    let mut out = Vec::new();
    img.into().write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).expect("PNG encoding");
    out
}

/// A `w`×`h` picture with some structure (not one flat colour).
pub fn picture(w: u32, h: u32) -> Vec<u8> {
    png(image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])))
}

/// A mask in OpenAI's convention: the left half transparent (repaint), the
/// right half opaque (keep).
pub fn left_half_mask(w: u32, h: u32) -> Vec<u8> {
    png(image::RgbaImage::from_fn(w, h, |x, _| image::Rgba([0, 0, 0, if x < w / 2 { 0 } else { 255 }])))
}

impl TestApp {
    /// POSTs a multipart form to `path` with `key`.
    pub async fn post_form(&self, path: &str, key: &str, texts: &[(&str, &str)], files: &[(&str, &[u8])]) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(key)
            .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
            .body(form(texts, files))
            .send()
            .await
            .expect("request")
    }

    /// POSTs an OpenAI edit form with `key`.
    pub async fn post_edit(&self, key: &str, texts: &[(&str, &str)], files: &[(&str, &[u8])]) -> reqwest::Response {
        self.post_form("/v1/images/edits", key, texts, files).await
    }
}
