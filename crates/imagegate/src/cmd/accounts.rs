//! `imagegate accounts|credits|plans`: account administration against the
//! same database the server uses.

use imagegate_core::pricing::format_credits;
use imagegate_store::{Account, Db};

use crate::cli::{AccountsCommand, CreditsCommand, PlansCommand};
use crate::config::Config;
use crate::wiring;

/// Creates an account on `plan` and grants the plan's free credits, through
/// the same function the admin HTTP route uses.
pub async fn create(config: &Config, db: &Db, name: &str, plan: &str) -> anyhow::Result<Account> {
    Ok(imagegate_api::admin::open_account(db, &config.plans()?, name, plan).await?)
}

/// Parses `30d`, `12h`, `45m` or `90s` into milliseconds.
pub fn parse_duration_ms(s: &str) -> anyhow::Result<i64> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().map_err(|_| anyhow::anyhow!("`{s}` is not a duration like 30d"))?;
    let ms = match unit {
        "d" => 86_400_000,
        "h" => 3_600_000,
        "m" => 60_000,
        "s" => 1000,
        _ => anyhow::bail!("`{s}`: use d, h, m or s"),
    };
    Ok(n * ms)
}

/// Runs an accounts subcommand.
pub async fn run(config: Config, cmd: AccountsCommand) -> anyhow::Result<()> {
    let db = wiring::open_db(&config).await?;
    let now = imagegate_store::now_ms();
    match cmd {
        AccountsCommand::Create { name, plan } => {
            let acct = create(&config, &db, &name, &plan).await?;
            println!("{}", acct.id);
        }
        AccountsCommand::List => {
            println!("{:<40} {:<20} {:<13} {:>14} {:>12}", "id", "name", "plan", "available", "held");
            for a in db.list_accounts().await? {
                let b = db.balance(&a.id, now).await?;
                println!("{:<40} {:<20} {:<13} {:>14} {:>12}", a.id, a.name, a.plan, format_credits(b.available), format_credits(b.held));
            }
        }
        AccountsCommand::Show { account } => {
            let a = db.find_account(&account).await?;
            let b = db.balance(&a.id, now).await?;
            println!("account   {} ({})\nplan      {}{}", a.name, a.id, a.plan, if a.is_admin { " (admin, unmetered)" } else { "" });
            println!("available {} credits\nheld      {} credits", format_credits(b.available), format_credits(b.held));
            if let Some(e) = b.expiring_soonest {
                println!("expiring  {} credits at {} (unix ms)", format_credits(e.amount), e.expires_at);
            }
            for k in db.list_keys(Some(&a.id)).await? {
                println!("key       {} {} {}…{}", k.id, k.name, k.hint, if k.revoked_at.is_some() { " (revoked)" } else { "" });
            }
        }
    }
    Ok(())
}

/// Runs a credits subcommand.
pub async fn run_credits(config: Config, cmd: CreditsCommand) -> anyhow::Result<()> {
    let db = wiring::open_db(&config).await?;
    match cmd {
        CreditsCommand::Grant { account, amount, expires_in } => {
            if !(amount.is_finite() && amount > 0.0) {
                anyhow::bail!("the amount must be a positive number of credits");
            }
            let a = db.find_account(&account).await?;
            let millicredits = (amount * 1000.0).round() as i64;
            let expires_at = expires_in.as_deref().map(parse_duration_ms).transpose()?.map(|d| imagegate_store::now_ms() + d);
            let id = db.grant_credits(&a.id, millicredits, expires_at, "granted by an operator").await?;
            eprintln!("granted {} credits to {} ({id})", format_credits(millicredits), a.name);
        }
    }
    Ok(())
}

/// Runs a plans subcommand.
pub async fn run_plans(config: Config, cmd: PlansCommand) -> anyhow::Result<()> {
    match cmd {
        PlansCommand::List => {
            println!("{:<14} {:>11} {:>10} {:>12} expires", "plan", "concurrency", "rate/min", "free grant");
            for (name, p) in config.plans()?.iter() {
                let exp = p.free_grant_days.map_or("never".to_string(), |d| format!("{d} days"));
                println!("{name:<14} {:>11} {:>10} {:>12} {exp}", p.concurrency, p.rate_per_minute, format_credits(p.free_grant));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_ms("30d").unwrap(), 30 * 86_400_000);
        assert_eq!(parse_duration_ms("90s").unwrap(), 90_000);
        assert!(parse_duration_ms("soon").is_err());
        assert!(parse_duration_ms("3w").is_err());
    }
}
