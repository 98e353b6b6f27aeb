//! HTTP-side settings.

/// Limits and timings of the HTTP layer.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Address to listen on.
    pub listen: String,
    /// Largest accepted request body (413 beyond).
    pub body_limit_bytes: usize,
    /// How long synchronous dialects wait for a task before answering 504.
    pub sync_wait_secs: f64,
    /// Most unfinished tasks in the queue before new ones get 503.
    pub max_queued: i64,
    /// Most tasks one account may have waiting before new ones get 429.
    pub max_waiting_per_account: i64,
    /// Accept tasks for models no backend in this process serves, because
    /// `imagegate worker` processes elsewhere do.
    pub remote_workers: bool,
    /// Externally visible base URL (for signed `/files` links); defaults to
    /// `http://` + the listen address.
    pub public_url: Option<String>,
    /// How long an authenticated key is trusted without a database read
    /// (ms; 0: every request reads). Bounds how long a key revoked by
    /// another process keeps working here.
    pub auth_cache_ms: u64,
    /// Optional OpenAI-compatible chat channel for `prompt_enhancement`.
    /// Not part of `[server]`: the binary reads it from its own top-level
    /// `[prompt_enhancement]` section.
    #[serde(skip)]
    pub prompt_enhancement: Option<crate::enhance::PromptEnhancementConfig>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            body_limit_bytes: 16 * 1024 * 1024,
            sync_wait_secs: 120.0,
            max_queued: 10_000,
            max_waiting_per_account: 100,
            remote_workers: false,
            public_url: None,
            auth_cache_ms: 1000,
            prompt_enhancement: None,
        }
    }
}

impl ApiConfig {
    /// Rejects a synchronous wait that would panic the timer built from it
    /// (negative, infinite or NaN seconds), naming the field.
    pub fn check(&self) -> Result<(), String> {
        imagegate_core::seconds::check_seconds("sync_wait_secs", self.sync_wait_secs, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_a_sync_wait_that_would_break_the_timer() {
        assert_eq!(ApiConfig::default().check(), Ok(()));
        for bad in [-1.0, f64::INFINITY, f64::NAN] {
            let err = ApiConfig { sync_wait_secs: bad, ..ApiConfig::default() }.check().unwrap_err();
            assert!(err.starts_with("sync_wait_secs must be a finite number zero or more"), "{err}");
        }
    }
}
