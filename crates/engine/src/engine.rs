//! The [`Engine`] handle: what async code holds. It implements core's
//! [`Backend`] by sending commands to the [`thread::EngineThread`], which
//! owns the device and the loaded pipelines, and awaiting the reply.

pub mod batch;
pub mod device;
pub mod memory;
pub mod thread;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc;

use candle_core::DType;
use imagegate_core::backend::Job;
use imagegate_core::{Backend, BackendError, CancelFlag, Family, Generation, ModelEntry, ProgressSink};

use crate::error::{EngineError, Result};
use crate::loader::{PipelineKind, checkpoint_file, missing_files, pipeline_folder, read_kind};
pub use device::DeviceChoice;
use thread::{EngineCommand, EngineThread, GenerateCommand};

/// How to start an [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Folder whose subfolders are diffusers pipelines, one model each (id = folder name).
    pub models_dir: PathBuf,
    /// Bytes of weights kept loaded; least recently used pipelines are dropped beyond it.
    pub memory_budget_bytes: u64,
    /// Compute device (`Auto` is resolved when the engine starts).
    pub device: DeviceChoice,
    /// Weight dtype; `None` picks f32 on the CPU and f16 on GPUs.
    pub dtype: Option<DType>,
    /// Most images denoised in one forward batch.
    pub max_batch: usize,
    /// Activation memory one forward batch may use; batches shrink (to one
    /// image at least) when the estimate for their size exceeds it.
    pub activation_budget_bytes: u64,
}

impl EngineConfig {
    /// CPU defaults for a models folder: 8 GiB of weights, batches of up to
    /// 4 images within 16 GiB of activations.
    pub fn new(models_dir: impl Into<PathBuf>) -> Self {
        Self { models_dir: models_dir.into(), memory_budget_bytes: 8 << 30, device: DeviceChoice::Cpu, dtype: None, max_batch: 4, activation_budget_bytes: 16 << 30 }
    }
}

/// The local engine: a handle to its thread; implements [`Backend`].
pub struct Engine {
    tx: Mutex<mpsc::Sender<EngineCommand>>,
    models_dir: PathBuf,
    /// The device opened (`auto` resolved).
    device: DeviceChoice,
    max_batch: usize,
    /// Catalog ids whose folder was found under another name (the weights repo).
    aliases: Mutex<HashMap<String, PathBuf>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Engine {
    /// Opens the device and starts the engine thread.
    pub fn start(config: EngineConfig) -> Result<Self> {
        let device = config.device.open()?;
        let dtype = config.dtype.unwrap_or(device::default_dtype(&device));
        let resolved = DeviceChoice::of(&device);
        let (tx, rx) = mpsc::channel();
        // Built on its own thread: loaded pipelines (candle's MMDiT) are not `Send`.
        let thread_config = config.clone();
        let thread = std::thread::Builder::new()
            .name("imagegate-engine".into())
            .spawn(move || EngineThread::new(&thread_config, device, dtype).run(rx))
            .map_err(|source| EngineError::Io { path: "engine thread".into(), source })?;
        tracing::info!(models_dir = %config.models_dir.display(), device = %resolved, ?dtype, "engine started");
        Ok(Self {
            tx: Mutex::new(tx),
            models_dir: config.models_dir,
            device: resolved,
            max_batch: config.max_batch.max(1),
            aliases: Mutex::new(HashMap::new()),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The device the engine computes on (`auto` resolved).
    pub fn device(&self) -> DeviceChoice {
        self.device
    }

    /// The models folder.
    pub fn models_dir(&self) -> &Path {
        &self.models_dir
    }

    /// Folders that may hold `model`: its id, then its weights repo's name,
    /// the repo path and its Hugging Face cache entry, under the models folder.
    fn candidates(&self, model: &ModelEntry) -> Vec<PathBuf> {
        let mut c = vec![self.models_dir.join(&model.id)];
        if let Some(w) = &model.weights {
            let names = [w.rsplit('/').next().unwrap_or(w).to_string(), w.replace('/', "--"), w.clone(), format!("models--{}", w.replace('/', "--"))];
            c.extend(names.map(|n| self.models_dir.join(n)));
        }
        c.dedup();
        c
    }

    /// The folder a job's model id maps to.
    fn folder_for(&self, model_id: &str) -> PathBuf {
        let aliases = self.aliases.lock().unwrap_or_else(|p| p.into_inner());
        let folder = self.models_dir.join(model_id);
        aliases.get(model_id).cloned().unwrap_or_else(|| if folder.exists() { folder.clone() } else { checkpoint_file(&folder).unwrap_or(folder) })
    }

    /// Runs jobs on the engine thread and waits for all results, one command
    /// per model (callers batch by model, but a mixed call must not run a job
    /// on another job's weights).
    async fn run(&self, jobs: &[Job], progress: &ProgressSink, cancel: &CancelFlag) -> Vec<std::result::Result<Generation, BackendError>> {
        let mut models: Vec<&str> = jobs.iter().map(|j| j.spec.model.as_str()).collect();
        models.sort_unstable();
        models.dedup();
        let mut results: Vec<Option<std::result::Result<Generation, BackendError>>> = vec![None; jobs.len()];
        for model in models {
            let idx: Vec<usize> = (0..jobs.len()).filter(|&i| jobs[i].spec.model == model).collect();
            let group: Vec<Job> = idx.iter().map(|&i| jobs[i].clone()).collect();
            let out = match self.send(model, group, progress, cancel).await {
                Ok(out) => out,
                Err(e) => idx.iter().map(|_| Err(e.clone())).collect(),
            };
            for (i, r) in idx.into_iter().zip(out) {
                results[i] = Some(r);
            }
        }
        results.into_iter().map(|r| r.unwrap_or_else(|| Err(BackendError::Internal("engine returned no result".into())))).collect()
    }

    /// Sends one model's jobs to the engine thread and awaits the reply.
    async fn send(
        &self,
        model: &str,
        jobs: Vec<Job>,
        progress: &ProgressSink,
        cancel: &CancelFlag,
    ) -> std::result::Result<Vec<std::result::Result<Generation, BackendError>>, BackendError> {
        let folder = self.folder_for(model);
        let (reply, rx) = tokio::sync::oneshot::channel();
        let cmd = GenerateCommand { folder, jobs, progress: progress.clone(), cancel: cancel.clone(), reply };
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).send(EngineCommand::Generate(cmd)).map_err(|_| BackendError::from(EngineError::Stopped))?;
        rx.await.map_err(|_| BackendError::from(EngineError::Stopped))
    }
}

/// Whether the engine has a pipeline for a catalog family.
fn family_kind(family: Family) -> Option<PipelineKind> {
    match family {
        Family::Sd15 | Family::Sd21 | Family::Sd21Turbo => Some(PipelineKind::StableDiffusion),
        Family::Sdxl | Family::SdxlTurbo => Some(PipelineKind::StableDiffusionXl),
        Family::FluxSchnell | Family::FluxDev => Some(PipelineKind::Flux),
        Family::Sd35 => Some(PipelineKind::StableDiffusion3),
        Family::Upstream => None,
    }
}

#[async_trait::async_trait]
impl Backend for Engine {
    fn name(&self) -> &str {
        "engine"
    }

    fn serves(&self, model: &ModelEntry) -> std::result::Result<(), String> {
        let Some(kind) = family_kind(model.family) else {
            return Err(format!("{} is served only by upstream providers", model.id));
        };
        if !kind.is_implemented() {
            return Err(format!("the local engine has no {kind:?} pipeline yet"));
        }
        let candidates = self.candidates(model);
        let Some(folder) = candidates.iter().find_map(|p| pipeline_folder(p).or_else(|| checkpoint_file(p))) else {
            let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
            let pull = model.weights.as_ref().map(|w| format!("; `imagegate models pull {}` fetches them from {w}", model.id)).unwrap_or_default();
            return Err(format!("weights for {} are missing: model_index.json (looked in {}){pull}", model.id, looked.join(", ")));
        };
        let folder = &folder;
        let missing = missing_files(folder);
        if !missing.is_empty() {
            return Err(format!("weights for {} are missing: {} (looked in {})", model.id, missing.join(", "), folder.display()));
        }
        match read_kind(folder) {
            Ok(k) if k == kind => {}
            Ok(k) => return Err(format!("{} is a {k:?} folder but {} is {}", folder.display(), model.id, model.family.as_str())),
            Err(e) => return Err(e.to_string()),
        }
        let dev_wanted = match model.family {
            Family::FluxDev => Some(true),
            Family::FluxSchnell => Some(false),
            _ => None,
        };
        if let (Some(wanted), Some(is_dev)) = (dev_wanted, crate::loader::flux_is_dev(folder))
            && wanted != is_dev
        {
            let found = if is_dev { "FLUX.1 dev" } else { "FLUX.1 schnell" };
            return Err(format!("{} holds {found} but {} is {}", folder.display(), model.id, model.family.as_str()));
        }
        if folder != &self.models_dir.join(&model.id) {
            self.aliases.lock().unwrap_or_else(|p| p.into_inner()).insert(model.id.clone(), folder.clone());
        }
        Ok(())
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    async fn generate(&self, job: &Job, progress: &ProgressSink, cancel: &CancelFlag) -> std::result::Result<Generation, BackendError> {
        let mut out = self.generate_batch(std::slice::from_ref(job), progress, cancel).await;
        out.pop().unwrap_or_else(|| Err(BackendError::Internal("engine returned no result".into())))
    }

    async fn generate_batch(&self, jobs: &[Job], progress: &ProgressSink, cancel: &CancelFlag) -> Vec<std::result::Result<Generation, BackendError>> {
        self.run(jobs, progress, cancel).await
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // The thread ends when told to or when every sender is gone; join it so
        // the device and weights are freed before the engine is considered gone.
        let _ = self.tx.lock().unwrap_or_else(|p| p.into_inner()).send(EngineCommand::Shutdown);
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}
