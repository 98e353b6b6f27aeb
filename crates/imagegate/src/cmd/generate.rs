//! `imagegate generate`: one image from the local engine, with a progress
//! bar, written to a PNG that carries its generation parameters.

use std::sync::Arc;

use anyhow::Context;
use imagegate_core::backend::Job;
use imagegate_core::{Backend, CancelFlag, InitImage, LoraSpec, Progress, ProgressSink, Size, TaskSpec};
use imagegate_engine::{DEMO_MODEL, DemoBackend, DemoRole, Engine};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::GenerateArgs;
use crate::config::Config;
use crate::wiring;

fn parse_lora(raw: &str) -> anyhow::Result<LoraSpec> {
    let (name, scale) = raw.rsplit_once(':').context("--lora takes FILE:SCALE")?;
    Ok(LoraSpec { name: name.to_string(), scale: scale.parse().with_context(|| format!("--lora scale `{scale}` is not a number"))? })
}

/// A file's bytes as the base64 the engine takes for init images and masks.
fn data_uri(path: &std::path::Path, flag: &str) -> anyhow::Result<String> {
    use base64::Engine as _;
    let bytes = std::fs::read(path).with_context(|| format!("{flag}: reading {}", path.display()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The model `generate` uses when none is named: the only local model,
/// not counting the shipped demo; the demo when it is the only one.
fn default_local_model(local: &[&str], dir: &std::path::Path) -> anyhow::Result<String> {
    let others: Vec<&str> = local.iter().copied().filter(|m| *m != DEMO_MODEL).collect();
    match others.as_slice() {
        [only] => Ok(only.to_string()),
        [] if local.contains(&DEMO_MODEL) => Ok(DEMO_MODEL.to_string()),
        [] => anyhow::bail!("no local model in {}; pass --model or install one", dir.display()),
        many => anyhow::bail!("several local models ({}); pass --model", many.join(", ")),
    }
}

/// Generates and writes the image.
pub async fn run(mut config: Config, args: GenerateArgs) -> anyhow::Result<()> {
    if let Some(device) = &args.device {
        config.models.device = device.clone();
    }
    let catalog = wiring::catalog_with_local_models(&config)?;
    let engine = Arc::new(Engine::start(config.models.engine_config()?).context("starting the engine")?);
    let device = engine.device();
    let model_name = match args.model.clone().or_else(|| config.models.default_model.clone()) {
        Some(m) => m,
        None => default_local_model(&imagegate_engine::discover(&config.models.dir).iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), &config.models.dir)?,
    };
    let model = catalog.require(&model_name).map_err(|e| anyhow::anyhow!(e.message))?;
    // The demo draws at its native size and resizes, as `serve` does.
    let backend: Arc<dyn Backend> = if model.id == DEMO_MODEL { Arc::new(DemoBackend::new(engine.clone(), model.clone(), DemoRole::Itself)) } else { engine };
    backend.serves(model).map_err(|why| anyhow::anyhow!("cannot run {} here: {why}", model.id))?;
    let size = match &args.size {
        Some(s) => {
            let size: Size = s.parse().map_err(|_| anyhow::anyhow!("--size takes WxH, got `{s}`"))?;
            model.check_size("--size", size).map_err(|e| anyhow::anyhow!(e.message))?;
            size
        }
        None => model.native_size(),
    };
    let mut spec = TaskSpec::simple(&model.id, &args.prompt, size);
    spec.steps = args.steps.unwrap_or(model.steps);
    spec.guidance = args.guidance.unwrap_or(model.guidance);
    spec.sampler = match &args.sampler {
        Some(s) => Some(s.parse().map_err(|_| anyhow::anyhow!("--sampler `{s}` is not one of {}", imagegate_core::Sampler::allowed_list()))?),
        None => model.sampler,
    };
    spec.seed = args.seed.unwrap_or_else(rand::random);
    spec.negative_prompt = args.negative.clone();
    spec.loras = args.loras.iter().map(|l| parse_lora(l)).collect::<anyhow::Result<_>>()?;
    if let Some(path) = &args.init_image {
        let strength = args.strength.unwrap_or(if args.mask.is_some() { 1.0 } else { 0.75 });
        anyhow::ensure!((0.0..=1.0).contains(&strength), "--strength takes 0 to 1, got {strength}");
        let mask = args.mask.as_deref().map(|m| data_uri(m, "--mask")).transpose()?;
        spec.init_image = Some(InitImage { source: data_uri(path, "--init-image")?, strength, mask });
    }

    let bar = ProgressBar::new(u64::from(spec.steps));
    bar.set_style(ProgressStyle::with_template("{spinner} {msg} [{bar:30}] step {pos}/{len} {elapsed}").unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar.set_message(model.id.clone());
    let sink: ProgressSink = {
        let bar = bar.clone();
        Arc::new(move |p: Progress| {
            bar.set_length(u64::from(p.total));
            bar.set_position(u64::from(p.step));
        })
    };
    let job = Job::new("cli", spec.clone());
    let started = std::time::Instant::now();
    let generation = backend.generate(&job, &sink, &CancelFlag::new()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    bar.finish_and_clear();
    if let Some(note) = &generation.note {
        eprintln!("note: {note}");
    }
    let image = generation.images.into_iter().next().context("the engine returned no image")?;
    let out = args.out.clone().unwrap_or_else(|| format!("{}-{}.{}", model.id.replace('/', "_"), spec.seed, image.format.ext()).into());
    std::fs::write(&out, &image.bytes).with_context(|| format!("writing {}", out.display()))?;
    // The time includes loading the weights: one process, one image.
    eprintln!("wrote {} ({}x{}, seed {}) on {device} in {:.2} s", out.display(), image.width, image.height, image.seed, started.elapsed().as_secs_f64());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_is_the_default_only_when_nothing_else_is_installed() {
        let dir = std::path::Path::new("models");
        assert_eq!(default_local_model(&[DEMO_MODEL], dir).unwrap(), DEMO_MODEL);
        assert_eq!(default_local_model(&[DEMO_MODEL, "sd15"], dir).unwrap(), "sd15");
        assert_eq!(default_local_model(&["sd15"], dir).unwrap(), "sd15");
        assert!(default_local_model(&[], dir).unwrap_err().to_string().contains("no local model"));
        assert!(default_local_model(&[DEMO_MODEL, "a", "b"], dir).unwrap_err().to_string().contains("several"));
    }

    #[test]
    fn loras_parse_file_and_scale() {
        let l = parse_lora("styles/ink.safetensors:0.8").unwrap();
        assert_eq!((l.name.as_str(), l.scale), ("styles/ink.safetensors", 0.8));
        assert!(parse_lora("ink").is_err());
        assert!(parse_lora("ink:x").is_err());
    }
}
