//! Multi-head scaled dot-product attention, `softmax(q·kᵀ·scale)·v`, on
//! `[batch, tokens, heads × head_dim]` tensors as the linear projections
//! make them (no head transposes).
//!
//! On a CPU with f32 tensors it runs a fused kernel: each task takes one
//! head of one item and a block of 128 query rows, computes that block's scores
//! into a buffer that fits in cache, takes the softmax there with a
//! vectorised exp and multiplies by `v`. candle's path materialises the
//! whole `[batch × heads, q, k]` score tensor twice (matmul output, softmax
//! output): 1 GiB each for SD 1.5 at 512², freshly faulted pages every call,
//! and its softmax calls the scalar `expf` per element. The per-step
//! benchmark in docs/benchmarks.md measures the difference. Elsewhere (CUDA,
//! Metal, half precision) it is candle's matmul and softmax: on a GPU in
//! the weights' dtype (cuBLAS accumulates f16 and bf16 products in f32 and
//! candle's softmax kernel sums in f32; `q` is scaled first so the scores
//! stay far inside f16's range), on the CPU in f32.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::simd;

/// Query rows per task: 128 rows × 4096 keys of f32 scores is 2 MiB.
/// Measured on SD 1.5 at 512² (unet_step): 64 rows 6.9 s a step (gemm
/// repacks k and v for every block), 128 rows 6.5 s, 256 rows 6.8 s.
const BLOCK_ROWS: usize = 128;

/// Attention over `heads` heads; `q` is `[B, Sq, H·D]`, `k` and `v` are
/// `[B, Sk, H·D]`; the result is `[B, Sq, H·D]` in `q`'s dtype.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, scale: f64) -> Result<Tensor> {
    let (b, _, width) = q.dims3()?;
    let (kb, sk, kw) = k.dims3()?;
    if kb != b || kw != width || v.dims3()? != (kb, sk, kw) || width % heads != 0 {
        bail!("attention: q {:?}, k {:?}, v {:?} with {heads} heads", q.shape(), k.shape(), v.shape());
    }
    if q.device().is_cpu() && q.dtype() == DType::F32 {
        let op = Fused { heads, scale: scale as f32 };
        return q.contiguous()?.apply_op3_no_bwd(&k.contiguous()?, &v.contiguous()?, &op);
    }
    unfused(q, k, v, heads, scale)
}

/// candle's formulation, for devices and dtypes the fused kernel skips.
///
/// Upcasting to f32 on a GPU, as this did at first, made half-precision
/// models run their attention, the largest products at high resolution, in
/// f32: unet_step on an H200 measured SDXL at 1024² f16 only 1.8× faster
/// than f32 (docs/benchmarks.md).
fn unfused(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, scale: f64) -> Result<Tensor> {
    let compute = if q.device().is_cpu() { DType::F32 } else { q.dtype() };
    let split = |t: &Tensor| -> Result<Tensor> {
        let (b, s, w) = t.dims3()?;
        t.reshape((b, s, heads, w / heads))?.transpose(1, 2)?.contiguous()?.to_dtype(compute)
    };
    let (b, sq, width) = q.dims3()?;
    let scores = (split(q)? * scale)?.matmul(&split(k)?.t()?)?;
    let probs = candle_nn::ops::softmax_last_dim(&scores)?;
    probs.matmul(&split(v)?)?.to_dtype(q.dtype())?.transpose(1, 2)?.reshape((b, sq, width))
}

struct Fused {
    heads: usize,
    scale: f32,
}

impl CustomOp3 for Fused {
    fn name(&self) -> &'static str {
        "fused-attention"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let (q, k, v) = (simd::f32_data(s1, l1, name)?, simd::f32_data(s2, l2, name)?, simd::f32_data(s3, l3, name)?);
        let (b, sq, width) = l1.shape().dims3()?;
        let sk = l2.shape().dims3()?.1;
        let (heads, d) = (self.heads, width / self.heads);
        let mut out = vec![0f32; b * sq * width];
        let blocks = sq.div_ceil(BLOCK_ROWS);
        // Addresses as integers so the tasks can share them; each task
        // writes only its own rows of its own head.
        let (qp, kp, vp, op) = (q.as_ptr() as usize, k.as_ptr() as usize, v.as_ptr() as usize, out.as_mut_ptr() as usize);
        (0..b * heads * blocks).into_par_iter().for_each_init(
            || vec![0f32; BLOCK_ROWS * sk],
            |scores, task| {
                let (item, head, block) = (task / (heads * blocks), (task / blocks) % heads, task % blocks);
                let row0 = block * BLOCK_ROWS;
                let rows = BLOCK_ROWS.min(sq - row0);
                let offset_q = (item * sq + row0) * width + head * d;
                let offset_kv = item * sk * width + head * d;
                // SAFETY: the offsets stay inside the contiguous inputs
                // (checked shapes) and this task's output rows.
                unsafe {
                    let q = (qp as *const f32).add(offset_q);
                    let k = (kp as *const f32).add(offset_kv);
                    let v = (vp as *const f32).add(offset_kv);
                    let o = (op as *mut f32).add(offset_q);
                    block_attention(q, k, v, o, rows, sk, d, width, self.scale, scores);
                }
            },
        );
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// One block: `rows` query rows of one head against all `sk` keys. `q`,
/// `k`, `v` and `o` point at the head's first column; rows are `stride`
/// apart.
///
/// # Safety
/// The pointers must cover `rows` (q, o) and `sk` (k, v) rows of `stride`
/// floats from the given column, with `d` columns each.
#[allow(clippy::too_many_arguments)]
unsafe fn block_attention(q: *const f32, k: *const f32, v: *const f32, o: *mut f32, rows: usize, sk: usize, d: usize, stride: usize, scale: f32, scores: &mut [f32]) {
    let stride = stride as isize;
    // scores[rows × sk] = scale · q[rows × d] · kᵀ[d × sk]
    unsafe {
        gemm::gemm(rows, sk, d, scores.as_mut_ptr(), 1, sk as isize, false, q, 1, stride, k, stride, 1, 0.0, scale, false, false, false, gemm::Parallelism::None);
    }
    let mut sums = [0f32; BLOCK_ROWS];
    for (row, sum) in scores.chunks_exact_mut(sk).take(rows).zip(sums.iter_mut()) {
        *sum = simd::exp_shifted_in_place(row);
    }
    // o[rows × d] = p[rows × sk] · v[sk × d], then each row over its sum.
    unsafe {
        gemm::gemm(rows, d, sk, o, 1, stride, false, scores.as_ptr(), 1, sk as isize, v, 1, stride, 0.0, 1.0, false, false, false, gemm::Parallelism::None);
        for (r, sum) in sums.iter().take(rows).enumerate() {
            let row = std::slice::from_raw_parts_mut(o.offset(r as isize * stride), d);
            let inv = 1.0 / sum;
            row.iter_mut().for_each(|x| *x *= inv);
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    /// The fused kernel against candle's formulation, on shapes that leave a
    /// partial block and keys that are not a multiple of the vector width.
    #[test]
    fn fused_matches_unfused() {
        let dev = Device::Cpu;
        for (b, sq, sk, heads, d) in [(2, 130, 77, 8, 5), (1, 64, 64, 1, 16), (2, 3, 200, 2, 40)] {
            let q = (Tensor::randn(0f32, 1.0, (b, sq, heads * d), &dev).unwrap() * 3.0).unwrap();
            let k = Tensor::randn(0f32, 1.0, (b, sk, heads * d), &dev).unwrap();
            let v = Tensor::randn(0f32, 1.0, (b, sk, heads * d), &dev).unwrap();
            let scale = 1.0 / (d as f64).sqrt();
            let fused = attention(&q, &k, &v, heads, scale).unwrap();
            let reference = unfused(&q, &k, &v, heads, scale).unwrap();
            let err = simd::max_abs_diff(&fused, &reference);
            assert!(err < 1e-5, "{b}×{sq}×{sk}, {heads} heads of {d}: max error {err}");
        }
    }

    #[test]
    fn mismatched_shapes_are_an_error() {
        let dev = Device::Cpu;
        let q = Tensor::zeros((1, 4, 8), DType::F32, &dev).unwrap();
        let k = Tensor::zeros((1, 5, 6), DType::F32, &dev).unwrap();
        assert!(attention(&q, &k, &k, 2, 1.0).is_err());
    }
}
