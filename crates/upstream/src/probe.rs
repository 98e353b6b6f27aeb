//! Testing one channel by hand (`imagegate channels test NAME`): a call to a
//! free endpoint of the provider where it has one (a model list or the
//! account's balance — checks URL, key and reachability without spending),
//! otherwise one minimal 1-image generation, which the provider bills and
//! which the caller must therefore allow explicitly. Either way the call
//! goes to the named channel only, outside routing, and leaves its breaker
//! alone.

use std::time::{Duration, Instant};

use imagegate_core::{CancelFlag, Catalog, TaskSpec};

use crate::channel::Channel;
use crate::error::UpstreamError;
use crate::providers::Provider;

/// A provider endpoint that costs nothing to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreeEndpoint {
    /// Path under the channel's base URL.
    pub path: &'static str,
    /// What it answers, for the report.
    pub what: &'static str,
}

impl Provider {
    /// The free endpoint this provider's API documents, if any: OpenAI and
    /// compatible gateways `GET /models`, Gemini `GET /models`, BFL
    /// `GET /credits`, Stability `GET /v1/user/balance`. Ideogram, Ark,
    /// DashScope and Qianfan document no free call that checks an image key.
    pub fn free_endpoint(self) -> Option<FreeEndpoint> {
        match self {
            Self::Openai | Self::OpenaiCompatible => Some(FreeEndpoint { path: "/models", what: "model list" }),
            Self::Google => Some(FreeEndpoint { path: "/models", what: "model list" }),
            Self::Bfl => Some(FreeEndpoint { path: "/credits", what: "credit balance" }),
            Self::Stability => Some(FreeEndpoint { path: "/v1/user/balance", what: "credit balance" }),
            Self::Ideogram | Self::Volcengine | Self::Dashscope | Self::Qianfan => None,
        }
    }
}

/// How a channel test goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeMode {
    /// The free endpoint; fails when the provider has none.
    Free,
    /// One 1-image generation (spends money).
    Generate,
}

/// What a channel test did and saw.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProbeReport {
    /// Channel name.
    pub channel: String,
    /// Its provider API.
    pub provider: Provider,
    /// `GET <path>` or `generate <model>`.
    pub call: String,
    /// Whether the call succeeded.
    pub ok: bool,
    /// Wall time of the call, in milliseconds.
    pub elapsed_ms: u64,
    /// What came back (model count, balance, image size) or why it failed.
    pub detail: String,
    /// The provider's request id, for generations.
    pub provider_request_id: Option<String>,
    /// What the generation cost us by the channel's config, in milli-credits.
    pub cost_millicredits: Option<u64>,
}

impl Channel {
    /// Calls the provider's free endpoint with the channel's key.
    pub(crate) async fn probe_free(&self, endpoint: FreeEndpoint) -> Result<String, UpstreamError> {
        let url = format!("{}{}", self.base_url(), endpoint.path);
        let req = self.http().get(url);
        let req = match (self.provider, self.key()) {
            (_, None) => req,
            (Provider::Google, Some(k)) => req.header("x-goog-api-key", k.expose()),
            (Provider::Bfl, Some(k)) => req.header("x-key", k.expose()),
            (_, Some(k)) => req.bearer_auth(k.expose()),
        };
        let body: serde_json::Value = crate::http::send_ok(req).await?.json().await.map_err(crate::http::transport_error)?;
        let listed = ["data", "models"].iter().find_map(|k| body.get(k).and_then(|v| v.as_array()).map(Vec::len));
        Ok(match (listed, body.get("credits")) {
            (Some(n), _) => format!("{}: {n} entries", endpoint.what),
            (None, Some(c)) => format!("{}: {c}", endpoint.what),
            (None, None) => format!("{} answered", endpoint.what),
        })
    }
}

impl crate::UpstreamBackend {
    /// Tests channel `name` (see the module docs). `model` picks the model
    /// for a generation (default: the first the channel serves). Errors are
    /// about the request (unknown channel, no free endpoint); a failing
    /// provider call is a report with `ok: false`.
    pub async fn test_channel(&self, name: &str, mode: ProbeMode, model: Option<&str>, catalog: &Catalog) -> Result<ProbeReport, String> {
        let ch = self.channel(name).ok_or_else(|| format!("no enabled channel `{name}` (configured: {})", self.channel_names().join(", ")))?;
        let started = Instant::now();
        let mut report = ProbeReport {
            channel: ch.name.clone(),
            provider: ch.provider,
            call: String::new(),
            ok: false,
            elapsed_ms: 0,
            detail: String::new(),
            provider_request_id: None,
            cost_millicredits: None,
        };
        match mode {
            ProbeMode::Free => {
                let endpoint = ch.provider.free_endpoint().ok_or_else(|| format!("provider {} has no free endpoint", ch.provider.as_str()))?;
                report.call = format!("GET {}", endpoint.path);
                match ch.probe_free(endpoint).await {
                    Ok(detail) => (report.ok, report.detail) = (true, detail),
                    Err(e) => report.detail = e.to_string(),
                }
            }
            ProbeMode::Generate => {
                let spec = minimal_spec(ch, model, catalog)?;
                report.call = format!("generate {} (1 image, {}x{})", spec.model, spec.size.width, spec.size.height);
                match ch.call(&spec, &CancelFlag::new(), Duration::from_millis(500), crate::providers::Resume::default()).await {
                    Ok(g) => {
                        let sizes: Vec<String> = g.images.iter().map(|i| format!("{}x{} {}", i.width, i.height, i.format.ext())).collect();
                        report.ok = !g.images.is_empty();
                        report.detail = format!("{} image(s): {}", g.images.len(), sizes.join(", "));
                        report.provider_request_id = g.provider_request_id;
                        report.cost_millicredits = Some(ch.cost_per_image * g.images.len() as u64);
                    }
                    Err(e) => report.detail = e.to_string(),
                }
            }
        }
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }
}

/// One image of `model` (or the channel's first model) at its native size.
fn minimal_spec(ch: &Channel, model: Option<&str>, catalog: &Catalog) -> Result<TaskSpec, String> {
    let id = match model {
        Some(m) => catalog.resolve(m).map(|e| e.id.clone()).ok_or_else(|| format!("model `{m}` is not in the catalog"))?,
        None => ch.model_ids().into_iter().next().ok_or_else(|| format!("channel `{}` serves no model", ch.name))?,
    };
    if ch.upstream_model(&id).is_none() {
        return Err(format!("channel `{}` does not serve `{id}` (it serves {})", ch.name, ch.model_ids().join(", ")));
    }
    let entry = catalog.resolve(&id).ok_or_else(|| format!("model `{id}` is not in the catalog"))?;
    let mut spec = TaskSpec::simple(&entry.id, "a small red circle on a white background", entry.native_size());
    spec.steps = entry.steps;
    spec.guidance = entry.guidance;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_endpoints_are_the_documented_ones() {
        assert_eq!(Provider::Openai.free_endpoint().unwrap().path, "/models");
        assert_eq!(Provider::Bfl.free_endpoint().unwrap().path, "/credits");
        assert_eq!(Provider::Stability.free_endpoint().unwrap().path, "/v1/user/balance");
        assert!(Provider::Ideogram.free_endpoint().is_none());
        assert!(Provider::Dashscope.free_endpoint().is_none());
    }
}
