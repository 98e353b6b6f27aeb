//! Store contract tests: each runs on SQLite, and on PostgreSQL when `DATABASE_URL` is set.

mod keys;
mod ledger;
mod started;
mod tasks;
mod usage;
mod wal;
