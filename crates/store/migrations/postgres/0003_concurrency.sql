-- Per-account concurrency: each task carries its account's plan limit at
-- submission, so claims can skip accounts already at their limit.
ALTER TABLE tasks ADD COLUMN concurrency_limit BIGINT NOT NULL DEFAULT 1000000;
CREATE INDEX tasks_account_state ON tasks (account_id, state);
