//! OpenAI Images and SiliconFlow-style generations, and the models list.

mod edits;
mod generations;
mod models;
