//! The model catalog: which model ids (and aliases) exist, their family,
//! where their weights or upstream provider are, their size rules and
//! defaults. It is data (`catalog/default.toml`, extended from config), not code.

use std::collections::HashMap;

use crate::error::AppError;
use crate::sampler::Sampler;
use crate::size::{Size, parse_ratio, size_for_ratio};

/// A model family: decides the pipeline (local) or marks upstream-only models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)]
pub enum Family {
    Sd15,
    Sd21,
    Sd21Turbo,
    Sdxl,
    SdxlTurbo,
    FluxSchnell,
    FluxDev,
    Sd35,
    /// Served only by an upstream provider.
    Upstream,
}

impl Family {
    /// The config/price-list spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sd15 => "sd15",
            Self::Sd21 => "sd21",
            Self::Sd21Turbo => "sd21-turbo",
            Self::Sdxl => "sdxl",
            Self::SdxlTurbo => "sdxl-turbo",
            Self::FluxSchnell => "flux-schnell",
            Self::FluxDev => "flux-dev",
            Self::Sd35 => "sd35",
            Self::Upstream => "upstream",
        }
    }
}

/// Which sizes a model accepts: an explicit list, a range, or both.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct SizeRule {
    /// Sizes always accepted.
    #[serde(default)]
    pub list: Vec<String>,
    /// Smallest side in a range rule.
    #[serde(default)]
    pub min: Option<u32>,
    /// Largest side in a range rule.
    #[serde(default)]
    pub max: Option<u32>,
    /// Each side a multiple of this in a range rule.
    #[serde(default)]
    pub multiple: Option<u32>,
    /// One side (not both) may stretch up to this (Stability's beta engine: 896).
    #[serde(default)]
    pub one_side_max: Option<u32>,
}

impl SizeRule {
    fn listed(&self) -> impl Iterator<Item = Size> + '_ {
        self.list.iter().filter_map(|s| s.parse().ok())
    }

    /// Whether `size` is allowed.
    pub fn allows(&self, size: Size) -> bool {
        if self.listed().any(|s| s == size) {
            return true;
        }
        match (self.min, self.max) {
            (Some(min), Some(max)) => {
                let m = self.multiple.unwrap_or(1);
                let stretch = self.one_side_max.unwrap_or(max);
                let sides = [size.width, size.height];
                let over = sides.iter().filter(|&&v| v > max).count();
                sides.iter().all(|&v| v >= min && v <= stretch && v % m == 0) && over <= usize::from(stretch > max)
            }
            _ => self.list.is_empty(),
        }
    }

    /// Which side to blame when `size` is refused: the one the range rule
    /// rejects on its own, else `width` (list-only rules, or both sides).
    pub fn side_at_fault(&self, size: Size) -> &'static str {
        let bad = |v: u32| match (self.min, self.max) {
            (Some(lo), Some(hi)) => v < lo || v > self.one_side_max.unwrap_or(hi) || !v.is_multiple_of(self.multiple.unwrap_or(1)),
            _ => false,
        };
        if bad(size.height) && !bad(size.width) { "height" } else { "width" }
    }

    /// Human description of what is allowed, for 400 messages.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.list.is_empty() {
            parts.push(format!("one of {}", self.list.join(", ")));
        }
        if let (Some(min), Some(max)) = (self.min, self.max) {
            let m = self.multiple.unwrap_or(1);
            parts.push(format!("WxH with each side {min}–{max} and a multiple of {m}"));
            if let Some(s) = self.one_side_max {
                parts.push(format!("one side (not both) up to {s}"));
            }
        }
        if parts.is_empty() { "any WxH".to_string() } else { parts.join(", or ") }
    }
}

/// One model the catalog knows.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelEntry {
    /// Canonical id.
    pub id: String,
    /// Other names, matched case-insensitively (dialect names, `provider/…` paths).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Family.
    pub family: Family,
    /// Hugging Face repo of the local weights, if the model can run locally.
    #[serde(default)]
    pub weights: Option<String>,
    /// Upstream provider able to serve it (`openai`, `bfl`, `google`, …).
    #[serde(default)]
    pub provider: Option<String>,
    /// Side of the native square size (512, 768, 1024).
    pub native: u32,
    /// Accepted sizes.
    #[serde(default)]
    pub sizes: SizeRule,
    /// Default step count.
    pub steps: u32,
    /// Most steps accepted.
    #[serde(default = "default_max_steps")]
    pub max_steps: u32,
    /// Default guidance.
    pub guidance: f32,
    /// Default sampler.
    #[serde(default)]
    pub sampler: Option<Sampler>,
    /// Whether the model's dialects answer asynchronously (task id + polling).
    #[serde(default)]
    pub asynchronous: bool,
    /// Longest prompt accepted, in characters.
    #[serde(default = "default_max_prompt")]
    pub max_prompt_chars: usize,
}

fn default_max_steps() -> u32 {
    100
}

fn default_max_prompt() -> usize {
    4000
}

impl ModelEntry {
    /// The native size for an aspect ratio such as `16:9`.
    pub fn size_for_ratio(&self, ratio: &str) -> Option<Size> {
        let r = parse_ratio(ratio)?;
        Some(size_for_ratio(self.native, r, 64))
    }

    /// The native square size.
    pub fn native_size(&self) -> Size {
        Size::new(self.native, self.native)
    }

    /// Checks a requested size, naming `field` in the error.
    pub fn check_size(&self, field: &str, size: Size) -> Result<(), AppError> {
        if self.sizes.allows(size) { Ok(()) } else { Err(AppError::invalid(field, format!("{size} is not available for {}; allowed: {}", self.id, self.sizes.describe()))) }
    }
}

#[derive(serde::Deserialize)]
struct CatalogFile {
    default_model: String,
    #[serde(default)]
    models: Vec<ModelEntry>,
}

/// The set of known models, looked up by id or alias, case-insensitively.
#[derive(Debug, Clone)]
pub struct Catalog {
    models: Vec<ModelEntry>,
    index: HashMap<String, usize>,
    default_model: String,
}

/// The compiled-in catalog: every model the seed platforms name.
pub const DEFAULT_CATALOG: &str = include_str!("catalog/default.toml");

impl Catalog {
    /// The compiled-in catalog.
    pub fn builtin() -> Self {
        Self::from_toml(DEFAULT_CATALOG).expect("the compiled-in catalog parses (tested)")
    }

    /// Parses a catalog document.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let file: CatalogFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut cat = Self { models: Vec::new(), index: HashMap::new(), default_model: file.default_model };
        for m in file.models {
            cat.upsert(m);
        }
        Ok(cat)
    }

    /// Adds a model or replaces the one with the same id.
    pub fn upsert(&mut self, entry: ModelEntry) {
        let pos = match self.index.get(&entry.id.to_lowercase()) {
            Some(&i) if self.models[i].id.eq_ignore_ascii_case(&entry.id) => {
                self.models[i] = entry;
                i
            }
            _ => {
                self.models.push(entry);
                self.models.len() - 1
            }
        };
        let m = &self.models[pos];
        for name in std::iter::once(&m.id).chain(&m.aliases) {
            self.index.insert(name.to_lowercase(), pos);
        }
    }

    /// Adds an alias to an existing model.
    pub fn add_alias(&mut self, alias: &str, id: &str) -> Result<(), String> {
        let pos = *self.index.get(&id.to_lowercase()).ok_or_else(|| format!("alias {alias}: unknown model {id}"))?;
        self.models[pos].aliases.push(alias.to_string());
        self.index.insert(alias.to_lowercase(), pos);
        Ok(())
    }

    /// Looks up a model by id or alias; the `opanai/` typo is accepted for `openai/`.
    pub fn resolve(&self, name: &str) -> Option<&ModelEntry> {
        let key = name.trim().to_lowercase();
        let key = match key.strip_prefix("opanai/") {
            Some(rest) => format!("openai/{rest}"),
            None => key,
        };
        self.index.get(&key).map(|&i| &self.models[i])
    }

    /// Looks up a model or answers 404 naming it.
    pub fn require(&self, name: &str) -> Result<&ModelEntry, AppError> {
        self.resolve(name).ok_or_else(|| AppError::not_found(format!("model `{name}` does not exist")))
    }

    /// The model used when a request names none.
    pub fn default_model(&self) -> &str {
        &self.default_model
    }

    /// Sets the default model.
    pub fn set_default_model(&mut self, id: &str) {
        self.default_model = id.to_string();
    }

    /// All models in catalog order.
    pub fn models(&self) -> &[ModelEntry] {
        &self.models
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_parses_and_resolves_seed_names() {
        let c = Catalog::builtin();
        for name in [
            "FLUX.1-schnell",
            "flux.1-SCHNELL",
            "flux-dev",
            "stable-diffusion-xl-1024-v1-0",
            "stable-diffusion-v1-6",
            "stable-diffusion-xl-beta-v2-2-2",
            "stable-diffusion-3-5-large",
            "stability/Stable-Diffusion-3-5-Large",
            "openai/gpt-image-1",
            "opanai/gpt-image-1",
            "google/imagen-4.0-fast-generate-001",
            "bfl/flux-kontext-max",
            "qianfan/qwen-image",
            "doubao/doubao-seedream-4-0-250828",
            "ideogram/V3",
            "qianfan/irag-1.0",
        ] {
            assert!(c.resolve(name).is_some(), "{name} should resolve");
        }
        assert!(c.resolve(c.default_model()).is_some());
        assert!(c.resolve("nope").is_none());
    }

    #[test]
    fn every_bfl_model_name_is_an_asynchronous_bfl_entry_or_the_local_dev() {
        let c = Catalog::builtin();
        for name in ["flux-pro", "flux-pro-1.1", "flux-pro-1.1-ultra", "flux-kontext-pro", "flux-kontext-max"] {
            let m = c.resolve(name).unwrap_or_else(|| panic!("{name} should resolve"));
            assert_eq!((m.provider.as_deref(), m.family, m.asynchronous), (Some("bfl"), Family::Upstream, true), "{name}");
        }
        assert_eq!(c.resolve("flux-dev").unwrap().family, Family::FluxDev);
    }

    #[test]
    fn sdxl_sizes_are_the_fixed_list() {
        let c = Catalog::builtin();
        let sdxl = c.resolve("sdxl").unwrap();
        assert!(sdxl.check_size("size", Size::new(1152, 896)).is_ok());
        let e = sdxl.check_size("size", Size::new(1024, 768)).unwrap_err();
        assert!(e.message.contains("1216x832"));
    }

    #[test]
    fn beta_engine_allows_one_long_side() {
        let c = Catalog::builtin();
        let beta = c.resolve("stable-diffusion-xl-beta-v2-2-2").unwrap();
        assert!(beta.check_size("width", Size::new(512, 896)).is_ok());
        assert!(beta.check_size("width", Size::new(896, 896)).is_err());
        assert!(beta.check_size("width", Size::new(576, 576)).is_err());
        assert!(beta.check_size("width", Size::new(64, 512)).is_err());
    }

    #[test]
    fn flux_rejects_sizes_off_the_grid() {
        let c = Catalog::builtin();
        let flux = c.resolve("FLUX.1-schnell").unwrap();
        assert!(flux.check_size("image_size", Size::new(1024, 576)).is_ok());
        let e = flux.check_size("image_size", Size::new(1000, 1000)).unwrap_err();
        assert!(e.message.contains("image_size") && e.message.contains("1024x1024"));
    }
}
