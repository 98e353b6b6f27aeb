//! Which files of a Hub repo a pull fetches. Model repos carry far more
//! than the engine reads: PyTorch `.bin` twins of every safetensors file,
//! fp32 and fp16 copies, ONNX, Flax and OpenVINO exports, a root-level
//! single-file checkpoint beside the diffusers folders, safety checkers.
//! A pull takes one safetensors variant per component the engine uses,
//! their configs, the tokenizers and the scheduler: for SDXL base that is
//! about 7 GB instead of the repo's 70.

use crate::hub::{Listing, RepoFile};

/// Components of a diffusers `model_index.json` the engine loads.
const USED: [&str; 10] = ["unet", "transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3", "tokenizer", "tokenizer_2", "tokenizer_3", "scheduler"];
/// Weight file stems diffusers and transformers write.
const STEMS: [&str; 2] = ["diffusion_pytorch_model", "model"];

/// Which copy of the weights to prefer where a repo has both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Variant {
    /// Half-precision files (`*.fp16.safetensors`), half the download; the
    /// engine computes in its own dtype either way.
    Fp16,
    /// The full-precision files.
    Full,
}

/// What to fetch from a pipeline repo.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PipelinePlan {
    /// Configs, tokenizer files and single weight files.
    pub files: Vec<String>,
    /// Sharded weights: index files, whose shards are added once read.
    pub indexes: Vec<String>,
}

/// The components `model_index.json` names that the engine loads (those
/// with a `[library, class]` whose class is set).
pub fn used_components(model_index: &serde_json::Value) -> Vec<String> {
    let Some(obj) = model_index.as_object() else { return Vec::new() };
    obj.iter().filter(|(name, v)| !name.starts_with('_') && USED.contains(&name.as_str()) && v.get(1).is_some_and(|c| !c.is_null())).map(|(name, _)| name.clone()).collect()
}

/// The files to fetch for `components` of a diffusers pipeline repo; an
/// error names a component with no safetensors weights.
pub fn plan_pipeline(listing: &Listing, components: &[String], variant: Variant) -> Result<PipelinePlan, String> {
    let mut plan = PipelinePlan { files: vec!["model_index.json".into()], indexes: Vec::new() };
    for comp in components {
        let in_dir = |f: &&RepoFile| f.path.strip_prefix(comp.as_str()).and_then(|r| r.strip_prefix('/')).is_some_and(|r| !r.contains('/'));
        let files: Vec<&RepoFile> = listing.files.iter().filter(in_dir).collect();
        if comp.starts_with("tokenizer") {
            plan.files.extend(files.iter().filter(|f| is_tokenizer_file(&f.path)).map(|f| f.path.clone()));
            continue;
        }
        // Configs (config.json, scheduler_config.json), never weight indexes.
        plan.files.extend(files.iter().filter(|f| f.path.ends_with(".json") && !f.path.contains(".index.")).map(|f| f.path.clone()));
        if comp == "scheduler" {
            continue;
        }
        match pick_weights(comp, &files, variant) {
            Some(Weights::Single(p)) => plan.files.push(p),
            Some(Weights::Sharded(index)) => plan.indexes.push(index),
            None => {
                let names: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
                return Err(format!("component `{comp}` has no safetensors weights in the repo (it has: {})", names.join(", ")));
            }
        }
    }
    Ok(plan)
}

enum Weights {
    Single(String),
    Sharded(String),
}

fn pick_weights(comp: &str, files: &[&RepoFile], variant: Variant) -> Option<Weights> {
    let has = |name: &str| files.iter().any(|f| f.path == name);
    let full = |stem: &str| [(format!("{comp}/{stem}.safetensors"), false), (format!("{comp}/{stem}.safetensors.index.json"), true)];
    let half = |stem: &str| [(format!("{comp}/{stem}.fp16.safetensors"), false), (format!("{comp}/{stem}.safetensors.index.fp16.json"), true)];
    for stem in STEMS {
        let order: Vec<(String, bool)> = match variant {
            Variant::Fp16 => half(stem).into_iter().chain(full(stem)).collect(),
            Variant::Full => full(stem).into_iter().chain(half(stem)).collect(),
        };
        if let Some((path, sharded)) = order.into_iter().find(|(p, _)| has(p)) {
            return Some(if sharded { Weights::Sharded(path) } else { Weights::Single(path) });
        }
    }
    None
}

fn is_tokenizer_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.ends_with(".json") || name.ends_with(".txt") || name.ends_with(".model")
}

/// The shard files a safetensors index lists, as repo paths beside it.
pub fn shards_of(index_path: &str, index: &serde_json::Value) -> Result<Vec<String>, String> {
    let map = index.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| format!("{index_path} has no `weight_map`"))?;
    let dir = index_path.rsplit_once('/').map_or("", |(d, _)| d);
    let mut shards: Vec<String> = map
        .values()
        .map(|v| v.as_str().filter(|s| !s.contains('/') && !s.contains("..")).ok_or_else(|| format!("{index_path} lists a shard that is not a file name: {v}")))
        .map(|s| s.map(|s| if dir.is_empty() { s.to_string() } else { format!("{dir}/{s}") }))
        .collect::<Result<_, _>>()?;
    shards.sort();
    shards.dedup();
    Ok(shards)
}

/// The single-file checkpoint of a repo without `model_index.json`: the
/// one named, else its only root-level `.safetensors` file.
pub fn plan_single_file(listing: &Listing, named: Option<&str>) -> Result<String, String> {
    if let Some(name) = named {
        return listing.file(name).map(|f| f.path.clone()).ok_or_else(|| format!("the repo has no file `{name}`"));
    }
    let roots: Vec<&str> = listing.files.iter().map(|f| f.path.as_str()).filter(|p| !p.contains('/') && p.ends_with(".safetensors")).collect();
    match roots.as_slice() {
        [one] => Ok(one.to_string()),
        [] => Err("the repo has neither model_index.json (a diffusers pipeline) nor a .safetensors checkpoint at its root".into()),
        many => Err(format!("the repo has several checkpoints; choose one with --file ({})", many.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn listing(paths: &[&str]) -> Listing {
        Listing { sha: "c0ffee".into(), files: paths.iter().map(|p| RepoFile { path: p.to_string(), size: Some(1), sha256: None }).collect() }
    }

    const SDXL_LIKE: [&str; 22] = [
        "model_index.json",
        "sd_xl_base_1.0.safetensors",
        "scheduler/scheduler_config.json",
        "text_encoder/config.json",
        "text_encoder/model.safetensors",
        "text_encoder/model.fp16.safetensors",
        "text_encoder/pytorch_model.bin",
        "text_encoder/model.onnx",
        "text_encoder_2/config.json",
        "text_encoder_2/model.safetensors",
        "tokenizer/merges.txt",
        "tokenizer/vocab.json",
        "tokenizer/special_tokens_map.json",
        "tokenizer_2/tokenizer.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "unet/diffusion_flax_model.msgpack",
        "unet/openvino_model.xml",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors.index.json",
        "safety_checker/model.safetensors",
    ];

    fn components() -> Vec<String> {
        let index = json!({
            "_class_name": "StableDiffusionXLPipeline", "_diffusers_version": "0.19.0",
            "scheduler": ["diffusers", "EulerDiscreteScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
            "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"], "tokenizer": ["transformers", "CLIPTokenizer"],
            "tokenizer_2": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"], "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
            "feature_extractor": [null, null], "image_encoder": [null, null],
        });
        let mut c = used_components(&index);
        c.sort();
        c
    }

    #[test]
    fn only_the_components_the_engine_loads_are_used() {
        assert_eq!(components(), ["scheduler", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "unet", "vae"]);
    }

    #[test]
    fn one_safetensors_variant_per_component_and_nothing_else() {
        let plan = plan_pipeline(&listing(&SDXL_LIKE), &components(), Variant::Fp16).unwrap();
        let mut files = plan.files.clone();
        files.sort();
        assert_eq!(
            files,
            [
                "model_index.json",
                "scheduler/scheduler_config.json",
                "text_encoder/config.json",
                "text_encoder/model.fp16.safetensors",
                "text_encoder_2/config.json",
                "text_encoder_2/model.safetensors",
                "tokenizer/merges.txt",
                "tokenizer/special_tokens_map.json",
                "tokenizer/vocab.json",
                "tokenizer_2/tokenizer.json",
                "unet/config.json",
                "unet/diffusion_pytorch_model.fp16.safetensors",
                "vae/config.json",
            ]
        );
        assert_eq!(plan.indexes, ["vae/diffusion_pytorch_model.safetensors.index.json"]);
        let full = plan_pipeline(&listing(&SDXL_LIKE), &components(), Variant::Full).unwrap();
        assert!(full.files.contains(&"unet/diffusion_pytorch_model.safetensors".to_string()));
        assert!(!full.files.iter().any(|f| f.contains("fp16")), "{:?}", full.files);
    }

    #[test]
    fn a_component_with_only_pickles_is_named() {
        let l = listing(&["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.bin"]);
        let err = plan_pipeline(&l, &["unet".to_string()], Variant::Fp16).unwrap_err();
        assert!(err.contains("`unet`") && err.contains("diffusion_pytorch_model.bin"), "{err}");
    }

    #[test]
    fn shards_come_from_the_index_beside_it() {
        let index = json!({"metadata": {"total_size": 3}, "weight_map": {"a.weight": "model-00001-of-00002.safetensors", "b.weight": "model-00002-of-00002.safetensors", "c.bias": "model-00001-of-00002.safetensors"}});
        assert_eq!(
            shards_of("text_encoder_2/model.safetensors.index.json", &index).unwrap(),
            ["text_encoder_2/model-00001-of-00002.safetensors", "text_encoder_2/model-00002-of-00002.safetensors"]
        );
        let evil = json!({"weight_map": {"a": "../../etc/passwd"}});
        assert!(shards_of("unet/x.index.json", &evil).is_err(), "a shard must stay in its folder");
    }

    #[test]
    fn single_file_repos_need_one_checkpoint_or_a_name() {
        let one = listing(&["README.md", "pixel-art-xl.safetensors"]);
        assert_eq!(plan_single_file(&one, None).unwrap(), "pixel-art-xl.safetensors");
        let two = listing(&["a.safetensors", "b.safetensors"]);
        assert!(plan_single_file(&two, None).unwrap_err().contains("--file"));
        assert_eq!(plan_single_file(&two, Some("b.safetensors")).unwrap(), "b.safetensors");
        assert!(plan_single_file(&listing(&["README.md"]), None).is_err());
    }
}
