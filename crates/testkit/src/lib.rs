//! imagegate-testkit: what tests (and load benchmarks) need to run imagegate
//! for real: scratch databases on SQLite and PostgreSQL, a synthetic backend,
//! [`TestApp`] — the whole server on a random port — and, with the `doubles`
//! feature, local doubles of the upstream provider APIs.

pub mod app;
#[cfg(feature = "doubles")]
pub mod doubles;
pub mod scratch;
pub mod synthetic;

pub use app::{TestApp, TestAppOptions};
pub use scratch::ScratchDb;
pub use synthetic::SyntheticBackend;
