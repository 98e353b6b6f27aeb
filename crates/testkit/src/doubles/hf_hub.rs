//! A Hugging Face Hub double for `imagegate models pull`: repos backed by
//! folders on disk, served the way the Hub's HTTP API serves them.
//!
//! - `GET /api/models/{org}/{name}/revision/{rev}?blobs=true`: `sha` and
//!   `siblings` (`rfilename`, `size`, and `lfs.sha256` for safetensors
//!   files, which the Hub keeps in LFS).
//! - `GET /{org}/{name}/resolve/{rev}/{path}`: the file; LFS files answer
//!   with a 302 to a CDN path, as the Hub's do. `Range: bytes=N-` gets a 206.
//! - Errors as the Hub sends them: 401 with `X-Error-Code: RepoNotFound`
//!   for an unknown repo, 401/403 with `GatedRepo` for a gated repo without
//!   the right token, 404 `RevisionNotFound` / `EntryNotFound`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::Double;
use super::support::{Log, serve};

/// The commit every double repo is at.
pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// One repo the double serves.
#[derive(Debug, Clone, Default)]
pub struct HubRepo {
    /// Its files: the folder's tree.
    pub dir: PathBuf,
    /// Only this bearer token may read it (a gated repo).
    pub token: Option<String>,
    /// Files whose listed SHA-256 is wrong (a corrupt transfer, as far as
    /// the client can tell).
    pub corrupt: Vec<String>,
}

struct Hub {
    repos: HashMap<String, HubRepo>,
    log: Log,
}

/// Starts a Hub serving `repos` (`org/name` → repo).
pub async fn start(repos: HashMap<String, HubRepo>) -> Double {
    let log = Log::default();
    let hub = Arc::new(Hub { repos, log: log.clone() });
    let base = serve(Router::new().fallback(handle).with_state(hub)).await;
    Double { base, log }
}

fn error(status: u16, code: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).expect("a valid status");
    (status, [("x-error-code", code)], axum::Json(serde_json::json!({"error": message}))).into_response()
}

async fn handle(State(hub): State<Arc<Hub>>, req: Request) -> Response {
    hub.log.push(req.method(), req.uri(), req.headers(), &[]);
    let path = req.uri().path().to_string();
    let bearer = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::to_string);
    let range =
        req.headers().get(header::RANGE).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("bytes=")).and_then(|v| v.strip_suffix('-')).and_then(|v| v.parse::<u64>().ok());
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (repo_id, rest, listing) = match segs.as_slice() {
        ["api", "models", org, name, "revision", rev] => (format!("{org}/{name}"), vec![*rev], true),
        ["cdn", org, name, rest @ ..] => (format!("{org}/{name}"), rest.to_vec(), false),
        [org, name, "resolve", rest @ ..] => (format!("{org}/{name}"), rest.to_vec(), false),
        _ => return error(404, "EntryNotFound", "no such route"),
    };
    let Some(repo) = hub.repos.get(&repo_id) else {
        return error(401, "RepoNotFound", "Repository not found");
    };
    if let Some(token) = &repo.token
        && bearer.as_deref() != Some(token)
    {
        let status = if bearer.is_some() { 403 } else { 401 };
        return error(status, "GatedRepo", "Access to this model is restricted; you must accept its conditions");
    }
    if listing {
        return if rest[0] == "main" || rest[0] == COMMIT { axum::Json(list(repo)).into_response() } else { error(404, "RevisionNotFound", "Invalid rev id") };
    }
    let cdn = path.starts_with("/cdn/");
    let (rev, file) = if cdn { (COMMIT, rest.join("/")) } else { (rest[0], rest[1..].join("/")) };
    if rev != COMMIT && rev != "main" {
        return error(404, "RevisionNotFound", "Invalid rev id");
    }
    let on_disk = repo.dir.join(&file);
    if file.split('/').any(|s| s == ".." || s.is_empty()) || !on_disk.is_file() {
        return error(404, "EntryNotFound", "Entry not found");
    }
    if !cdn && is_lfs(&file) {
        let to = format!("/cdn/{repo_id}/{file}");
        return (StatusCode::FOUND, [(header::LOCATION, to)]).into_response();
    }
    let bytes = match std::fs::read(&on_disk) {
        Ok(b) => b,
        Err(e) => return error(500, "InternalError", &e.to_string()),
    };
    match range {
        Some(from) if (from as usize) < bytes.len() => {
            let total = bytes.len();
            let part = bytes[from as usize..].to_vec();
            (StatusCode::PARTIAL_CONTENT, [(header::CONTENT_RANGE, format!("bytes {from}-{}/{total}", total - 1))], Body::from(part)).into_response()
        }
        _ => (StatusCode::OK, Body::from(bytes)).into_response(),
    }
}

fn is_lfs(path: &str) -> bool {
    path.ends_with(".safetensors")
}

fn list(repo: &HubRepo) -> serde_json::Value {
    let mut files = Vec::new();
    walk(&repo.dir, &repo.dir, &mut files);
    files.sort();
    let siblings: Vec<serde_json::Value> = files
        .iter()
        .map(|rel| {
            let bytes = std::fs::read(repo.dir.join(rel)).unwrap_or_default();
            let mut s = serde_json::json!({"rfilename": rel, "blobId": "b", "size": bytes.len()});
            if is_lfs(rel) {
                let mut sha = hex::encode(Sha256::digest(&bytes));
                if repo.corrupt.contains(rel) {
                    sha = sha.chars().rev().collect();
                }
                s["lfs"] = serde_json::json!({"sha256": sha, "size": bytes.len(), "pointerSize": 134});
            }
            s
        })
        .collect();
    serde_json::json!({"_id": "x", "id": "repo", "sha": COMMIT, "private": false, "siblings": siblings})
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(root, &path, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}
