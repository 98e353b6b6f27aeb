//! OpenAI Images and SiliconFlow-style generations, and the models list.

mod generations;
mod models;
