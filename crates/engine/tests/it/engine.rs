//! The engine through core's `Backend` trait: PNGs with parameters, seeds,
//! batching, progress, cancellation, discovery and missing weights.

use std::sync::{Arc, Mutex};

use imagegate_core::backend::Job;
use imagegate_core::{Backend, BackendError, CancelFlag, Catalog, Family, ModelEntry, Progress, ProgressSink, Sampler, Size, TaskSpec, backend::no_progress};
use imagegate_engine::tokenize::ClipTokenizer;
use imagegate_engine::{Engine, EngineConfig, PipelineKind, discover};

use crate::fixtures::{model, models_dir};

fn engine() -> Engine {
    Engine::start(crate::engine_config(models_dir())).expect("engine starts")
}

fn job(id: &str, seed: u64) -> Job {
    let mut spec = TaskSpec::simple("tiny-sd15", "a photo of a cat", Size::new(64, 64));
    (spec.steps, spec.seed, spec.sampler, spec.negative_prompt) = (3, seed, Some(Sampler::KEulerAncestral), Some("blurry".into()));
    Job::new(id, spec)
}

fn entry(id: &str, family: Family) -> ModelEntry {
    let mut m = Catalog::builtin().models()[0].clone();
    (m.id, m.family, m.weights) = (id.into(), family, None);
    m
}

fn pixels(png_bytes: &[u8]) -> Vec<u8> {
    image::load_from_memory(png_bytes).unwrap().to_rgb8().into_raw()
}

/// Largest per-channel difference between two PNGs' pixels.
fn worst_pixel_diff(a: &[u8], b: &[u8]) -> u8 {
    pixels(a).iter().zip(pixels(b)).map(|(u, v)| u.abs_diff(v)).max().unwrap_or(0)
}

#[tokio::test]
async fn a_task_comes_back_as_pngs_of_the_requested_size_with_parameters() {
    let engine = engine();
    let mut j = job("t1", 41);
    j.spec.count = 2;
    let g = engine.generate(&j, &no_progress(), &CancelFlag::new()).await.expect("generates");
    assert_eq!(g.served_by, "engine");
    assert_eq!(g.images.len(), 2);
    assert_eq!(g.images.iter().map(|i| i.seed).collect::<Vec<_>>(), vec![41, 42]);
    let img = &g.images[0];
    assert_eq!((img.width, img.height), (64, 64));
    let reader = png::Decoder::new(std::io::Cursor::new(&img.bytes)).read_info().unwrap();
    let info = reader.info();
    assert_eq!((info.width, info.height), (64, 64));
    let text = &info.uncompressed_latin1_text.iter().find(|t| t.keyword == "parameters").expect("parameters chunk").text;
    assert!(text.starts_with("a photo of a cat\nNegative prompt: blurry\nSteps: 3, Sampler: Euler a, CFG scale: 7, Seed: 41, Size: 64x64"), "{text}");
}

#[tokio::test]
async fn same_seed_gives_identical_bytes_and_image_n_uses_seed_plus_n() {
    let engine = engine();
    let (cancel, p) = (CancelFlag::new(), no_progress());
    let a = engine.generate(&job("a", 100), &p, &cancel).await.unwrap();
    let b = engine.generate(&job("b", 100), &p, &cancel).await.unwrap();
    let c = engine.generate(&job("c", 101), &p, &cancel).await.unwrap();
    assert_eq!(a.images[0].bytes, b.images[0].bytes);
    assert!(worst_pixel_diff(&a.images[0].bytes, &c.images[0].bytes) > 10);
    // Image 1 of a two-image task is drawn from seed + 1 (in a batch of two,
    // so rounding to 8 bits may move a boundary value by one).
    let mut two = job("d", 100);
    two.spec.count = 2;
    let d = engine.generate(&two, &p, &cancel).await.unwrap();
    assert!(worst_pixel_diff(&d.images[1].bytes, &c.images[0].bytes) <= 1);
    assert!(worst_pixel_diff(&d.images[0].bytes, &a.images[0].bytes) <= 1);
}

#[tokio::test]
async fn an_activation_budget_splits_batches_without_changing_images() {
    // A budget below one image's estimate forces one image per forward batch.
    let engine = Engine::start(EngineConfig { activation_budget_bytes: 1, max_batch: 8, ..crate::engine_config(models_dir()) }).unwrap();
    let roomy = engine_with_batch(8);
    let mut j = job("split", 6);
    j.spec.count = 3;
    let totals: Arc<Mutex<Vec<u32>>> = Arc::default();
    let sink: ProgressSink = {
        let totals = totals.clone();
        Arc::new(move |p: Progress| totals.lock().unwrap().push(p.total))
    };
    let c = CancelFlag::new();
    let a = engine.generate(&j, &sink, &c).await.unwrap();
    // Three one-image batches of three steps each, reported as one count.
    assert_eq!(totals.lock().unwrap().clone(), vec![9; 9]);
    totals.lock().unwrap().clear();
    let b = roomy.generate(&j, &sink, &c).await.unwrap();
    assert_eq!(totals.lock().unwrap().clone(), vec![3; 3]);
    for (x, y) in a.images.iter().zip(&b.images) {
        assert!(worst_pixel_diff(&x.bytes, &y.bytes) <= 1);
    }
}

fn engine_with_batch(max_batch: usize) -> Engine {
    Engine::start(EngineConfig { max_batch, ..crate::engine_config(models_dir()) }).unwrap()
}

#[tokio::test]
async fn generate_batch_matches_running_each_task_alone() {
    let engine = engine_with_batch(8);
    let mut jobs = vec![job("a", 1), job("b", 2), job("c", 3)];
    jobs[1].spec.prompt[0].text = "a dog".into();
    jobs[2].spec.sampler = Some(Sampler::KDpmpp2m);
    jobs[2].spec.count = 2;
    let (cancel, p) = (CancelFlag::new(), no_progress());
    let batched = engine.generate_batch(&jobs, &p, &cancel).await;
    for (job, b) in jobs.iter().zip(batched) {
        let b = b.unwrap();
        let alone = engine.generate(job, &p, &cancel).await.unwrap();
        assert_eq!(b.images.len(), alone.images.len());
        for (x, y) in b.images.iter().zip(&alone.images) {
            // Rounding to 8 bits may move a value that sits on a boundary by one.
            let worst = worst_pixel_diff(&x.bytes, &y.bytes);
            assert!(worst <= 1, "{}: batch and alone differ by {worst}", job.task_id);
        }
    }
}

#[tokio::test]
async fn progress_counts_every_step_and_cancel_stops_the_task() {
    let engine = engine();
    let seen: Arc<Mutex<Vec<Progress>>> = Arc::default();
    let sink: ProgressSink = {
        let seen = seen.clone();
        Arc::new(move |p| seen.lock().unwrap().push(p))
    };
    engine.generate(&job("p", 1), &sink, &CancelFlag::new()).await.unwrap();
    let steps: Vec<(u32, u32)> = seen.lock().unwrap().iter().map(|p| (p.step, p.total)).collect();
    assert_eq!(steps, vec![(1, 3), (2, 3), (3, 3)]);
    assert!(seen.lock().unwrap().iter().all(|p| p.task_id == "p"));

    let cancel = CancelFlag::new();
    let stopper: ProgressSink = {
        let cancel = cancel.clone();
        Arc::new(move |p: Progress| {
            if p.step == 1 {
                cancel.cancel();
            }
        })
    };
    let r = engine.generate(&job("q", 1), &stopper, &cancel).await;
    assert_eq!(r, Err(BackendError::Cancelled));
}

#[tokio::test]
async fn unknown_models_and_bad_init_images_are_named() {
    let engine = engine();
    let mut j = job("x", 1);
    j.spec.model = "nope".into();
    match engine.generate(&j, &no_progress(), &CancelFlag::new()).await {
        Err(BackendError::MissingWeights { model, missing, .. }) => assert_eq!((model.as_str(), missing.as_str()), ("nope", "model_index.json")),
        other => panic!("{other:?}"),
    }
    let mut img2img = job("i", 1);
    img2img.spec.init_image = Some(imagegate_core::InitImage { source: "data:image/png;base64,".into(), strength: 0.5, mask: None });
    let r = engine.generate_batch(&[img2img, job("ok", 1)], &no_progress(), &CancelFlag::new()).await;
    assert!(matches!(&r[0], Err(BackendError::Invalid { field, .. }) if field == "init_image"));
    assert!(r[1].is_ok());
}

#[test]
fn serves_checks_the_folder_and_names_missing_files() {
    let engine = engine();
    assert_eq!(engine.serves(&entry("tiny-sd15", Family::Sd15)), Ok(()));
    let why = engine.serves(&entry("absent", Family::Sd15)).unwrap_err();
    assert!(why.contains("model_index.json") && why.contains("absent"), "{why}");
    assert!(engine.serves(&entry("tiny-sd15", Family::FluxDev)).is_err());
    assert!(engine.serves(&entry("x", Family::Upstream)).is_err());
    // A catalog id whose folder is named after its weights repo.
    let mut aliased = entry("stable-diffusion-v1-6", Family::Sd15);
    aliased.weights = Some("someone/tiny-sd15".into());
    assert_eq!(engine.serves(&aliased), Ok(()));

    let dir = tempfile::tempdir().unwrap();
    imagegate_engine::fixtures::write_tiny_sd(&dir.path().join("half"), &Default::default()).unwrap();
    std::fs::remove_file(dir.path().join("half/vae/diffusion_pytorch_model.safetensors")).unwrap();
    let partial = Engine::start(crate::engine_config(dir.path())).unwrap();
    let why = partial.serves(&entry("half", Family::Sd15)).unwrap_err();
    assert!(why.contains("vae/diffusion_pytorch_model.safetensors") && why.contains("half"), "{why}");
}

#[tokio::test]
async fn sdxl_models_are_served_through_the_backend() {
    let engine = engine();
    assert_eq!(engine.serves(&entry("tiny-sdxl", Family::Sdxl)), Ok(()));
    assert!(engine.serves(&entry("tiny-sd15", Family::Sdxl)).unwrap_err().contains("StableDiffusion"));
    let mut j = job("xl", 5);
    j.spec.model = "tiny-sdxl".into();
    let g = engine.generate(&j, &no_progress(), &CancelFlag::new()).await.expect("sdxl generates");
    assert_eq!((g.images[0].width, g.images[0].height), (64, 64));
}

#[test]
fn discovery_lists_every_pipeline_folder_by_name() {
    let found = discover(models_dir());
    let ids: Vec<&str> = found.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, vec!["tiny-sd15", "tiny-sd15-fp16", "tiny-sd21-v", "tiny-sdxl"]);
    assert!(found.iter().all(|m| m.missing.is_empty()));
    assert_eq!(found[3].kind, Some(PipelineKind::StableDiffusionXl));
    assert!(found[..3].iter().all(|m| m.kind == Some(PipelineKind::StableDiffusion)));
}

#[test]
fn tokenizer_json_and_vocab_merges_give_the_same_ids() {
    let dir = model("tiny-sd15").join("tokenizer");
    let from_json = ClipTokenizer::load(&dir, 77).unwrap();
    let copy = tempfile::tempdir().unwrap();
    for f in ["vocab.json", "merges.txt", "tokenizer_config.json"] {
        std::fs::copy(dir.join(f), copy.path().join(f)).unwrap();
    }
    let from_files = ClipTokenizer::load(copy.path(), 77).unwrap();
    for text in ["a photo of a cat", "A  Red\tDog!!", "painting, night sky 42", ""] {
        let ids = from_json.encode(text).unwrap();
        assert_eq!(ids, from_files.encode(text).unwrap(), "{text}");
        assert_eq!(ids.len(), 77);
    }
    // Known words are single merged tokens: [BOS, a, photo, of, a, cat, EOS, pad…].
    let ids = from_json.encode("a photo of a cat").unwrap();
    assert_eq!(ids[6], from_json.eos());
    assert_eq!(ids[1], ids[4]);
}

#[tokio::test]
async fn a_mixed_model_call_runs_each_job_on_its_own_model() {
    let engine = engine();
    let mut xl = job("xl", 4);
    xl.spec.model = "tiny-sdxl".into();
    let sd = job("sd", 4);
    let (p, c) = (no_progress(), CancelFlag::new());
    let mixed = engine.generate_batch(&[xl.clone(), sd.clone()], &p, &c).await;
    let xl_alone = engine.generate(&xl, &p, &c).await.unwrap();
    let sd_alone = engine.generate(&sd, &p, &c).await.unwrap();
    assert_eq!(mixed[0].as_ref().unwrap().images[0].bytes, xl_alone.images[0].bytes);
    assert_eq!(mixed[1].as_ref().unwrap().images[0].bytes, sd_alone.images[0].bytes);
}

#[tokio::test]
async fn hugging_face_cache_entries_are_discovered_and_served() {
    let dir = tempfile::tempdir().unwrap();
    let entry_dir = dir.path().join("models--someone--tiny-sd");
    imagegate_engine::fixtures::write_tiny_sd(&entry_dir.join("snapshots/0123abcd"), &Default::default()).unwrap();
    std::fs::create_dir_all(entry_dir.join("refs")).unwrap();
    std::fs::write(entry_dir.join("refs/main"), "0123abcd\n").unwrap();
    let found = discover(dir.path());
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, "someone/tiny-sd");
    assert!(found[0].path.ends_with("snapshots/0123abcd"));

    let engine = Engine::start(crate::engine_config(dir.path())).unwrap();
    let mut m = entry("sd15-from-cache", Family::Sd15);
    m.weights = Some("someone/tiny-sd".into());
    assert_eq!(engine.serves(&m), Ok(()));
    let mut j = job("hf", 1);
    j.spec.model = "sd15-from-cache".into();
    assert!(engine.generate(&j, &no_progress(), &CancelFlag::new()).await.is_ok());
}
