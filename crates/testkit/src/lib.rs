//! imagegate-testkit: what tests (and load benchmarks) need to run imagegate
//! for real: scratch databases on SQLite and PostgreSQL, a synthetic backend,
//! and [`TestApp`] — the whole server on a random port.

pub mod app;
pub mod scratch;
pub mod synthetic;

pub use app::{TestApp, TestAppOptions};
pub use scratch::ScratchDb;
pub use synthetic::SyntheticBackend;
