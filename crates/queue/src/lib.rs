//! imagegate-queue: executing persisted tasks.
//!
//! Workers claim tasks from the store under a lease (renewed by heartbeats),
//! run compatible tasks as one batch on a [`Backend`](imagegate_core::Backend),
//! put the images in object storage and complete the task; waiting requests
//! learn of it through the [`CompletionHub`]. Sweepers requeue tasks whose
//! worker died and purge results past their retention. A synchronous
//! request's relayed task may skip the claim and run at once (`direct`).
//! Shutting down drains runs in flight and gives back the rest (`drain`).

pub mod config;
mod direct;
mod drain;
pub mod hub;
pub mod sweeper;
pub mod worker;

pub use config::QueueConfig;
pub use hub::CompletionHub;
pub use worker::Queue;
