//! imagegate-testkit: what tests (and load benchmarks) need to run imagegate
//! for real: scratch databases on SQLite and PostgreSQL, a synthetic backend,
//! and [`TestApp`](app::TestApp) — the whole server on a random port.

pub mod scratch;

pub use scratch::ScratchDb;
