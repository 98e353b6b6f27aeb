-- Credits: grants, holds on them for tasks, and an append-only ledger.
-- Money is integer milli-credits (1 credit = 1000); times are unix ms.
-- `credit_grants.remaining` and `credit_holds` are the balance kept beside
-- the ledger, always changed in the same transaction as the entries that
-- explain them, so either can be re-derived from the other.

CREATE TABLE credit_grants (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    amount BIGINT NOT NULL CHECK (amount > 0),
    remaining BIGINT NOT NULL CHECK (remaining >= 0),
    expires_at BIGINT,                      -- NULL: never (paid credits)
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX credit_grants_account ON credit_grants (account_id, expires_at);
CREATE INDEX credit_grants_expiry ON credit_grants (expires_at) WHERE remaining > 0;

-- One hold per task: placed at admission, then captured (partly, the rest
-- released) on success or released on failure, exactly once.
CREATE TABLE credit_holds (
    task_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    amount BIGINT NOT NULL CHECK (amount >= 0),
    captured BIGINT NOT NULL DEFAULT 0,
    state TEXT NOT NULL CHECK (state IN ('held', 'captured', 'released')),
    created_at BIGINT NOT NULL,
    settled_at BIGINT
);
CREATE INDEX credit_holds_account ON credit_holds (account_id, state);

-- Which grants a hold drew from, so a release returns credits where they came from.
CREATE TABLE credit_hold_allocations (
    task_id TEXT NOT NULL REFERENCES credit_holds(task_id),
    grant_id TEXT NOT NULL REFERENCES credit_grants(id),
    amount BIGINT NOT NULL CHECK (amount > 0),
    captured BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (task_id, grant_id)
);

-- Append-only. `available_delta` sums to the grants' remaining credits and
-- `held_delta` to the open holds, per account and per grant.
CREATE TABLE ledger_entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('grant', 'hold', 'capture', 'release', 'expire')),
    grant_id TEXT,
    task_id TEXT,
    available_delta BIGINT NOT NULL,
    held_delta BIGINT NOT NULL,
    reason TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX ledger_entries_account ON ledger_entries (account_id, seq);
