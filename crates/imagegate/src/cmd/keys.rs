//! `imagegate keys create|list|revoke`, against the same database the server
//! uses (safe while it runs).

use imagegate_store::StoreError;

use crate::cli::KeysCommand;
use crate::config::Config;
use crate::wiring;

/// Runs a keys subcommand.
pub async fn run(config: Config, cmd: KeysCommand) -> anyhow::Result<()> {
    let db = wiring::open_db(&config).await?;
    match cmd {
        KeysCommand::Create { name, account, models, expires_in } => {
            let acct = match db.find_account(&account).await {
                Ok(a) => a,
                Err(StoreError::NotFound(_)) => {
                    let acct = super::accounts::create(&config, &db, &account, "free").await?;
                    eprintln!("account `{account}` did not exist; created it on the free plan");
                    acct
                }
                Err(e) => return Err(e.into()),
            };
            let key = db.create_key(&acct.id, &name).await?;
            if !models.is_empty() || expires_in.is_some() {
                let catalog = config.catalog()?;
                let ids =
                    models.iter().map(|m| catalog.require(m).map(|e| e.id.clone()).map_err(|e| anyhow::anyhow!("--models: {}", e.message))).collect::<anyhow::Result<Vec<_>>>()?;
                let expires_at = expires_in.as_deref().map(super::accounts::parse_duration_ms).transpose()?.map(|d| imagegate_store::now_ms() + d);
                db.set_key_limits(&key.record.id, (!ids.is_empty()).then_some(ids.as_slice()), expires_at).await?;
            }
            eprintln!("created key {} for account {}; it is shown only this once", key.record.id, acct.name);
            println!("{}", key.secret.expose());
        }
        KeysCommand::List { account } => {
            let account_id = match account {
                Some(a) => Some(db.find_account(&a).await?.id),
                None => None,
            };
            println!("{:<40} {:<40} {:<16} {:<12} status", "id", "account", "name", "hint");
            for k in db.list_keys(account_id.as_deref()).await? {
                let status = if k.revoked_at.is_some() { "revoked" } else { "active" };
                println!("{:<40} {:<40} {:<16} {:<12} {status}", k.id, k.account_id, k.name, format!("{}…", k.hint));
            }
        }
        KeysCommand::Revoke { id } => {
            if db.revoke_key(&id).await? {
                eprintln!("revoked {id}");
            } else {
                anyhow::bail!("no active key with id {id}");
            }
        }
    }
    Ok(())
}
