//! Network modules the pipelines share that candle's library lacks or gets
//! wrong for our needs (see `docs/engine-notes.md`), and the config readers
//! that fill candle's public config structs from diffusers' `config.json`s.

pub mod attention;
pub mod clip;
pub mod configs;
pub mod conv;
pub mod mmdit;
pub mod resnet;
pub mod simd;
pub mod transformer2d;
pub mod unet;
pub mod unet_blocks;
pub mod vae_encoder;
