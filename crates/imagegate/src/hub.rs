//! What `imagegate models pull` needs of the Hugging Face Hub's HTTP API:
//! a repo's file list at a revision (with sizes and the SHA-256 of every
//! LFS file), and the download of one file that resumes a partial download
//! and is checked against that list before it takes its final name. So a
//! file under its final name is always complete, and a pull that was
//! stopped picks up where it left off.
//!
//! `HF_ENDPOINT` (a mirror, or a local double in tests) and `HF_TOKEN` (or
//! the token file `huggingface-cli login` writes) are read as the Hub's own
//! client reads them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, RANGE};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The public Hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Why a listing or a download failed.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// 401 without a token (a private repo, or one that needs a login).
    #[error("{repo}: the Hub wants a token; set HF_TOKEN to a read token from {endpoint}/settings/tokens")]
    Unauthorized { repo: String, endpoint: String },
    /// A gated repo whose licence the token's account has not accepted.
    #[error("{repo} is gated: accept its licence at {endpoint}/{repo} while logged in as the account whose token is in HF_TOKEN")]
    Gated { repo: String, endpoint: String },
    /// No such repo, revision or file (or a private repo this token cannot see).
    #[error("{what} was not found on {endpoint} (a private repo also needs HF_TOKEN)")]
    NotFound { what: String, endpoint: String },
    /// Any other answer.
    #[error("{url}: HTTP {status}: {body}")]
    Status { url: String, status: u16, body: String },
    /// The request did not get an answer.
    #[error("{url}: {source}")]
    Http { url: String, source: reqwest::Error },
    /// Writing the file failed.
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// The file's size differs from the listing's.
    #[error("{path}: got {got} bytes where the Hub lists {want}")]
    Size { path: String, got: u64, want: u64 },
    /// The file's hash differs from the listing's; the download is removed.
    #[error("{path}: its SHA-256 is {got} where the Hub lists {want}; the corrupt download was removed, run the pull again")]
    Hash { path: String, got: String, want: String },
    /// The listing is not in the documented shape.
    #[error("the Hub's file list for {repo} is not in the documented shape: {message}")]
    Listing { repo: String, message: String },
}

type Result<T> = std::result::Result<T, HubError>;

/// One file of a repo.
#[derive(Debug, Clone, PartialEq)]
pub struct RepoFile {
    /// Path inside the repo.
    pub path: String,
    /// Size in bytes, when listed.
    pub size: Option<u64>,
    /// SHA-256 (hex) of LFS files.
    pub sha256: Option<String>,
}

/// A repo's files at one commit.
#[derive(Debug, Clone)]
pub struct Listing {
    /// The commit the revision named; downloads use it, so a branch that
    /// moves during the pull cannot mix two versions.
    pub sha: String,
    /// Every file.
    pub files: Vec<RepoFile>,
}

impl Listing {
    /// The file at `path`.
    pub fn file(&self, path: &str) -> Option<&RepoFile> {
        self.files.iter().find(|f| f.path == path)
    }
}

#[derive(Deserialize)]
struct InfoJson {
    sha: Option<String>,
    siblings: Option<Vec<SiblingJson>>,
}

#[derive(Deserialize)]
struct SiblingJson {
    rfilename: String,
    size: Option<u64>,
    lfs: Option<LfsJson>,
}

#[derive(Deserialize)]
struct LfsJson {
    sha256: String,
}

/// A Hub client.
#[derive(Debug, Clone)]
pub struct Hub {
    client: reqwest::Client,
    endpoint: String,
    token: Option<String>,
}

impl Hub {
    /// A client for `HF_ENDPOINT` (default the public Hub) with the token
    /// from `HF_TOKEN` or the Hub CLI's token file.
    pub fn from_env() -> anyhow::Result<Self> {
        let endpoint = std::env::var("HF_ENDPOINT").ok().filter(|e| !e.is_empty()).unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        Self::new(&endpoint, token_from_env())
    }

    /// A client for `endpoint`.
    pub fn new(endpoint: &str, token: Option<String>) -> anyhow::Result<Self> {
        Url::parse(endpoint).map_err(|e| anyhow::anyhow!("HF_ENDPOINT `{endpoint}` is not a URL: {e}"))?;
        let client = reqwest::Client::builder()
            .user_agent(concat!("imagegate/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            // Between two chunks, not for the whole multi-gigabyte body.
            .read_timeout(Duration::from_secs(120))
            .build()?;
        Ok(Self { client, endpoint: endpoint.trim_end_matches('/').to_string(), token })
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = Url::parse(&self.endpoint).expect("checked in new");
        url.path_segments_mut().expect("http URLs have paths").pop_if_empty().extend(segments.iter().flat_map(|s| s.split('/')));
        url
    }

    fn get(&self, url: Url) -> reqwest::RequestBuilder {
        let req = self.client.get(url);
        match &self.token {
            // reqwest drops Authorization when a redirect leaves this host
            // (the Hub sends large files from a CDN).
            Some(t) => req.header(AUTHORIZATION, format!("Bearer {t}")),
            None => req,
        }
    }

    /// Lists `repo`'s files at `revision` (a branch, tag or commit).
    pub async fn list(&self, repo: &str, revision: &str) -> Result<Listing> {
        let mut url = self.url(&["api", "models", repo, "revision"]);
        url.path_segments_mut().expect("http URLs have paths").push(revision);
        url.query_pairs_mut().append_pair("blobs", "true");
        let resp = self.get(url.clone()).send().await.map_err(|source| HubError::Http { url: url.to_string(), source })?;
        let resp = self.check(resp, repo, &format!("{repo} at revision `{revision}`")).await?;
        let info: InfoJson = resp.json().await.map_err(|e| HubError::Listing { repo: repo.into(), message: e.to_string() })?;
        let sha = info.sha.ok_or_else(|| HubError::Listing { repo: repo.into(), message: "no `sha`".into() })?;
        let files = info
            .siblings
            .ok_or_else(|| HubError::Listing { repo: repo.into(), message: "no `siblings`".into() })?
            .into_iter()
            .map(|s| RepoFile { path: s.rfilename, size: s.size, sha256: s.lfs.map(|l| l.sha256.to_ascii_lowercase()) })
            .collect();
        Ok(Listing { sha, files })
    }

    async fn check(&self, resp: reqwest::Response, repo: &str, what: &str) -> Result<reqwest::Response> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let code = resp.headers().get("x-error-code").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let (repo, endpoint) = (repo.to_string(), self.endpoint.clone());
        Err(match (status, code.as_str()) {
            (_, "GatedRepo") => HubError::Gated { repo, endpoint },
            (_, "RepoNotFound" | "RevisionNotFound" | "EntryNotFound") | (StatusCode::NOT_FOUND, _) => HubError::NotFound { what: what.to_string(), endpoint },
            (StatusCode::FORBIDDEN, _) => HubError::Gated { repo, endpoint },
            (StatusCode::UNAUTHORIZED, _) => HubError::Unauthorized { repo, endpoint },
            _ => {
                let url = resp.url().to_string();
                let body: String = resp.text().await.unwrap_or_default().chars().take(300).collect();
                HubError::Status { url, status: status.as_u16(), body }
            }
        })
    }

    /// Downloads `file` of `repo` at commit `sha` to `dest`, resuming from
    /// `dest.part` when a stopped pull left one; `on_bytes` hears of every
    /// chunk written. Returns at once when `dest` exists with the listed size.
    pub async fn download(&self, repo: &str, sha: &str, file: &RepoFile, dest: &Path, on_bytes: &(dyn Fn(u64) + Sync)) -> Result<()> {
        if let (Some(want), Ok(meta)) = (file.size, tokio::fs::metadata(dest).await)
            && meta.len() == want
        {
            on_bytes(want);
            return Ok(());
        }
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| HubError::Io { path, source }
        };
        if let Some(dir) = dest.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(io(dir))?;
        }
        let part = part_path(dest);
        let mut have = tokio::fs::metadata(&part).await.map(|m| m.len()).unwrap_or(0);
        if file.size.is_some_and(|want| have > want) {
            have = 0;
        }
        let url = self.url(&[repo, "resolve", sha, &file.path]);
        let mut req = self.get(url.clone());
        if have > 0 {
            req = req.header(RANGE, format!("bytes={have}-"));
        }
        let resp = req.send().await.map_err(|source| HubError::Http { url: url.to_string(), source })?;
        let mut resp = self.check(resp, repo, &format!("{}/{}", repo, file.path)).await?;
        // A server that ignores the range sends the whole file: start over.
        let resumed = have > 0 && resp.status() == StatusCode::PARTIAL_CONTENT;
        let mut hasher = Sha256::new();
        let mut out = if resumed {
            hash_existing(&part, &mut hasher).await.map_err(io(&part))?;
            tokio::fs::OpenOptions::new().append(true).open(&part).await.map_err(io(&part))?
        } else {
            have = 0;
            tokio::fs::File::create(&part).await.map_err(io(&part))?
        };
        on_bytes(have);
        let mut got = have;
        while let Some(chunk) = resp.chunk().await.map_err(|source| HubError::Http { url: url.to_string(), source })? {
            out.write_all(&chunk).await.map_err(io(&part))?;
            hasher.update(&chunk);
            got += chunk.len() as u64;
            on_bytes(chunk.len() as u64);
        }
        out.flush().await.map_err(io(&part))?;
        out.sync_all().await.map_err(io(&part))?;
        drop(out);
        if let Some(want) = file.size
            && got != want
        {
            // Short: keep the part to resume; long: it cannot be right.
            if got > want {
                let _ = tokio::fs::remove_file(&part).await;
            }
            return Err(HubError::Size { path: file.path.clone(), got, want });
        }
        if let Some(want) = &file.sha256 {
            let got = hex::encode(hasher.finalize());
            if &got != want {
                let _ = tokio::fs::remove_file(&part).await;
                return Err(HubError::Hash { path: file.path.clone(), got, want: want.clone() });
            }
        }
        tokio::fs::rename(&part, dest).await.map_err(io(dest))?;
        Ok(())
    }
}

fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

async fn hash_existing(path: &Path, hasher: &mut Sha256) -> std::io::Result<()> {
    let mut f = tokio::fs::File::open(path).await?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buf[..n]);
    }
}

/// `HF_TOKEN`, else the token file the Hub's CLI writes
/// (`$HF_HOME/token`, default `~/.cache/huggingface/token`).
fn token_from_env() -> Option<String> {
    if let Some(t) = std::env::var("HF_TOKEN").ok().filter(|t| !t.trim().is_empty()) {
        return Some(t.trim().to_string());
    }
    let home = std::env::var_os("HF_HOME").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface")))?;
    std::fs::read_to_string(home.join("token")).ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
}
