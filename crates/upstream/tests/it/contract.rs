//! One contract test module per provider adapter.

mod bfl;
mod compatible;
mod dashscope;
mod google;
mod ideogram;
mod openai;
mod qianfan;
mod stability;
mod volcengine;
