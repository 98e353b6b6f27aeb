//! The upstream relay through imagegate's own HTTP API: a `TestApp` whose
//! only backend is an `UpstreamBackend` with channels to the local provider
//! doubles (`imagegate_testkit::doubles`). Seed 002's bodies for every
//! family succeed end to end and our signed URL serves the double's image
//! byte for byte; failover with a metered account charges exactly once;
//! when every channel fails nothing is charged; `[models.routing]` chooses
//! between a local backend and the channels; a synchronous relayed request
//! starts at once instead of waiting for a worker loop; a relay halted after
//! the provider accepted its job resumes that job on its next attempt; an
//! edit's mask reaches OpenAI, and a channel that cannot take it is refused.

mod direct;
mod edits;
mod failover;
mod harness;
mod resume;
mod routing;
mod seeds;
