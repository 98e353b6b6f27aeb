//! Placeholders for statements built at run time, in the form each
//! database handles best.
//!
//! PostgreSQL numbers its parameters (`$1`). SQLite accepts numbered ones
//! too, but resolves each by walking a list of every parameter name in the
//! statement, once while parsing it and again when sqlx binds it: the cost
//! grows with the square of the parameters, and a grouped INSERT of 64
//! tasks has 896. Under load a seventh of SQLite's thread went to those
//! walks. Anonymous `?` parameters are never looked up, so on SQLite a
//! built statement uses them. The rule for every statement built here, on
//! both databases: bind the values in the order their placeholders appear
//! in the text, and a value used twice is bound twice.

use sqlx::AnyConnection;

use crate::db::DbKind;

/// Writes a statement's placeholders in order.
pub(crate) struct Params {
    numbered: bool,
    n: usize,
}

impl Params {
    /// Placeholders for `kind`.
    pub(crate) fn new(kind: DbKind) -> Self {
        Self { numbered: kind == DbKind::Postgres, n: 0 }
    }

    /// Placeholders for the database behind `conn`.
    pub(crate) fn on(conn: &AnyConnection) -> Self {
        Self::new(if conn.backend_name().eq_ignore_ascii_case("sqlite") { DbKind::Sqlite } else { DbKind::Postgres })
    }

    /// Appends the next placeholder.
    pub(crate) fn push(&mut self, sql: &mut String) {
        self.n += 1;
        if self.numbered {
            sql.push('$');
            sql.push_str(&self.n.to_string());
        } else {
            sql.push('?');
        }
    }

    /// Appends `n` placeholders separated by commas (an IN list).
    pub(crate) fn list(&mut self, sql: &mut String, n: usize) {
        for i in 0..n {
            if i > 0 {
                sql.push_str(", ");
            }
            self.push(sql);
        }
    }

    /// Appends `n` arms of a `CASE x … END` that maps values to values:
    /// ` WHEN p THEN p` each.
    pub(crate) fn when_then(&mut self, sql: &mut String, n: usize) {
        for _ in 0..n {
            sql.push_str(" WHEN ");
            self.push(sql);
            sql.push_str(" THEN ");
            self.push(sql);
        }
    }

    /// Appends the VALUES of `rows` rows of `cols` placeholders:
    /// `(p, p), (p, p)`.
    pub(crate) fn rows(&mut self, sql: &mut String, rows: usize, cols: usize) {
        for r in 0..rows {
            sql.push_str(if r == 0 { "(" } else { ", (" });
            self.list(sql, cols);
            sql.push(')');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_on_postgres_anonymous_on_sqlite() {
        let mut sql = String::from("VALUES ");
        Params::new(DbKind::Postgres).rows(&mut sql, 2, 2);
        assert_eq!(sql, "VALUES ($1, $2), ($3, $4)");
        let mut sql = String::from("IN (");
        let mut p = Params::new(DbKind::Sqlite);
        p.list(&mut sql, 3);
        sql.push_str(") AND x = ");
        p.push(&mut sql);
        sql.push_str(" CASE id");
        p.when_then(&mut sql, 2);
        assert_eq!(sql, "IN (?, ?, ?) AND x = ? CASE id WHEN ? THEN ? WHEN ? THEN ?");
    }

    /// The ledger's statements learn the database from their connection:
    /// a backend name that failed to match would quietly give SQLite the
    /// slow numbered form, or PostgreSQL a form it cannot parse.
    #[tokio::test]
    async fn a_connection_names_its_database() {
        let mut urls = vec!["sqlite::memory:".to_string()];
        urls.extend(std::env::var("DATABASE_URL").ok().filter(|u| u.starts_with("postgres")));
        for url in urls {
            let db = crate::Db::connect(&url).await.unwrap();
            let conn = db.write.acquire().await.unwrap();
            let (mut on, mut by_kind) = (String::new(), String::new());
            Params::on(&conn).push(&mut on);
            Params::new(db.kind).push(&mut by_kind);
            assert_eq!(on, by_kind, "{url}");
        }
    }
}
