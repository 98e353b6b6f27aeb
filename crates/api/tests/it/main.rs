//! API tests against the real server (`TestApp`), through public endpoints
//! only. Folders mirror the routes.

mod admin;
mod billing;
mod files;
mod health;
mod openai;
mod tasks;
mod usage;
