//! API tests against the real server (`TestApp`), through public endpoints
//! only. Folders mirror the routes.

mod billing;
mod files;
mod health;
mod limits;
mod openai;
mod tasks;
