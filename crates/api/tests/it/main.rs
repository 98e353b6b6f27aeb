//! API tests against the real server (`TestApp`), through public endpoints
//! only. Folders mirror the routes.

mod admin;
mod bfl;
mod billing;
mod enhance;
mod files;
mod health;
mod limits;
mod malformed;
mod moderation;
mod openai;
mod openapi;
mod predictions;
mod publish;
mod relay;
mod shutdown;
mod stability;
mod stability_image;
mod tasks;
mod usage;
