//! `imagegate models pull`: fetches a model's weights from the Hugging Face
//! Hub into the models folder, where discovery and the engine find them.
//! A catalog id or alias pulls the repo its `weights` names into a folder
//! named after the catalog id; any other `org/name` repo lands in a folder
//! named after the repo (or `--name`), and becomes a model of that id.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::PullArgs;
use crate::config::Config;
use crate::hub::{Hub, Listing, RepoFile};
use crate::pull_plan::{self, Variant};

/// Runs `models pull`.
pub async fn run(config: Config, args: PullArgs) -> anyhow::Result<()> {
    let catalog = config.catalog()?;
    let (repo, name) = match catalog.resolve(&args.model) {
        Some(entry) => match &entry.weights {
            Some(w) => (w.clone(), args.name.clone().unwrap_or_else(|| entry.id.clone())),
            None if entry.id == imagegate_engine::DEMO_MODEL => bail!("`{}` ships with imagegate under the models folder; there is nothing to pull", entry.id),
            None => bail!("catalog model `{}` names no weights repo to pull (an upstream-only model is served through a channel)", entry.id),
        },
        None if args.model.split('/').count() == 2 && !args.model.contains("..") => {
            let last = args.model.rsplit('/').next().unwrap_or(&args.model).to_string();
            (args.model.clone(), args.name.clone().unwrap_or(last))
        }
        None => bail!("`{}` is neither a catalog model nor a Hugging Face repo (`org/name`)", args.model),
    };
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        bail!("--name `{name}` must be a plain folder name");
    }
    let hub = Hub::from_env()?;
    let listing = hub.list(&repo, &args.revision).await?;
    let models_dir = &config.models.dir;
    let (wanted, into) = if listing.file("model_index.json").is_some() {
        let folder = models_dir.join(&name);
        (pipeline_files(&hub, &repo, &listing, &folder, args.variant).await?, folder)
    } else {
        let path = pull_plan::plan_single_file(&listing, args.file.as_deref()).map_err(anyhow::Error::msg).with_context(|| format!("pulling {repo}"))?;
        let file = listing.file(&path).cloned().expect("planned from the listing");
        // Discovery names a checkpoint by its file stem.
        (vec![(file, models_dir.join(format!("{name}.safetensors")))], models_dir.to_path_buf())
    };
    let total: u64 = wanted.iter().filter_map(|(f, _)| f.size).sum();
    eprintln!("pulling {repo} at {} into {}: {} files, {}", &listing.sha[..listing.sha.len().min(12)], into.display(), wanted.len(), human(total));
    let bar = ProgressBar::new(total);
    bar.set_style(ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}").unwrap_or_else(|_| ProgressStyle::default_bar()));
    for (file, dest) in &wanted {
        bar.set_message(file.path.clone());
        let inc = |n: u64| bar.inc(n);
        hub.download(&repo, &listing.sha, file, dest, &inc).await.with_context(|| format!("pulling {repo}"))?;
    }
    bar.finish_and_clear();
    eprintln!("pulled {repo} as model `{name}`; `imagegate models list` shows whether it is ready to serve");
    Ok(())
}

/// Every file of a pipeline repo to fetch, with where it goes. Small files
/// (model_index.json, shard indexes) are fetched on the way, since what
/// else is needed is read from them.
async fn pipeline_files(hub: &Hub, repo: &str, listing: &Listing, folder: &Path, variant: Variant) -> anyhow::Result<Vec<(RepoFile, PathBuf)>> {
    let fetch_json = async |path: &str| -> anyhow::Result<serde_json::Value> {
        let file = listing.file(path).with_context(|| format!("{repo} lists no {path}"))?;
        let dest = folder.join(path);
        hub.download(repo, &listing.sha, file, &dest, &|_| {}).await?;
        let text = tokio::fs::read_to_string(&dest).await.with_context(|| format!("reading {}", dest.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{path} of {repo} is not JSON"))
    };
    let index = fetch_json("model_index.json").await?;
    let components = pull_plan::used_components(&index);
    if components.is_empty() {
        bail!("model_index.json of {repo} names no component imagegate loads");
    }
    let plan = pull_plan::plan_pipeline(listing, &components, variant).map_err(anyhow::Error::msg).with_context(|| format!("pulling {repo}"))?;
    let mut paths = plan.files;
    for index_path in &plan.indexes {
        let index = fetch_json(index_path).await?;
        paths.push(index_path.clone());
        paths.extend(pull_plan::shards_of(index_path, &index).map_err(anyhow::Error::msg)?);
    }
    paths
        .into_iter()
        .map(|p| {
            let file = listing.file(&p).cloned().with_context(|| format!("{repo} lists no {p}, which its index names"))?;
            Ok((file, folder.join(&p)))
        })
        .collect()
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / f64::from(1u32 << 30)),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1u32 << 20)),
        b => format!("{:.1} KiB", b as f64 / 1024.0),
    }
}
