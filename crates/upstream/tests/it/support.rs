//! Shared helpers for the contract tests: serving a test double on a random
//! 127.0.0.1 port, recording what it received, tiny real images, and
//! building an [`UpstreamBackend`] from a TOML channel list.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::HeaderMap;
use base64::Engine as _;
use imagegate_core::backend::{Job, no_progress};
use imagegate_core::{Backend, BackendError, CancelFlag, Catalog, Generation, Size, TaskSpec};
use imagegate_upstream::{Clock, UpstreamBackend, UpstreamConfig};

/// One request a double received.
#[derive(Debug, Clone)]
pub struct Recorded {
    #[allow(dead_code)] // kept for debugging output of failed assertions
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub headers: HeaderMap,
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
    pub fn push(&self, method: &axum::http::Method, uri: &axum::http::Uri, headers: &HeaderMap, body: &[u8]) {
        self.0.lock().unwrap().push(Recorded { method: method.to_string(), uri: uri.to_string(), headers: headers.clone(), body: body.to_vec() });
    }

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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
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

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Writes `key` to a fresh temp file (keys come from env or files; tests use files).
pub fn key_file(key: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("imagegate-it-key-{}-{}", std::process::id(), rand::random::<u64>()));
    std::fs::write(&path, format!("{key}\n")).unwrap();
    path
}

/// A backend from the channels in `toml` (an `[upstream]` section's body), polling fast.
pub fn backend(toml_text: &str) -> UpstreamBackend {
    let cfg: UpstreamConfig = toml::from_str(toml_text).unwrap();
    UpstreamBackend::from_config(&cfg, &Catalog::builtin()).unwrap()
}

/// As [`backend`], with a hand-driven clock.
pub fn backend_with_clock(toml_text: &str, clock: Arc<dyn Clock>) -> UpstreamBackend {
    let cfg: UpstreamConfig = toml::from_str(toml_text).unwrap();
    UpstreamBackend::with_clock(&cfg, &Catalog::builtin(), clock).unwrap()
}

/// A one-image spec for `model` at `w`×`h` with seed 42.
pub fn spec(model: &str, prompt: &str, w: u32, h: u32) -> TaskSpec {
    let mut s = TaskSpec::simple(model, prompt, Size::new(w, h));
    s.seed = 42;
    s
}

/// Sets family fields the way a dialect passes them through.
pub fn with_extras(mut s: TaskSpec, extras: serde_json::Value) -> TaskSpec {
    s.extras = extras.as_object().unwrap().clone();
    s
}

/// Runs one task through the backend.
pub async fn generate(backend: &UpstreamBackend, spec: TaskSpec) -> Result<Generation, BackendError> {
    let job = Job { task_id: "task-1".into(), spec };
    backend.generate(&job, &no_progress(), &CancelFlag::new()).await
}

/// A channel table entry for `provider` at `base`, with a key file holding `key`.
pub fn channel(name: &str, provider: &str, base: &str, key: &str) -> String {
    format!(
        "[[channels]]\nname = \"{name}\"\nprovider = \"{provider}\"\nbase_url = \"{base}\"\nkey_file = \"{}\"\n",
        key_file(key).display()
    )
}

/// Prepends fast polling to channel tables.
pub fn config(channels: &[String]) -> String {
    format!("poll_interval_ms = 5\n{}", channels.join("\n"))
}
