//! OpenAI Images and SiliconFlow-style generations, and the models list.

pub mod edits;
mod generations;
mod models;
