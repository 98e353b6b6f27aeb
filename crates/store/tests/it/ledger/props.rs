//! Property test of the ledger on SQLite: random sequences of grants, holds,
//! captures, releases, expiry sweeps and clock advances over two accounts,
//! checked after every step against a plain in-memory model and the ledger's
//! own invariants — balances never negative and equal to the model, entries
//! summing to the kept balance, every hold settled at most once (never both
//! captured and released), expired credits never drawn on.
//!
//! Deterministic: a fixed ChaCha seed and 128 cases of up to 40 steps
//! (`PROPTEST_CASES` raises the count); a few seconds on SQLite.

use std::collections::BTreeMap;

use imagegate_store::{Balance, Db, EntryKind, Expiring, HoldState, InsufficientCredits, Settlement, StoreError};
use imagegate_testkit::ScratchDb;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use super::{T0, assert_ledger_balances};

const SEED: [u8; 32] = *b"imagegate-ledger-property-seed-1";

#[derive(Debug, Clone)]
enum Op {
    Grant { acct: usize, amount: i64, expires_in: Option<i64> },
    Hold { acct: usize, amount: i64 },
    Capture { pick: usize, actual: i64 },
    Release { pick: usize },
    Expire,
    Advance(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..2usize, 1..40_000i64, prop::option::of(0..20_000i64)).prop_map(|(acct, amount, expires_in)| Op::Grant { acct, amount, expires_in }),
        4 => (0..2usize, 0..30_000i64).prop_map(|(acct, amount)| Op::Hold { acct, amount }),
        2 => (any::<usize>(), 0..35_000i64).prop_map(|(pick, actual)| Op::Capture { pick, actual }),
        2 => any::<usize>().prop_map(|pick| Op::Release { pick }),
        1 => Just(Op::Expire),
        2 => (1..8_000i64).prop_map(Op::Advance),
    ]
}

/// Grants with the same expiry are interchangeable, so the model keeps one
/// bucket per expiry, ordered soonest first and never-expiring last.
type Key = (bool, i64);

fn key(expires_at: Option<i64>) -> Key {
    (expires_at.is_none(), expires_at.unwrap_or(0))
}

fn live(k: Key, now: i64) -> bool {
    k.0 || k.1 > now
}

/// A hold as the model sees it.
struct ModelHold {
    acct: usize,
    task: String,
    amount: i64,
    /// Bucket and amount drawn, soonest expiry first.
    allocs: Vec<(Key, i64)>,
    settled: bool,
}

#[derive(Default)]
struct Model {
    buckets: [BTreeMap<Key, i64>; 2],
    holds: Vec<ModelHold>,
}

impl Model {
    fn balance(&self, acct: usize, now: i64) -> Balance {
        let b = &self.buckets[acct];
        let available = b.iter().filter(|(k, _)| live(**k, now)).map(|(_, v)| v).sum();
        let held = self.holds.iter().filter(|h| h.acct == acct && !h.settled).map(|h| h.amount).sum();
        let expiring_soonest = b.iter().find(|(k, v)| !k.0 && live(**k, now) && **v > 0).map(|(k, v)| Expiring { amount: *v, expires_at: k.1 });
        Balance { available, held, expiring_soonest }
    }
}

async fn run_case(ops: Vec<Op>) {
    let scratch = ScratchDb::sqlite().await;
    let db = &scratch.db;
    let accts = [db.create_account("p0", "free", false).await.unwrap().id, db.create_account("p1", "free", false).await.unwrap().id];
    let mut m = Model::default();
    let mut now = T0;
    for (step, op) in ops.into_iter().enumerate() {
        match op.clone() {
            Op::Grant { acct, amount, expires_in } => {
                let at = expires_in.map(|d| now + d);
                db.grant_credits(&accts[acct], amount, at, "prop").await.unwrap();
                *m.buckets[acct].entry(key(at)).or_default() += amount;
            }
            Op::Hold { acct, amount } => {
                let task = format!("task-{step}");
                let want = m.balance(acct, now).available;
                let mut tx = db.begin().await.unwrap();
                let got = db.place_hold(&mut tx, &accts[acct], &task, amount, now).await;
                tx.commit().await.unwrap();
                if want < amount {
                    assert!(matches!(got, Err(StoreError::InsufficientCredits(InsufficientCredits { balance, price })) if balance == want && price == amount), "{got:?}");
                    continue;
                }
                got.unwrap();
                let mut left = amount;
                let mut allocs = Vec::new();
                for (k, v) in m.buckets[acct].iter_mut().filter(|(k, v)| live(**k, now) && **v > 0) {
                    let take = (*v).min(left);
                    *v -= take;
                    left -= take;
                    allocs.push((*k, take));
                }
                m.holds.push(ModelHold { acct, task: task.clone(), amount, allocs, settled: false });
                // Expired credits never drawn on: every grant this hold used was live.
                let grants = db.grants(&accts[acct]).await.unwrap();
                for e in db.ledger_entries(&accts[acct]).await.unwrap().iter().filter(|e| e.task_id.as_deref() == Some(&task)) {
                    let g = grants.iter().find(|g| Some(&g.0) == e.grant_id.as_ref()).unwrap();
                    assert!(live(key(g.2), now), "hold {task} drew on expired grant {g:?}");
                }
            }
            Op::Capture { pick, actual } => settle(db, &mut m, pick, Some(actual)).await,
            Op::Release { pick } => settle(db, &mut m, pick, None).await,
            Op::Expire => {
                let mut want = 0;
                for b in &mut m.buckets {
                    for (_, v) in b.iter_mut().filter(|(k, _)| !live(**k, now)) {
                        want += std::mem::take(v);
                    }
                }
                assert_eq!(db.expire_grants(now).await.unwrap(), want);
            }
            Op::Advance(ms) => now += ms,
        }
        check(db, &accts, &m, now, &op).await;
    }
}

/// Captures `actual` (or releases, for `None`) a hold picked from those placed, and checks the outcome.
async fn settle(db: &Db, m: &mut Model, pick: usize, actual: Option<i64>) {
    if m.holds.is_empty() {
        return;
    }
    let i = pick % m.holds.len();
    let task = m.holds[i].task.clone();
    let mut tx = db.begin().await.unwrap();
    let got = match actual {
        Some(a) => db.capture_hold(&mut tx, &task, a).await,
        None => db.release_hold(&mut tx, &task).await,
    };
    tx.commit().await.unwrap();
    let h = &mut m.holds[i];
    if h.settled {
        assert_eq!(got.unwrap(), None, "settling {task} twice changed something");
        return;
    }
    h.settled = true;
    let captured = actual.unwrap_or(0).min(h.amount);
    assert_eq!(got.unwrap(), Some(Settlement { captured, released: h.amount - captured }));
    let mut spend = captured;
    for (k, a) in &h.allocs {
        let s = (*a).min(spend);
        spend -= s;
        *m.buckets[h.acct].entry(*k).or_default() += a - s;
    }
}

async fn check(db: &Db, accts: &[String; 2], m: &Model, now: i64, op: &Op) {
    for (i, acct) in accts.iter().enumerate() {
        let got = db.balance(acct, now).await.unwrap();
        assert_eq!(got, m.balance(i, now), "account {i} after {op:?}");
        assert!(got.available >= 0 && got.held >= 0);
        let (sum_available, sum_held) = assert_ledger_balances(db, acct).await;
        assert_eq!(sum_available, m.buckets[i].values().sum::<i64>(), "ledger vs model after {op:?}");
        assert_eq!(sum_held, got.held);
    }
    // Each settled hold was settled once: its capture and release entries
    // add up to exactly what was held, and a released hold captured nothing.
    for ModelHold { acct, task, amount, settled, .. } in &m.holds {
        let entries = db.ledger_entries(&accts[*acct]).await.unwrap();
        let mine: Vec<_> = entries.iter().filter(|e| e.task_id.as_deref() == Some(task.as_str())).collect();
        let settled_sum: i64 = mine.iter().filter(|e| matches!(e.kind, EntryKind::Capture | EntryKind::Release)).map(|e| -e.held_delta).sum();
        let hold = db.hold(task).await.unwrap().unwrap();
        assert_eq!(settled_sum, if *settled { *amount } else { 0 });
        assert_eq!(hold.state == HoldState::Held, !settled);
        if hold.state == HoldState::Released {
            assert!(mine.iter().all(|e| e.kind != EntryKind::Capture), "hold {task} both captured and released");
        }
    }
}

#[test]
fn random_ledger_histories_keep_every_invariant() {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(128);
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &SEED));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runner
        .run(&prop::collection::vec(op(), 1..40), |ops| {
            rt.block_on(run_case(ops));
            Ok(())
        })
        .unwrap();
}
