//! `GET /v1/usage`: what an account spent, per UTC day, model and key —
//! tasks, images and captured credits. Callers see their own account;
//! admin keys may name any account with `?account=`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use http::HeaderMap;
use imagegate_core::{AppError, ErrorCode};
use imagegate_store::{Day, UsageRow, now_ms};
use serde_json::{Value, json};

use crate::auth::authenticate;
use crate::dialects::openai::OpenAiError;
use crate::state::AppState;

/// Days a report covers when `from` is not given (today included).
pub const DEFAULT_DAYS: i64 = 30;

/// The query string of `GET /v1/usage`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct UsageParams {
    /// Account id or name (admin keys only, unless it is the caller's own).
    pub account: Option<String>,
    /// First day, `YYYY-MM-DD` (UTC); default: `DEFAULT_DAYS` before `to`.
    pub from: Option<String>,
    /// Last day, `YYYY-MM-DD` (UTC), inclusive; default: today.
    pub to: Option<String>,
}

fn parse_day(field: &str, value: Option<&str>) -> Result<Option<Day>, AppError> {
    value.map(|v| Day::parse(v).ok_or_else(|| AppError::invalid(field, format!("`{v}` is not a date like 2026-11-23")))).transpose()
}

/// The inclusive day range a query asks for.
pub fn day_range(params: &UsageParams, today: Day) -> Result<(Day, Day), AppError> {
    let to = parse_day("to", params.to.as_deref())?.unwrap_or(today);
    let from = parse_day("from", params.from.as_deref())?.unwrap_or(Day(to.0 - (DEFAULT_DAYS - 1)));
    if from > to {
        return Err(AppError::invalid("from", format!("{from} is after `to` ({to})")));
    }
    Ok((from, to))
}

fn credits(millicredits: i64) -> f64 {
    millicredits as f64 / 1000.0
}

/// Totals per key, in key order (tasks without a key last).
fn by_key(rows: &[UsageRow]) -> Vec<Value> {
    let mut keys: BTreeMap<(bool, Option<&str>), (i64, i64, i64)> = BTreeMap::new();
    for r in rows {
        let t = keys.entry((r.key_id.is_none(), r.key_id.as_deref())).or_default();
        *t = (t.0 + r.tasks, t.1 + r.images, t.2 + r.millicredits);
    }
    keys.into_iter().map(|((_, key), (tasks, images, m))| json!({"key_id": key, "tasks": tasks, "images": images, "credits": credits(m)})).collect()
}

/// `GET /v1/usage?account=&from=&to=`.
#[utoipa::path(get, path = "/v1/usage", tag = "usage", params(("account" = Option<String>, Query, description = "Admins: another account (name or id)"), ("from" = Option<String>, Query, description = "YYYY-MM-DD (UTC), default 30 days ago"), ("to" = Option<String>, Query, description = "YYYY-MM-DD (UTC), default today")), security(("bearer" = [])), responses((status = 200, description = "Tasks, images and credits by day, model and key"), (status = 400, description = "Malformed date"), (status = 403, description = "Another account's usage")))]
pub async fn get_usage(State(state): State<AppState>, headers: HeaderMap, query: Result<Query<UsageParams>, QueryRejection>) -> Result<Json<Value>, OpenAiError> {
    let caller = authenticate(&state, &headers).await?;
    let Query(params) = query.map_err(|e| AppError::new(ErrorCode::InvalidRequest, format!("invalid query string: {}", e.body_text())))?;
    let account = match params.account.as_deref() {
        None => state.db.find_account(&caller.account_id).await?,
        Some(name) if caller.is_admin => state.db.find_account(name).await?,
        Some(name) => {
            // Naming one's own account is fine; anything else is refused
            // without saying whether it exists.
            let own = state.db.find_account(&caller.account_id).await?;
            if name != own.id && name != own.name {
                return Err(AppError::new(ErrorCode::Forbidden, "only admin keys may see another account's usage").into());
            }
            own
        }
    };
    let (from, to) = day_range(&params, Day::of_ms(now_ms()))?;
    let rows = state.db.usage(&account.id, from, to).await?;
    let total = |f: fn(&UsageRow) -> i64| rows.iter().map(f).sum::<i64>();
    let total_m = total(|r| r.millicredits);
    let by_day: Vec<Value> =
        rows.iter().map(|r| json!({"date": r.day, "model": r.model, "key_id": r.key_id, "tasks": r.tasks, "images": r.images, "credits": credits(r.millicredits)})).collect();
    Ok(Json(json!({
        "object": "usage",
        "account": {"id": account.id, "name": account.name, "plan": account.plan},
        "from": from,
        "to": to,
        "total_tasks": total(|r| r.tasks),
        "total_images": total(|r| r.images),
        "total_credits": credits(total_m),
        "total_millicredits": total_m,
        "by_key": by_key(&rows),
        "by_day": by_day,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(from: Option<&str>, to: Option<&str>) -> UsageParams {
        UsageParams { account: None, from: from.map(Into::into), to: to.map(Into::into) }
    }

    #[test]
    fn the_default_range_is_the_last_thirty_days() {
        let today = Day::parse("2026-11-23").unwrap();
        let (from, to) = day_range(&params(None, None), today).unwrap();
        assert_eq!((from.to_string(), to), ("2026-10-25".to_string(), today));
        let (from, _) = day_range(&params(None, Some("2026-01-31")), today).unwrap();
        assert_eq!(from.to_string(), "2026-01-02");
    }

    #[test]
    fn bad_dates_name_their_field() {
        let today = Day(20_780);
        assert_eq!(day_range(&params(Some("yesterday"), None), today).unwrap_err().field.as_deref(), Some("from"));
        assert_eq!(day_range(&params(None, Some("2026-02-30")), today).unwrap_err().field.as_deref(), Some("to"));
        assert_eq!(day_range(&params(Some("2026-11-24"), Some("2026-11-23")), today).unwrap_err().field.as_deref(), Some("from"));
    }
}
