//! Admin routes (`/v1/admin/…`, admin keys only): accounts, their credits
//! and keys, and the plans they can be on. The same operations as the
//! `imagegate accounts|credits|plans` commands, over HTTP; errors in
//! OpenAI's shape.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use http::{HeaderMap, StatusCode};
use imagegate_core::{AppError, PlanTable};
use imagegate_store::{Account, DAY_MS, Db, now_ms};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::auth::{authenticate, require_admin};
use crate::body::{parse_json, read_body};
use crate::dialects::openai::OpenAiError;
use crate::state::AppState;

/// Longest account name; names are also what `?account=` and the CLI match on.
const MAX_NAME: usize = 64;
/// The largest single grant, in credits: far beyond any real purchase, and
/// small enough that milli-credits stay exact in an `i64` sum.
const MAX_GRANT_CREDITS: f64 = 1e12;
/// The longest expiry a grant may be given, in days (100 years).
const MAX_EXPIRY_DAYS: f64 = 36_500.0;

/// Creates an account on `plan` and grants the plan's free credits (expiring
/// after the plan's free-grant period). An unknown plan is a 400 on `plan`
/// listing the plans; a taken name is a 409.
pub async fn open_account(db: &Db, plans: &PlanTable, name: &str, plan: &str) -> Result<Account, AppError> {
    let p = plans.get(plan).ok_or_else(|| {
        let known: Vec<&str> = plans.iter().map(|(n, _)| n).collect();
        AppError::invalid("plan", format!("unknown plan `{plan}`; plans are {}", known.join(", ")))
    })?;
    let plan = plan.to_lowercase();
    let acct = db.create_account(name, &plan, false).await?;
    if p.free_grant > 0 {
        db.grant_credits(&acct.id, p.free_grant, p.free_grant_expiry(now_ms()), &format!("{plan} plan free credits")).await?;
    }
    Ok(acct)
}

async fn admin(state: &AppState, headers: &HeaderMap) -> Result<(), AppError> {
    require_admin(&authenticate(state, headers).await?)
}

/// A JSON body, or `T::default()` when there is none.
fn body_or_default<T: DeserializeOwned + Default>(body: Result<Bytes, BytesRejection>) -> Result<T, AppError> {
    let bytes = read_body(body)?;
    if bytes.iter().all(u8::is_ascii_whitespace) { Ok(T::default()) } else { parse_json(&bytes) }
}

fn credits(millicredits: i64) -> f64 {
    millicredits as f64 / 1000.0
}

/// An account with its balance.
async fn account_json(db: &Db, a: &Account) -> Result<Value, AppError> {
    let b = db.balance(&a.id, now_ms()).await?;
    let expiring = b.expiring_soonest.map(|e| json!({"credits": credits(e.amount), "expires_at": e.expires_at / 1000}));
    Ok(json!({
        "object": "account",
        "id": a.id,
        "name": a.name,
        "plan": a.plan,
        "is_admin": a.is_admin,
        "created": a.created_at / 1000,
        "balance": {"available": credits(b.available), "held": credits(b.held), "expiring_soonest": expiring},
    }))
}

/// The body of `POST /v1/admin/accounts`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    /// Unique name: letters, digits, `-`, `_`, `.`, `@`.
    pub name: String,
    /// Plan name; default `free`.
    pub plan: Option<String>,
}

fn check_name(name: &str) -> Result<(), AppError> {
    let safe = name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
    // Lookups match ids and names alike, so a name must never look like an id.
    if name.is_empty() || name.len() > MAX_NAME || !safe || name.starts_with("acct_") {
        return Err(AppError::invalid("name", format!("1 to {MAX_NAME} letters, digits, `-`, `_`, `.` or `@`, not starting with `acct_`")));
    }
    Ok(())
}

/// `POST /v1/admin/accounts`: 201 with the account and its free credits.
#[utoipa::path(post, path = "/v1/admin/accounts", tag = "admin", security(("bearer" = [])), responses((status = 201, description = "Account created with its plan's free credits"), (status = 400, description = "Invalid name or plan"), (status = 403, description = "Not an admin key"), (status = 409, description = "Name taken")))]
pub async fn create_account(State(state): State<AppState>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<(StatusCode, Json<Value>), OpenAiError> {
    admin(&state, &headers).await?;
    let req: CreateAccount = parse_json(&read_body(body)?)?;
    check_name(&req.name)?;
    let acct = open_account(&state.db, &state.plans, &req.name, req.plan.as_deref().unwrap_or(PlanTable::FREE)).await?;
    Ok((StatusCode::CREATED, Json(account_json(&state.db, &acct).await?)))
}

/// `GET /v1/admin/accounts`: every account with its balance, oldest first.
#[utoipa::path(get, path = "/v1/admin/accounts", tag = "admin", security(("bearer" = [])), responses((status = 200, description = "Accounts with balances"), (status = 403, description = "Not an admin key")))]
pub async fn list_accounts(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, OpenAiError> {
    admin(&state, &headers).await?;
    let mut data = Vec::new();
    for a in state.db.list_accounts().await? {
        data.push(account_json(&state.db, &a).await?);
    }
    Ok(Json(json!({"object": "list", "data": data})))
}

/// `GET /v1/admin/accounts/{id}` (id or name): the account, its plan's
/// limits, its balance and its keys (never their secrets).
#[utoipa::path(get, path = "/v1/admin/accounts/{id}", tag = "admin", params(("id" = String, Path, description = "Account id or name")), security(("bearer" = [])), responses((status = 200, description = "Plan, balance and keys (no secrets)"), (status = 403, description = "Not an admin key"), (status = 404, description = "Unknown account")))]
pub async fn get_account(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Result<Json<Value>, OpenAiError> {
    admin(&state, &headers).await?;
    let a = state.db.find_account(&id).await?;
    let mut body = account_json(&state.db, &a).await?;
    body["plan_limits"] = plan_json(&a.plan, state.plans.get_or_free(&a.plan));
    let keys = state.db.list_keys(Some(&a.id)).await?;
    body["keys"] = keys.iter().map(|k| json!({"id": k.id, "name": k.name, "hint": k.hint, "created": k.created_at / 1000, "revoked": k.revoked_at.map(|t| t / 1000)})).collect();
    Ok(Json(body))
}

/// The body of `POST /v1/admin/accounts/{id}/credits`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantCredits {
    /// Credits (not milli-credits) to grant; positive.
    pub amount: f64,
    /// Days until they expire; absent: never (paid credits).
    pub expires_in_days: Option<f64>,
    /// Why, for the ledger; default "granted by an admin".
    pub reason: Option<String>,
}

/// `POST /v1/admin/accounts/{id}/credits`: 201 with the grant and the new balance.
#[utoipa::path(post, path = "/v1/admin/accounts/{id}/credits", tag = "admin", params(("id" = String, Path, description = "Account id or name")), security(("bearer" = [])), responses((status = 201, description = "Granted"), (status = 400, description = "Invalid amount or expiry"), (status = 403, description = "Not an admin key"), (status = 404, description = "Unknown account")))]
pub async fn grant_credits(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), OpenAiError> {
    admin(&state, &headers).await?;
    let req: GrantCredits = parse_json(&read_body(body)?)?;
    let amount = (req.amount * 1000.0).round();
    if !(req.amount.is_finite() && amount >= 1.0 && req.amount <= MAX_GRANT_CREDITS) {
        return Err(AppError::invalid("amount", format!("a number of credits from 0.001 to {MAX_GRANT_CREDITS}")).into());
    }
    let expires_at = match req.expires_in_days {
        Some(d) if !(d.is_finite() && d > 0.0 && d <= MAX_EXPIRY_DAYS) => {
            return Err(AppError::invalid("expires_in_days", format!("a number of days above 0 and at most {MAX_EXPIRY_DAYS}")).into());
        }
        Some(d) => Some(now_ms() + (d * DAY_MS as f64).round() as i64),
        None => None,
    };
    let reason = req.reason.unwrap_or_else(|| "granted by an admin".into());
    if reason.is_empty() || reason.len() > 200 {
        return Err(AppError::invalid("reason", "1 to 200 characters").into());
    }
    let a = state.db.find_account(&id).await?;
    // In range by the checks above: at most 1e15 milli-credits.
    let grant = state.db.grant_credits(&a.id, amount as i64, expires_at, &reason).await?;
    let body =
        json!({"object": "credit_grant", "id": grant, "account": account_json(&state.db, &a).await?, "credits": amount / 1000.0, "expires_at": expires_at.map(|t| t / 1000)});
    Ok((StatusCode::CREATED, Json(body)))
}

/// The body of `POST /v1/admin/accounts/{id}/keys` (optional).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// A label; default "default".
    pub name: Option<String>,
}

/// `POST /v1/admin/accounts/{id}/keys`: 201 with the new key, shown this once.
#[utoipa::path(post, path = "/v1/admin/accounts/{id}/keys", tag = "admin", params(("id" = String, Path, description = "Account id or name")), security(("bearer" = [])), responses((status = 201, description = "The new key, shown once"), (status = 403, description = "Not an admin key"), (status = 404, description = "Unknown account")))]
pub async fn create_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), OpenAiError> {
    admin(&state, &headers).await?;
    let req: CreateKey = body_or_default(body)?;
    let name = req.name.unwrap_or_else(|| "default".into());
    if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(AppError::invalid("name", format!("1 to {MAX_NAME} printable characters")).into());
    }
    let a = state.db.find_account(&id).await?;
    let k = state.db.create_key(&a.id, &name).await?;
    let r = &k.record;
    let body = json!({"object": "api_key", "id": r.id, "account_id": r.account_id, "name": r.name, "hint": r.hint, "created": r.created_at / 1000, "key": k.secret.expose()});
    Ok((StatusCode::CREATED, Json(body)))
}

fn plan_json(name: &str, p: &imagegate_core::Plan) -> Value {
    json!({"name": name, "concurrency": p.concurrency, "rate_per_minute": p.rate_per_minute, "free_credits": credits(p.free_grant), "free_credits_days": p.free_grant_days})
}

/// `GET /v1/admin/plans`: the configured plans.
#[utoipa::path(get, path = "/v1/admin/plans", tag = "admin", security(("bearer" = [])), responses((status = 200, description = "Plans and their limits"), (status = 403, description = "Not an admin key")))]
pub async fn list_plans(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, OpenAiError> {
    admin(&state, &headers).await?;
    let data: Vec<Value> = state.plans.iter().map(|(n, p)| plan_json(n, p)).collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_and_never_look_like_ids() {
        for ok in ["alice", "team-7", "a.b@c_d"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "has space", "acct_0192", "x/y", &"n".repeat(65)] {
            assert_eq!(check_name(bad).unwrap_err().field.as_deref(), Some("name"), "{bad}");
        }
    }
}
