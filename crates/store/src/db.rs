//! Connecting to SQLite or PostgreSQL through sqlx's `Any` driver, so one set
//! of queries (with `$n` placeholders, which both accept) serves both.
//!
//! SQLite has one writer at a time; rather than let pooled connections fight
//! over the write lock (and fail deferred transactions with SQLITE_BUSY), we
//! give SQLite a one-connection write pool beside a read pool. PostgreSQL
//! uses one pool for both.

use std::path::Path;
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;

use crate::error::StoreError;
use crate::group_admit::GroupAdmit;
use crate::group_complete::GroupComplete;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// Which database we talk to; a few queries differ (`SKIP LOCKED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    /// SQLite (one machine).
    Sqlite,
    /// PostgreSQL (many machines).
    Postgres,
}

/// Database handle: a pool for reads and one for writes (the same pool on PostgreSQL).
#[derive(Debug, Clone)]
pub struct Db {
    pub(crate) read: AnyPool,
    pub(crate) write: AnyPool,
    /// Which database.
    pub kind: DbKind,
    /// Completions, written in groups (see `group_complete`).
    pub(crate) completions: GroupComplete,
    /// Submissions without an idempotency key, written in groups (see `group_admit`).
    pub(crate) admissions: GroupAdmit,
}

impl Db {
    /// The URL for the SQLite file inside a data directory.
    pub fn sqlite_url_in(data_dir: &Path) -> String {
        format!("sqlite://{}?mode=rwc", data_dir.join("imagegate.db").display())
    }

    /// Connects and runs pending migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let db = if url.starts_with("sqlite:") {
            // WAL lets readers proceed while the writer writes; NORMAL
            // synchronous is durable against process crashes in WAL mode
            // (only an OS crash can lose the last commits). Temporary
            // tables and statement journals stay in memory: as files, every
            // multi-row UPDATE (claims, completions) created and unlinked
            // one, about a fifth of the CPU time of a synchronous request.
            // No ping before each acquire (sqlx's default): a SQLite
            // connection is a thread in this process, not a socket that can
            // go stale, and the ping was one more hand-off to that thread
            // for every statement and transaction.
            // The writer does not checkpoint the WAL itself (SQLite's
            // default, every 1000 pages): a checkpoint copies the WAL into
            // the database and syncs it, and the commit that triggered it
            // waited for that, which was most of a request's p99 on this
            // disk (see `checkpoints`). A read connection does it instead.
            let file = !url.contains(":memory:");
            let opts = |n: u32, writer: bool| {
                let pragmas = if writer && file { "PRAGMA wal_autocheckpoint = 0;" } else { "" };
                AnyPoolOptions::new().max_connections(n).acquire_timeout(Duration::from_secs(30)).test_before_acquire(false).after_connect(move |conn, _| {
                    Box::pin(async move {
                        use sqlx::Executor;
                        let sql = format!(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; {pragmas}"
                        );
                        conn.execute(sqlx::AssertSqlSafe(sql)).await?;
                        Ok(())
                    })
                })
            };
            let write = opts(1, true).connect(url).await?;
            let read = if file { opts(8, false).connect(url).await? } else { write.clone() };
            if file {
                tokio::spawn(checkpoints(read.clone()));
            }
            Self { read, completions: GroupComplete::default(), admissions: GroupAdmit::default(), write, kind: DbKind::Sqlite }
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = AnyPoolOptions::new().max_connections(16).acquire_timeout(Duration::from_secs(30)).connect(url).await?;
            Self { read: pool.clone(), completions: GroupComplete::default(), admissions: GroupAdmit::default(), write: pool, kind: DbKind::Postgres }
        } else {
            return Err(StoreError::Config(format!("database url must start with sqlite: or postgres:, got `{}`", redact_url(url))));
        };
        db.migrate().await?;
        Ok(db)
    }

    /// Applies migrations for this database kind.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = match self.kind {
            DbKind::Sqlite => &SQLITE_MIGRATIONS,
            DbKind::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.write).await?;
        Ok(())
    }

    /// Round-trips a trivial query (readiness probe).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    /// Reads a setting.
    pub async fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        use sqlx::Row;
        let row = sqlx::query("SELECT value FROM settings WHERE name = $1").bind(name).fetch_optional(&self.read).await?;
        Ok(row.map(|r| r.get::<String, _>(0)))
    }

    /// Returns the setting, storing `make()` first if there is none yet. Safe
    /// against concurrent first starts: the first insert wins, all read it.
    pub async fn setting_or_init(&self, name: &str, make: impl FnOnce() -> String) -> Result<String, StoreError> {
        if let Some(v) = self.setting(name).await? {
            return Ok(v);
        }
        sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING").bind(name).bind(make()).execute(&self.write).await?;
        use sqlx::Row;
        let row = sqlx::query("SELECT value FROM settings WHERE name = $1").bind(name).fetch_one(&self.write).await?;
        Ok(row.get::<String, _>(0))
    }

    /// Closes both pools.
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

/// How often the WAL is checkpointed (SQLite, file databases).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// Copies the WAL into the database from a read connection, on that
/// connection's own thread, so that commits never wait for it. PASSIVE:
/// it never blocks the writer or readers; frames a reader still needs wait
/// for the next round. Stops when the pool is closed.
async fn checkpoints(read: AnyPool) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !read.is_closed() {
        tick.tick().await;
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&read).await {
            if read.is_closed() {
                break;
            }
            tracing::warn!(error = %e, "checkpointing the SQLite WAL failed; trying again");
        }
    }
}

/// The URL without its password, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}
