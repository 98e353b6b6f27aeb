//! Provider adapters: one module per provider API, each translating a
//! [`TaskSpec`] into that provider's request and its answer (base64, URLs,
//! or an asynchronous job to poll) back into [`RawImage`]s. The relay owns
//! everything else (routing, timeouts, downloads, breakers).

pub(crate) mod bfl;
pub(crate) mod dashscope;
pub(crate) mod google;
pub(crate) mod ideogram;
pub(crate) mod openai;
pub(crate) mod qianfan;
pub(crate) mod stability;
pub(crate) mod volcengine;

use std::sync::OnceLock;
use std::time::Duration;

use imagegate_core::backend::AcceptHook;
use imagegate_core::{CancelFlag, Size, TaskSpec};
use serde_json::Value;

use crate::config::ApiKey;
use crate::error::UpstreamError;
use crate::images::RawImage;

/// The upstream APIs a channel can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    /// OpenAI Images API.
    Openai,
    /// Google Imagen through the Gemini API.
    Google,
    /// Black Forest Labs FLUX API (asynchronous).
    Bfl,
    /// Stability AI (v2beta stable-image and v1 generation).
    Stability,
    /// Ideogram 3.0.
    Ideogram,
    /// Volcengine Ark images (Seedream).
    Volcengine,
    /// Alibaba DashScope (Qwen-Image, asynchronous).
    Dashscope,
    /// Baidu Qianfan (iRAG).
    Qianfan,
    /// Any gateway speaking the OpenAI Images API, another imagegate included.
    OpenaiCompatible,
}

impl Provider {
    /// The catalog's spelling (`ModelEntry.provider`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::Google => "google",
            Self::Bfl => "bfl",
            Self::Stability => "stability",
            Self::Ideogram => "ideogram",
            Self::Volcengine => "volcengine",
            Self::Dashscope => "dashscope",
            Self::Qianfan => "qianfan",
            Self::OpenaiCompatible => "openai-compatible",
        }
    }

    /// The public endpoint used when a channel names no `base_url`.
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            Self::Openai => Some("https://api.openai.com/v1"),
            Self::Google => Some("https://generativelanguage.googleapis.com/v1beta"),
            Self::Bfl => Some("https://api.bfl.ai/v1"),
            Self::Stability => Some("https://api.stability.ai"),
            Self::Ideogram => Some("https://api.ideogram.ai"),
            Self::Volcengine => Some("https://ark.cn-beijing.volces.com/api/v3"),
            Self::Dashscope => Some("https://dashscope.aliyuncs.com/api/v1"),
            Self::Qianfan => Some("https://qianfan.baidubce.com/v2"),
            Self::OpenaiCompatible => None,
        }
    }

    /// The provider's own name for a catalog model, when no `model_map` entry says otherwise.
    pub fn upstream_model(self, catalog_id: &str) -> String {
        let lower = catalog_id.to_ascii_lowercase();
        let mapped = match (self, lower.as_str()) {
            (Self::Bfl, "flux-1.1-pro") => "flux-pro-1.1",
            (Self::Bfl, "flux.1-kontext-pro") => "flux-kontext-pro",
            (Self::Bfl, "flux.1-dev") => "flux-dev",
            (Self::Stability, "stable-diffusion-3-5-large") => "sd3.5-large",
            (Self::Stability, "stable-diffusion-3-5-medium") => "sd3.5-medium",
            (Self::Stability, "stable-diffusion-3-5-large-turbo") => "sd3.5-large-turbo",
            (Self::Dashscope | Self::Ideogram | Self::Qianfan, _) => return lower,
            _ => return catalog_id.to_string(),
        };
        mapped.to_string()
    }

    pub(crate) fn adapter(self) -> Box<dyn Adapter> {
        match self {
            Self::Openai => Box::new(openai::OpenAi { compatible: false }),
            Self::OpenaiCompatible => Box::new(openai::OpenAi { compatible: true }),
            Self::Google => Box::new(google::Google),
            Self::Bfl => Box::new(bfl::Bfl),
            Self::Stability => Box::new(stability::Stability),
            Self::Ideogram => Box::new(ideogram::Ideogram),
            Self::Volcengine => Box::new(volcengine::Volcengine),
            Self::Dashscope => Box::new(dashscope::DashScope),
            Self::Qianfan => Box::new(qianfan::Qianfan),
        }
    }
}

/// Everything an adapter needs for one call.
pub(crate) struct Call<'a> {
    pub http: &'a reqwest::Client,
    /// Without a trailing slash.
    pub base_url: &'a str,
    pub key: Option<&'a ApiKey>,
    /// The provider's model name.
    pub model: &'a str,
    pub spec: &'a TaskSpec,
    pub cancel: &'a CancelFlag,
    pub poll_interval: Duration,
    /// Set by the adapter the moment the provider accepts (and will bill) work.
    pub accepted: &'a OnceLock<String>,
    /// The channel's name, for resume tokens.
    pub channel: &'a str,
    /// What to pick up from an earlier attempt, and where to report what
    /// the provider accepts.
    pub resume: Resume<'a>,
}

/// What a call picks up from an earlier attempt, and where it reports
/// what the provider accepts (see [`Call::accepted_state`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Resume<'a> {
    /// The adapter's state recorded through [`Call::accepted_state`] by an
    /// earlier attempt on this channel, to pick up instead of submitting again.
    pub state: Option<&'a Value>,
    /// Where the accepted state goes (the queue stores it on the task).
    pub on_accept: Option<&'a AcceptHook>,
}

/// What [`Call::accepted_state`] records: the channel and the adapter's own state.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct ResumeToken {
    pub channel: String,
    pub state: Value,
}

impl Call<'_> {
    /// `base_url` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The key's text, or empty when the channel has none.
    pub fn key(&self) -> &str {
        self.key.map_or("", ApiKey::expose)
    }

    /// Adds `Authorization: Bearer <key>` when the channel has a key.
    pub fn bearer(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.key {
            Some(k) => rb.bearer_auth(k.expose()),
            None => rb,
        }
    }

    /// Records that the provider accepted job `id`; later failures are final.
    pub fn accept(&self, id: &str) {
        let _ = self.accepted.set(id.to_string());
    }

    /// Records what an async adapter must know to pick up the jobs the
    /// provider accepted so far, should this attempt not see them through
    /// (its process stops): the adapter reads it back from `resume`.
    pub fn accepted_state(&self, state: Value) {
        if let Some(hook) = self.resume.on_accept {
            let token = ResumeToken { channel: self.channel.to_string(), state };
            match serde_json::to_string(&token) {
                Ok(text) => hook.accepted(text),
                Err(e) => tracing::warn!(channel = %self.channel, error = %e, "the provider's job could not be recorded"),
            }
        }
    }

    /// Waits one poll interval, or stops if the task was cancelled.
    pub async fn poll_wait(&self) -> Result<(), UpstreamError> {
        if self.cancel.is_cancelled() {
            return Err(UpstreamError::Cancelled);
        }
        tokio::time::sleep(self.poll_interval).await;
        if self.cancel.is_cancelled() { Err(UpstreamError::Cancelled) } else { Ok(()) }
    }

    /// The reference image as bytes, for providers that take uploads. Only
    /// inline images (data URI or base64) are used: fetching a client's URL
    /// from here would let clients make this server fetch arbitrary
    /// addresses, so a URL is `Invalid` and the relay tries a channel whose
    /// provider fetches URLs itself.
    pub fn inline_reference(&self) -> Result<Option<(Vec<u8>, imagegate_core::ImageFormat)>, UpstreamError> {
        let Some(src) = self.init_image() else { return Ok(None) };
        let invalid = |message: String| UpstreamError::Invalid { field: "image".into(), message };
        if src.starts_with("http://") || src.starts_with("https://") {
            return Err(invalid("this provider takes uploads; send the reference image inline (data URI or base64)".into()));
        }
        let bytes = crate::images::decode_base64(&src).map_err(|e| invalid(e.to_string()))?;
        let (format, _, _) = crate::images::inspect(&bytes).map_err(|e| invalid(e.to_string()))?;
        Ok(Some((bytes, format)))
    }

    /// The task's inpainting mask as a PNG in OpenAI's convention (alpha
    /// zero where to repaint; ours is white there), for an upload.
    pub fn openai_mask(&self) -> Result<Option<Vec<u8>>, UpstreamError> {
        let Some(source) = self.spec.init_image.as_ref().and_then(|i| i.mask.as_deref()) else { return Ok(None) };
        let invalid = |message: String| UpstreamError::Invalid { field: "mask".into(), message };
        let bytes = crate::images::decode_base64(source).map_err(|e| invalid(e.to_string()))?;
        let grey = image::load_from_memory(&bytes).map_err(|e| invalid(format!("not an image: {e}")))?.to_luma8();
        let rgba = image::RgbaImage::from_fn(grey.width(), grey.height(), |x, y| image::Rgba([0, 0, 0, if grey.get_pixel(x, y)[0] >= 128 { 0 } else { 255 }]));
        let mut png = Vec::new();
        rgba.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).map_err(|e| invalid(format!("re-encoding: {e}")))?;
        Ok(Some(png))
    }

    /// Refuses a task with a reference image on an endpoint that only
    /// draws from text, rather than silently dropping the image; the relay
    /// then tries a channel that can use it.
    pub fn text_only(&self, endpoint: &str) -> Result<(), UpstreamError> {
        match self.init_image() {
            Some(_) => Err(UpstreamError::Invalid { field: "image".into(), message: format!("{endpoint} draws from text only; a reference image needs another channel") }),
            None => Ok(()),
        }
    }

    /// A family-specific input field passed through by the dialect.
    pub fn extra(&self, key: &str) -> Option<&Value> {
        self.spec.extras.get(key).filter(|v| !v.is_null())
    }

    /// The first of `keys` present in the extras, as text (numbers are stringified).
    pub fn extra_str(&self, keys: &[&str]) -> Option<String> {
        keys.iter().find_map(|k| match self.extra(k)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        })
    }

    /// The reference image, if the task has one: the spec's init image, else
    /// a family field a dialect passed through (`refer_image`, `input_image`, `image`).
    pub fn init_image(&self) -> Option<String> {
        self.spec.init_image.as_ref().map(|i| i.source.clone()).filter(|s| !s.is_empty()).or_else(|| self.extra_str(&["refer_image", "input_image", "image"]))
    }
}

/// What an adapter produced.
#[derive(Debug, Clone, Default)]
pub(crate) struct Output {
    pub images: Vec<RawImage>,
    pub request_id: Option<String>,
    /// Told to the client (e.g. that the size was snapped to one the provider has).
    pub note: Option<String>,
}

/// One provider API.
#[async_trait::async_trait]
pub(crate) trait Adapter: Send + Sync {
    /// Makes `call.spec.count` images (or fewer if the provider returns fewer).
    async fn generate(&self, call: &Call<'_>) -> Result<Output, UpstreamError>;

    /// Whether this adapter sends an inpainting mask on. Those that do not
    /// are passed over for a masked task (see `Channel::call`) rather than
    /// repainting the whole image.
    fn takes_masks(&self) -> bool {
        false
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// `size` as a reduced ratio, e.g. 1344x768 → (7, 4).
pub(crate) fn reduced_ratio(size: Size) -> (u32, u32) {
    let g = gcd(size.width, size.height).max(1);
    (size.width / g, size.height / g)
}

/// The allowed ratio (written `a{sep}b`) nearest to `size` in log space.
pub(crate) fn nearest_ratio<'r>(size: Size, allowed: &[&'r str]) -> &'r str {
    let target = (f64::from(size.width) / f64::from(size.height)).ln();
    let value = |r: &str| -> f64 {
        let (a, b) = imagegate_core::size::parse_ratio(r).unwrap_or((1, 1));
        (f64::from(a) / f64::from(b)).ln()
    };
    allowed.iter().copied().min_by(|a, b| (value(a) - target).abs().total_cmp(&(value(b) - target).abs())).unwrap_or("1:1")
}

/// Seed for providers whose seeds are 31-bit; the value sent is the one reported.
pub(crate) fn seed31(seed: u64) -> u64 {
    seed % 2_147_483_648
}

/// The JSON `Value` of an extra as-is, for pass-through into a JSON body.
pub(crate) fn put_extra(call: &Call<'_>, body: &mut serde_json::Map<String, Value>, from: &str, to: &str) {
    if let Some(v) = call.extra(from) {
        body.insert(to.to_string(), v.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_snap_to_the_nearest_allowed() {
        let allowed = ["1:1", "3:4", "4:3", "9:16", "16:9"];
        assert_eq!(nearest_ratio(Size::new(1344, 768), &allowed), "16:9");
        assert_eq!(nearest_ratio(Size::new(1024, 1024), &allowed), "1:1");
        assert_eq!(nearest_ratio(Size::new(896, 1152), &allowed), "3:4");
        assert_eq!(reduced_ratio(Size::new(1344, 768)), (7, 4));
    }

    #[test]
    fn catalog_ids_map_to_provider_names() {
        assert_eq!(Provider::Bfl.upstream_model("FLUX-1.1-pro"), "flux-pro-1.1");
        assert_eq!(Provider::Stability.upstream_model("stable-diffusion-3-5-large"), "sd3.5-large");
        assert_eq!(Provider::Dashscope.upstream_model("Qwen-Image"), "qwen-image");
        assert_eq!(Provider::Openai.upstream_model("gpt-image-1"), "gpt-image-1");
    }
}
