//! SD3 transformer tensor names: diffusers' `SD3Transformer2DModel` (split
//! q/k/v, `(scale, shift)` in the continuous norms) ↔ the SAI layout that
//! candle's `mmdit::MMDiT` reads (`joint_blocks.N.x_block.attn.qkv`, …),
//! with the same rule engine as FLUX's names.

use std::collections::HashMap;

use candle_core::Tensor;

use crate::error::{EngineError, Result};
use crate::pipelines::flux::keys::{LINEAR, Rule, count_blocks, fuse, rule, split};

/// SD 3.5's q/k RMS norms are `ln_q.weight` in the SAI layout (which candle's
/// MMDiT reads, and uses only when it finds `ln_k.weight`), not FLUX's
/// `query_norm.scale`: with FLUX's pair a diffusers folder's norms became
/// `ln_q.scale` and were silently left out of the model.
const RMS: &[(&str, &str)] = &[("weight", "weight")];

/// The rules for `depth` joint blocks; the last block's context stream only
/// makes q/k/v, and its modulation is a continuous norm (halves swapped).
fn rules(depth: usize, dual: &[usize]) -> Vec<Rule> {
    let one = |s: &str| vec![s.to_string()];
    let mut r = vec![
        rule("x_embedder.proj", &one("pos_embed.proj"), LINEAR),
        rule("pos_embed", &one("pos_embed.pos_embed"), &[("", "")]),
        rule("t_embedder.mlp.0", &one("time_text_embed.timestep_embedder.linear_1"), LINEAR),
        rule("t_embedder.mlp.2", &one("time_text_embed.timestep_embedder.linear_2"), LINEAR),
        rule("y_embedder.mlp.0", &one("time_text_embed.text_embedder.linear_1"), LINEAR),
        rule("y_embedder.mlp.2", &one("time_text_embed.text_embedder.linear_2"), LINEAR),
        rule("context_embedder", &one("context_embedder"), LINEAR),
        rule("final_layer.linear", &one("proj_out"), LINEAR),
        Rule { swap_halves: true, ..rule("final_layer.adaLN_modulation.1", &one("norm_out.linear"), LINEAR) },
    ];
    for i in 0..depth {
        let (j, d) = (format!("joint_blocks.{i}"), format!("transformer_blocks.{i}"));
        let many = |names: &[&str]| names.iter().map(|n| format!("{d}.{n}")).collect::<Vec<_>>();
        let last = i + 1 == depth;
        r.extend([
            rule(format!("{j}.x_block.adaLN_modulation.1"), &many(&["norm1.linear"]), LINEAR),
            rule(format!("{j}.x_block.attn.qkv"), &many(&["attn.to_q", "attn.to_k", "attn.to_v"]), LINEAR),
            rule(format!("{j}.x_block.attn.ln_q"), &many(&["attn.norm_q"]), RMS),
            rule(format!("{j}.x_block.attn.ln_k"), &many(&["attn.norm_k"]), RMS),
            rule(format!("{j}.x_block.attn.proj"), &many(&["attn.to_out.0"]), LINEAR),
            rule(format!("{j}.x_block.mlp.fc1"), &many(&["ff.net.0.proj"]), LINEAR),
            rule(format!("{j}.x_block.mlp.fc2"), &many(&["ff.net.2"]), LINEAR),
            Rule { swap_halves: last, ..rule(format!("{j}.context_block.adaLN_modulation.1"), &many(&["norm1_context.linear"]), LINEAR) },
            rule(format!("{j}.context_block.attn.qkv"), &many(&["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"]), LINEAR),
            rule(format!("{j}.context_block.attn.ln_q"), &many(&["attn.norm_added_q"]), RMS),
            rule(format!("{j}.context_block.attn.ln_k"), &many(&["attn.norm_added_k"]), RMS),
        ]);
        if !last {
            r.extend([
                rule(format!("{j}.context_block.attn.proj"), &many(&["attn.to_add_out"]), LINEAR),
                rule(format!("{j}.context_block.mlp.fc1"), &many(&["ff_context.net.0.proj"]), LINEAR),
                rule(format!("{j}.context_block.mlp.fc2"), &many(&["ff_context.net.2"]), LINEAR),
            ]);
        }
        if dual.contains(&i) {
            // SD 3.5 medium's second image self-attention.
            r.extend([
                rule(format!("{j}.x_block.attn2.qkv"), &many(&["attn2.to_q", "attn2.to_k", "attn2.to_v"]), LINEAR),
                rule(format!("{j}.x_block.attn2.ln_q"), &many(&["attn2.norm_q"]), RMS),
                rule(format!("{j}.x_block.attn2.ln_k"), &many(&["attn2.norm_k"]), RMS),
                rule(format!("{j}.x_block.attn2.proj"), &many(&["attn2.to_out.0"]), LINEAR),
            ]);
        }
    }
    r
}

/// Blocks with a second attention, from names matching `{prefix}{i}.{marker}`.
fn dual_blocks(t: &HashMap<String, Tensor>, prefix: &str, marker: &str) -> Vec<usize> {
    t.keys().filter_map(|n| n.strip_prefix(prefix)?.strip_suffix(marker)?.parse().ok()).collect()
}

/// Whether `t` is in diffusers' layout (else SAI's).
pub fn is_diffusers(t: &HashMap<String, Tensor>) -> bool {
    t.contains_key("pos_embed.proj.weight")
}

/// diffusers tensors → SAI tensors.
pub fn diffusers_to_sai(t: HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
    let dual = dual_blocks(&t, "transformer_blocks.", ".attn2.to_q.weight");
    let rules = rules(count_blocks(t.keys(), "transformer_blocks."), &dual);
    fuse(t, &rules)
}

/// SAI tensors → diffusers tensors (for fixtures).
pub fn sai_to_diffusers(t: &HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
    let hidden = t.get("x_embedder.proj.weight").ok_or_else(|| EngineError::invalid("transformer", "no x_embedder.proj.weight"))?.dim(0)?;
    let dual = dual_blocks(t, "joint_blocks.", ".x_block.attn2.qkv.weight");
    split(t, &rules(count_blocks(t.keys(), "joint_blocks."), &dual), hidden)
}
