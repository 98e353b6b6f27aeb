//! imagegate-testkit: what tests (and load benchmarks) need to run imagegate
//! for real: scratch databases on SQLite and PostgreSQL, a synthetic backend,
//! [`TestApp`] — the whole server on a random port; with the `engine`
//! feature, the real engine over tiny generated models (`tiny_engine`); with
//! the `doubles` feature, local doubles of the upstream provider APIs; and
//! the seed documents' request bodies (`seeds`) and upload forms
//! (`uploads`).

pub mod app;
#[cfg(feature = "doubles")]
pub mod doubles;
pub mod scratch;
pub mod seeds;
pub mod synthetic;
#[cfg(feature = "engine")]
pub mod tiny_engine;
pub mod uploads;

pub use app::{TestApp, TestAppOptions};
pub use scratch::ScratchDb;
pub use synthetic::SyntheticBackend;
