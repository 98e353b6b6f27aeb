//! Configuration: compiled-in defaults, then the TOML file (`--config`),
//! then `IMAGEGATE__SECTION__KEY` environment variables, then CLI flags.

use std::path::{Path, PathBuf};

use anyhow::Context;
use imagegate_api::ApiConfig;
use imagegate_api::enhance::PromptEnhancementConfig;
use imagegate_core::{Catalog, ModelEntry, PlanTable, PriceList, RoutingPolicy, Workflow, WorkflowSet};
use imagegate_engine::EngineConfig;
use imagegate_engine::engine::device::{DeviceChoice, parse_dtype};
use imagegate_queue::QueueConfig;
use imagegate_upstream::UpstreamConfig;

/// The whole configuration file.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[server]`: listen address and HTTP limits.
    pub server: ApiConfig,
    /// `[storage]`: data folder, database and objects.
    pub storage: StorageConfig,
    /// `[queue]`: workers, leases, retries, retention.
    pub queue: QueueConfig,
    /// `[models]`: models folder and catalog additions.
    pub models: ModelsConfig,
    /// `[upstream]`: provider channels.
    pub upstream: UpstreamConfig,
    /// `[pricing]`: overrides of the compiled-in price list.
    pub pricing: toml::Table,
    /// `[plans]`: overrides of the built-in plans.
    pub plans: toml::Table,
    /// `[[workflows]]`: task-publishing workflows, added to the compiled-in
    /// ones ("Image generation", …) or replacing one with the same title.
    pub workflows: Vec<Workflow>,
    /// `[prompt_enhancement]`: the OpenAI-compatible chat channel that
    /// rewrites prompts; without it the built-in expansion is used.
    pub prompt_enhancement: Option<PromptEnhancementConfig>,
}

/// `[storage]`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Folder for the SQLite file and local objects.
    pub data_dir: PathBuf,
    /// `sqlite:…` or `postgres://…`; default: SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// `s3://bucket/prefix` or a folder; default: `data_dir/objects`.
    pub objects: Option<String>,
    /// Lifetime of signed image URLs.
    pub url_ttl_secs: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self { data_dir: PathBuf::from("./data"), database_url: None, objects: None, url_ttl_secs: 3600 }
    }
}

impl StorageConfig {
    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| imagegate_store::Db::sqlite_url_in(&self.data_dir))
    }

    /// The object storage in effect.
    pub fn objects(&self) -> String {
        self.objects.clone().unwrap_or_else(|| self.data_dir.join("objects").display().to_string())
    }

    /// Rejects URL lifetimes that would sign dead links: zero; over the 7
    /// days S3 allows a presigned URL (S3 would refuse every image link,
    /// not the config); or, for the folder store, so long that the expiry
    /// arithmetic overflows (over ten years).
    pub fn check(&self) -> Result<(), String> {
        const S3_MAX: u64 = 7 * 24 * 3600;
        const LOCAL_MAX: u64 = 10 * 365 * 24 * 3600;
        let ttl = self.url_ttl_secs;
        if ttl == 0 {
            return Err("url_ttl_secs must be at least 1".into());
        }
        if self.objects().starts_with("s3://") && ttl > S3_MAX {
            return Err(format!("url_ttl_secs is {ttl}, but S3 presigned URLs live at most {S3_MAX} s (7 days)"));
        }
        if ttl > LOCAL_MAX {
            return Err(format!("url_ttl_secs is {ttl}; at most {LOCAL_MAX} (ten years) is allowed"));
        }
        Ok(())
    }
}

/// `[models]`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelsConfig {
    /// Folder of local pipelines and checkpoints.
    pub dir: PathBuf,
    /// Model used when a request names none.
    pub default_model: Option<String>,
    /// Extra or overriding catalog entries (`[[models.catalog]]`).
    pub catalog: Vec<ModelEntry>,
    /// Extra aliases: alias → model id.
    pub aliases: std::collections::BTreeMap<String, String>,
    /// Engine memory budget for loaded pipelines, in MiB.
    pub memory_budget_mib: u64,
    /// Where the local engine computes: `auto` (the first GPU this build
    /// can open, else the CPU), `cpu`, `cuda`, `cuda:N`, `metal`, `metal:N`.
    pub device: String,
    /// Weight dtype: `auto` (f32 on the CPU, f16 on GPUs), `f32`, `f16`, `bf16`.
    pub dtype: String,
    /// Most images the engine denoises in one forward batch.
    pub max_batch: usize,
    /// Activation memory one forward batch may use, in MiB; larger batches
    /// are split (to one image at least). Set it to the GPU's free memory
    /// less the weights.
    pub activation_budget_mib: u64,
    /// Local versus upstream when a model has both (`[models.routing]`):
    /// `default = "local-first" | "upstream-first" | "spill"`, optional
    /// `deadline_secs` for spill (default `server.sync_wait_secs`), and
    /// per-model overrides in `models = { "FLUX.1-dev" = "spill" }`.
    pub routing: RoutingPolicy,
    /// Let `imagegate-demo` draw for every catalog model with no working
    /// backend here, saying so on each response (`serve --demo`).
    pub demo: bool,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("./models"),
            default_model: None,
            catalog: Vec::new(),
            aliases: Default::default(),
            memory_budget_mib: 16 * 1024,
            device: "auto".into(),
            dtype: "auto".into(),
            max_batch: 4,
            activation_budget_mib: 16 * 1024,
            routing: RoutingPolicy::default(),
            demo: false,
        }
    }
}

impl ModelsConfig {
    /// Rejects a device, dtype or batch size that is not one, naming the
    /// key. Whether this binary has the GPU's feature is asked only when an
    /// engine starts ([`Self::engine_config`]), so commands that start none
    /// (`keys`, `accounts`, `migrate`, `serve --synthetic-backend`) accept a
    /// config shared with GPU hosts.
    pub fn check(&self) -> Result<(), String> {
        DeviceChoice::parse_setting(&self.device).map_err(|e| format!("device: {e}"))?;
        parse_dtype(&self.dtype).map_err(|e| format!("dtype: {e}"))?;
        if self.max_batch == 0 {
            return Err("max_batch: must be at least 1".into());
        }
        if self.activation_budget_mib == 0 {
            return Err("activation_budget_mib: must be at least 1".into());
        }
        Ok(())
    }

    /// The local engine's settings.
    pub fn engine_config(&self) -> anyhow::Result<EngineConfig> {
        let device = DeviceChoice::parse(&self.device).map_err(|e| anyhow::anyhow!("[models]: device: {e}"))?;
        let dtype = parse_dtype(&self.dtype).map_err(|e| anyhow::anyhow!("[models]: dtype: {e}"))?;
        Ok(EngineConfig {
            memory_budget_bytes: self.memory_budget_mib * 1024 * 1024,
            device,
            dtype,
            max_batch: self.max_batch,
            activation_budget_bytes: self.activation_budget_mib * 1024 * 1024,
            ..EngineConfig::new(self.dir.clone())
        })
    }
}

impl Config {
    /// Loads defaults, then `file` (if any), then `IMAGEGATE__…` variables.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut doc = toml::Table::try_from(Config::default()).context("serialising defaults")?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
            let overlay: toml::Table = toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))?;
            merge(&mut doc, overlay);
        }
        for (name, value) in std::env::vars() {
            if let Some(path) = name.strip_prefix("IMAGEGATE__") {
                set_path(&mut doc, &path.to_lowercase().split("__").collect::<Vec<_>>(), &value);
            }
        }
        let config: Self = toml::Value::Table(doc).try_into().context("invalid configuration")?;
        config.queue.check().map_err(|e| anyhow::anyhow!("[queue]: {e}"))?;
        config.server.check().map_err(|e| anyhow::anyhow!("[server]: {e}"))?;
        config.storage.check().map_err(|e| anyhow::anyhow!("[storage]: {e}"))?;
        config.models.check().map_err(|e| anyhow::anyhow!("[models]: {e}"))?;
        Ok(config)
    }

    /// The price list: compiled-in defaults with `[pricing]` on top.
    pub fn prices(&self) -> anyhow::Result<PriceList> {
        PriceList::from_toml(&toml::to_string(&self.pricing)?).map_err(|e| anyhow::anyhow!("[pricing]: {e}"))
    }

    /// The plans: built-in ones with `[plans]` on top.
    pub fn plans(&self) -> anyhow::Result<PlanTable> {
        PlanTable::from_toml(&toml::to_string(&self.plans)?).map_err(|e| anyhow::anyhow!("[plans]: {e}"))
    }

    /// The HTTP settings: `[server]` with `[prompt_enhancement]`.
    pub fn api(&self) -> ApiConfig {
        ApiConfig { prompt_enhancement: self.prompt_enhancement.clone(), ..self.server.clone() }
    }

    /// The task-publishing workflows: the compiled-in ones with
    /// `[[workflows]]` on top. Every base model must be in `catalog`, so a
    /// typo fails at startup rather than as a 404 on the first publish.
    pub fn workflows(&self, catalog: &Catalog) -> anyhow::Result<WorkflowSet> {
        let mut set = WorkflowSet::builtin();
        for w in &self.workflows {
            set.upsert(w.clone());
        }
        for w in set.all() {
            catalog.require(&w.base_model).map_err(|e| anyhow::anyhow!("workflow `{}`: base_model: {}", w.title, e.message))?;
        }
        Ok(set)
    }

    /// The catalog: the compiled-in one plus config entries and aliases.
    pub fn catalog(&self) -> anyhow::Result<Catalog> {
        let mut catalog = Catalog::builtin();
        for m in &self.models.catalog {
            catalog.upsert(m.clone());
        }
        for (alias, id) in &self.models.aliases {
            catalog.add_alias(alias, id).map_err(anyhow::Error::msg)?;
        }
        if let Some(d) = &self.models.default_model {
            catalog.require(d).map_err(|e| anyhow::anyhow!("models.default_model: {}", e.message))?;
            catalog.set_default_model(d);
        }
        self.models.routing.validate(&catalog).map_err(anyhow::Error::msg)?;
        Ok(catalog)
    }
}

fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (k, v) in overlay {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Sets `a.b.c = value`, reading the value as TOML when it parses (numbers,
/// booleans, arrays) and as a string otherwise.
fn set_path(doc: &mut toml::Table, path: &[&str], raw: &str) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut table = doc;
    for p in parents {
        let entry = table.entry(p.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(t) = entry else { return };
        table = t;
    }
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}")).ok().and_then(|mut t| t.remove("v")).unwrap_or_else(|| toml::Value::String(raw.to_string()));
    table.insert(last.to_string(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_build_a_catalog() {
        let c = Config::load(None).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:8080");
        assert_eq!(c.server.sync_wait_secs, 120.0);
        assert_eq!(c.storage.url_ttl_secs, 3600);
        assert_eq!(c.queue.retention_days, 7.0);
        c.catalog().unwrap();
        assert_eq!(c.prices().unwrap(), PriceList::builtin());
        assert_eq!(c.plans().unwrap().get("senior").unwrap().concurrency, 5);
    }

    #[test]
    fn file_then_env_override() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[server]\nlisten = \"0.0.0.0:9\"\nsync_wait_secs = 5\n[queue]\nworkers = 2\n[models.aliases]\nmy-xl = \"sdxl\"\n").unwrap();
        let mut doc = toml::Table::try_from(Config::default()).unwrap();
        merge(&mut doc, toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap());
        set_path(&mut doc, &["queue", "workers"], "7");
        set_path(&mut doc, &["storage", "objects"], "s3://bucket/p");
        let c: Config = toml::Value::Table(doc).try_into().unwrap();
        assert_eq!(c.server.listen, "0.0.0.0:9");
        assert_eq!(c.server.sync_wait_secs, 5.0);
        assert_eq!(c.queue.workers, 7);
        assert_eq!(c.storage.objects(), "s3://bucket/p");
        assert_eq!(c.catalog().unwrap().resolve("my-xl").unwrap().id, "stable-diffusion-xl-1024-v1-0");
    }

    #[test]
    fn settings_that_would_panic_or_sign_dead_links_fail_the_load_naming_section_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("[queue]\ndrain_secs = -1\n", "[queue]: drain_secs must be"),
            ("[server]\nsync_wait_secs = inf\n", "[server]: sync_wait_secs must be"),
            ("[storage]\nurl_ttl_secs = 0\n", "[storage]: url_ttl_secs must be at least 1"),
            ("[storage]\nobjects = \"s3://b/p\"\nurl_ttl_secs = 604801\n", "[storage]: url_ttl_secs is 604801, but S3 presigned URLs live at most 604800 s"),
            ("[storage]\nurl_ttl_secs = 9223372036854775807\n", "[storage]: url_ttl_secs is 9223372036854775807; at most"),
            ("[models]\ndevice = \"tpu:0\"\n", "[models]: device: \"tpu:0\" is not a device; use \"auto\", \"cpu\""),
            ("[models]\ndtype = \"int4\"\n", "[models]: dtype: \"int4\" is not a weight dtype"),
            ("[models]\nmax_batch = 0\n", "[models]: max_batch: must be at least 1"),
        ];
        for (text, want) in cases {
            let path = dir.path().join("c.toml");
            std::fs::write(&path, text).unwrap();
            let err = format!("{:#}", Config::load(Some(&path)).unwrap_err());
            assert!(err.starts_with(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_engine_gets_the_models_device_dtype_and_batch_settings() {
        let c = load_text("[models]\ndevice = \"cpu\"\ndtype = \"bf16\"\nmax_batch = 8\nactivation_budget_mib = 2048\nmemory_budget_mib = 1024\n");
        let e = c.models.engine_config().unwrap();
        assert_eq!(e.device, imagegate_engine::DeviceChoice::Cpu);
        assert_eq!(format!("{:?}", e.dtype), "Some(BF16)");
        assert_eq!((e.max_batch, e.activation_budget_bytes, e.memory_budget_bytes), (8, 2048 << 20, 1024 << 20));
        // Without the cuda feature the config still loads (other commands
        // need no engine), and starting the engine names the build flag.
        if !cfg!(feature = "cuda") {
            let gpu = load_text("[models]\ndevice = \"cuda:0\"\n");
            let err = format!("{:#}", gpu.models.engine_config().unwrap_err());
            assert!(err.contains("[models]: device") && err.contains("--features cuda"), "{err}");
        }
    }

    fn load_text(text: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(Some(&path)).unwrap()
    }

    #[test]
    fn defaults_ship_the_seed_workflow_and_no_chat_channel() {
        let c = Config::load(None).unwrap();
        let set = c.workflows(&c.catalog().unwrap()).unwrap();
        let w = set.find("Image generation").unwrap();
        assert_eq!((w.base_model.as_str(), w.steps), ("FLUX.1-dev", 20));
        assert!(c.api().prompt_enhancement.is_none());
    }

    #[test]
    fn workflows_and_prompt_enhancement_are_read_from_the_file() {
        let c = load_text(
            r#"
            [[workflows]]
            title = "Pixel portraits"
            base_model = "sdxl"
            loras = [{ name = "pixel-art-xl.safetensors", scale = 0.8 }]
            sampler = "K_EULER_ANCESTRAL"
            steps = 25
            guidance = 6.5

            [[workflows]]
            title = "Image generation"
            base_model = "FLUX.1-schnell"
            steps = 4
            guidance = 0.0

            [prompt_enhancement]
            base_url = "http://127.0.0.1:9/v1"
            model = "rewriter-1"
            key_env = "REWRITER_KEY"
            "#,
        );
        let set = c.workflows(&c.catalog().unwrap()).unwrap();
        let pixel = set.find("pixel portraits").unwrap();
        assert_eq!((pixel.steps, pixel.loras.len(), pixel.loras[0].scale), (25, 1, 0.8));
        assert_eq!(set.find("Image generation").unwrap().base_model, "FLUX.1-schnell", "a config workflow replaces the built-in one by title");
        assert!(set.find("SDXL image generation").is_some(), "other built-in workflows stay");
        let chat = c.api().prompt_enhancement.unwrap();
        assert_eq!((chat.base_url.as_str(), chat.model.as_str(), chat.key_env.as_deref(), chat.timeout_secs), ("http://127.0.0.1:9/v1", "rewriter-1", Some("REWRITER_KEY"), 10.0));
    }

    #[test]
    fn a_workflow_on_an_unknown_model_fails_naming_it() {
        let c = load_text("[[workflows]]\ntitle = \"Broken\"\nbase_model = \"sdxxl\"\nsteps = 20\nguidance = 7.0\n");
        let e = c.workflows(&c.catalog().unwrap()).unwrap_err().to_string();
        assert!(e.contains("Broken") && e.contains("sdxxl"), "{e}");
    }

    #[test]
    fn prompt_enhancement_belongs_at_the_top_level_only() {
        let doc: toml::Table = toml::from_str("[server.prompt_enhancement]\nbase_url = \"x\"\nmodel = \"m\"").unwrap();
        assert!(toml::Value::Table(doc).try_into::<Config>().is_err());
    }

    #[test]
    fn the_readme_example_is_a_valid_config() {
        let readme = include_str!("../../../README.md");
        let start = readme.find("```toml\n[server]").expect("README has the config example") + "```toml\n".len();
        let text = &readme[start..start + readme[start..].find("```").unwrap()];
        let c = load_text(text);
        let set = c.workflows(&c.catalog().unwrap()).unwrap();
        assert_eq!(set.find("Pixel portraits").unwrap().max_images, 4);
        assert_eq!(c.api().prompt_enhancement.unwrap().key_env.as_deref(), Some("OPENAI_API_KEY"));
    }

    #[test]
    fn routing_policy_comes_from_models_routing_and_unknown_models_are_named() {
        let doc: toml::Table = toml::from_str("[models.routing]\ndefault = \"spill\"\ndeadline_secs = 45\nmodels = { \"flux-dev\" = \"upstream-first\" }\n").unwrap();
        let mut base = toml::Table::try_from(Config::default()).unwrap();
        merge(&mut base, doc);
        let c: Config = toml::Value::Table(base).try_into().unwrap();
        assert_eq!(c.models.routing.default, imagegate_core::Routing::Spill);
        assert_eq!(c.models.routing.deadline(std::time::Duration::from_secs(120)).as_secs(), 45);
        c.catalog().unwrap();
        let mut bad = c.clone();
        bad.models.routing.models.insert("no-such-model".into(), imagegate_core::Routing::Spill);
        let err = bad.catalog().unwrap_err().to_string();
        assert!(err.contains("models.routing.models") && err.contains("no-such-model"), "{err}");
    }

    #[test]
    fn typos_are_rejected() {
        let doc: toml::Table = toml::from_str("[server]\nlisten_addr = \"x\"").unwrap();
        assert!(toml::Value::Table(doc).try_into::<Config>().is_err());
    }
}
