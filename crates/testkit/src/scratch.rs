//! Scratch databases: every test gets its own SQLite file, and, when
//! `DATABASE_URL` points at a PostgreSQL server, its own freshly created
//! database there (dropped again when the test ends).

use imagegate_store::Db;
use sqlx::Connection;

/// A database that exists for one test.
pub struct ScratchDb {
    /// Connection URL of the scratch database.
    pub url: String,
    /// Connected, migrated handle.
    pub db: Db,
    pg: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

/// The PostgreSQL server to test against, if any.
pub fn postgres_url() -> Option<String> {
    std::env::var("DATABASE_URL").ok().filter(|u| u.starts_with("postgres"))
}

impl ScratchDb {
    /// A fresh SQLite database in a temporary folder.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = Db::sqlite_url_in(dir.path());
        let db = Db::connect(&url).await.expect("sqlite scratch db");
        Self { url, db, pg: None, _dir: Some(dir) }
    }

    /// A fresh database on the PostgreSQL server at `server_url`.
    pub async fn postgres(server_url: &str) -> Self {
        let name = format!("ig_test_{}", uuid_like());
        let mut admin = sqlx::PgConnection::connect(server_url).await.expect("connect to DATABASE_URL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.expect("create scratch database");
        let _ = admin.close().await;
        let url = with_database(server_url, &name);
        let db = Db::connect(&url).await.expect("postgres scratch db");
        Self { url, db, pg: Some((server_url.to_string(), name)), _dir: None }
    }

    /// SQLite always, plus PostgreSQL when `DATABASE_URL` is set.
    pub async fn all() -> Vec<Self> {
        let mut out = vec![Self::sqlite().await];
        if let Some(pg) = postgres_url() {
            out.push(Self::postgres(&pg).await);
        }
        out
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let Some((server, name)) = self.pg.take() else { return };
        // Drop may run inside the test's runtime, which we must not block on
        // its own pool: a private runtime on a thread drops the database, and
        // FORCE ends the pool's connections server-side.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async move {
                if let Ok(mut c) = sqlx::PgConnection::connect(&server).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).execute(&mut c).await;
                }
            });
        })
        .join();
    }
}

fn with_database(server_url: &str, name: &str) -> String {
    let mut u = url::Url::parse(server_url).expect("DATABASE_URL parses");
    u.set_path(&format!("/{name}"));
    u.to_string()
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{}_{}_{}", std::process::id(), t % 1_000_000_000_000, N.fetch_add(1, Ordering::Relaxed))
}
