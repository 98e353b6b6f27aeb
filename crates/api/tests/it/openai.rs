mod generations;
mod models;
