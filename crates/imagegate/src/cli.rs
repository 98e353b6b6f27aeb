//! The command line: global options shared by every command, then one
//! subcommand. Every option has a matching `IMAGEGATE_*` variable.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// imagegate: a self-hostable image-generation API platform.
#[derive(Debug, Parser)]
#[command(name = "imagegate", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// TOML configuration file.
    #[arg(long, global = true, env = "IMAGEGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Folder for the SQLite database and local objects (default ./data).
    #[arg(long, global = true, env = "IMAGEGATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// `sqlite:…` or `postgres://…` (default: SQLite in the data folder).
    #[arg(long, global = true, env = "IMAGEGATE_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Folder of local model pipelines and checkpoints (default ./models).
    #[arg(long, global = true, env = "IMAGEGATE_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// Object storage: a folder, or `s3://bucket/prefix` (AWS_* variables for credentials).
    #[arg(long, global = true, env = "IMAGEGATE_OBJECTS")]
    pub objects: Option<String>,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API with in-process workers.
    Serve(ServeArgs),
    /// Run workers only (GPU hosts), sharing the database and object storage.
    Worker(WorkerArgs),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Generate one image locally with the engine and write it to a file.
    Generate(GenerateArgs),
    /// Local models.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Upstream provider channels.
    #[command(subcommand)]
    Channels(ChannelsCommand),
    /// Manage accounts.
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Grant credits.
    #[command(subcommand)]
    Credits(CreditsCommand),
    /// Show plans.
    #[command(subcommand)]
    Plans(PlansCommand),
    /// Apply database migrations and exit.
    Migrate,
}

/// `accounts` subcommands.
#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Create an account (and grant its plan's free credits).
    Create {
        /// Unique name.
        name: String,
        /// Plan (free, basic, junior, intermediate, senior, or a configured one).
        #[arg(long, default_value = "free")]
        plan: String,
    },
    /// List accounts with their balances.
    List,
    /// Show one account: plan, balance, keys.
    Show {
        /// Name or id.
        account: String,
    },
}

/// `credits` subcommands.
#[derive(Debug, Subcommand)]
pub enum CreditsCommand {
    /// Grant credits to an account.
    Grant {
        /// Account name or id.
        account: String,
        /// Credits (decimals allowed, e.g. 12.5).
        amount: f64,
        /// Expire after this long (`30d`, `12h`); default never.
        #[arg(long)]
        expires_in: Option<String>,
    },
}

/// `plans` subcommands.
#[derive(Debug, Subcommand)]
pub enum PlansCommand {
    /// List plans and their limits.
    List,
}

/// `serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long, env = "IMAGEGATE_LISTEN")]
    pub listen: Option<String>,
    /// Worker loops in this process (0 for an API-only node).
    #[arg(long, env = "IMAGEGATE_WORKERS")]
    pub workers: Option<usize>,
    /// Serve every model with the synthetic backend (labelled test
    /// patterns, no model runs): for load tests and deployment smoke tests.
    #[arg(long, env = "IMAGEGATE_SYNTHETIC_BACKEND")]
    pub synthetic_backend: bool,
    /// Delay per synthetic task, in milliseconds.
    #[arg(long, default_value_t = 0, env = "IMAGEGATE_SYNTHETIC_DELAY_MS")]
    pub synthetic_delay_ms: u64,
    /// Let the shipped `imagegate-demo` model draw for every catalog model
    /// that has no working backend here (config `[models] demo = true`);
    /// such responses carry `x-imagegate-served-by: imagegate-demo`.
    #[arg(long, env = "IMAGEGATE_DEMO")]
    pub demo: bool,
}

/// `worker` options.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Worker loops (default from config).
    #[arg(long, env = "IMAGEGATE_WORKERS")]
    pub workers: Option<usize>,
}

/// `keys` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; prints it (and nothing else) on standard output.
    Create {
        /// Label for the key.
        #[arg(long, default_value = "default")]
        name: String,
        /// Account name or id (created on the free plan if it does not exist; default: admin).
        #[arg(long, default_value = "admin")]
        account: String,
        /// Only these models (comma-separated catalog ids); default all.
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Expire after this long (`30d`, `12h`); default never.
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// List keys (never their secrets).
    List {
        /// Only this account's keys.
        #[arg(long)]
        account: Option<String>,
    },
    /// Revoke a key by id.
    Revoke {
        /// Key id (`key_…`).
        id: String,
    },
}

/// `generate` options.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// What to draw.
    pub prompt: String,
    /// Model id (default: the configured default, else the only local model
    /// other than imagegate-demo, else imagegate-demo).
    #[arg(long)]
    pub model: Option<String>,
    /// `WxH` (default: the model's native size).
    #[arg(long)]
    pub size: Option<String>,
    /// Denoising steps.
    #[arg(long)]
    pub steps: Option<u32>,
    /// Seed (default: random).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Sampler name (K_EULER, K_DPMPP_2M, DDIM, …).
    #[arg(long)]
    pub sampler: Option<String>,
    /// Guidance scale.
    #[arg(long)]
    pub guidance: Option<f32>,
    /// Negative prompt.
    #[arg(long)]
    pub negative: Option<String>,
    /// Compute device, overriding `[models] device`: `auto`, `cpu`, `cuda`,
    /// `cuda:N`, `metal`, `metal:N`.
    #[arg(long)]
    pub device: Option<String>,
    /// LoRA as `FILE:SCALE` (repeatable).
    #[arg(long = "lora")]
    pub loras: Vec<String>,
    /// Image to start from (PNG, JPEG or WebP): image-to-image, or with
    /// `--mask` inpainting.
    #[arg(long)]
    pub init_image: Option<PathBuf>,
    /// How far from `--init-image` to go, 0 to 1 (default 0.75; 1 with `--mask`).
    #[arg(long, requires = "init_image")]
    pub strength: Option<f32>,
    /// Inpainting mask: white is repainted, black kept. Needs an inpainting
    /// checkpoint (e.g. stable-diffusion-inpainting).
    #[arg(long, requires = "init_image")]
    pub mask: Option<PathBuf>,
    /// Output file (default `<model>-<seed>.png`).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `models` subcommands.
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List catalog models and whether local weights are installed.
    List,
    /// Download a model's weights from the Hugging Face Hub into the models
    /// folder (`HF_TOKEN` for gated repos, `HF_ENDPOINT` for a mirror).
    #[cfg(feature = "pull")]
    Pull(PullArgs),
}

/// `models pull` options.
#[cfg(feature = "pull")]
#[derive(Debug, Args)]
pub struct PullArgs {
    /// A catalog model id or alias (its `weights` repo is pulled), or any
    /// Hub repo as `org/name`.
    pub model: String,
    /// Branch, tag or commit.
    #[arg(long, default_value = "main")]
    pub revision: String,
    /// Folder (and model id) under the models folder; default the catalog
    /// id, or the repo's name.
    #[arg(long)]
    pub name: Option<String>,
    /// Which copy of the weights to take where a repo has both.
    #[arg(long, value_enum, default_value = "fp16")]
    pub variant: crate::pull_plan::Variant,
    /// For a repo of single-file checkpoints: the one to take.
    #[arg(long)]
    pub file: Option<String>,
}

/// `channels` subcommands.
#[derive(Debug, Subcommand)]
pub enum ChannelsCommand {
    /// List configured channels with their breaker state.
    List,
    /// Make a test call through one channel: the provider's free endpoint
    /// (model list, balance) where it has one, else one 1-image generation,
    /// which the provider bills and so needs --yes.
    Test {
        /// Channel name (`[[upstream.channels]] name`).
        name: String,
        /// Allow the billed 1-image request.
        #[arg(long)]
        yes: bool,
        /// Generate one image even where a free endpoint exists (needs --yes).
        #[arg(long)]
        generate: bool,
        /// Model for the generation (default: the channel's first).
        #[arg(long)]
        model: Option<String>,
    },
}
