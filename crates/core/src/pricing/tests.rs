//! Unit tests of [`quote`] and the price list: the reference prices, rounding,
//! upstream rule matching, config overrides and monotonicity.

use proptest::prelude::*;

use super::*;
use crate::catalog::Catalog;
use crate::size::Size;
use crate::spec::LoraSpec;

fn spec(model: &str, w: u32, h: u32, steps: u32) -> TaskSpec {
    let mut s = TaskSpec::simple(model, "a lighthouse", Size::new(w, h));
    s.steps = steps;
    s
}

fn quote_of(s: &TaskSpec) -> Quote {
    let cat = Catalog::builtin();
    quote(s, cat.resolve(&s.model).unwrap(), &PriceList::builtin())
}

#[test]
fn builtin_price_list_parses_and_prices_every_local_family() {
    let p = PriceList::builtin();
    for m in Catalog::builtin().models() {
        if m.family != Family::Upstream {
            assert!(p.local.contains_key(&m.family), "{:?} has no price", m.family);
        }
    }
    assert_eq!(p, PriceList::from_toml("").unwrap(), "an empty section keeps the defaults");
}

#[test]
fn flux_dev_with_loras_at_1024_and_20_steps_costs_exactly_11_credits() {
    let mut s = spec("FLUX.1-dev", 1024, 1024, 20);
    s.loras = vec![LoraSpec { name: "style".into(), scale: 0.8 }, LoraSpec { name: "face".into(), scale: 1.0 }];
    let q = quote_of(&s);
    assert_eq!(q.total_millicredits, 11_000);
    assert_eq!(q.per_image_millicredits, 11_000);
    assert_eq!(q.breakdown.megapixels, 1.0);
    assert_eq!(q.breakdown.steps, Some(20));
    assert_eq!(q.breakdown.unit, UnitPrice::PerMegapixelStep { microcredits: 550_000 });
    assert_eq!(format_credits(q.total_millicredits), "11.000");
}

#[test]
fn sdxl_at_1024_and_20_steps_costs_exactly_5_credits() {
    let q = quote_of(&spec("sdxl", 1024, 1024, 20));
    assert_eq!(q.total_millicredits, 5_000);
    assert_eq!(q.breakdown.family, Family::Sdxl);
}

#[test]
fn several_images_cost_the_per_image_price_each() {
    let mut s = spec("sdxl", 1152, 896, 30);
    s.count = 4;
    let q = quote_of(&s);
    assert_eq!(q.total_millicredits, 4 * q.per_image_millicredits);
    assert_eq!(q.breakdown.images, 4);
}

#[test]
fn fractions_round_up_to_the_next_millicredit() {
    // 512x512 sd15 at 1 step: 80,000 µcr × 0.25 MPx = 20,000 µcr = 20 mcr exactly.
    assert_eq!(quote_of(&spec("sd15", 512, 512, 1)).per_image_millicredits, 20);
    // 576x512 at 1 step: 80,000 × 294,912 / 1,048,576 = 22,500 µcr = 22.5 mcr → 23.
    assert_eq!(quote_of(&spec("sd15", 576, 512, 1)).per_image_millicredits, 23);
}

#[test]
fn per_model_prices_override_the_family() {
    let medium = quote_of(&spec("stable-diffusion-3-5-medium", 1024, 1024, 10));
    let large = quote_of(&spec("stable-diffusion-3-5-large", 1024, 1024, 10));
    assert!(medium.total_millicredits < large.total_millicredits);
    assert_eq!(medium.breakdown.family, Family::Sd35);
}

#[test]
fn upstream_models_cost_per_image_by_size_and_quality() {
    let mut s = spec("gpt-image-1", 1024, 1024, 1);
    let auto = quote_of(&s);
    assert_eq!(auto.breakdown.unit, UnitPrice::PerImage { millicredits: 120_000 });
    assert_eq!(auto.breakdown.steps, None);
    s.extras.insert("quality".into(), "low".into());
    assert_eq!(quote_of(&s).per_image_millicredits, 8_000);
    s.size = Size::new(1536, 1024);
    assert_eq!(quote_of(&s).per_image_millicredits, 11_500, "the rule naming size and quality beats either alone");
    s.extras.insert("quality".into(), "HIGH".into());
    assert_eq!(quote_of(&s).per_image_millicredits, 180_000);

    let mut ideo = spec("ideogram/V3", 1024, 1024, 1);
    assert_eq!(quote_of(&ideo).per_image_millicredits, 43_500, "provider default");
    ideo.extras.insert("rendering_speed".into(), "TURBO".into());
    assert_eq!(quote_of(&ideo).per_image_millicredits, 21_500);
    assert_eq!(quote_of(&spec("imagen-4.0-ultra-generate-001", 1024, 1024, 1)).per_image_millicredits, 43_500);
    assert_eq!(quote_of(&spec("imagen-4.0-generate-001", 1024, 1024, 1)).per_image_millicredits, 29_000);
}

#[test]
fn every_catalog_model_has_a_positive_price() {
    let cat = Catalog::builtin();
    let p = PriceList::builtin();
    for m in cat.models() {
        let q = quote(&spec(&m.id, m.native, m.native, m.steps), m, &p);
        assert!(q.total_millicredits > 0, "{} is free", m.id);
    }
}

#[test]
fn config_overrides_replace_only_what_they_name() {
    let text = r#"
        fallback_per_image = 1
        [local]
        sdxl = 300_000
        [models]
        "FLUX.1-dev" = 600_000
        [[upstream]]
        model = "gpt-image-1"
        quality = "low"
        per_image = 9_000
    "#;
    let p = PriceList::from_toml(text).unwrap();
    let b = PriceList::builtin();
    assert_eq!(p.local[&Family::Sdxl], 300_000);
    assert_eq!(p.local[&Family::FluxSchnell], b.local[&Family::FluxSchnell]);
    assert_eq!(p.upstream.len(), b.upstream.len(), "a rule with the same key replaces, not adds");
    let cat = Catalog::builtin();
    let mut s = spec("gpt-image-1", 1024, 1024, 1);
    s.extras.insert("quality".into(), "low".into());
    assert_eq!(quote(&s, cat.resolve("gpt-image-1").unwrap(), &p).per_image_millicredits, 9_000);
    let dev = spec("flux-dev", 1024, 1024, 20);
    assert_eq!(quote(&dev, cat.resolve("flux-dev").unwrap(), &p).total_millicredits, 12_000);
    assert!(PriceList::from_toml("[local]\nsdxxl = 1\n").is_err(), "unknown families are errors");
}

#[test]
fn huge_requests_saturate_instead_of_overflowing() {
    let cat = Catalog::builtin();
    let mut p = PriceList::builtin();
    p.local.insert(Family::Sdxl, i64::MAX);
    let mut s = spec("sdxl", 1024, 1024, 1000);
    s.count = 10;
    assert_eq!(quote(&s, cat.resolve("sdxl").unwrap(), &p).total_millicredits, i64::MAX);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// More pixels, more steps or more images never cost less.
    #[test]
    fn prices_are_monotonic(
        model in prop::sample::select(vec!["FLUX.1-dev", "FLUX.1-schnell", "sdxl", "sd15", "sd21", "sd-turbo", "sdxl-turbo", "stable-diffusion-3-5-large"]),
        w in 1u32..4096, h in 1u32..4096, dw in 0u32..512, dh in 0u32..512,
        steps in 1u32..200, ds in 0u32..50, n in 1u32..10, dn in 0u32..4,
    ) {
        let base = quote_of(&spec(model, w, h, steps));
        let mut bigger = spec(model, w + dw, h + dh, steps + ds);
        bigger.count = 1 + dn;
        let more = quote_of(&bigger);
        prop_assert!(more.per_image_millicredits >= base.per_image_millicredits);
        prop_assert!(more.total_millicredits >= base.total_millicredits);
        let mut many = spec(model, w, h, steps);
        many.count = n;
        prop_assert_eq!(quote_of(&many).total_millicredits, base.per_image_millicredits * i64::from(n));
        // Rounding up: never below the exact price, never a whole milli-credit above it.
        let p = PriceList::builtin().unit_price(&base_spec(model), Catalog::builtin().resolve(model).unwrap());
        if let UnitPrice::PerMegapixelStep { microcredits } = p {
            let exact_num = microcredits as u128 * u128::from(w) * u128::from(h) * u128::from(steps);
            let den = 1_048_576u128 * 1000;
            let charged = base.per_image_millicredits as u128;
            prop_assert!(charged * den >= exact_num && (charged.saturating_sub(1)) * den < exact_num.max(1));
        }
    }
}

fn base_spec(model: &str) -> TaskSpec {
    spec(model, 1024, 1024, 1)
}
