//! What every provider double shares: serving a router on a random
//! 127.0.0.1 port, a log of the requests received (so tests can check them
//! exactly), tiny real images, and a parser for multipart text fields.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::HeaderMap;
use base64::Engine as _;

/// One request a double received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Request headers.
    pub headers: HeaderMap,
    /// Raw body.
    pub body: Vec<u8>,
}

impl Recorded {
    /// The body as JSON (panics with the body text when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// A header's value, or "" when absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// The text fields of a `multipart/form-data` body.
    pub fn form(&self) -> HashMap<String, String> {
        parse_form(self.header("content-type"), &self.body).unwrap_or_else(|| panic!("not a multipart form: {}", self.header("content-type")))
    }
}

/// A thread-safe request log shared by a double's handlers and the test.
#[derive(Debug, Clone, Default)]
pub struct Log(Arc<Mutex<Vec<Recorded>>>);

impl Log {
    /// Records one request.
    pub fn push(&self, method: &axum::http::Method, uri: &axum::http::Uri, headers: &HeaderMap, body: &[u8]) {
        self.0.lock().unwrap().push(Recorded { method: method.to_string(), uri: uri.to_string(), headers: headers.clone(), body: body.to_vec() });
    }

    /// Every request so far.
    pub fn all(&self) -> Vec<Recorded> {
        self.0.lock().unwrap().clone()
    }

    /// Requests whose path starts with `prefix`.
    pub fn to(&self, prefix: &str) -> Vec<Recorded> {
        self.all().into_iter().filter(|r| r.uri.starts_with(prefix)).collect()
    }
}

/// Parses the text fields of a multipart body (enough for the doubles).
pub fn parse_form(content_type: &str, body: &[u8]) -> Option<HashMap<String, String>> {
    let boundary = content_type.split("boundary=").nth(1)?.trim_matches('"');
    let text = String::from_utf8_lossy(body);
    let mut out = HashMap::new();
    for part in text.split(&format!("--{boundary}")) {
        let part = part.trim_start_matches("\r\n");
        let Some((head, value)) = part.split_once("\r\n\r\n") else { continue };
        let name = head.split("name=\"").nth(1)?.split('"').next()?;
        out.insert(name.to_string(), value.strip_suffix("\r\n").unwrap_or(value).to_string());
    }
    Some(out)
}

/// Serves `router` on 127.0.0.1 at a random port; returns `http://127.0.0.1:<port>`.
pub async fn serve(router: Router) -> String {
    serve_on(router, 0).await
}

/// Serves `router` plus the result files route (`GET /files/{name}`, see
/// [`super::file`]) on a random port, and records the base URL in `base`,
/// which the double's handlers use to build the file URLs they answer with.
pub async fn serve_with_files<S: Clone + Send + Sync + 'static>(router: Router<S>, state: S, base: &std::sync::OnceLock<String>) -> String {
    let url = serve(router.route("/files/{name}", axum::routing::get(super::file)).with_state(state)).await;
    base.set(url.clone()).expect("a double is served once");
    url
}

/// Serves `router` on 127.0.0.1:`port` (0: any free port); returns its base URL.
pub async fn serve_on(router: Router, port: u16) -> String {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    format!("http://{addr}")
}

/// A real PNG of `w`×`h`.
pub fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb([200, 30, 30]));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A real JPEG of `w`×`h`.
pub fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb([30, 30, 200]));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

/// Standard base64.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
