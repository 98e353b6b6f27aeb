//! imagegate-store: everything imagegate persists.
//!
//! The database (SQLite by default, PostgreSQL for many machines) holds
//! accounts, API keys, the credit ledger, the task queue and idempotency
//! records; images live in object storage behind signed, expiring URLs.

pub mod db;
pub mod error;
mod fresh;
mod group_admit;
mod group_complete;
pub mod idempotency;
pub mod keys;
pub mod ledger;
mod local_writer;
pub mod objects;
mod params;
pub mod signing;
mod task_insert;
pub mod tasks;
pub mod usage;

pub use db::{Db, DbKind};
pub use error::StoreError;
pub use keys::{Account, ApiKey, Caller, NewKey};
pub use ledger::{Balance, EntryKind, Expiring, Hold, HoldState, InsufficientCredits, LedgerEntry, Settlement};
pub use objects::{ObjectConfig, Objects};
pub use tasks::{ClaimedTask, NewTask, Start, Submitted};
pub use usage::{DAY_MS, Day, UsageRow};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A new random id with a short type prefix (`task_…`, `acct_…`): time-ordered
/// UUIDv7 so ids sort by creation and index well.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}
