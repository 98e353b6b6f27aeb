//! Prompt enhancement through an optional OpenAI-compatible chat channel
//! (`[prompt_enhancement] base_url, model, key_env`). When it is not
//! configured, or fails, the built-in deterministic expansion
//! ([`imagegate_core::prompt::enhance`]) stands.

use std::time::Duration;

use imagegate_core::TaskSpec;

/// Where the chat channel is.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptEnhancementConfig {
    /// Base URL of an OpenAI-compatible API (`…/v1`); `/chat/completions` is appended.
    pub base_url: String,
    /// Chat model to ask.
    pub model: String,
    /// Environment variable holding the API key (none: no `Authorization`).
    #[serde(default)]
    pub key_env: Option<String>,
    /// Request timeout in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: f64,
}

fn default_timeout() -> f64 {
    10.0
}

const SYSTEM: &str = "You rewrite prompts for an image generation model. Keep the user's subject and intent; \
add concrete details of style, composition, lighting and texture. Answer with the rewritten prompt only, in one paragraph.";

/// The chat channel, ready to call.
#[derive(Debug, Clone)]
pub struct ChatEnhancer {
    config: PromptEnhancementConfig,
    client: reqwest::Client,
}

impl ChatEnhancer {
    /// A channel from config. The timeout is clamped to 0.1 s .. one day:
    /// an infinite one would panic `Duration::from_secs_f64`.
    pub fn new(config: PromptEnhancementConfig) -> Self {
        let secs = config.timeout_secs.clamp(0.1, 86_400.0);
        let secs = if secs.is_nan() { 0.1 } else { secs };
        let client = reqwest::Client::builder().timeout(Duration::from_secs_f64(secs)).build().unwrap_or_default();
        Self { config, client }
    }

    /// Asks the chat model to rewrite `prompt`.
    pub async fn rewrite(&self, prompt: &str) -> Result<String, String> {
        let url = format!("{}/chat/completions", self.config.base_url.trim_end_matches('/'));
        let body = serde_json::json!({
            "model": self.config.model,
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
            "temperature": 0.7,
        });
        let mut req = self.client.post(&url).json(&body);
        if let Some(key) = self.config.key_env.as_deref().and_then(|v| std::env::var(v).ok()) {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("chat channel answered {}", resp.status()));
        }
        let value: serde_json::Value = resp.json().await.map_err(|e| e.to_string())?;
        let text = value["choices"][0]["message"]["content"].as_str().map(str::trim).unwrap_or_default();
        if text.is_empty() { Err("chat channel answered no text".into()) } else { Ok(text.to_string()) }
    }
}

/// Replaces a spec's built-in `revised_prompt` with the chat channel's
/// rewrite when a channel is configured; keeps the built-in one on error.
pub async fn enhance_spec(enhancer: Option<&ChatEnhancer>, spec: &mut TaskSpec) {
    let (Some(enhancer), Some(_)) = (enhancer, &spec.revised_prompt) else { return };
    let original = spec.prompt.iter().map(|p| p.text.as_str()).collect::<Vec<_>>().join(", ");
    match enhancer.rewrite(&original).await {
        Ok(text) => spec.revised_prompt = Some(text),
        Err(why) => tracing::warn!(error = %why, "prompt enhancement channel failed; using the built-in expansion"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_configured_timeout_builds_a_client() {
        for timeout_secs in [f64::INFINITY, f64::NAN, -3.0, 0.0, 1e300] {
            let config = PromptEnhancementConfig { base_url: "http://127.0.0.1:9/v1".into(), model: "m".into(), key_env: None, timeout_secs };
            let _ = ChatEnhancer::new(config);
        }
    }
}
