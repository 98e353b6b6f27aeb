-- What an upstream provider accepted (and bills) for a running task, as the
-- backend recorded it, so that a later attempt (after a crash or a drained
-- shutdown) picks the provider's job up again instead of submitting anew.
ALTER TABLE tasks ADD COLUMN provider_job TEXT;
