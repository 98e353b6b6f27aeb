//! `imagegate-demo`, the small model trained by the project and shipped in
//! the repository (`models/imagegate-demo`, `tools/demo-model`), as a
//! [`Backend`]. It draws at about its native size, whatever was asked, and
//! resizes to the requested size, because the model only learned its native
//! size; and it can stand in for catalog models that have no working backend
//! here (`serve --demo`). Every image it returns says so in
//! [`Generation::served_by`] and [`Generation::note`].

use std::path::Path;
use std::sync::Arc;

use imagegate_core::backend::Job;
use imagegate_core::{Backend, BackendError, CancelFlag, GeneratedImage, Generation, ModelEntry, ProgressSink, Size};

use crate::Engine;
use crate::engine::batch::spacing_of;
use crate::models::configs::{UNetFile, VaeFile, read_json};
use crate::output::{Parameters, encode_rgb8};
use crate::samplers::schedule::SigmaSpacing;

/// The demo model's catalog id (and folder name under the models folder).
pub const DEMO_MODEL: &str = "imagegate-demo";

/// The grid when the folder's configs cannot be read (then `serves` fails
/// anyway): the shipped layout's VAE halves each side twice, the UNet twice more.
const DEFAULT_GRID: u32 = 16;

/// The size the demo draws for a requested size: the request itself when
/// it is no larger than the native square and on the grid (sides the VAE
/// and UNet divide evenly), else the request's aspect ratio at the native
/// area, on the grid.
pub fn draw_size(native: u32, grid: u32, requested: Size) -> Size {
    let on_grid = requested.width.is_multiple_of(grid) && requested.height.is_multiple_of(grid);
    let at_least = |side: u32| side >= grid * 2;
    if on_grid && requested.pixels() <= u64::from(native) * u64::from(native) && at_least(requested.width) && at_least(requested.height) {
        return requested;
    }
    let ratio = f64::from(requested.width) / f64::from(requested.height);
    let side = |x: f64| ((x / f64::from(grid)).round() as u32).max(2) * grid;
    Size { width: side(f64::from(native) * ratio.sqrt()), height: side(f64::from(native) / ratio.sqrt()) }
}

/// What the demo backend answers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoRole {
    /// Only requests for `imagegate-demo` itself.
    Itself,
    /// Any model (the registry's fallback under `serve --demo`).
    StandIn,
}

/// The demo model on the local engine.
pub struct DemoBackend {
    engine: Arc<Engine>,
    demo: ModelEntry,
    role: DemoRole,
    name: String,
    grid: u32,
}

/// Pixels per latent cell at the UNet's coarsest level, from the folder's configs.
fn grid_of(folder: &Path) -> u32 {
    let vae = read_json::<VaeFile>(&folder.join("vae/config.json"));
    let unet = read_json::<UNetFile>(&folder.join("unet/config.json"));
    match (vae, unet) {
        (Ok(v), Ok(u)) => u32::try_from(v.downscale() << u.block_out_channels.len().saturating_sub(1)).unwrap_or(DEFAULT_GRID),
        _ => DEFAULT_GRID,
    }
}

impl DemoBackend {
    /// `demo` is the catalog's `imagegate-demo` entry (native size, steps, guidance, sampler).
    pub fn new(engine: Arc<Engine>, demo: ModelEntry, role: DemoRole) -> Self {
        let grid = grid_of(&engine.models_dir().join(&demo.id));
        Self { engine, demo, role, name: DEMO_MODEL.to_string(), grid }
    }

    /// The job the demo runs for `job`: its prompt, negative prompt, seed,
    /// count, format and init image; the demo's own steps, guidance and sampler.
    fn demo_job(&self, job: &Job) -> Job {
        let mut spec = job.spec.clone();
        spec.model = self.demo.id.clone();
        spec.size = draw_size(self.demo.native, self.grid, job.spec.size);
        if job.spec.model != self.demo.id {
            // Another model's settings (FLUX's 4 steps, a flow sampler) do not suit this one.
            spec.steps = self.demo.steps;
            spec.guidance = self.demo.guidance;
            spec.sampler = self.demo.sampler;
            spec.loras.clear();
        }
        spec.sampler = spec.sampler.or(self.demo.sampler);
        spec.output_format = imagegate_core::ImageFormat::Png;
        Job::new(job.task_id.clone(), spec)
    }

    fn note(&self, job: &Job, drawn: Size) -> Option<String> {
        let requested = job.spec.size;
        let mut parts = Vec::new();
        if job.spec.model != self.demo.id {
            parts.push(format!("drawn by {DEMO_MODEL}, the small demo model shipped with imagegate, standing in for {} (no working backend for it here)", job.spec.model));
        }
        if drawn != requested {
            let native = self.demo.native;
            parts.push(format!("drawn at {drawn} (the demo model's native size is {native}x{native}) and resized to {requested}"));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// Resizes one drawn image to the requested size and format.
    fn finish(&self, job: &Job, demo_job: &Job, drawn: GeneratedImage) -> Result<GeneratedImage, BackendError> {
        let requested = job.spec.size;
        if drawn.width == requested.width && drawn.height == requested.height && job.spec.output_format == demo_job.spec.output_format {
            return Ok(drawn);
        }
        let bad = |e: &dyn std::fmt::Display| BackendError::Internal(format!("resizing the demo image: {e}"));
        let pixels = image::load_from_memory_with_format(&drawn.bytes, image::ImageFormat::Png).map_err(|e| bad(&e))?.to_rgb8();
        let resized = image::imageops::resize(&pixels, requested.width, requested.height, image::imageops::FilterType::Lanczos3);
        let spec = &demo_job.spec;
        let params = Parameters {
            prompt: spec.effective_prompt(),
            negative: spec.negative_prompt.clone(),
            steps: spec.steps,
            sampler: spec.sampler.unwrap_or_else(|| crate::pipelines::default_sampler(crate::PipelineKind::StableDiffusion)),
            karras: spacing_of(demo_job) == SigmaSpacing::Karras,
            guidance: spec.guidance,
            seed: drawn.seed,
            width: drawn.width,
            height: drawn.height,
            model: self.demo.id.clone(),
            denoising_strength: spec.init_image.as_ref().map(|i| i.strength),
        };
        let bytes = encode_rgb8(requested.width, requested.height, resized.into_raw(), job.spec.output_format, &params).map_err(|e| bad(&e))?;
        Ok(GeneratedImage { bytes, format: job.spec.output_format, width: requested.width, height: requested.height, seed: drawn.seed })
    }
}

#[async_trait::async_trait]
impl Backend for DemoBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn serves(&self, model: &ModelEntry) -> Result<(), String> {
        if self.role == DemoRole::Itself && model.id != self.demo.id {
            return Err(format!("draws {DEMO_MODEL} only (`serve --demo` lets it stand in for models with no working backend)"));
        }
        self.engine.serves(&self.demo)
    }

    fn max_batch(&self) -> usize {
        self.engine.max_batch()
    }

    async fn generate(&self, job: &Job, progress: &ProgressSink, cancel: &CancelFlag) -> Result<Generation, BackendError> {
        let mut out = self.generate_batch(std::slice::from_ref(job), progress, cancel).await;
        out.pop().unwrap_or_else(|| Err(BackendError::Internal("the demo model returned no result".into())))
    }

    async fn generate_batch(&self, jobs: &[Job], progress: &ProgressSink, cancel: &CancelFlag) -> Vec<Result<Generation, BackendError>> {
        let demo_jobs: Vec<Job> = jobs.iter().map(|j| self.demo_job(j)).collect();
        let results = self.engine.generate_batch(&demo_jobs, progress, cancel).await;
        results
            .into_iter()
            .zip(jobs.iter().zip(&demo_jobs))
            .map(|(result, (job, demo_job))| {
                let generation = result?;
                let images = generation.images.into_iter().map(|img| self.finish(job, demo_job, img)).collect::<Result<Vec<_>, _>>()?;
                Ok(Generation { images, served_by: self.name.clone(), note: self.note(job, demo_job.spec.size), provider_request_id: None })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_at_the_native_area_keeping_the_aspect_ratio() {
        let size = |w, h| Size { width: w, height: h };
        assert_eq!(draw_size(64, 16, size(1024, 1024)), size(64, 64));
        assert_eq!(draw_size(64, 16, size(64, 64)), size(64, 64));
        assert_eq!(draw_size(64, 16, size(48, 32)), size(48, 32), "small enough and on the grid: as asked");
        assert_eq!(draw_size(64, 16, size(1024, 576)), size(80, 48));
        assert_eq!(draw_size(64, 16, size(576, 1024)), size(48, 80));
        assert_eq!(draw_size(64, 16, size(1536, 640)), size(96, 48));
        assert_eq!(draw_size(64, 16, size(4000, 100)), size(400, 32), "never below two grid steps");
        assert_eq!(draw_size(64, 32, size(1024, 576)), size(96, 64), "a coarser grid");
    }
}
