//! One module per client dialect. A dialect parses its wire shape, converts
//! it to a `TaskSpec`, and renders tasks and errors in its own shape; it
//! holds no other logic.

pub mod bfl;
pub mod openai;
pub mod predictions;
pub mod publish;
pub mod shared;
pub mod stability;
pub mod tasks;
