//! LoRA: low-rank weight deltas merged into a component's weights as they
//! load (`W + scale * alpha / rank * up @ down`). Both common key layouts
//! are read: kohya (`lora_unet_down_blocks_0_…_to_q.lora_down.weight`,
//! `lora_te_…`, `lora_te1_/lora_te2_`, `.alpha`) and diffusers/PEFT
//! (`unet.down_blocks.0.….to_q.lora_A.weight`, `.lora.down.weight`,
//! `text_encoder.…`, `text_encoder_2.…`). kohya's flattened names are
//! resolved against the base model's own tensor names, so underscores in
//! module names are never guessed. A LoRA with modules that match no base
//! weight is rejected rather than half applied.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;

use crate::checkpoint::LdmLayout;
use crate::error::{EngineError, Result};

/// A LoRA file to merge at a scale.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraRef {
    /// The `.safetensors` file.
    pub path: PathBuf,
    /// Multiplier of the delta; 0 leaves the base model unchanged.
    pub scale: f32,
}

/// One low-rank delta: `factor * up @ down`.
struct Delta {
    up: Tensor,
    down: Tensor,
    factor: f64,
}

/// Key prefixes of one model component in both layouts.
#[derive(Debug, Clone, Copy)]
pub struct Component {
    /// kohya prefixes (`lora_unet_`, `lora_te_`, …).
    pub kohya: &'static [&'static str],
    /// diffusers prefix (`unet.`, `text_encoder.`, …).
    pub diffusers: &'static str,
}

/// The UNet.
pub const UNET: Component = Component { kohya: &["lora_unet_"], diffusers: "unet." };
/// The (first) text encoder.
pub const TEXT_ENCODER: Component = Component { kohya: &["lora_te_", "lora_te1_"], diffusers: "text_encoder." };
/// SDXL's second text encoder.
pub const TEXT_ENCODER_2: Component = Component { kohya: &["lora_te2_"], diffusers: "text_encoder_2." };

/// A FLUX transformer addressed by diffusers/PEFT names (`transformer.transformer_blocks.0.attn.to_q`);
/// kohya FLUX LoRAs use [`UNET`]'s `lora_unet_` with BFL names (`double_blocks_0_img_attn_qkv`).
pub const TRANSFORMER: Component = Component { kohya: &[], diffusers: "transformer." };

/// Every component a LoRA may address; keys under none of them are an error.
const ALL: [Component; 4] = [UNET, TEXT_ENCODER, TEXT_ENCODER_2, TRANSFORMER];

/// Splits `key` into (component, module, part) where part is `down`, `up` or `alpha`.
fn parse_key(key: &str) -> Option<(usize, String, &'static str, bool)> {
    // No prefix is a prefix of another (`text_encoder.` vs `text_encoder_2.`,
    // `lora_te_` vs `lora_te2_`), so the first match is the only one.
    for (ci, c) in ALL.iter().enumerate() {
        let (rest, kohya) = if let Some(r) = c.kohya.iter().find_map(|p| key.strip_prefix(p)) {
            (r, true)
        } else if let Some(r) = key.strip_prefix(c.diffusers) {
            (r, false)
        } else {
            continue;
        };
        for (suffix, part) in [
            (".lora_down.weight", "down"),
            (".lora_up.weight", "up"),
            (".lora_A.weight", "down"),
            (".lora_B.weight", "up"),
            (".lora.down.weight", "down"),
            (".lora.up.weight", "up"),
            (".alpha", "alpha"),
        ] {
            if let Some(module) = rest.strip_suffix(suffix) {
                return Some((ci, module.to_string(), part, kohya));
            }
        }
    }
    None
}

/// Refuses a LoRA with keys for components outside `allowed` (a FLUX
/// LoRA's `transformer.` keys on an SD model), which would otherwise be
/// skipped and leave the image silently unstyled.
pub fn check_components(loras: &[LoraRef], allowed: &[Component]) -> Result<()> {
    for lora in loras {
        // SAFETY: mapped read-only to list names.
        let st = unsafe { MmapedSafetensors::new(&lora.path)? };
        for (key, _) in st.tensors() {
            if let Some((ci, ..)) = parse_key(&key)
                && !allowed.iter().any(|a| a.diffusers == ALL[ci].diffusers)
            {
                return Err(EngineError::invalid(
                    "loras",
                    format!("{}: `{key}` is for a {} this model does not have", lora.path.display(), ALL[ci].diffusers.trim_end_matches('.')),
                ));
            }
        }
    }
    Ok(())
}

/// The deltas all `loras` make to one component whose weights are `base`.
fn component_deltas(loras: &[LoraRef], component: usize, base: &HashSet<String>) -> Result<HashMap<String, Vec<Delta>>> {
    // kohya module name -> base tensor name; transformers 5.x text encoders lack `text_model.`.
    let mut flat: HashMap<String, String> = HashMap::new();
    for name in base.iter().filter(|n| n.ends_with(".weight")) {
        let module = name.trim_end_matches(".weight");
        flat.insert(module.replace('.', "_"), name.clone());
        flat.insert(format!("text_model_{}", module.replace('.', "_")), name.clone());
    }
    let mut out: HashMap<String, Vec<Delta>> = HashMap::new();
    for lora in loras {
        let bad = |m: String| EngineError::invalid("loras", format!("{}: {m}", lora.path.display()));
        let tensors = candle_core::safetensors::load(&lora.path, &Device::Cpu)?;
        let mut modules: HashMap<(String, bool), HashMap<&str, Tensor>> = HashMap::new();
        let mut unknown = Vec::new();
        for (key, t) in &tensors {
            match parse_key(key) {
                Some((ci, module, part, kohya)) if ci == component => {
                    modules.entry((module, kohya)).or_default().insert(part, t.to_dtype(DType::F32)?);
                }
                Some(_) => {}
                None => unknown.push(key.clone()),
            }
        }
        if !unknown.is_empty() {
            unknown.sort();
            return Err(bad(format!("{} keys are not LoRA weights of a known layout (e.g. `{}`)", unknown.len(), unknown[0])));
        }
        for ((module, kohya), parts) in modules {
            let target = if kohya {
                flat.get(&module).cloned()
            } else {
                let direct = format!("{module}.weight");
                let unprefixed = module.strip_prefix("text_model.").map(|m| format!("{m}.weight"));
                [Some(direct), unprefixed].into_iter().flatten().find(|n| base.contains(n))
            };
            let target = target.ok_or_else(|| bad(format!("module `{module}` matches no weight of this model")))?;
            let (Some(up), Some(down)) = (parts.get("up"), parts.get("down")) else {
                return Err(bad(format!("module `{module}` lacks its up or down matrix")));
            };
            let rank = down.dim(0)? as f64;
            let alpha = match parts.get("alpha") {
                Some(a) => f64::from(a.flatten_all()?.to_vec1::<f32>()?.first().copied().unwrap_or(rank as f32)),
                None => rank,
            };
            let factor = f64::from(lora.scale) * alpha / rank;
            out.entry(target).or_default().push(Delta { up: up.clone(), down: down.clone(), factor });
        }
    }
    Ok(out)
}

/// Where the base weights are read from.
enum Base {
    /// diffusers component files, by their own names.
    Files(MmapedSafetensors),
    /// A single-file checkpoint, through the LDM name mapping of one component.
    Checkpoint { file: MmapedSafetensors, layout: LdmLayout, component: String },
}

impl Base {
    fn load(&self, name: &str, dev: &Device) -> candle_core::Result<Tensor> {
        let (file, layout, component) = match self {
            Self::Files(f) => return f.load(name, dev),
            Self::Checkpoint { file, layout, component } => (file, layout, component),
        };
        let src = layout.source(component, name).ok_or_else(|| candle_core::Error::Msg(format!("no checkpoint name for {component} tensor {name}")))?;
        // Older SD 1.x files store CLIP without the `text_model.` level.
        let t = file.load(&src.name, dev).or_else(|e| file.load(&src.name.replacen(".transformer.text_model.", ".transformer.", 1), dev).map_err(|_| e))?;
        let t = match src.rows {
            Some((start, len)) => t.narrow(0, start, len)?,
            None => t,
        };
        if src.transpose { t.t()?.contiguous() } else { Ok(t) }
    }

    fn contains(&self, name: &str) -> bool {
        match self {
            Self::Files(f) => f.get(name).is_ok(),
            Self::Checkpoint { file, layout, component } => layout.source(component, name).is_some_and(|s| file.get(&s.name).is_ok()),
        }
    }
}

/// Weights read from safetensors with LoRA deltas added on the way.
struct LoraBackend {
    inner: Base,
    deltas: HashMap<String, Vec<Delta>>,
}

impl LoraBackend {
    fn merged(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let base = self.inner.load(name, dev)?;
        match self.deltas.get(name) {
            None => base.to_dtype(dtype),
            Some(deltas) => apply(&base, deltas, dtype),
        }
    }
}

/// `base + Σ factor · up @ down`, computed in f32, returned at `dtype`.
fn apply(base: &Tensor, deltas: &[Delta], dtype: DType) -> candle_core::Result<Tensor> {
    let (shape, dev) = (base.shape().clone(), base.device());
    let mut w = base.to_dtype(DType::F32)?;
    for d in deltas {
        // up [out, r, (1, 1)] @ down [r, in, (kh, kw)] -> the base weight's shape.
        let (out_dim, r) = (d.up.dim(0)?, d.up.dim(1)?);
        let up = d.up.reshape((out_dim, r))?.to_device(dev)?;
        let down = d.down.reshape((r, ()))?.to_device(dev)?;
        let delta = up.matmul(&down)?.reshape(&shape)?;
        w = (w + delta.affine(d.factor, 0.0)?)?;
    }
    w.to_dtype(dtype)
}

/// Merges what `loras` make to `component` into an in-memory weight map
/// (FLUX, whose weights are re-fused in memory), keeping each tensor's dtype.
pub fn merge_into(tensors: &mut HashMap<String, Tensor>, loras: &[LoraRef], component: Component) -> Result<()> {
    let deltas = deltas_for(loras, component, || Ok(tensors.keys().cloned().collect()))?;
    for (name, ds) in deltas {
        if let Some(t) = tensors.get_mut(&name) {
            *t = apply(t, &ds, t.dtype())?;
        }
    }
    Ok(())
}

impl SimpleBackend for LoraBackend {
    fn get(&self, s: Shape, name: &str, _: candle_nn::Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let mut t = self.merged(name, dtype, dev)?;
        // LDM checkpoints store the VAE attention's linear layers as 1x1 convs.
        if matches!(self.inner, Base::Checkpoint { .. }) && t.shape() != &s && t.elem_count() == s.elem_count() {
            t = t.reshape(&s)?;
        }
        if t.shape() != &s {
            return Err(candle_core::Error::UnexpectedShape { msg: format!("shape mismatch for {name}"), expected: s, got: t.shape().clone() }.bt());
        }
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.merged(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.inner.contains(name)
    }
}

fn deltas_for(loras: &[LoraRef], component: Component, base: impl FnOnce() -> Result<HashSet<String>>) -> Result<HashMap<String, Vec<Delta>>> {
    let index = ALL.iter().position(|c| c.diffusers == component.diffusers).unwrap_or(0);
    if loras.is_empty() { Ok(HashMap::new()) } else { component_deltas(loras, index, &base()?) }
}

/// A `VarBuilder` over `files` with the deltas `loras` make to `component`.
pub fn var_builder(files: &[PathBuf], loras: &[LoraRef], component: Component, dtype: DType, device: &Device) -> Result<candle_nn::VarBuilder<'static>> {
    // SAFETY: the files are memory-mapped read-only; the engine never writes model folders.
    let inner = unsafe { MmapedSafetensors::multi(files)? };
    let deltas = deltas_for(loras, component, || Ok(inner.tensors().into_iter().map(|(n, _)| n).collect()))?;
    Ok(candle_nn::VarBuilder::from_backend(Box::new(LoraBackend { inner: Base::Files(inner), deltas }), dtype, device.clone()))
}

/// One diffusers component read out of a single-file checkpoint.
pub struct CheckpointPart<'a> {
    /// The checkpoint.
    pub file: &'a Path,
    /// Its name mapping.
    pub layout: &'a LdmLayout,
    /// The diffusers component: `unet`, `vae`, `text_encoder`, `text_encoder_2`.
    pub name: &'a str,
    /// The same component's files in the diffusers template (same
    /// architecture, hence the same names): kohya LoRA names resolve against them.
    pub template_files: &'a [PathBuf],
}

/// A `VarBuilder` serving `part` from its checkpoint with the deltas `loras` make to `component`.
pub fn checkpoint_var_builder(part: &CheckpointPart<'_>, loras: &[LoraRef], component: Component, dtype: DType, device: &Device) -> Result<candle_nn::VarBuilder<'static>> {
    // SAFETY: as in `var_builder`.
    let inner = unsafe { MmapedSafetensors::new(part.file)? };
    let deltas = deltas_for(loras, component, || {
        // SAFETY: as above.
        let t = unsafe { MmapedSafetensors::multi(part.template_files)? };
        Ok(t.tensors().into_iter().map(|(n, _)| n).collect())
    })?;
    let inner = Base::Checkpoint { file: inner, layout: part.layout.clone(), component: part.name.to_string() };
    Ok(candle_nn::VarBuilder::from_backend(Box::new(LoraBackend { inner, deltas }), dtype, device.clone()))
}

/// Where a LoRA named `name` is looked for: the name as a path, then
/// `{models_dir}/loras/` and `{models_dir}/`, with and without `.safetensors`.
pub fn resolve(models_dir: &Path, name: &str) -> std::result::Result<PathBuf, Vec<PathBuf>> {
    let mut tried = Vec::new();
    let file = if name.ends_with(".safetensors") { name.to_string() } else { format!("{name}.safetensors") };
    for dir in [None, Some(models_dir.join("loras")), Some(models_dir.to_path_buf())] {
        for n in [name, file.as_str()] {
            let p = dir.as_ref().map_or_else(|| PathBuf::from(n), |d| d.join(n));
            if p.is_file() {
                return Ok(p);
            }
            tried.push(p);
        }
    }
    tried.dedup();
    Err(tried)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_both_layouts_parse_to_their_component() {
        let k = parse_key("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight").unwrap();
        assert_eq!((k.0, k.1.as_str(), k.2, k.3), (0, "down_blocks_0_attentions_0_proj_in", "down", true));
        let k = parse_key("text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight").unwrap();
        assert_eq!((k.0, k.1.as_str(), k.2), (2, "text_model.encoder.layers.0.self_attn.q_proj", "up"));
        let k = parse_key("text_encoder.text_model.encoder.layers.1.mlp.fc1.alpha").unwrap();
        assert_eq!((k.0, k.2), (1, "alpha"));
        assert_eq!(parse_key("lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_up.weight").map(|k| k.0), Some(2));
        assert!(parse_key("model.diffusion_model.input_blocks.0.weight").is_none());
    }
}
