//! placeholder until the upstream issue lands; see crates/upstream/Cargo.toml
