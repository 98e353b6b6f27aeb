//! Integration tests of imagegate-upstream: contract tests of every adapter
//! against a local double of its provider, and routing tests (failover,
//! circuit breaker, Retry-After, concurrency). Only 127.0.0.1 is contacted.

mod contract;
mod routing;
mod support;

// the provider doubles, shared with the API and binary tests
use imagegate_testkit::doubles;
