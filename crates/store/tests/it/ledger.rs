//! Ledger contract tests: grants, holds, captures, releases and expiry, on
//! their own and through the task queue's transactions. After every
//! scenario the ledger entries must sum to the balance.

mod props;
mod tasks;

use imagegate_core::{AppError, ErrorCode};
use imagegate_store::{Db, EntryKind, Expiring, HoldState, InsufficientCredits, Settlement, StoreError};
use imagegate_testkit::ScratchDb;

/// A clock far from zero, so "in the past" stays positive.
pub(crate) const T0: i64 = 1_700_000_000_000;
/// A day in ms.
pub(crate) const DAY: i64 = 24 * 60 * 60 * 1000;

/// Re-derives the balance from the ledger and checks it against the kept
/// balance: per grant, `available_delta` sums to what remains; per account,
/// `held_delta` sums to what is on hold. Returns (Σ available, Σ held).
pub(crate) async fn assert_ledger_balances(db: &Db, account: &str) -> (i64, i64) {
    let entries = db.ledger_entries(account).await.unwrap();
    let grants = db.grants(account).await.unwrap();
    for (id, remaining, _) in &grants {
        let sum: i64 = entries.iter().filter(|e| e.grant_id.as_deref() == Some(id)).map(|e| e.available_delta).sum();
        assert_eq!(sum, *remaining, "grant {id}: ledger says {sum}, grant row says {remaining}");
        assert!(*remaining >= 0);
    }
    let available: i64 = entries.iter().map(|e| e.available_delta).sum();
    let held: i64 = entries.iter().map(|e| e.held_delta).sum();
    assert_eq!(available, grants.iter().map(|g| g.1).sum::<i64>());
    // Far in the past nothing has expired yet, so every remaining credit counts.
    let bal = db.balance(account, 0).await.unwrap();
    assert_eq!(bal.held, held, "held credits match the ledger");
    assert_eq!(bal.available, available, "available credits match the ledger");
    (available, held)
}

async fn hold(db: &Db, account: &str, task: &str, amount: i64, now: i64) -> Result<(), StoreError> {
    let mut tx = db.begin().await.unwrap();
    db.place_hold(&mut tx, account, task, amount, now).await?;
    tx.commit().await.unwrap();
    Ok(())
}

async fn capture(db: &Db, task: &str, actual: i64) -> Option<Settlement> {
    let mut tx = db.begin().await.unwrap();
    let s = db.capture_hold(&mut tx, task, actual).await.unwrap();
    tx.commit().await.unwrap();
    s
}

async fn release(db: &Db, task: &str) -> Option<Settlement> {
    let mut tx = db.begin().await.unwrap();
    let s = db.release_hold(&mut tx, task).await.unwrap();
    tx.commit().await.unwrap();
    s
}

#[tokio::test]
async fn grants_add_up_and_only_dated_ones_expire() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let a = db.create_account("a", "free", false).await.unwrap();
        db.grant_credits(&a.id, 100_000, Some(T0 + 30 * DAY), "free plan").await.unwrap();
        db.grant_credits(&a.id, 5_000, None, "purchase").await.unwrap();
        db.grant_credits(&a.id, 2_000, Some(T0 + DAY), "promo").await.unwrap();
        let bal = db.balance(&a.id, T0).await.unwrap();
        assert_eq!(bal.available, 107_000);
        assert_eq!(bal.held, 0);
        assert_eq!(bal.expiring_soonest, Some(Expiring { amount: 2_000, expires_at: T0 + DAY }));
        let later = db.balance(&a.id, T0 + 31 * DAY).await.unwrap();
        assert_eq!((later.available, later.expiring_soonest), (5_000, None), "paid credits never expire");
        assert!(matches!(db.grant_credits(&a.id, 0, None, "nothing").await, Err(StoreError::Config(_))));
        assert_ledger_balances(db, &a.id).await;
    }
}

#[tokio::test]
async fn holds_draw_on_the_soonest_expiring_credits_first() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let a = db.create_account("a", "free", false).await.unwrap();
        let paid = db.grant_credits(&a.id, 10_000, None, "purchase").await.unwrap();
        let late = db.grant_credits(&a.id, 3_000, Some(T0 + 20 * DAY), "free").await.unwrap();
        let soon = db.grant_credits(&a.id, 2_000, Some(T0 + DAY), "promo").await.unwrap();
        hold(db, &a.id, "t1", 6_000, T0).await.unwrap();
        let remaining: Vec<_> = db.grants(&a.id).await.unwrap();
        let left = |id: &str| remaining.iter().find(|g| g.0 == id).unwrap().1;
        assert_eq!((left(&soon), left(&late), left(&paid)), (0, 0, 9_000));
        let bal = db.balance(&a.id, T0).await.unwrap();
        assert_eq!((bal.available, bal.held), (9_000, 6_000));
        assert_ledger_balances(db, &a.id).await;
    }
}

#[tokio::test]
async fn a_hold_beyond_the_balance_fails_with_balance_and_price_and_writes_nothing() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let a = db.create_account("a", "free", false).await.unwrap();
        db.grant_credits(&a.id, 3_000, None, "purchase").await.unwrap();
        let before = db.ledger_entries(&a.id).await.unwrap();
        let err = hold(db, &a.id, "t1", 11_000, T0).await.unwrap_err();
        let StoreError::InsufficientCredits(e) = err else { panic!("wrong error {err:?}") };
        assert_eq!(e, InsufficientCredits { balance: 3_000, price: 11_000 });
        let app = AppError::from(StoreError::InsufficientCredits(e));
        assert_eq!(app.code, ErrorCode::InsufficientCredits);
        assert_eq!(app.code.status(), 402);
        assert!(app.message.contains("balance 3.000 credits") && app.message.contains("price 11.000 credits"), "{}", app.message);
        assert_eq!(db.ledger_entries(&a.id).await.unwrap(), before);
        assert!(db.hold("t1").await.unwrap().is_none());
        hold(db, &a.id, "t2", 3_000, T0).await.unwrap();
        assert_eq!(db.balance(&a.id, T0).await.unwrap().available, 0, "the whole balance can be held");
    }
}

#[tokio::test]
async fn capture_spends_up_to_the_hold_releases_the_rest_and_happens_once() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let a = db.create_account("a", "free", false).await.unwrap();
        db.grant_credits(&a.id, 20_000, None, "purchase").await.unwrap();
        hold(db, &a.id, "t1", 11_000, T0).await.unwrap();
        assert_eq!(capture(db, "t1", 4_000).await, Some(Settlement { captured: 4_000, released: 7_000 }));
        assert_eq!(capture(db, "t1", 11_000).await, None, "a second capture does nothing");
        assert_eq!(release(db, "t1").await, None, "nor does a release after it");
        let h = db.hold("t1").await.unwrap().unwrap();
        assert_eq!((h.state, h.amount, h.captured), (HoldState::Captured, 11_000, 4_000));
        hold(db, &a.id, "t2", 5_000, T0).await.unwrap();
        assert_eq!(capture(db, "t2", 9_999).await, Some(Settlement { captured: 5_000, released: 0 }), "never more than held");
        let bal = db.balance(&a.id, T0).await.unwrap();
        assert_eq!((bal.available, bal.held), (11_000, 0));
        assert_eq!(assert_ledger_balances(db, &a.id).await, (11_000, 0));
        assert_eq!(capture(db, "no-such-task", 1).await, None);
    }
}

#[tokio::test]
async fn release_gives_everything_back_once() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let a = db.create_account("a", "free", false).await.unwrap();
        db.grant_credits(&a.id, 8_000, None, "purchase").await.unwrap();
        db.grant_credits(&a.id, 4_000, Some(T0 + DAY), "free").await.unwrap();
        hold(db, &a.id, "t1", 10_000, T0).await.unwrap();
        assert_eq!(release(db, "t1").await, Some(Settlement { captured: 0, released: 10_000 }));
        assert_eq!(release(db, "t1").await, None);
        assert_eq!(capture(db, "t1", 10_000).await, None, "a capture after a release does nothing");
        assert_eq!(db.hold("t1").await.unwrap().unwrap().state, HoldState::Released);
        let bal = db.balance(&a.id, T0).await.unwrap();
        assert_eq!((bal.available, bal.held), (12_000, 0));
        assert_eq!(bal.expiring_soonest, Some(Expiring { amount: 4_000, expires_at: T0 + DAY }), "credits went back where they came from");
        let kinds: Vec<_> = db.ledger_entries(&a.id).await.unwrap().iter().map(|e| e.kind).collect();
        assert_eq!(kinds.iter().filter(|k| **k == EntryKind::Release).count(), 2, "one release per grant drawn on");
        assert_ledger_balances(db, &a.id).await;
    }
}

#[tokio::test]
async fn expired_credits_cannot_be_held_and_are_written_off() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let a = db.create_account("a", "free", false).await.unwrap();
        db.grant_credits(&a.id, 100_000, Some(T0 + 30 * DAY), "free plan").await.unwrap();
        db.grant_credits(&a.id, 1_000, None, "purchase").await.unwrap();
        let after = T0 + 30 * DAY;
        assert_eq!(db.balance(&a.id, after).await.unwrap().available, 1_000, "expiry is exclusive: at expires_at the grant is gone");
        let err = hold(db, &a.id, "t1", 2_000, after).await.unwrap_err();
        assert!(matches!(err, StoreError::InsufficientCredits(InsufficientCredits { balance: 1_000, price: 2_000 })));
        assert_eq!(db.expire_grants(T0).await.unwrap(), 0, "nothing expired yet");
        assert_eq!(db.expire_grants(after).await.unwrap(), 100_000);
        assert_eq!(db.expire_grants(after).await.unwrap(), 0, "written off once");
        assert_eq!(assert_ledger_balances(db, &a.id).await, (1_000, 0));
    }
}

#[tokio::test]
async fn credits_released_into_an_expired_grant_are_written_off_at_the_next_sweep() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let a = db.create_account("a", "free", false).await.unwrap();
        db.grant_credits(&a.id, 5_000, Some(T0 + DAY), "free plan").await.unwrap();
        hold(db, &a.id, "t1", 5_000, T0).await.unwrap();
        let after = T0 + 2 * DAY;
        assert_eq!(db.expire_grants(after).await.unwrap(), 0, "held credits are not written off");
        assert_eq!(release(db, "t1").await, Some(Settlement { captured: 0, released: 5_000 }));
        assert_eq!(db.balance(&a.id, after).await.unwrap().available, 0, "back in an expired grant: not spendable");
        assert!(hold(db, &a.id, "t2", 1, after).await.is_err());
        assert_eq!(db.expire_grants(after).await.unwrap(), 5_000);
        assert_eq!(assert_ledger_balances(db, &a.id).await, (0, 0));
    }
}
