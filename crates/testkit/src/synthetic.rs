//! A synthetic backend: draws a real PNG (a colour field chosen by the seed,
//! with a band that differs by image index) at the requested size, after an
//! optional delay. It serves every model and labels itself `synthetic`, so
//! tests, load benchmarks and deployment smoke tests exercise the whole path
//! without a GPU and nobody mistakes its output for a model's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use imagegate_core::backend::Job;
use imagegate_core::{Backend, BackendError, CancelFlag, GeneratedImage, Generation, ImageFormat, ModelEntry, ModerationStage, Progress, ProgressSink};

const PALETTE: [[u8; 3]; 8] = [[220, 40, 40], [40, 160, 60], [40, 80, 220], [230, 200, 40], [150, 60, 200], [240, 140, 30], [30, 190, 190], [90, 90, 90]];

/// Width, height and palette index of a drawn PNG.
type PngKey = (u32, u32, usize);

/// The synthetic backend.
#[derive(Default)]
pub struct SyntheticBackend {
    delay: Duration,
    failures_left: AtomicU32,
    cache: Mutex<HashMap<PngKey, Arc<Vec<u8>>>>,
    calls: AtomicU32,
    /// Prompts containing this word are refused as a provider's moderation would.
    refuse: Option<(String, ModerationStage)>,
}

impl SyntheticBackend {
    /// Answers at once.
    pub fn instant() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Answers after `delay` per task (reporting progress along the way).
    pub fn with_delay(delay: Duration) -> Arc<Self> {
        Arc::new(Self { delay, ..Self::default() })
    }

    /// Fails the first `n` calls with a retryable error, then works.
    pub fn failing_first(n: u32) -> Arc<Self> {
        Arc::new(Self { failures_left: AtomicU32::new(n), ..Self::default() })
    }

    /// Refuses prompts that contain `word` (case-insensitively) with a
    /// moderation error at `stage`, as an upstream channel does when its
    /// provider's moderation refuses; other prompts work.
    pub fn moderating(word: &str, stage: ModerationStage) -> Arc<Self> {
        Arc::new(Self { refuse: Some((word.to_lowercase(), stage)), ..Self::default() })
    }

    /// How many tasks it was asked to generate.
    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::Relaxed)
    }

    fn png(&self, width: u32, height: u32, colour: usize) -> Result<Arc<Vec<u8>>, BackendError> {
        let key = (width, height, colour);
        if let Some(hit) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(hit.clone());
        }
        let [r, g, b] = PALETTE[colour % PALETTE.len()];
        let img = image::RgbImage::from_fn(width, height, |_, y| if y < height / 8 { image::Rgb([255 - r, 255 - g, 255 - b]) } else { image::Rgb([r, g, b]) });
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).map_err(|e| BackendError::Internal(e.to_string()))?;
        let bytes = Arc::new(out.into_inner());
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(key, bytes.clone());
        Ok(bytes)
    }
}

#[async_trait::async_trait]
impl Backend for SyntheticBackend {
    fn name(&self) -> &str {
        "synthetic"
    }

    fn serves(&self, _model: &ModelEntry) -> Result<(), String> {
        Ok(())
    }

    fn max_batch(&self) -> usize {
        16
    }

    fn parallelism(&self) -> usize {
        // it only sleeps and draws a cached PNG: batches never wait for each other
        usize::MAX
    }

    async fn generate(&self, job: &Job, progress: &ProgressSink, cancel: &CancelFlag) -> Result<Generation, BackendError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if self.failures_left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok() {
            return Err(BackendError::Internal("synthetic failure".into()));
        }
        let spec = &job.spec;
        if let Some((word, stage)) = &self.refuse
            && spec.effective_prompt().to_lowercase().contains(word.as_str())
        {
            return Err(BackendError::Moderated { provider: "synthetic".into(), stage: *stage, message: format!("the prompt contains `{word}`") });
        }
        let steps = spec.steps.max(1);
        for step in 1..=steps {
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay / steps).await;
            }
            if cancel.is_cancelled() {
                return Err(BackendError::Cancelled);
            }
            progress(Progress { task_id: job.task_id.clone(), step, total: steps });
        }
        let mut images = Vec::with_capacity(spec.count as usize);
        for n in 0..spec.count {
            let seed = spec.seed.wrapping_add(u64::from(n));
            let bytes = self.png(spec.size.width, spec.size.height, (seed % 8) as usize)?;
            images.push(GeneratedImage { bytes: bytes.to_vec(), format: ImageFormat::Png, width: spec.size.width, height: spec.size.height, seed });
        }
        Ok(Generation { images, served_by: "synthetic".into(), note: Some("synthetic test pattern; no model ran".into()), provider_request_id: None })
    }
}
