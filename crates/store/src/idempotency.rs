//! Reading idempotency records: which task a caller's own key names.
//! Records are written by [`Db::submit_task`] in the task's transaction and
//! dropped with the task's results by [`Db::mark_purged`].

use sqlx::Row;

use crate::db::Db;
use crate::error::StoreError;

impl Db {
    /// The id of the task `account_id` submitted under idempotency key
    /// `key`, if any. Keys are per account: another account's record with
    /// the same key is never returned.
    pub async fn task_id_for_key(&self, account_id: &str, key: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT task_id FROM idempotency WHERE account_id = $1 AND idem_key = $2").bind(account_id).bind(key).fetch_optional(&self.read).await?;
        Ok(row.map(|r| r.try_get("task_id")).transpose()?)
    }
}
