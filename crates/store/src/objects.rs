//! Image objects through `object_store`: a local folder (served by our own
//! `/files` route with HMAC-signed URLs) or S3-compatible storage (presigned
//! URLs). Keys are `{prefix}/{task id}/{n}.{ext}`.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::StoreError;
use crate::fresh::Fresh;
use crate::local_writer::LocalWriter;
use crate::signing::UrlSigner;

/// Where objects live.
#[derive(Debug, Clone, PartialEq)]
pub enum ObjectConfig {
    /// A folder on this machine.
    Local(PathBuf),
    /// An S3-compatible bucket with an optional key prefix; credentials,
    /// region and endpoint come from the usual `AWS_*` variables.
    S3 {
        /// Bucket.
        bucket: String,
        /// Key prefix inside the bucket.
        prefix: String,
    },
}

impl ObjectConfig {
    /// Parses `s3://bucket/prefix`, `file:///path` or a plain folder path.
    pub fn parse(spec: &str) -> Result<Self, StoreError> {
        if let Some(rest) = spec.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(StoreError::Config(format!("object storage `{spec}` names no bucket")));
            }
            return Ok(Self::S3 { bucket: bucket.to_string(), prefix: prefix.trim_matches('/').to_string() });
        }
        let path = spec.strip_prefix("file://").unwrap_or(spec);
        Ok(Self::Local(PathBuf::from(path)))
    }
}

enum Backing {
    Local(LocalWriter),
    S3 { signer: Arc<dyn Signer> },
}

/// The object store plus URL signing.
#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    backing: Arc<Backing>,
    prefix: String,
    signer: UrlSigner,
    public_base: String,
    ttl: Duration,
    /// What this process put a moment ago, to answer reads without the store.
    fresh: Arc<Fresh>,
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Objects").field("store", &self.store.to_string()).field("public_base", &self.public_base).finish()
    }
}

impl Objects {
    /// Opens the store. `public_base` is the externally visible base URL of
    /// this server (for local `/files` URLs); `ttl` is the URL lifetime.
    pub fn open(config: &ObjectConfig, signer: UrlSigner, public_base: &str, ttl: Duration) -> Result<Self, StoreError> {
        let (store, backing, prefix): (Arc<dyn ObjectStore>, Backing, String) = match config {
            ObjectConfig::Local(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::Config(format!("cannot create {}: {e}", dir.display())))?;
                let fs: Arc<dyn ObjectStore> = Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir)?);
                let writer = LocalWriter::start(fs.clone()).map_err(|e| StoreError::Config(format!("cannot start the local object writer: {e}")))?;
                (fs, Backing::Local(writer), String::new())
            }
            ObjectConfig::S3 { bucket, prefix } => {
                let s3 = Arc::new(object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket).build()?);
                (s3.clone(), Backing::S3 { signer: s3 }, prefix.clone())
            }
        };
        Ok(Self { store, backing: Arc::new(backing), prefix, signer, public_base: public_base.trim_end_matches('/').to_string(), ttl, fresh: Arc::default() })
    }

    /// Opens a local folder store (tests, single machine).
    pub fn local(dir: &FsPath, signer: UrlSigner, public_base: &str, ttl: Duration) -> Result<Self, StoreError> {
        Self::open(&ObjectConfig::Local(dir.to_path_buf()), signer, public_base, ttl)
    }

    fn path(&self, key: &str) -> Path {
        if self.prefix.is_empty() { Path::from(key) } else { Path::from(format!("{}/{key}", self.prefix)) }
    }

    /// The key of image `n` of a task. Flat under the prefix, not a folder
    /// per task: on the local store a folder per task costs a `mkdir` on
    /// every put and leaves an empty folder behind on every purge.
    pub fn key_for(prefix: &str, task_id: &str, n: usize, ext: &str) -> String {
        format!("{prefix}/{task_id}-{n}.{ext}")
    }

    /// Stores bytes under `key`.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        let bytes = Bytes::from(bytes);
        let payload = PutPayload::from(bytes.clone());
        match &*self.backing {
            Backing::Local(writer) => writer.put(self.path(key), payload).await?,
            Backing::S3 { .. } => drop(self.store.put(&self.path(key), payload).await?),
        }
        self.fresh.insert(key, bytes);
        Ok(())
    }

    /// Reads an object; `NotFound` when absent.
    pub async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        if let Some(bytes) = self.fresh.get(key) {
            return Ok(bytes);
        }
        match self.store.get(&self.path(key)).await {
            Ok(r) => Ok(r.bytes().await?),
            Err(object_store::Error::NotFound { .. }) => Err(StoreError::NotFound(format!("object {key}"))),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes an object (absent is fine).
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.fresh.remove(key);
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A signed URL for `key`, valid for the configured lifetime from now.
    pub async fn signed_url(&self, key: &str) -> Result<String, StoreError> {
        match &*self.backing {
            Backing::Local(_) => {
                let exp = crate::now_ms() / 1000 + self.ttl.as_secs() as i64;
                let sig = self.signer.sign(key, exp);
                Ok(format!("{}/files/{key}?exp={exp}&sig={sig}", self.public_base))
            }
            Backing::S3 { signer } => Ok(signer.signed_url(http::Method::GET, &self.path(key), self.ttl).await?.to_string()),
        }
    }

    /// Whether a local `/files` request carries a valid, unexpired signature.
    pub fn verify(&self, key: &str, exp: i64, sig: &str) -> bool {
        self.signer.verify(key, exp, sig, crate::now_ms() / 1000)
    }

    /// Checks the store answers (readiness probe).
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self.store.head(&self.path(".readyz")).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_object_specs() {
        assert_eq!(ObjectConfig::parse("s3://b/p/q").unwrap(), ObjectConfig::S3 { bucket: "b".into(), prefix: "p/q".into() });
        assert_eq!(ObjectConfig::parse("s3://b").unwrap(), ObjectConfig::S3 { bucket: "b".into(), prefix: "".into() });
        assert!(ObjectConfig::parse("s3://").is_err());
        assert_eq!(ObjectConfig::parse("/tmp/x").unwrap(), ObjectConfig::Local("/tmp/x".into()));
    }

    #[tokio::test]
    async fn local_objects_round_trip_and_sign() {
        let dir = tempfile::tempdir().unwrap();
        let o = Objects::local(dir.path(), UrlSigner::new(vec![7; 32]), "http://h:1/", Duration::from_secs(60)).unwrap();
        o.put("a/task_1/0.png", vec![1, 2, 3]).await.unwrap();
        assert_eq!(&o.get("a/task_1/0.png").await.unwrap()[..], &[1, 2, 3]);
        assert_eq!(std::fs::read(dir.path().join("a/task_1/0.png")).unwrap(), [1, 2, 3], "in the folder, not only in memory");
        let other = Objects::local(dir.path(), UrlSigner::new(vec![7; 32]), "http://h:1/", Duration::from_secs(60)).unwrap();
        assert_eq!(&other.get("a/task_1/0.png").await.unwrap()[..], &[1, 2, 3], "another process reads it from the store");
        let url = o.signed_url("a/task_1/0.png").await.unwrap();
        assert!(url.starts_with("http://h:1/files/a/task_1/0.png?exp="));
        let q = url.split_once('?').unwrap().1;
        let exp: i64 = q.split('&').next().unwrap()[4..].parse().unwrap();
        let sig = q.split("sig=").nth(1).unwrap();
        assert!(o.verify("a/task_1/0.png", exp, sig));
        o.delete("a/task_1/0.png").await.unwrap();
        assert!(matches!(o.get("a/task_1/0.png").await, Err(StoreError::NotFound(_))));
        o.ping().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_local_puts_all_land_in_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let o = Objects::local(dir.path(), UrlSigner::new(vec![7; 32]), "http://h:1/", Duration::from_secs(60)).unwrap();
        let puts: Vec<_> = (0..200u8)
            .map(|n| {
                let o = o.clone();
                tokio::spawn(async move { o.put(&Objects::key_for("burst", &format!("task_{n}"), 0, "png"), vec![n; 1 + n as usize]).await })
            })
            .collect();
        for p in puts {
            p.await.unwrap().unwrap();
        }
        for n in 0..200u8 {
            assert_eq!(std::fs::read(dir.path().join(format!("burst/task_{n}-0.png"))).unwrap(), vec![n; 1 + n as usize], "object {n}");
        }
        let staged: Vec<_> = std::fs::read_dir(dir.path().join("burst")).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().contains('#')).collect();
        assert!(staged.is_empty(), "no staged file left behind: {staged:?}");
    }

    #[tokio::test]
    async fn a_local_put_that_cannot_be_written_fails_its_caller_and_the_next_one_still_lands() {
        let dir = tempfile::tempdir().unwrap();
        let o = Objects::local(dir.path(), UrlSigner::new(vec![7; 32]), "http://h:1/", Duration::from_secs(60)).unwrap();
        // A file where the put needs a folder.
        std::fs::write(dir.path().join("blocked"), b"x").unwrap();
        let err = o.put("blocked/task_1-0.png", vec![1]).await.unwrap_err();
        assert!(matches!(err, StoreError::Objects(_)), "{err:?}");
        assert!(o.get("blocked/task_1-0.png").await.is_err(), "not kept in memory either");
        o.put("ok/task_2-0.png", vec![2]).await.unwrap();
        assert_eq!(std::fs::read(dir.path().join("ok/task_2-0.png")).unwrap(), [2]);
    }
}
