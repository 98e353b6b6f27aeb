//! Tests that drive the `imagegate` binary as a child process.

mod channels;
mod cli;
mod config;
mod conformance;
mod crash;
mod crash_ledger;
mod demo;
mod generate;
mod pull;
mod server;
mod sigterm;
