//! Seeded Gaussian noise: one `StdRng` per batch item, so an image's noise
//! depends only on its own seed (batching cannot change it) and candle's
//! unseedable CPU RNG is never used.

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};

use crate::error::Result;

/// Independent seeded normal streams, one per batch item.
pub struct NoiseSource {
    rngs: Vec<StdRng>,
}

impl NoiseSource {
    /// One stream per seed, in batch order.
    pub fn new(seeds: &[u64]) -> Self {
        Self { rngs: seeds.iter().map(|&s| StdRng::seed_from_u64(s)).collect() }
    }

    /// Batch size.
    pub fn len(&self) -> usize {
        self.rngs.len()
    }

    /// Whether there are no streams.
    pub fn is_empty(&self) -> bool {
        self.rngs.is_empty()
    }

    /// Standard normal noise `[B, ..item_shape]` (f32), item `b` drawn from stream `b`.
    pub fn randn(&mut self, item_shape: &[usize], device: &Device) -> Result<Tensor> {
        let per_item: usize = item_shape.iter().product();
        let mut data = Vec::with_capacity(per_item * self.rngs.len());
        for rng in &mut self.rngs {
            data.extend((0..per_item).map(|_| -> f32 { StandardNormal.sample(rng) }));
        }
        let mut shape = vec![self.rngs.len()];
        shape.extend_from_slice(item_shape);
        Ok(Tensor::from_vec(data, shape, device)?)
    }

    /// Noise shaped like `like` (`[B, ...]`).
    pub fn randn_like(&mut self, like: &Tensor) -> Result<Tensor> {
        let dims = like.dims();
        self.randn(&dims[1..], like.device())
    }
}
