//! imagegate-api: the HTTP layer.
//!
//! Each dialect under [`dialects`] only parses its wire shape into a
//! [`TaskSpec`](imagegate_core::TaskSpec), hands it to [`admission`], and
//! renders the finished task (or an [`AppError`](imagegate_core::AppError))
//! in its own shape. Auth, body limits, request ids and the route table are
//! shared.

pub mod admin;
pub mod admission;
pub mod auth;
pub mod auth_cache;
pub mod body;
pub mod config;
pub mod depth;
pub mod dialects;
pub mod enhance;
pub mod files;
pub mod health;
pub mod limits;
pub mod openapi;
pub mod render;
pub mod routes;
pub mod server;
pub mod state;
pub mod uploads;
pub mod usage;

pub use config::ApiConfig;
pub use routes::router;
pub use state::AppState;
