//! What every dialect renders from a finished task: its images with freshly
//! signed URLs (and bytes when a dialect inlines them).

use base64::Engine as _;
use imagegate_core::{AppError, TaskView};
use imagegate_store::Caller;

use crate::state::AppState;

/// One image of a finished task, ready to render.
#[derive(Debug, Clone)]
pub struct ImageOut {
    /// Signed, expiring URL.
    pub url: String,
    /// Seed that drew it.
    pub seed: u64,
    /// Pixels across.
    pub width: u32,
    /// Pixels down.
    pub height: u32,
    /// Object key.
    pub key: String,
}

impl AppState {
    /// The task's images with URLs signed now.
    pub async fn images_of(&self, task: &TaskView) -> Result<Vec<ImageOut>, AppError> {
        let Some(result) = &task.result else { return Ok(Vec::new()) };
        let mut out = Vec::with_capacity(result.images.len());
        for img in &result.images {
            out.push(ImageOut { url: self.objects.signed_url(&img.key).await?, seed: img.seed, width: img.width, height: img.height, key: img.key.clone() });
        }
        Ok(out)
    }

    /// Adds `x-credits-charged` (credits captured for the task, `0.000` when
    /// unmetered) and who drew it ([`with_served_by`]) to a synchronous response.
    pub async fn with_charge(&self, caller: &Caller, task: &TaskView, mut resp: axum::response::Response) -> Result<axum::response::Response, AppError> {
        resp = with_served_by(task, resp);
        let charged = self.charged(caller, task).await?;
        if let Ok(v) = http::HeaderValue::from_str(&imagegate_core::pricing::format_credits(charged)) {
            resp.headers_mut().insert("x-credits-charged", v);
        }
        Ok(resp)
    }

    /// An image's bytes, base64-encoded (for `b64_json` and Stability artifacts).
    pub async fn image_base64(&self, key: &str) -> Result<String, AppError> {
        let bytes = self.objects.get(key).await?;
        Ok(base64::engine::general_purpose::STANDARD.encode(&bytes))
    }
}

/// `x-imagegate-served-by` (the backend or channel that drew the task's
/// images, `imagegate-demo` when the demo model stood in) and, when the task
/// has one, `x-imagegate-note` (e.g. that the demo drew a smaller picture
/// and it was resized), on every response that renders a finished task.
pub fn with_served_by(task: &TaskView, mut resp: axum::response::Response) -> axum::response::Response {
    let Some(result) = &task.result else { return resp };
    if let Ok(v) = http::HeaderValue::from_str(&result.served_by) {
        resp.headers_mut().insert("x-imagegate-served-by", v);
    }
    if let Some(v) = result.note.as_deref().and_then(|n| http::HeaderValue::from_str(n).ok()) {
        resp.headers_mut().insert("x-imagegate-note", v);
    }
    resp
}
