//! Planning a batch: jobs expand into one image each (`seed + n`), images
//! that can share forward passes (same size, steps, sampler, sigma spacing,
//! LoRAs and image-to-image strength) are grouped in job order, and groups
//! are cut to the batch limit.

use imagegate_core::backend::Job;
use imagegate_core::{LoraSpec, Sampler};

use crate::error::EngineError;
use crate::input::{InitPixels, decode_init_image, decode_mask, has_mask};
use crate::pipelines::{BatchRequest, ImageRequest};
use crate::samplers::SigmaSpacing;

/// The sampler used when a spec names none (the SD catalog default).
pub const DEFAULT_SAMPLER: Sampler = Sampler::KDpmpp2m;

/// Which image of which job a batch row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Index into the jobs.
    pub job: usize,
    /// Image number within the job.
    pub n: u32,
}

/// One forward batch and where its rows go.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// What the pipeline runs.
    pub request: BatchRequest,
    /// Row `i` of the request is `slots[i]`.
    pub slots: Vec<Slot>,
    /// LoRAs merged into the weights for this chunk.
    pub loras: Vec<LoraSpec>,
}

/// Whether a spec asks for Karras sigmas (`extras.karras = true`).
pub fn spacing_of(job: &Job) -> SigmaSpacing {
    match job.spec.extras.get("karras").and_then(|v| v.as_bool()) {
        Some(true) => SigmaSpacing::Karras,
        _ => SigmaSpacing::Default,
    }
}

/// Why the engine cannot run a job at all (checked before any work).
pub fn reject(job: &Job) -> Option<EngineError> {
    let spec = &job.spec;
    if spec.steps == 0 || spec.count == 0 {
        return Some(EngineError::invalid("steps", "steps and count must be at least 1"));
    }
    if !spec.prompt.iter().any(|p| p.weight > 0.0) {
        return Some(EngineError::invalid("prompt", "needs at least one part with a positive weight"));
    }
    None
}

/// A job's init image decoded at its output size, if it has one.
pub fn init_of(job: &Job) -> Result<Option<InitPixels>, EngineError> {
    let spec = &job.spec;
    let (width, height) = (spec.size.width as usize, spec.size.height as usize);
    let Some(init) = &spec.init_image else { return Ok(None) };
    let mut pixels = decode_init_image(&init.source, width, height)?;
    pixels.mask = init.mask.as_deref().map(|m| decode_mask(m, width, height)).transpose()?;
    Ok(Some(pixels))
}

/// Splits the accepted jobs (`inits[j]` is `Some` for them, holding their
/// decoded init image if any) into chunks of at most `max_batch` images.
pub fn plan(jobs: &[Job], inits: &[Option<Option<InitPixels>>], max_batch: usize, default_sampler: Sampler) -> Vec<Chunk> {
    let mut groups: Vec<Chunk> = Vec::new();
    for (j, job) in jobs.iter().enumerate() {
        let Some(init) = &inits[j] else { continue };
        let spec = &job.spec;
        let strength = spec.init_image.as_ref().map(|i| i.strength);
        let sampler = spec.sampler.unwrap_or(default_sampler);
        let (width, height, steps, spacing) = (spec.size.width as usize, spec.size.height as usize, spec.steps as usize, spacing_of(job));
        let idx = match groups.iter().position(|g| {
            let r = &g.request;
            (r.width, r.height, r.steps, r.sampler, r.spacing, r.strength) == (width, height, steps, sampler, spacing, strength)
                && g.loras == spec.loras
                // Inpainted images batch apart: the UNet takes more inputs.
                && r.items.first().is_some_and(|i| has_mask(&i.init) == has_mask(init))
        }) {
            Some(i) => i,
            None => {
                let request = BatchRequest { items: Vec::new(), width, height, steps, sampler, spacing, strength };
                groups.push(Chunk { request, slots: Vec::new(), loras: spec.loras.clone() });
                groups.len() - 1
            }
        };
        for n in 0..spec.count {
            let item = ImageRequest {
                prompt: spec.prompt.clone(),
                negative: spec.negative_prompt.clone(),
                guidance: spec.guidance,
                seed: spec.seed.wrapping_add(u64::from(n)),
                init: init.clone(),
            };
            groups[idx].request.items.push(item);
            groups[idx].slots.push(Slot { job: j, n });
        }
    }
    let max = max_batch.max(1);
    groups
        .into_iter()
        .flat_map(|g| {
            let Chunk { request, slots, loras } = g;
            request
                .items
                .chunks(max)
                .zip(slots.chunks(max))
                .map(|(items, slots)| Chunk { request: BatchRequest { items: items.to_vec(), ..request.clone() }, slots: slots.to_vec(), loras: loras.clone() })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use imagegate_core::{Size, TaskSpec};

    fn job(id: &str, count: u32, sampler: Option<Sampler>, seed: u64) -> Job {
        let mut spec = TaskSpec::simple("tiny", "a cat", Size::new(64, 64));
        (spec.count, spec.sampler, spec.seed) = (count, sampler, seed);
        Job::new(id, spec)
    }

    #[test]
    fn images_use_consecutive_seeds_and_split_at_the_batch_limit() {
        let jobs = [job("a", 3, None, 10), job("b", 2, None, u64::MAX)];
        let chunks = plan(&jobs, &[Some(None), Some(None)], 4, DEFAULT_SAMPLER);
        assert_eq!(chunks.len(), 2);
        let seeds: Vec<u64> = chunks.iter().flat_map(|c| c.request.items.iter().map(|i| i.seed)).collect();
        assert_eq!(seeds, vec![10, 11, 12, u64::MAX, 0]);
        assert_eq!(chunks[1].slots, vec![Slot { job: 1, n: 1 }]);
    }

    #[test]
    fn different_samplers_never_share_a_forward_batch() {
        let jobs = [job("a", 1, Some(Sampler::KEuler), 0), job("b", 1, Some(Sampler::Ddim), 0), job("c", 1, Some(Sampler::KEuler), 0)];
        let chunks = plan(&jobs, &[Some(None), Some(None), Some(None)], 8, DEFAULT_SAMPLER);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].slots.iter().map(|s| s.job).collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!(chunks[1].request.sampler, Sampler::Ddim);
    }

    #[test]
    fn empty_requests_are_rejected_by_name() {
        let mut j = job("a", 1, None, 0);
        j.spec.steps = 0;
        assert!(matches!(reject(&j), Some(EngineError::Invalid { field, .. }) if field == "steps"));
        assert!(reject(&job("b", 1, None, 0)).is_none());
        let mut bad = job("c", 1, None, 0);
        bad.spec.init_image = Some(imagegate_core::InitImage { source: "https://x/y.png".into(), strength: 0.5, mask: None });
        assert!(matches!(init_of(&bad), Err(EngineError::Invalid { field, .. }) if field == "init_image"));
    }

    #[test]
    fn different_loras_never_share_a_forward_batch() {
        let mut styled = job("a", 1, None, 0);
        styled.spec.loras.push(LoraSpec { name: "style".into(), scale: 0.5 });
        let chunks = plan(&[styled, job("b", 1, None, 0)], &[Some(None), Some(None)], 8, DEFAULT_SAMPLER);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].loras.len(), 1);
        assert!(chunks[1].loras.is_empty());
    }
}
