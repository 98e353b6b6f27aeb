//! Pricing: what a task costs, as a pure function of its spec, its catalog
//! entry and the price list. Money is integer milli-credits (100 credits =
//! 1 yuan, 1 credit = 1000 milli-credits); nothing here touches floats except
//! the display-only megapixel count in a [`Breakdown`].
//!
//! Local models cost a family (or per-model) price per megapixel per step,
//! a megapixel being 1024×1024 = 1,048,576 px. Upstream models cost a price
//! per image from rules matched on model, provider, size and quality.

pub mod plans;

use std::collections::{BTreeMap, HashMap};

use crate::catalog::{Family, ModelEntry};
use crate::spec::TaskSpec;

pub use plans::{Plan, PlanTable};

/// Pixels in one megapixel as priced here (so 1024×1024 is exactly 1 MPx).
pub const PIXELS_PER_MEGAPIXEL: u64 = 1 << 20;
/// Milli-credits in one credit.
pub const MILLI_PER_CREDIT: i64 = 1000;
/// Micro-credits in one milli-credit (the unit of local per-step prices).
const MICRO_PER_MILLI: u128 = 1000;

/// The compiled-in price list (`pricing/default.toml`).
pub const DEFAULT_PRICES: &str = include_str!("pricing/default.toml");

/// One per-image price rule for upstream models; every field it names must
/// match the task, and the most specific matching rule wins.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UpstreamRule {
    /// Catalog id or alias of the model (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The model's upstream provider (`openai`, `bfl`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Requested size, `WxH`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Requested `quality` (or `rendering_speed`) as the client spelled it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
    /// Milli-credits per image.
    pub per_image: i64,
}

impl UpstreamRule {
    /// Ranks how specific the rule is; `None` if it does not apply.
    fn specificity(&self, model: &ModelEntry, spec: &TaskSpec) -> Option<u32> {
        let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        let mut score = 0;
        if let Some(m) = &self.model {
            if !(eq(m, &model.id) || model.aliases.iter().any(|a| eq(m, a))) {
                return None;
            }
            score += 8;
        }
        if let Some(p) = &self.provider {
            if !model.provider.as_deref().is_some_and(|mp| eq(p, mp)) {
                return None;
            }
            score += 1;
        }
        if let Some(s) = &self.size {
            if !eq(s, &spec.size.to_string()) {
                return None;
            }
            score += 2;
        }
        if let Some(q) = &self.quality {
            if !quality_of(spec).is_some_and(|sq| eq(q, sq)) {
                return None;
            }
            score += 2;
        }
        Some(score)
    }

    /// Two rules with the same key replace each other when config overrides defaults.
    fn same_key(&self, other: &Self) -> bool {
        let norm = |o: &Option<String>| o.as_deref().map(str::to_ascii_lowercase);
        norm(&self.model) == norm(&other.model)
            && norm(&self.provider) == norm(&other.provider)
            && norm(&self.size) == norm(&other.size)
            && norm(&self.quality) == norm(&other.quality)
    }
}

/// The quality tier a client asked for: OpenAI's `quality`, or Ideogram's `rendering_speed`.
fn quality_of(spec: &TaskSpec) -> Option<&str> {
    ["quality", "rendering_speed"].iter().find_map(|k| spec.extras.get(*k).and_then(|v| v.as_str()))
}

/// The price list. Deserializing one (from the `[pricing]` config section)
/// starts from the compiled-in defaults and overrides only what it names.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(from = "PriceOverrides")]
pub struct PriceList {
    /// Micro-credits per megapixel per step, by family (`flux-dev`, `sdxl`, …).
    pub local: HashMap<Family, i64>,
    /// Micro-credits per megapixel per step for single models (catalog id),
    /// taking precedence over their family's price.
    pub models: BTreeMap<String, i64>,
    /// Per-image rules for upstream models.
    pub upstream: Vec<UpstreamRule>,
    /// Milli-credits per image when no rule or family price applies.
    pub fallback_per_image: i64,
}

/// What a config document may say about prices; every part optional.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceOverrides {
    #[serde(default)]
    local: HashMap<Family, i64>,
    #[serde(default)]
    models: BTreeMap<String, i64>,
    #[serde(default)]
    upstream: Vec<UpstreamRule>,
    #[serde(default)]
    fallback_per_image: Option<i64>,
}

impl From<PriceOverrides> for PriceList {
    fn from(o: PriceOverrides) -> Self {
        let mut list = Self::builtin();
        list.apply(o);
        list
    }
}

impl Default for PriceList {
    fn default() -> Self {
        Self::builtin()
    }
}

impl PriceList {
    /// The compiled-in defaults.
    pub fn builtin() -> Self {
        let o: PriceOverrides = toml::from_str(DEFAULT_PRICES).expect("the compiled-in price list parses (tested)");
        let mut list = Self { local: HashMap::new(), models: BTreeMap::new(), upstream: Vec::new(), fallback_per_image: 0 };
        list.apply(o);
        list
    }

    /// Parses a `[pricing]` document on top of the defaults.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    fn apply(&mut self, o: PriceOverrides) {
        self.local.extend(o.local);
        self.models.extend(o.models.into_iter().map(|(k, v)| (k.to_lowercase(), v)));
        for rule in o.upstream {
            match self.upstream.iter_mut().find(|r| r.same_key(&rule)) {
                Some(r) => *r = rule,
                None => self.upstream.push(rule),
            }
        }
        if let Some(f) = o.fallback_per_image {
            self.fallback_per_image = f;
        }
    }

    /// The unit price that applies to a task on `model`.
    pub fn unit_price(&self, spec: &TaskSpec, model: &ModelEntry) -> UnitPrice {
        if model.family != Family::Upstream {
            let per_step = self.models.get(&model.id.to_lowercase()).or_else(|| self.local.get(&model.family));
            if let Some(&microcredits) = per_step {
                return UnitPrice::PerMegapixelStep { microcredits };
            }
        }
        let best = self
            .upstream
            .iter()
            .filter_map(|r| r.specificity(model, spec).map(|s| (s, r)))
            // max_by_key keeps the last maximum; reverse so the first listed rule wins ties.
            .rev()
            .max_by_key(|(s, _)| *s);
        UnitPrice::PerImage { millicredits: best.map_or(self.fallback_per_image, |(_, r)| r.per_image) }
    }
}

/// How a task's price was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "per", rename_all = "snake_case")]
pub enum UnitPrice {
    /// Local models: micro-credits per megapixel per step.
    PerMegapixelStep {
        /// Micro-credits (1 credit = 1,000,000).
        microcredits: i64,
    },
    /// Upstream models: milli-credits per image.
    PerImage {
        /// Milli-credits (1 credit = 1000).
        millicredits: i64,
    },
}

/// The parts of a price, for showing to clients; money is in the [`Quote`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Breakdown {
    /// Canonical model id.
    pub model: String,
    /// Its family.
    pub family: Family,
    /// Megapixels per image, for display only (never used to compute money).
    pub megapixels: f64,
    /// Steps charged (`None` for per-image prices).
    pub steps: Option<u32>,
    /// Images charged.
    pub images: u32,
    /// The unit price applied.
    pub unit: UnitPrice,
}

/// A task's price.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Quote {
    /// Price of the whole task: `per_image_millicredits × images`.
    pub total_millicredits: i64,
    /// Price of one image (what a partially completed task is charged per image made).
    pub per_image_millicredits: i64,
    /// How it was computed.
    pub breakdown: Breakdown,
}

/// Prices a task. Exact integer arithmetic: for local models one image costs
/// `ceil(µcredits_per_MPx_step × width × height × steps / (1,048,576 × 1000))`
/// milli-credits — computed in 128 bits and rounded up once, to the
/// milli-credit, so a price is never below the list price — and the task
/// costs that times the image count. Results saturate at `i64::MAX`.
pub fn quote(spec: &TaskSpec, model: &ModelEntry, prices: &PriceList) -> Quote {
    let unit = prices.unit_price(spec, model);
    let (per_image, steps) = match unit {
        UnitPrice::PerMegapixelStep { microcredits } => {
            let num = u128::try_from(microcredits.max(0)).unwrap_or(0) * u128::from(spec.size.pixels()) * u128::from(spec.steps);
            let den = u128::from(PIXELS_PER_MEGAPIXEL) * MICRO_PER_MILLI;
            (saturate(num.div_ceil(den)), Some(spec.steps))
        }
        UnitPrice::PerImage { millicredits } => (millicredits.max(0), None),
    };
    let total = saturate(u128::try_from(per_image).unwrap_or(0) * u128::from(spec.count));
    Quote {
        total_millicredits: total,
        per_image_millicredits: per_image,
        breakdown: Breakdown {
            model: model.id.clone(),
            family: model.family,
            megapixels: spec.size.pixels() as f64 / PIXELS_PER_MEGAPIXEL as f64,
            steps,
            images: spec.count,
            unit,
        },
    }
}

fn saturate(v: u128) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Formats milli-credits as credits with three decimals (`11.000`), for messages.
pub fn format_credits(millicredits: i64) -> String {
    let sign = if millicredits < 0 { "-" } else { "" };
    let m = millicredits.unsigned_abs();
    format!("{sign}{}.{:03}", m / 1000, m % 1000)
}

#[cfg(test)]
mod tests;
