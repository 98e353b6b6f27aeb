//! placeholder until the engine issue lands; see crates/engine/Cargo.toml
