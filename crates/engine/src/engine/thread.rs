//! The [`EngineThread`]: a plain OS thread that owns the candle device and
//! the loaded pipelines (an LRU within a memory budget) and serves
//! [`EngineCommand`]s from a channel. Progress goes out through each
//! command's sink; cancellation is checked between denoising steps.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;

use candle_core::{DType, Device};
use imagegate_core::backend::Job;
use imagegate_core::{BackendError, CancelFlag, GeneratedImage, Generation, LoraSpec, Progress, ProgressSink};

use super::EngineConfig;
use super::batch::{Chunk, init_of, plan, reject, spacing_of};
use super::memory::batch_limit;
use crate::error::{EngineError, Result};
use crate::input::InitPixels;
use crate::loader::{read_kind, weight_bytes};
use crate::lora::{self, LoraRef};
use crate::output::{Parameters, encode_image};
use crate::pipelines::{Pipeline, default_sampler};
use crate::samplers::SigmaSpacing;

/// Results of a generate command, in job order.
pub type JobResults = Vec<std::result::Result<Generation, BackendError>>;

/// Generate images for compatible jobs of one model.
pub struct GenerateCommand {
    /// The model's pipeline folder.
    pub folder: PathBuf,
    /// The jobs.
    pub jobs: Vec<Job>,
    /// Step reports.
    pub progress: ProgressSink,
    /// Checked between steps.
    pub cancel: CancelFlag,
    /// Where the results go.
    pub reply: tokio::sync::oneshot::Sender<JobResults>,
}

/// What the engine thread is asked to do.
pub enum EngineCommand {
    /// Run jobs.
    Generate(GenerateCommand),
    /// Drop everything and end the thread.
    Shutdown,
}

struct Cached {
    folder: PathBuf,
    /// LoRAs merged into this copy's weights (part of the cache key).
    loras: Vec<LoraRef>,
    pipeline: Pipeline,
    bytes: u64,
}

/// The state owned by the engine thread.
pub struct EngineThread {
    models_dir: PathBuf,
    device: Device,
    dtype: DType,
    budget: u64,
    max_batch: usize,
    activation_budget: u64,
    /// Least recently used first.
    cache: Vec<Cached>,
}

impl EngineThread {
    /// State for a thread computing on `device` at `dtype` with `config`'s budgets and folders.
    pub fn new(config: &EngineConfig, device: Device, dtype: DType) -> Self {
        Self {
            models_dir: config.models_dir.clone(),
            device,
            dtype,
            budget: config.memory_budget_bytes,
            max_batch: config.max_batch.max(1),
            activation_budget: config.activation_budget_bytes,
            cache: Vec::new(),
        }
    }

    /// Serves commands until `Shutdown` or until every sender is dropped.
    pub fn run(mut self, rx: Receiver<EngineCommand>) {
        while let Ok(EngineCommand::Generate(cmd)) = rx.recv() {
            let GenerateCommand { folder, jobs, progress, cancel, reply } = cmd;
            let results = match std::panic::catch_unwind(AssertUnwindSafe(|| self.generate(&folder, &jobs, &progress, &cancel))) {
                Ok(r) => r,
                Err(_) => {
                    tracing::error!(folder = %folder.display(), "engine panicked; dropping loaded pipelines");
                    self.cache.clear();
                    jobs.iter().map(|_| Err(BackendError::Internal("the engine panicked".into()))).collect()
                }
            };
            // The caller may have stopped waiting; nothing to do then.
            let _ = reply.send(results);
        }
        tracing::info!("engine thread stopped");
    }

    /// The pipeline for `folder` with `loras` merged, loading it (and evicting others) if needed.
    fn pipeline(&mut self, folder: &Path, loras: &[LoraRef]) -> Result<&Pipeline> {
        if let Some(i) = self.cache.iter().position(|c| c.folder == folder && c.loras == loras) {
            let hit = self.cache.remove(i);
            self.cache.push(hit);
        } else {
            if !folder.join("model_index.json").is_file() && !folder.is_file() {
                return Err(EngineError::MissingWeights {
                    model: folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                    missing: "model_index.json".into(),
                    looked_in: folder.display().to_string(),
                });
            }
            let kind = read_kind(folder)?;
            if !kind.is_implemented() {
                return Err(EngineError::invalid("model", format!("the local engine has no {kind:?} pipeline yet")));
            }
            let bytes = weight_bytes(folder);
            while !self.cache.is_empty() && self.cache.iter().map(|c| c.bytes).sum::<u64>() + bytes > self.budget {
                let evicted = self.cache.remove(0);
                tracing::info!(folder = %evicted.folder.display(), "evicting pipeline to stay within the memory budget");
            }
            let pipeline = Pipeline::load(folder, &self.device, self.dtype, loras)?;
            self.cache.push(Cached { folder: folder.to_path_buf(), loras: loras.to_vec(), pipeline, bytes });
        }
        // The entry was just pushed or moved to the end.
        Ok(&self.cache.last().expect("cache holds the pipeline just used").pipeline)
    }

    /// The files of a chunk's LoRAs, or which file is missing and where it was looked for.
    fn resolve_loras(&self, specs: &[LoraSpec]) -> Result<Vec<LoraRef>> {
        specs
            .iter()
            .map(|l| match lora::resolve(&self.models_dir, &l.name) {
                Ok(path) => Ok(LoraRef { path, scale: l.scale }),
                Err(tried) => Err(EngineError::MissingWeights {
                    model: format!("LoRA {}", l.name),
                    missing: format!("{}.safetensors", l.name.trim_end_matches(".safetensors")),
                    looked_in: tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
                }),
            })
            .collect()
    }

    /// Folders currently loaded, least recently used first.
    pub fn loaded(&self) -> Vec<PathBuf> {
        self.cache.iter().map(|c| c.folder.clone()).collect()
    }

    fn generate(&mut self, folder: &Path, jobs: &[Job], progress: &ProgressSink, cancel: &CancelFlag) -> JobResults {
        let mut results: Vec<Option<std::result::Result<Generation, BackendError>>> = jobs.iter().map(|j| reject(j).map(|e| Err(e.into()))).collect();
        // Accepted jobs with their decoded init image (if any); a bad image fails only its job.
        let inits: Vec<Option<Option<InitPixels>>> = jobs
            .iter()
            .zip(results.iter_mut())
            .map(|(job, r)| {
                if r.is_some() {
                    return None;
                }
                init_of(job).map_err(|e| *r = Some(Err(e.into()))).ok()
            })
            .collect();
        let max_batch = batch_limit(folder, jobs, self.activation_budget, self.max_batch);
        let sampler = read_kind(folder).map(default_sampler).unwrap_or(super::batch::DEFAULT_SAMPLER);
        let chunks = plan(jobs, &inits, max_batch, sampler);
        tracing::debug!(jobs = jobs.len(), chunks = chunks.len(), max_batch, "running batch");
        let mut images: HashMap<usize, Vec<(u32, GeneratedImage)>> = HashMap::new();
        let mut chunks_left: HashMap<usize, u32> = HashMap::new();
        for c in &chunks {
            for j in c.slots.iter().map(|s| s.job).collect::<std::collections::BTreeSet<_>>() {
                *chunks_left.entry(j).or_default() += 1;
            }
        }
        let totals = chunks_left.clone();
        for chunk in &chunks {
            if chunk.slots.iter().all(|s| results[s.job].is_some()) {
                continue;
            }
            let outcome = self.resolve_loras(&chunk.loras).and_then(|loras| {
                let pipe = self.pipeline(folder, &loras)?;
                run_chunk(pipe, chunk, jobs, progress, cancel, &totals, &chunks_left)
            });
            match outcome {
                Ok(done) => {
                    for (slot, img) in chunk.slots.iter().zip(done) {
                        images.entry(slot.job).or_default().push((slot.n, img));
                    }
                }
                Err(e) => {
                    let e = BackendError::from(e);
                    for s in &chunk.slots {
                        results[s.job].get_or_insert_with(|| Err(e.clone()));
                    }
                }
            }
            for j in chunk.slots.iter().map(|s| s.job).collect::<std::collections::BTreeSet<_>>() {
                *chunks_left.entry(j).or_default() -= 1;
            }
        }
        results
            .into_iter()
            .enumerate()
            .map(|(j, r)| {
                r.unwrap_or_else(|| {
                    let mut imgs = images.remove(&j).unwrap_or_default();
                    imgs.sort_by_key(|(n, _)| *n);
                    Ok(Generation { images: imgs.into_iter().map(|(_, i)| i).collect(), served_by: "engine".into(), ..Default::default() })
                })
            })
            .collect()
    }
}

/// Runs one forward batch and encodes its images.
fn run_chunk(
    pipe: &Pipeline,
    chunk: &Chunk,
    jobs: &[Job],
    progress: &ProgressSink,
    cancel: &CancelFlag,
    totals: &HashMap<usize, u32>,
    left: &HashMap<usize, u32>,
) -> Result<Vec<GeneratedImage>> {
    let mut task_jobs: Vec<usize> = chunk.slots.iter().map(|s| s.job).collect();
    task_jobs.dedup();
    // `n` is the steps actually run (fewer than requested for image-to-image).
    let mut hook = |i: usize, n: usize| -> Result<()> {
        let steps = n as u32;
        if cancel.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        for &j in &task_jobs {
            // A job split over several chunks reports one running count.
            let done_chunks = totals[&j] - left[&j];
            progress(Progress { task_id: jobs[j].task_id.clone(), step: done_chunks * steps + i as u32, total: totals[&j] * steps });
        }
        Ok(())
    };
    if cancel.is_cancelled() {
        return Err(EngineError::Cancelled);
    }
    let out = pipe.generate(&chunk.request, &mut hook)?;
    chunk
        .slots
        .iter()
        .zip(out.iter().zip(&chunk.request.items))
        .map(|(slot, (img, item))| {
            let spec = &jobs[slot.job].spec;
            let params = Parameters {
                prompt: spec.effective_prompt(),
                negative: spec.negative_prompt.clone(),
                steps: spec.steps,
                sampler: chunk.request.sampler,
                karras: spacing_of(&jobs[slot.job]) == SigmaSpacing::Karras,
                guidance: spec.guidance,
                seed: item.seed,
                width: spec.size.width,
                height: spec.size.height,
                model: spec.model.clone(),
                denoising_strength: chunk.request.strength,
            };
            let bytes = encode_image(img, spec.output_format, &params)?;
            Ok(GeneratedImage { bytes, format: spec.output_format, width: spec.size.width, height: spec.size.height, seed: item.seed })
        })
        .collect()
}

#[cfg(all(test, feature = "fixtures"))]
mod tests {
    use super::*;
    use crate::fixtures::{TinySd, write_tiny_sd};

    #[test]
    fn the_lru_keeps_loaded_pipelines_within_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        write_tiny_sd(&a, &TinySd::default()).unwrap();
        write_tiny_sd(&b, &TinySd { seed: 1, ..TinySd::default() }).unwrap();
        let one = weight_bytes(&a);
        assert!(one > 0);

        let config = |budget| EngineConfig { memory_budget_bytes: budget, ..EngineConfig::new(dir.path()) };
        let mut tight = EngineThread::new(&config(one + one / 2), Device::Cpu, DType::F32);
        tight.pipeline(&a, &[]).unwrap();
        tight.pipeline(&b, &[]).unwrap();
        assert_eq!(tight.loaded(), vec![b.clone()]);

        let mut roomy = EngineThread::new(&config(3 * one), Device::Cpu, DType::F32);
        for f in [&a, &b, &a] {
            roomy.pipeline(f, &[]).unwrap();
        }
        assert_eq!(roomy.loaded(), vec![b, a], "a use moves a pipeline to the back");
    }
}
