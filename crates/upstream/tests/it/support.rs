//! Shared helpers for the contract tests: key files, building an
//! [`UpstreamBackend`] from a TOML channel list, and running one task. The
//! doubles and their request logs are in `imagegate_testkit::doubles`.

use std::path::PathBuf;
use std::sync::Arc;

use imagegate_core::backend::{Job, no_progress};
use imagegate_core::{Backend, BackendError, CancelFlag, Catalog, Generation, Size, TaskSpec};
use imagegate_upstream::{Clock, UpstreamBackend, UpstreamConfig};

pub use imagegate_testkit::doubles::support::{b64, png};

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
    let job = Job::new("task-1", spec);
    backend.generate(&job, &no_progress(), &CancelFlag::new()).await
}

/// Runs `job` on `b`, collecting what the relay reports as accepted.
pub async fn run_recording(b: &imagegate_upstream::UpstreamBackend, mut job: imagegate_core::backend::Job) -> (Result<imagegate_core::Generation, BackendError>, Vec<String>) {
    use imagegate_core::Backend;
    let tokens = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = tokens.clone();
    job.on_accept = Some(imagegate_core::backend::AcceptHook::new(move |t| sink.lock().unwrap().push(t)));
    let out = b.generate(&job, &imagegate_core::backend::no_progress(), &imagegate_core::CancelFlag::new()).await;
    let tokens = tokens.lock().unwrap().clone();
    (out, tokens)
}

/// A channel table entry for `provider` at `base`, with a key file holding `key`.
pub fn channel(name: &str, provider: &str, base: &str, key: &str) -> String {
    format!("[[channels]]\nname = \"{name}\"\nprovider = \"{provider}\"\nbase_url = \"{base}\"\nkey_file = \"{}\"\n", key_file(key).display())
}

/// Prepends fast polling to channel tables.
pub fn config(channels: &[String]) -> String {
    format!("poll_interval_ms = 5\n{}", channels.join("\n"))
}
