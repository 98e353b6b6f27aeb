//! Plans: what an account's plan allows (tasks at once, requests per minute)
//! and how many free credits it grants. Data, overridable from the `[plans]`
//! config section; the API layer enforces the limits.

use std::collections::BTreeMap;

/// The compiled-in plans (`plans.toml` beside this file).
pub const DEFAULT_PLANS: &str = include_str!("plans.toml");

/// Milliseconds in a day, for grant expiry.
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// One plan's limits and free grant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Plan {
    /// Tasks a key on this plan may have queued or running at once.
    pub concurrency: u32,
    /// Requests per minute per key.
    pub rate_per_minute: u32,
    /// Milli-credits granted when an account joins the plan (0: none).
    pub free_grant: i64,
    /// Days until the free grant expires; `None`: never.
    pub free_grant_days: Option<u32>,
}

impl Plan {
    /// When a free grant made at `now_ms` expires (unix ms), if it does.
    pub fn free_grant_expiry(&self, now_ms: i64) -> Option<i64> {
        self.free_grant_days.map(|d| now_ms.saturating_add(i64::from(d).saturating_mul(DAY_MS)))
    }
}

/// What config may say about one plan; unnamed fields keep their value (or,
/// for a new plan, the floor: 1 task, 10 per minute, no grant).
/// `free_grant_days = 0` means never.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanOverride {
    concurrency: Option<u32>,
    rate_per_minute: Option<u32>,
    free_grant: Option<i64>,
    free_grant_days: Option<u32>,
}

/// All plans by name. Deserializing one (the `[plans]` config section) starts
/// from the built-in plans and overrides only what it names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(from = "BTreeMap<String, PlanOverride>")]
pub struct PlanTable {
    plans: BTreeMap<String, Plan>,
}

impl From<BTreeMap<String, PlanOverride>> for PlanTable {
    fn from(o: BTreeMap<String, PlanOverride>) -> Self {
        let mut t = Self::builtin();
        t.apply(o);
        t
    }
}

impl Default for PlanTable {
    fn default() -> Self {
        Self::builtin()
    }
}

impl PlanTable {
    /// Name of the plan new accounts get and unknown plan names fall back to.
    pub const FREE: &'static str = "free";

    /// The built-in plans: free, basic, junior, intermediate, senior.
    pub fn builtin() -> Self {
        let o: BTreeMap<String, PlanOverride> = toml::from_str(DEFAULT_PLANS).expect("the compiled-in plans parse (tested)");
        let mut t = Self { plans: BTreeMap::new() };
        t.apply(o);
        t
    }

    /// Parses a `[plans]` document on top of the built-in plans.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    fn apply(&mut self, o: BTreeMap<String, PlanOverride>) {
        for (name, p) in o {
            let plan = self.plans.entry(name.to_lowercase()).or_insert_with(|| FLOOR.clone());
            if let Some(v) = p.concurrency {
                plan.concurrency = v;
            }
            if let Some(v) = p.rate_per_minute {
                plan.rate_per_minute = v;
            }
            if let Some(v) = p.free_grant {
                plan.free_grant = v;
            }
            if let Some(v) = p.free_grant_days {
                plan.free_grant_days = (v > 0).then_some(v);
            }
        }
    }

    /// The plan with this name (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&Plan> {
        self.plans.get(&name.to_lowercase())
    }

    /// The plan with this name, or the free plan for names we do not know
    /// (an account whose plan was removed from config keeps working, at the floor).
    pub fn get_or_free(&self, name: &str) -> &Plan {
        self.get(name).or_else(|| self.plans.get(Self::FREE)).unwrap_or(&FLOOR)
    }

    /// All plans by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Plan)> {
        self.plans.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// Defaults for fields a new plan leaves out, and the plan of last resort
/// (config can add and change plans but not remove `free`, so rarely used).
static FLOOR: Plan = Plan { concurrency: 1, rate_per_minute: 10, free_grant: 0, free_grant_days: None };

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_plans_have_the_documented_concurrency() {
        let t = PlanTable::builtin();
        let got: Vec<_> = ["free", "basic", "junior", "intermediate", "senior"].iter().map(|n| t.get(n).unwrap().concurrency).collect();
        assert_eq!(got, vec![1, 1, 2, 3, 5]);
        assert_eq!(t.iter().count(), 5);
    }

    #[test]
    fn free_grants_expire_after_thirty_days_and_paid_ones_never() {
        let t = PlanTable::builtin();
        assert_eq!(t.get("free").unwrap().free_grant_expiry(0), Some(30 * DAY_MS));
        assert!(t.get("free").unwrap().free_grant > 0);
        assert_eq!(t.get("senior").unwrap().free_grant_expiry(0), None);
    }

    #[test]
    fn config_overrides_only_what_it_names() {
        let t = PlanTable::from_toml("[basic]\nconcurrency = 4\n[Enterprise]\nconcurrency = 20\nfree_grant_days = 0\n").unwrap();
        let basic = t.get("basic").unwrap();
        assert_eq!(basic.concurrency, 4);
        assert_eq!(basic.rate_per_minute, PlanTable::builtin().get("basic").unwrap().rate_per_minute);
        let ent = t.get("enterprise").unwrap();
        assert_eq!((ent.concurrency, ent.free_grant_days), (20, None));
        assert_eq!(t.get("senior"), PlanTable::builtin().get("senior"));
        assert_eq!(t.get_or_free("gone"), t.get("free").unwrap());
        assert!(PlanTable::from_toml("[basic]\nconcurency = 4\n").is_err(), "typos are errors, not silent defaults");
    }
}
