//! The real engine over tiny generated models, for conformance tests that
//! must run the seed examples end to end. Every local catalog model the seeds
//! name gets a tiny random-weight pipeline in the real diffusers layout,
//! written under its catalog id, so the engine finds it the way it finds
//! installed weights. Images are noise-like but real: same stages, samplers,
//! VAE decode and PNG encoding as with real weights.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use imagegate_core::{Backend, Catalog, Family, ModelEntry, Workflow, WorkflowSet};
use imagegate_engine::fixtures::{FluxVariant, TinyFlux, TinySd, TinySd3, TinySdVariant, TinySdxl, write_tiny_flux, write_tiny_sd, write_tiny_sd3_with, write_tiny_sdxl_with};
use imagegate_engine::{Engine, EngineConfig};

use crate::app::TestAppOptions;

/// Catalog ids (see `core/src/catalog/default.toml`) that the tiny models
/// serve, and the family each imitates.
pub const TINY_MODEL_IDS: [&str; 7] = [
    "stable-diffusion-v1-6",
    "stable-diffusion-inpainting",
    "stable-diffusion-xl-beta-v2-2-2",
    "stable-diffusion-xl-1024-v1-0",
    "FLUX.1-schnell",
    "FLUX.1-dev",
    "stable-diffusion-3-5-large",
];

fn write_model(dir: &Path, id: &str) -> imagegate_engine::Result<()> {
    let folder = dir.join(id);
    // Lean fixtures: the seeds ask for 512–1344 px images, where the
    // engine tests' fixtures would spend seconds per step on a CPU.
    match id {
        "stable-diffusion-v1-6" => write_tiny_sd(&folder, &TinySd { seed: 11, lean: true, ..TinySd::default() }),
        "stable-diffusion-inpainting" => write_tiny_sd(&folder, &TinySd { inpaint: true, seed: 17, lean: true, ..TinySd::default() }),
        "stable-diffusion-xl-beta-v2-2-2" => write_tiny_sd(&folder, &TinySd { variant: TinySdVariant::Sd21, seed: 12, lean: true, ..TinySd::default() }),
        "stable-diffusion-xl-1024-v1-0" => write_tiny_sdxl_with(&folder, &TinySdxl { dtype: candle_core::DType::F32, seed: 13, lean: true }),
        "FLUX.1-schnell" => write_tiny_flux(&folder, &TinyFlux { seed: 14, lean: true, ..TinyFlux::default() }),
        "FLUX.1-dev" => write_tiny_flux(&folder, &TinyFlux { variant: FluxVariant::Dev, seed: 15, lean: true, ..TinyFlux::default() }),
        // SD 3.5 sizes go to 1536 px: 48 patches a side with the lean 16x
        // VAE, so the position embedding must cover that (real SD 3.5: 192).
        "stable-diffusion-3-5-large" => write_tiny_sd3_with(&folder, &TinySd3 { seed: 16, pos_embed_max_size: 64, lean: true }),
        other => unreachable!("no tiny model for {other}"),
    }
}

/// Writes a tiny random-weight SD pipeline as `imagegate-demo` under
/// `models_dir`, for tests of the demo's serving path (stand-in, resizing,
/// headers) that must not depend on the trained weights.
pub fn write_tiny_demo(models_dir: &Path) -> imagegate_engine::Result<()> {
    write_tiny_sd(&models_dir.join(imagegate_engine::DEMO_MODEL), &TinySd { seed: 21, ..TinySd::default() })
}

/// A models folder holding a tiny pipeline for every id in
/// [`TINY_MODEL_IDS`], written once per test process.
pub fn tiny_models_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // Kept for the whole test process; removed with the OS temp folder.
        let dir = tempfile::tempdir().expect("temp dir").keep();
        for id in TINY_MODEL_IDS {
            write_model(&dir, id).unwrap_or_else(|e| panic!("writing the tiny {id}: {e}"));
        }
        dir
    })
}

/// One engine over [`tiny_models_dir`] shared by every test in the
/// process: one engine thread keeps the CPU from being oversubscribed when
/// tests run in parallel, and loaded pipelines are reused.
pub fn tiny_engine() -> Arc<Engine> {
    static ENGINE: OnceLock<Arc<Engine>> = OnceLock::new();
    ENGINE.get_or_init(|| Arc::new(Engine::start(EngineConfig::new(tiny_models_dir())).expect("the engine starts on the CPU"))).clone()
}

/// Default step count of the tiny-engine deployment's local models and
/// workflows (see [`TestAppOptions::tiny_engine`]).
pub const TINY_DEFAULT_STEPS: u32 = 4;

impl TestAppOptions {
    /// Options whose only backend is the real engine over the tiny models.
    ///
    /// Like any deployment, this one configures its catalog: local models
    /// and workflows default to [`TINY_DEFAULT_STEPS`] steps instead of
    /// 20–30, because on a CPU the tiny models' steps at full size, not the
    /// models, set the test time. Steps a request names are honoured
    /// (Stability's seed asks for 30), so only bodies that leave steps to
    /// the model see the difference; everything else in the catalog is the
    /// compiled-in one.
    pub fn tiny_engine() -> Self {
        let engine: Arc<dyn Backend> = tiny_engine();
        let mut catalog = Catalog::builtin();
        for m in catalog.models().to_vec() {
            if m.family != Family::Upstream && m.steps > TINY_DEFAULT_STEPS {
                catalog.upsert(ModelEntry { steps: TINY_DEFAULT_STEPS, ..m });
            }
        }
        let mut workflows = WorkflowSet::builtin();
        for w in workflows.all().to_vec() {
            workflows.upsert(Workflow { steps: w.steps.min(TINY_DEFAULT_STEPS), ..w });
        }
        Self { backends: vec![engine], catalog: Some(catalog), workflows: Some(workflows), ..Self::default() }
    }
}
