//! FLUX transformer tensor names: diffusers' `FluxTransformer2DModel`
//! (split `to_q`/`to_k`/`to_v`, `(scale, shift)` final modulation) ↔ the
//! original BFL single file that candle's `flux::model::Flux` reads (fused
//! `qkv` and `linear1`, `(shift, scale)`). Both directions are one rule
//! table, so the fixture's inverse mapping and the loader cannot drift.

use std::collections::HashMap;

use candle_core::Tensor;

use crate::error::{EngineError, Result};

/// One BFL module made of one or more diffusers modules concatenated on dim 0.
pub(crate) struct Rule {
    pub(crate) bfl: String,
    pub(crate) diffusers: Vec<String>,
    /// (BFL parameter, diffusers parameter) pairs; absent pairs are skipped.
    pub(crate) params: &'static [(&'static str, &'static str)],
    /// The final layer's modulation halves are swapped between the layouts.
    pub(crate) swap_halves: bool,
}

pub(crate) const LINEAR: &[(&str, &str)] = &[("weight", "weight"), ("bias", "bias")];
pub(crate) const RMS: &[(&str, &str)] = &[("scale", "weight")];

pub(crate) fn rule(bfl: impl Into<String>, diffusers: &[String], params: &'static [(&'static str, &'static str)]) -> Rule {
    Rule { bfl: bfl.into(), diffusers: diffusers.to_vec(), params, swap_halves: false }
}

/// Number of blocks `prefix.{i}.…` present in `names`.
pub(crate) fn count_blocks<'a>(names: impl Iterator<Item = &'a String>, prefix: &str) -> usize {
    names.filter_map(|n| n.strip_prefix(prefix)?.split('.').next()?.parse::<usize>().ok()).map(|i| i + 1).max().unwrap_or(0)
}

/// The rules for a model with `double` double-stream and `single` single-stream blocks.
fn rules(double: usize, single: usize) -> Vec<Rule> {
    let one = |s: &str| vec![s.to_string()];
    let mut r = vec![
        rule("img_in", &one("x_embedder"), LINEAR),
        rule("txt_in", &one("context_embedder"), LINEAR),
        rule("time_in.in_layer", &one("time_text_embed.timestep_embedder.linear_1"), LINEAR),
        rule("time_in.out_layer", &one("time_text_embed.timestep_embedder.linear_2"), LINEAR),
        rule("guidance_in.in_layer", &one("time_text_embed.guidance_embedder.linear_1"), LINEAR),
        rule("guidance_in.out_layer", &one("time_text_embed.guidance_embedder.linear_2"), LINEAR),
        rule("vector_in.in_layer", &one("time_text_embed.text_embedder.linear_1"), LINEAR),
        rule("vector_in.out_layer", &one("time_text_embed.text_embedder.linear_2"), LINEAR),
        rule("final_layer.linear", &one("proj_out"), LINEAR),
        Rule { swap_halves: true, ..rule("final_layer.adaLN_modulation.1", &one("norm_out.linear"), LINEAR) },
    ];
    for i in 0..double {
        let (b, d) = (format!("double_blocks.{i}"), format!("transformer_blocks.{i}"));
        let many = |names: &[&str]| names.iter().map(|n| format!("{d}.{n}")).collect::<Vec<_>>();
        r.extend([
            rule(format!("{b}.img_mod.lin"), &many(&["norm1.linear"]), LINEAR),
            rule(format!("{b}.txt_mod.lin"), &many(&["norm1_context.linear"]), LINEAR),
            rule(format!("{b}.img_attn.qkv"), &many(&["attn.to_q", "attn.to_k", "attn.to_v"]), LINEAR),
            rule(format!("{b}.txt_attn.qkv"), &many(&["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"]), LINEAR),
            rule(format!("{b}.img_attn.norm.query_norm"), &many(&["attn.norm_q"]), RMS),
            rule(format!("{b}.img_attn.norm.key_norm"), &many(&["attn.norm_k"]), RMS),
            rule(format!("{b}.txt_attn.norm.query_norm"), &many(&["attn.norm_added_q"]), RMS),
            rule(format!("{b}.txt_attn.norm.key_norm"), &many(&["attn.norm_added_k"]), RMS),
            rule(format!("{b}.img_attn.proj"), &many(&["attn.to_out.0"]), LINEAR),
            rule(format!("{b}.txt_attn.proj"), &many(&["attn.to_add_out"]), LINEAR),
            rule(format!("{b}.img_mlp.0"), &many(&["ff.net.0.proj"]), LINEAR),
            rule(format!("{b}.img_mlp.2"), &many(&["ff.net.2"]), LINEAR),
            rule(format!("{b}.txt_mlp.0"), &many(&["ff_context.net.0.proj"]), LINEAR),
            rule(format!("{b}.txt_mlp.2"), &many(&["ff_context.net.2"]), LINEAR),
        ]);
    }
    for i in 0..single {
        let (b, s) = (format!("single_blocks.{i}"), format!("single_transformer_blocks.{i}"));
        let many = |names: &[&str]| names.iter().map(|n| format!("{s}.{n}")).collect::<Vec<_>>();
        r.extend([
            rule(format!("{b}.linear1"), &many(&["attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"]), LINEAR),
            rule(format!("{b}.linear2"), &many(&["proj_out"]), LINEAR),
            rule(format!("{b}.norm.query_norm"), &many(&["attn.norm_q"]), RMS),
            rule(format!("{b}.norm.key_norm"), &many(&["attn.norm_k"]), RMS),
            rule(format!("{b}.modulation.lin"), &many(&["norm.linear"]), LINEAR),
        ]);
    }
    r
}

/// `module.param`, or the module alone for a bare tensor (empty param).
fn join(module: &str, param: &str) -> String {
    if param.is_empty() { module.to_string() } else { format!("{module}.{param}") }
}

/// `[a; b]` → `[b; a]` on dim 0.
fn swap_halves(t: &Tensor) -> Result<Tensor> {
    let n = t.dim(0)? / 2;
    Ok(Tensor::cat(&[t.narrow(0, n, n)?, t.narrow(0, 0, n)?], 0)?)
}

/// Whether `names` are in diffusers' layout (else BFL's).
pub fn is_diffusers(names: &HashMap<String, Tensor>) -> bool {
    names.contains_key("x_embedder.weight")
}

/// diffusers tensors → BFL tensors (q/k/v fused). Unknown names are an error,
/// so a model variant we do not map fails loudly instead of loading half.
pub fn diffusers_to_bfl(t: HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
    let rules = rules(count_blocks(t.keys(), "transformer_blocks."), count_blocks(t.keys(), "single_transformer_blocks."));
    fuse(t, &rules)
}

/// Applies `rules` from the split (diffusers) side to the fused side; every
/// tensor must be claimed by a rule.
pub(crate) fn fuse(mut t: HashMap<String, Tensor>, rules: &[Rule]) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    for r in rules {
        for (bp, dp) in r.params {
            let parts: Vec<Option<Tensor>> = r.diffusers.iter().map(|d| t.remove(&join(d, dp))).collect();
            if parts.iter().all(Option::is_none) {
                continue;
            }
            let parts: Vec<Tensor> =
                parts.into_iter().collect::<Option<_>>().ok_or_else(|| EngineError::invalid("transformer", format!("{}: some of {:?} are missing", r.bfl, r.diffusers)))?;
            let fused = if parts.len() == 1 { parts[0].clone() } else { Tensor::cat(&parts, 0)? };
            out.insert(join(&r.bfl, bp), if r.swap_halves { swap_halves(&fused)? } else { fused });
        }
    }
    if let Some(name) = t.keys().next() {
        return Err(EngineError::invalid("transformer", format!("unexpected tensor `{name}` (and {} more)", t.len() - 1)));
    }
    Ok(out)
}

/// BFL tensors → diffusers tensors (q/k/v split): the inverse of
/// [`diffusers_to_bfl`], used by fixtures to write the diffusers layout.
pub fn bfl_to_diffusers(t: &HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
    let hidden = t.get("img_in.weight").ok_or_else(|| EngineError::invalid("transformer", "no img_in.weight"))?.dim(0)?;
    let rules = rules(count_blocks(t.keys(), "double_blocks."), count_blocks(t.keys(), "single_blocks."));
    split(t, &rules, hidden)
}

/// Applies `rules` from the fused side to the split side: fused tensors are
/// cut into `hidden` rows per part, the last part taking the rest.
pub(crate) fn split(t: &HashMap<String, Tensor>, rules: &[Rule], hidden: usize) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    for r in rules {
        for (bp, dp) in r.params {
            let Some(fused) = t.get(&join(&r.bfl, bp)) else { continue };
            let fused = if r.swap_halves { swap_halves(fused)? } else { fused.clone() };
            // q, k, v are `hidden` rows each; the single blocks' MLP input takes the rest.
            let mut start = 0;
            for (i, d) in r.diffusers.iter().enumerate() {
                let len = if i + 1 == r.diffusers.len() { fused.dim(0)? - start } else { hidden };
                out.insert(join(d, dp), fused.narrow(0, start, len)?);
                start += len;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn diffusers_and_bfl_names_round_trip() {
        let dev = Device::Cpu;
        let h = 4;
        let mut bfl = HashMap::new();
        let mut put = |n: &str, rows: usize| {
            let v: Vec<f32> = (0..rows * h).map(|x| x as f32).collect();
            bfl.insert(n.to_string(), Tensor::from_vec(v, (rows, h), &dev).unwrap());
        };
        put("img_in.weight", h);
        put("double_blocks.0.img_attn.qkv.weight", 3 * h);
        put("single_blocks.0.linear1.weight", 3 * h + 8);
        put("final_layer.adaLN_modulation.1.weight", 2 * h);
        let d = bfl_to_diffusers(&bfl).unwrap();
        assert_eq!(d["single_transformer_blocks.0.proj_mlp.weight"].dims(), &[8, h]);
        assert_eq!(d["transformer_blocks.0.attn.to_v.weight"].dims(), &[h, h]);
        let back = diffusers_to_bfl(d).unwrap();
        assert_eq!(back.len(), bfl.len());
        for (n, t) in &bfl {
            let diff = (t - &back[n]).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert_eq!(diff, 0.0, "{n}");
        }
    }
}
