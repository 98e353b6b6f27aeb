//! A scripted OpenAI-shaped double for routing tests: it answers from a
//! queue of canned failures (status, body, `Retry-After`) and succeeds once
//! the queue is empty, counting every call it gets.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use super::support::{b64, png, serve};

/// One canned failure.
#[derive(Debug, Clone)]
pub struct Fail {
    pub status: u16,
    pub retry_after: Option<u64>,
}

impl Fail {
    pub fn status(status: u16) -> Self {
        Self { status, retry_after: None }
    }

    pub fn retry_after(status: u16, secs: u64) -> Self {
        Self { status, retry_after: Some(secs) }
    }
}

#[derive(Clone, Default)]
struct St {
    script: Arc<Mutex<VecDeque<Fail>>>,
    calls: Arc<AtomicUsize>,
    delay: Arc<Mutex<Duration>>,
}

/// A running scripted double.
#[derive(Clone)]
pub struct Double {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    st: St,
}

impl Double {
    /// Calls received so far.
    pub fn calls(&self) -> usize {
        self.st.calls.load(Ordering::SeqCst)
    }

    /// Makes every answer wait this long first.
    pub fn set_delay(&self, d: Duration) {
        *self.st.delay.lock().unwrap() = d;
    }
}

async fn handle(State(st): State<St>) -> Response {
    st.calls.fetch_add(1, Ordering::SeqCst);
    let delay = *st.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let next = st.script.lock().unwrap().pop_front();
    match next {
        Some(f) => {
            let body = json!({"error": {"message": format!("scripted {}", f.status), "type": "server_error", "code": null}});
            let mut resp = (StatusCode::from_u16(f.status).unwrap(), axum::Json(body)).into_response();
            if let Some(s) = f.retry_after {
                resp.headers_mut().insert("retry-after", s.to_string().parse().unwrap());
            }
            resp
        }
        None => axum::Json(json!({"created": 1, "data": [{"b64_json": b64(&png(16, 16))}]})).into_response(),
    }
}

/// Starts a scripted double with `fails` queued.
pub async fn start(fails: impl IntoIterator<Item = Fail>) -> Double {
    let st = St::default();
    st.script.lock().unwrap().extend(fails);
    let router = Router::new().route("/v1/images/generations", post(handle)).with_state(st.clone());
    Double { base: serve(router).await, st }
}
