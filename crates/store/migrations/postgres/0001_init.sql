-- Accounts, API keys, tasks (the queue), idempotency records, settings.
-- Times are unix milliseconds; money is integer milli-credits.
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    plan TEXT NOT NULL DEFAULT 'free',
    is_admin BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    key_hint TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    expires_at BIGINT,
    allowed_models TEXT
);

CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    key_id TEXT,
    model TEXT NOT NULL,
    batch_key TEXT NOT NULL,
    state TEXT NOT NULL,
    spec TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    lease_owner TEXT,
    lease_expires_at BIGINT,
    progress_step BIGINT NOT NULL DEFAULT 0,
    progress_total BIGINT NOT NULL DEFAULT 0,
    result TEXT,
    error_code TEXT,
    error_message TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    finished_at BIGINT,
    purged_at BIGINT
);
CREATE INDEX tasks_queued ON tasks (state, created_at);
CREATE INDEX tasks_lease ON tasks (state, lease_expires_at);
CREATE INDEX tasks_finished ON tasks (finished_at) WHERE purged_at IS NULL;
CREATE INDEX tasks_account ON tasks (account_id, created_at);

CREATE TABLE idempotency (
    account_id TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    body_hash TEXT NOT NULL,
    task_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, idem_key)
);

CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
