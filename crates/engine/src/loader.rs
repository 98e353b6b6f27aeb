//! Model folders: discovery under the models directory (plain pipeline
//! folders and Hugging Face cache entries `models--org--name/snapshots/…`),
//! the pipeline kind from `model_index.json`, and finding each component's
//! weight files (single file, `.fp16` variant, or a sharded index), naming
//! every missing file and where it was looked for.

use std::path::{Path, PathBuf};

use crate::error::{EngineError, Result};
use crate::models::configs::read_json;

/// Which pipeline code a folder needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PipelineKind {
    /// `StableDiffusionPipeline`: SD 1.x, 2.x and SD-Turbo.
    StableDiffusion,
    /// `StableDiffusionXLPipeline`: SDXL and SDXL-Turbo.
    StableDiffusionXl,
    /// `FluxPipeline`.
    Flux,
    /// `StableDiffusion3Pipeline`.
    StableDiffusion3,
}

impl PipelineKind {
    /// From `model_index.json`'s `_class_name`.
    pub fn from_class_name(name: &str) -> Option<Self> {
        match name {
            "StableDiffusionPipeline" | "StableDiffusionImg2ImgPipeline" | "StableDiffusionInpaintPipeline" => Some(Self::StableDiffusion),
            "StableDiffusionXLPipeline" | "StableDiffusionXLImg2ImgPipeline" | "StableDiffusionXLInpaintPipeline" => Some(Self::StableDiffusionXl),
            "FluxPipeline" => Some(Self::Flux),
            "StableDiffusion3Pipeline" => Some(Self::StableDiffusion3),
            _ => None,
        }
    }

    /// Whether this build of the engine can run it.
    pub fn is_implemented(self) -> bool {
        matches!(self, Self::StableDiffusion | Self::StableDiffusionXl | Self::Flux | Self::StableDiffusion3)
    }

    /// Tokenizer folders the pipeline needs.
    fn tokenizers(self) -> &'static [&'static str] {
        match self {
            Self::StableDiffusion => &["tokenizer"],
            Self::StableDiffusion3 => &["tokenizer", "tokenizer_2", "tokenizer_3"],
            _ => &["tokenizer", "tokenizer_2"],
        }
    }

    /// Components and the stem of their weight files.
    fn components(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::StableDiffusion => &[("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"), ("text_encoder", "model")],
            Self::StableDiffusionXl => &[("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"), ("text_encoder", "model"), ("text_encoder_2", "model")],
            Self::Flux => &[("transformer", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"), ("text_encoder", "model"), ("text_encoder_2", "model")],
            Self::StableDiffusion3 => &[
                ("transformer", "diffusion_pytorch_model"),
                ("vae", "diffusion_pytorch_model"),
                ("text_encoder", "model"),
                ("text_encoder_2", "model"),
                ("text_encoder_3", "model"),
            ],
        }
    }
}

/// Reads the pipeline kind of a folder.
pub fn read_kind(folder: &Path) -> Result<PipelineKind> {
    if folder.is_file() {
        return crate::checkpoint::checkpoint_kind(folder).ok_or_else(|| EngineError::bad_model(folder, "not an SD or SDXL single-file checkpoint"));
    }
    let path = folder.join("model_index.json");
    let index: serde_json::Value = read_json(&path)?;
    let class = index.get("_class_name").and_then(|v| v.as_str()).unwrap_or_default();
    PipelineKind::from_class_name(class).ok_or_else(|| EngineError::bad_model(&path, format!("unknown pipeline class `{class}`")))
}

/// The safetensors files of one component: `{stem}.safetensors`, else the
/// `.fp16` variant, else the shards a `{stem}.safetensors.index.json` lists.
pub fn weight_files(dir: &Path, stem: &str) -> Option<Vec<PathBuf>> {
    for name in [format!("{stem}.safetensors"), format!("{stem}.fp16.safetensors")] {
        let p = dir.join(name);
        if p.is_file() {
            return Some(vec![p]);
        }
    }
    for name in [format!("{stem}.safetensors.index.json"), format!("{stem}.safetensors.index.fp16.json")] {
        let index: serde_json::Value = match read_json(&dir.join(name)) {
            Ok(v) => v,
            Err(_) => continue,
        };
        let mut shards: Vec<String> = index.get("weight_map")?.as_object()?.values().filter_map(|v| v.as_str().map(str::to_string)).collect();
        shards.sort();
        shards.dedup();
        let files: Vec<PathBuf> = shards.iter().map(|s| dir.join(s)).collect();
        return files.iter().all(|f| f.is_file()).then_some(files);
    }
    None
}

/// The pipeline kind of a folder whose weights are all present, or
/// [`EngineError::MissingWeights`] naming what is absent and where.
pub fn require_complete(folder: &Path) -> Result<PipelineKind> {
    let missing = missing_files(folder);
    if !missing.is_empty() {
        return Err(EngineError::MissingWeights {
            model: folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            missing: missing.join(", "),
            looked_in: folder.display().to_string(),
        });
    }
    read_kind(folder)
}

/// Files a pipeline folder needs that are absent, relative to the folder.
pub fn missing_files(folder: &Path) -> Vec<String> {
    if folder.is_file() {
        return match checkpoint_template(folder) {
            Ok(_) => Vec::new(),
            Err(e) => vec![e.to_string()],
        };
    }
    if !folder.join("model_index.json").is_file() {
        return vec!["model_index.json".to_string()];
    }
    let Ok(kind) = read_kind(folder) else {
        return vec!["model_index.json (a known `_class_name`)".to_string()];
    };
    let mut missing = Vec::new();
    for (component, stem) in kind.components() {
        if root_file(folder, kind, component).is_some() {
            continue;
        }
        let dir = folder.join(component);
        if !dir.join("config.json").is_file() {
            missing.push(format!("{component}/config.json"));
        }
        if weight_files(&dir, stem).is_none() {
            missing.push(format!("{component}/{stem}.safetensors"));
        }
    }
    for name in kind.tokenizers() {
        let tok = folder.join(name);
        let has_bpe_files = tok.join("vocab.json").is_file() && tok.join("merges.txt").is_file();
        if !(tok.join("tokenizer.json").is_file() || has_bpe_files) {
            missing.push(format!("{name}/tokenizer.json (or vocab.json + merges.txt)"));
        }
    }
    missing
}

/// FLUX's original BFL single file standing in for a diffusers component
/// at the folder's root: `flux1-*.safetensors` for `transformer`,
/// `ae.safetensors` for `vae` (both ship in the official repos).
pub fn bfl_file(folder: &Path, component: &str) -> Option<PathBuf> {
    match component {
        "vae" => Some(folder.join("ae.safetensors")).filter(|p| p.is_file()),
        "transformer" => {
            let mut found: Vec<PathBuf> = std::fs::read_dir(folder)
                .ok()?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("flux1") && n.ends_with(".safetensors")))
                .collect();
            found.sort();
            found.into_iter().next()
        }
        _ => None,
    }
}

/// Whether a FluxPipeline folder holds dev (guidance embedding) rather than
/// schnell: `transformer/config.json`'s `guidance_embeds`, else whether the
/// BFL file has `guidance_in` tensors. `None` when neither can be read.
pub fn flux_is_dev(folder: &Path) -> Option<bool> {
    if let Ok(v) = read_json::<serde_json::Value>(&folder.join("transformer/config.json")) {
        return v.get("guidance_embeds").and_then(|g| g.as_bool());
    }
    let file = bfl_file(folder, "transformer")?;
    // SAFETY: mapped read-only to list names; the engine never writes model files.
    let st = unsafe { candle_core::safetensors::MmapedSafetensors::new(&file) }.ok()?;
    Some(st.get("guidance_in.in_layer.weight").is_ok())
}

/// SAI's single file at an SD3 folder's root (`sd3.5_large.safetensors`):
/// it holds the MMDiT (`model.diffusion_model.*`) and usually the VAE
/// (`first_stage_model.*`), standing in for `transformer/` and `vae/`.
pub fn sai_file(folder: &Path, component: &str) -> Option<PathBuf> {
    let prefix = match component {
        "transformer" => "model.diffusion_model.",
        "vae" => "first_stage_model.",
        _ => return None,
    };
    let mut found: Vec<PathBuf> = std::fs::read_dir(folder)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("sd3") && n.ends_with(".safetensors")))
        .collect();
    found.sort();
    found.into_iter().find(|f| {
        // SAFETY: mapped read-only to list names; the engine never writes model files.
        let st = unsafe { candle_core::safetensors::MmapedSafetensors::new(f) };
        st.is_ok_and(|st| st.tensors().iter().any(|(n, _)| n.starts_with(prefix)))
    })
}

/// The original single file standing in for `component` of a `kind` folder, if any.
pub fn root_file(folder: &Path, kind: PipelineKind, component: &str) -> Option<PathBuf> {
    match kind {
        PipelineKind::Flux => bfl_file(folder, component),
        PipelineKind::StableDiffusion3 => sai_file(folder, component),
        _ => None,
    }
}

/// A pipeline folder found under the models directory.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoveredModel {
    /// The model id: the folder's name.
    pub id: String,
    /// The folder.
    pub path: PathBuf,
    /// Its pipeline kind, when `model_index.json` names a known one.
    pub kind: Option<PipelineKind>,
    /// Files it still lacks (empty when it can load).
    pub missing: Vec<String>,
}

/// The pipeline folder `path` stands for: itself when it holds a
/// `model_index.json`, or for a Hugging Face cache entry the snapshot that
/// `refs/main` names (else the last snapshot, by name, that has one).
pub fn pipeline_folder(path: &Path) -> Option<PathBuf> {
    if path.join("model_index.json").is_file() {
        return Some(path.to_path_buf());
    }
    let snapshots = path.join("snapshots");
    if let Ok(main) = std::fs::read_to_string(path.join("refs/main")) {
        let snap = snapshots.join(main.trim());
        if snap.join("model_index.json").is_file() {
            return Some(snap);
        }
    }
    let mut snaps: Vec<PathBuf> = std::fs::read_dir(&snapshots).ok()?.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    snaps.sort();
    snaps.into_iter().rev().find(|s| s.join("model_index.json").is_file())
}

/// The diffusers folder a single-file checkpoint borrows its architecture,
/// tokenizers and scheduler from: the first complete folder of its family
/// (by id) next to it.
pub fn checkpoint_template(file: &Path) -> Result<PathBuf> {
    let kind = read_kind(file)?;
    let dir = file.parent().unwrap_or(Path::new("."));
    crate::checkpoint::template_for(&discover_folders(dir), kind).ok_or_else(|| EngineError::MissingWeights {
        model: file.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        missing: format!("a complete diffusers {kind:?} folder (configs and tokenizers for the single-file checkpoint)"),
        looked_in: dir.display().to_string(),
    })
}

/// The single-file checkpoint `{path}.safetensors`, if it is one.
pub fn checkpoint_file(path: &Path) -> Option<PathBuf> {
    let file = PathBuf::from(format!("{}.safetensors", path.display()));
    (file.is_file() && crate::checkpoint::checkpoint_kind(&file).is_some()).then_some(file)
}

/// Every pipeline directly under `models_dir`, by id: a folder's name,
/// `org/name` for a Hugging Face cache entry `models--org--name`, or the
/// stem of a single-file SD/SDXL checkpoint `*.safetensors` (LoRA files,
/// which have no `model.diffusion_model.input_blocks.*` tensors, are not models).
pub fn discover(models_dir: &Path) -> Vec<DiscoveredModel> {
    let mut found = discover_folders(models_dir);
    let Ok(entries) = std::fs::read_dir(models_dir) else {
        return found;
    };
    let mut files: Vec<DiscoveredModel> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let path = e.path();
            let id = path.file_name()?.to_str()?.strip_suffix(".safetensors")?.to_string();
            let kind = crate::checkpoint::checkpoint_kind(&path)?;
            let missing = missing_files(&path);
            Some(DiscoveredModel { id, path, kind: Some(kind), missing })
        })
        .collect();
    // A folder and a file of the same name: the folder wins.
    files.retain(|f| !found.iter().any(|m| m.id == f.id));
    found.extend(files);
    found.sort_by(|a, b| a.id.cmp(&b.id));
    found
}

/// The pipeline folders (not single files) directly under `models_dir`.
pub fn discover_folders(models_dir: &Path) -> Vec<DiscoveredModel> {
    let Ok(entries) = std::fs::read_dir(models_dir) else {
        return Vec::new();
    };
    let mut found: Vec<DiscoveredModel> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let path = pipeline_folder(&e.path())?;
            let id = match name.strip_prefix("models--") {
                Some(repo) => repo.replacen("--", "/", 1),
                None => name,
            };
            Some(DiscoveredModel { kind: read_kind(&path).ok(), missing: missing_files(&path), id, path })
        })
        .collect();
    found.sort_by(|a, b| a.id.cmp(&b.id));
    found
}

/// Total bytes of a folder's weight files: the loaded size at the same dtype.
pub fn weight_bytes(folder: &Path) -> u64 {
    if folder.is_file() {
        return std::fs::metadata(folder).map(|m| m.len()).unwrap_or(0);
    }
    let Ok(kind) = read_kind(folder) else { return 0 };
    kind.components()
        .iter()
        .filter_map(|(c, stem)| weight_files(&folder.join(c), stem).or_else(|| root_file(folder, kind, c).map(|f| vec![f])))
        .flatten()
        // One SAI file may stand in for two components.
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum()
}
