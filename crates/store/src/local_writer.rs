//! Puts to the local folder store, on one thread of their own.
//!
//! object_store's local store runs every put (open a staged file, write it,
//! rename it into place) on tokio's blocking pool. A relayed result is one
//! small image per task, and they arrive in bursts: each group completion
//! releases dozens of runs at once. Each put then woke a different idle
//! pool thread (about thirty of them, each cold, at concurrency 64), and
//! handing a put to the pool cost the runtime's workers about as much as
//! the file work itself.
//!
//! Here one long-lived thread takes puts in arrival order. While puts keep
//! coming it never sleeps, so a burst costs one wake-up, not one per image.
//! It calls the same `LocalFileSystem` put: outside a tokio runtime that
//! put does its file work inline, so the files, their names and the staged
//! rename are object_store's own. One thread is enough: a put is a few
//! system calls into the page cache, tens of thousands a second, and local
//! inference produces images far slower than that.

use std::sync::Arc;
use std::sync::mpsc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::sync::oneshot;

struct Put {
    path: Path,
    payload: PutPayload,
    done: oneshot::Sender<object_store::Result<()>>,
}

/// The sending side; the thread ends when the last clone is dropped.
#[derive(Debug)]
pub(crate) struct LocalWriter {
    tx: mpsc::Sender<Put>,
}

impl LocalWriter {
    /// Starts the thread that writes into `store` (a `LocalFileSystem`).
    pub(crate) fn start(store: Arc<dyn ObjectStore>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Put>();
        std::thread::Builder::new().name("objects-local".into()).spawn(move || {
            for put in rx {
                // A panicking put fails its own caller, not every later one.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| futures::executor::block_on(store.put(&put.path, put.payload))))
                    .unwrap_or_else(|_| Err(failed("the put panicked")))
                    .map(drop);
                // The caller may have gone (its request was dropped); the object is written either way.
                let _ = put.done.send(result);
            }
        })?;
        Ok(Self { tx })
    }

    /// Writes `payload` at `path` and returns once it is in place.
    pub(crate) async fn put(&self, path: Path, payload: PutPayload) -> object_store::Result<()> {
        let (done, answer) = oneshot::channel();
        let gone = || failed("the local object writer thread stopped");
        self.tx.send(Put { path, payload, done }).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// A put that the writer could not carry out, as the store's own error type.
fn failed(why: &'static str) -> object_store::Error {
    object_store::Error::Generic { store: "LocalFileSystem", source: why.into() }
}
