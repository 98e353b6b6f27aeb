//! Accounts and API keys. Keys are `sk-ig-` + 32 random bytes, stored only as
//! SHA-256, compared in constant time, shown once at creation and never logged.

use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;
use subtle::ConstantTimeEq;

use crate::db::Db;
use crate::error::StoreError;
use crate::{new_id, now_ms};

/// Every key starts with this, so leaked keys are recognisable by scanners.
pub const KEY_PREFIX: &str = "sk-ig-";

/// An account: owns keys, tasks and (later) credits.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Account {
    /// Id (`acct_…`).
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Plan name.
    pub plan: String,
    /// Whether its keys may use admin routes.
    pub is_admin: bool,
    /// Unix ms.
    pub created_at: i64,
}

/// A key's record; the secret itself is never stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ApiKey {
    /// Id (`key_…`).
    pub id: String,
    /// Owning account.
    pub account_id: String,
    /// Label.
    pub name: String,
    /// The first characters of the key, to tell keys apart in listings.
    pub hint: String,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms, once revoked.
    pub revoked_at: Option<i64>,
}

/// A key secret. `Debug` is redacted so it cannot leak through logs.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for showing once to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A freshly created key: the secret (show once) and its record.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// The secret.
    pub secret: Secret,
    /// The stored record.
    pub record: ApiKey,
}

/// Who is calling: the result of authenticating a key.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    /// Account id.
    pub account_id: String,
    /// Key id.
    pub key_id: String,
    /// Account plan.
    pub plan: String,
    /// Whether admin routes are allowed.
    pub is_admin: bool,
    /// Models this key may use (`None`: all).
    pub allowed_models: Option<Vec<String>>,
    /// When the key stops working (unix ms), if it expires.
    pub key_expires_at: Option<i64>,
}

fn hash_key(raw: &str) -> String {
    hex::encode(Sha256::digest(raw.as_bytes()))
}

fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{KEY_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn account_from(row: &AnyRow) -> Result<Account, StoreError> {
    Ok(Account {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        plan: row.try_get("plan")?,
        is_admin: row.try_get::<i64, _>("is_admin")? != 0,
        created_at: row.try_get("created_at")?,
    })
}

fn key_from(row: &AnyRow) -> Result<ApiKey, StoreError> {
    Ok(ApiKey {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        name: row.try_get("name")?,
        hint: row.try_get("key_hint")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

impl Db {
    /// Creates an account.
    pub async fn create_account(&self, name: &str, plan: &str, is_admin: bool) -> Result<Account, StoreError> {
        let acct = Account { id: new_id("acct"), name: name.to_string(), plan: plan.to_string(), is_admin, created_at: now_ms() };
        let res = sqlx::query("INSERT INTO accounts (id, name, plan, is_admin, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&acct.id)
            .bind(&acct.name)
            .bind(&acct.plan)
            .bind(i64::from(acct.is_admin))
            .bind(acct.created_at)
            .execute(&self.write)
            .await;
        match res {
            Ok(_) => Ok(acct),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Conflict(format!("account `{name}` already exists"))),
            Err(e) => Err(e.into()),
        }
    }

    /// Finds an account by id or name.
    pub async fn find_account(&self, id_or_name: &str) -> Result<Account, StoreError> {
        let row = sqlx::query("SELECT id, name, plan, is_admin, created_at FROM accounts WHERE id = $1 OR name = $1")
            .bind(id_or_name)
            .fetch_optional(&self.read)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("account `{id_or_name}`")))?;
        account_from(&row)
    }

    /// All accounts, oldest first.
    pub async fn list_accounts(&self) -> Result<Vec<Account>, StoreError> {
        let rows = sqlx::query("SELECT id, name, plan, is_admin, created_at FROM accounts ORDER BY created_at").fetch_all(&self.read).await?;
        rows.iter().map(account_from).collect()
    }

    /// Creates a key for an account; the secret is in the result and nowhere else.
    pub async fn create_key(&self, account_id: &str, name: &str) -> Result<NewKey, StoreError> {
        let raw = generate_key();
        let record = ApiKey {
            id: new_id("key"),
            account_id: account_id.to_string(),
            name: name.to_string(),
            hint: raw[..KEY_PREFIX.len() + 4].to_string(),
            created_at: now_ms(),
            revoked_at: None,
        };
        sqlx::query("INSERT INTO api_keys (id, account_id, name, key_hash, key_hint, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&record.id)
            .bind(&record.account_id)
            .bind(&record.name)
            .bind(hash_key(&raw))
            .bind(&record.hint)
            .bind(record.created_at)
            .execute(&self.write)
            .await?;
        Ok(NewKey { secret: Secret(raw), record })
    }

    /// Restricts a key to some models (`None`: all) and/or an expiry (unix ms; `None`: never).
    pub async fn set_key_limits(&self, key_id: &str, allowed_models: Option<&[String]>, expires_at: Option<i64>) -> Result<(), StoreError> {
        let models = allowed_models.map(|m| serde_json::to_string(m).unwrap_or_else(|_| "[]".into()));
        let res = sqlx::query("UPDATE api_keys SET allowed_models = $1, expires_at = $2 WHERE id = $3").bind(models).bind(expires_at).bind(key_id).execute(&self.write).await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("key `{key_id}`")));
        }
        Ok(())
    }

    /// Keys, optionally of one account, oldest first.
    pub async fn list_keys(&self, account_id: Option<&str>) -> Result<Vec<ApiKey>, StoreError> {
        let rows = sqlx::query("SELECT id, account_id, name, key_hint, created_at, revoked_at FROM api_keys WHERE $1 IS NULL OR account_id = $1 ORDER BY created_at")
            .bind(account_id)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(key_from).collect()
    }

    /// Revokes a key; false if no such live key.
    pub async fn revoke_key(&self, key_id: &str) -> Result<bool, StoreError> {
        let res = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL").bind(now_ms()).bind(key_id).execute(&self.write).await?;
        Ok(res.rows_affected() == 1)
    }

    /// Resolves a presented key to its caller, or `None` when unknown,
    /// revoked or expired.
    pub async fn authenticate(&self, presented: &str) -> Result<Option<Caller>, StoreError> {
        if !presented.starts_with(KEY_PREFIX) || presented.len() > 128 {
            return Ok(None);
        }
        let hash = hash_key(presented);
        let row = sqlx::query(
            "SELECT k.id, k.key_hash, k.expires_at, k.allowed_models, a.id AS account_id, a.plan, a.is_admin \
             FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
        )
        .bind(&hash)
        .fetch_optional(&self.read)
        .await?;
        let Some(row) = row else { return Ok(None) };
        // The index lookup already matched; the constant-time comparison
        // keeps the final decision free of early-exit timing.
        let stored: String = row.try_get("key_hash")?;
        if !bool::from(stored.as_bytes().ct_eq(hash.as_bytes())) {
            return Ok(None);
        }
        let expires_at: Option<i64> = row.try_get("expires_at")?;
        if expires_at.is_some_and(|t| t <= now_ms()) {
            return Ok(None);
        }
        let allowed: Option<String> = row.try_get("allowed_models")?;
        let allowed_models = allowed.map(|s| serde_json::from_str::<Vec<String>>(&s)).transpose().map_err(|e| StoreError::Corrupt(format!("allowed_models: {e}")))?;
        Ok(Some(Caller {
            account_id: row.try_get("account_id")?,
            key_id: row.try_get("id")?,
            plan: row.try_get("plan")?,
            is_admin: row.try_get::<i64, _>("is_admin")? != 0,
            allowed_models,
            key_expires_at: expires_at,
        }))
    }

    /// On an empty database, creates the `admin` account and a key for it and
    /// returns the key (to print once). Returns `None` when accounts exist.
    pub async fn bootstrap_admin(&self) -> Result<Option<NewKey>, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) FROM accounts").fetch_one(&self.write).await?;
        let count: i64 = row.try_get(0)?;
        if count > 0 {
            return Ok(None);
        }
        match self.create_account("admin", "senior", true).await {
            Ok(acct) => Ok(Some(self.create_key(&acct.id, "bootstrap").await?)),
            // Another process bootstrapped at the same moment.
            Err(StoreError::Conflict(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_prefix_and_entropy() {
        let a = generate_key();
        let b = generate_key();
        assert!(a.starts_with(KEY_PREFIX));
        assert_eq!(a.len(), KEY_PREFIX.len() + 43);
        assert_ne!(a, b);
        assert_eq!(hash_key(&a).len(), 64);
    }

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret("sk-ig-verysecret".into());
        assert!(!format!("{s:?}").contains("verysecret"));
    }
}
