//! 2-D convolution with candle's tensor names (`weight`, `bias`), with its
//! own CPU kernel for f32.
//!
//! candle's CPU conv gathers the whole `[B, H·W, C·k·k]` patch matrix
//! element by element (a scalar loop with bounds checks: a fifth of an
//! SD 1.5 step) into a fresh buffer (94 MB for a 640-channel 64×64 input,
//! whose pages the kernel must clear every call), multiplies, then copies
//! the result into NCHW order. Here each task takes a few output rows of one
//! item, builds their `[C·k·k, pixels]` patch rows in a buffer the worker
//! thread keeps (row copies for stride 1), and has gemm write the product
//! straight into the NCHW output; a 1×1 conv is a single product with no
//! patches. Other devices, dtypes, dilations and groups use candle's conv.

use std::cell::RefCell;

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Module, Result, Shape, Tensor, bail};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use super::simd::f32_data;

/// Patch-matrix columns (output pixels) per task, at most. gemm repacks
/// the weights for every task, so wider is cheaper until the patches leave
/// the cache: SD 1.5 at 512² (unet_step) 7.4 s a step with 256, 7.0 s with
/// 1024 (23.6 MB of patches per worker at 640 channels × 9).
const TILE_PIXELS: usize = 1024;

/// A conv layer; `padding` is the same on every side.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: usize,
    padding: usize,
}

impl Conv2d {
    /// `[out, in, k, k]` weights and `[out]` bias from `vb`.
    pub fn new(vb: VarBuilder, in_ch: usize, out_ch: usize, kernel: usize, stride: usize, padding: usize) -> Result<Self> {
        Ok(Self { weight: vb.get((out_ch, in_ch, kernel, kernel), "weight")?, bias: Some(vb.get(out_ch, "bias")?), stride, padding })
    }
}

impl Module for Conv2d {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        if xs.device().is_cpu() && xs.dtype() == DType::F32 && self.weight.dtype() == DType::F32 {
            let op = ConvOp { stride: self.stride, padding: self.padding };
            let (xs, weight) = (xs.contiguous()?, self.weight.contiguous()?);
            return match &self.bias {
                Some(bias) => xs.apply_op3_no_bwd(&weight, &bias.contiguous()?, &op),
                None => xs.apply_op2_no_bwd(&weight, &op),
            };
        }
        let out = xs.conv2d(&self.weight, self.padding, self.stride, 1, 1)?;
        match &self.bias {
            Some(bias) => out.broadcast_add(&bias.reshape((1, (), 1, 1))?),
            None => Ok(out),
        }
    }
}

struct ConvOp {
    stride: usize,
    padding: usize,
}

impl CustomOp2 for ConvOp {
    fn name(&self) -> &'static str {
        "conv2d-f32"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, w) = (f32_data(s1, l1, "conv2d")?, f32_data(s2, l2, "conv2d")?);
        self.run(x, l1.shape(), w, l2.shape(), None)
    }
}

impl CustomOp3 for ConvOp {
    fn name(&self) -> &'static str {
        "conv2d-f32-bias"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, w) = (f32_data(s1, l1, "conv2d")?, f32_data(s2, l2, "conv2d")?);
        self.run(x, l1.shape(), w, l2.shape(), Some(f32_data(s3, l3, "conv2d")?))
    }
}

/// Sizes of one conv call.
#[derive(Clone, Copy)]
struct Geometry {
    channels: usize,
    height: usize,
    width: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    out_height: usize,
    out_width: usize,
}

thread_local! {
    /// Each worker's patch buffer, kept between calls so its pages are
    /// touched once.
    static PATCHES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

impl ConvOp {
    fn run(&self, x: &[f32], x_shape: &Shape, w: &[f32], w_shape: &Shape, bias: Option<&[f32]>) -> Result<(CpuStorage, Shape)> {
        let (batch, channels, height, width) = x_shape.dims4()?;
        let (out_ch, w_in, kernel, kernel_w) = w_shape.dims4()?;
        if w_in != channels || kernel != kernel_w || bias.is_some_and(|b| b.len() != out_ch) {
            bail!("conv2d: input {x_shape:?} against weight {w_shape:?}");
        }
        let (p, s) = (self.padding, self.stride);
        if height + 2 * p < kernel || width + 2 * p < kernel || s == 0 {
            bail!("conv2d: kernel {kernel} does not fit input {height}×{width} with padding {p}");
        }
        let g = Geometry { channels, height, width, kernel, stride: s, padding: p, out_height: (height + 2 * p - kernel) / s + 1, out_width: (width + 2 * p - kernel) / s + 1 };
        let plane = g.out_height * g.out_width;
        let total = batch * out_ch * plane;
        let mut out: Vec<f32> = Vec::with_capacity(total);
        let dst = out.spare_capacity_mut().as_mut_ptr() as usize;
        let rows_per_tile = (TILE_PIXELS / g.out_width).max(1);
        let tiles = g.out_height.div_ceil(rows_per_tile);
        let depth = channels * kernel * kernel;
        let pointwise = kernel == 1 && s == 1 && p == 0;
        (0..batch * tiles).into_par_iter().for_each(|task| {
            let (item, tile) = (task / tiles, task % tiles);
            let row0 = tile * rows_per_tile;
            let rows = rows_per_tile.min(g.out_height - row0);
            let pixels = rows * g.out_width;
            let input = &x[item * channels * height * width..(item + 1) * channels * height * width];
            // SAFETY: this task writes columns [row0·Wo, row0·Wo + pixels)
            // of every output plane of its item, which no other task does;
            // every element of `out` is written by exactly one task.
            let o = unsafe { (dst as *mut f32).add(item * out_ch * plane + row0 * g.out_width) };
            if pointwise {
                // out[O × pixels] = w[O × C] · x[C × pixels], x read in place.
                unsafe { product(o, plane, w, depth, input[row0 * width..].as_ptr(), plane, out_ch, pixels, depth) };
            } else {
                PATCHES.with(|buffer| {
                    let mut buffer = buffer.borrow_mut();
                    if buffer.len() < depth * pixels {
                        buffer.resize(depth * pixels, 0.0);
                    }
                    let patches = &mut buffer[..depth * pixels];
                    fill_patches(patches, input, &g, row0, rows);
                    unsafe { product(o, plane, w, depth, patches.as_ptr(), pixels, out_ch, pixels, depth) };
                });
            }
            if let Some(bias) = bias {
                for (c, b) in bias.iter().enumerate() {
                    // SAFETY: the same columns of plane `c`, written above.
                    let row = unsafe { std::slice::from_raw_parts_mut(o.add(c * plane), pixels) };
                    row.iter_mut().for_each(|v| *v += b);
                }
            }
        });
        // SAFETY: the tasks wrote all `total` elements (see above).
        unsafe { out.set_len(total) };
        Ok((CpuStorage::F32(out), Shape::from((batch, out_ch, g.out_height, g.out_width))))
    }
}

/// `dst[m × n] = lhs[m × k] · rhs[k × n]`, row-major with the given row
/// strides, on this thread.
///
/// # Safety
/// The pointers must cover those rows; `dst` is written, not read.
#[allow(clippy::too_many_arguments)]
unsafe fn product(dst: *mut f32, dst_rs: usize, lhs: &[f32], lhs_rs: usize, rhs: *const f32, rhs_rs: usize, m: usize, n: usize, k: usize) {
    unsafe {
        gemm::gemm(m, n, k, dst, 1, dst_rs as isize, false, lhs.as_ptr(), 1, lhs_rs as isize, rhs, 1, rhs_rs as isize, 0.0, 1.0, false, false, false, gemm::Parallelism::None);
    }
}

/// Patch rows for output rows `row0 .. row0 + rows`: row `(c, ky, kx)` of
/// `patches` holds, for each of those output pixels, the input value its
/// kernel tap `(ky, kx)` sees in channel `c` (0 in the padding).
fn fill_patches(patches: &mut [f32], input: &[f32], g: &Geometry, row0: usize, rows: usize) {
    let (k, s, p) = (g.kernel, g.stride, g.padding as isize);
    let pixels = rows * g.out_width;
    for c in 0..g.channels {
        let channel = &input[c * g.height * g.width..(c + 1) * g.height * g.width];
        for ky in 0..k {
            for kx in 0..k {
                let dst_row = &mut patches[((c * k + ky) * k + kx) * pixels..][..pixels];
                for r in 0..rows {
                    let dst = &mut dst_row[r * g.out_width..(r + 1) * g.out_width];
                    let y = ((row0 + r) * s) as isize + ky as isize - p;
                    if y < 0 || y >= g.height as isize {
                        dst.fill(0.0);
                        continue;
                    }
                    let src = &channel[y as usize * g.width..(y as usize + 1) * g.width];
                    // Output column xo reads input column xo·s + kx − p.
                    let shift = kx as isize - p;
                    if s == 1 {
                        let lo = (-shift).clamp(0, g.out_width as isize) as usize;
                        let hi = ((g.width as isize - shift).clamp(0, g.out_width as isize) as usize).max(lo);
                        dst[..lo].fill(0.0);
                        dst[lo..hi].copy_from_slice(&src[(lo as isize + shift) as usize..(hi as isize + shift) as usize]);
                        dst[hi..].fill(0.0);
                    } else {
                        for (xo, d) in dst.iter_mut().enumerate() {
                            let xi = (xo * s) as isize + shift;
                            *d = if xi >= 0 && xi < g.width as isize { src[xi as usize] } else { 0.0 };
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    /// Ours against candle's conv, over kernel sizes, strides, paddings and
    /// sizes that leave partial tiles.
    #[test]
    fn matches_candles_conv() {
        let dev = Device::Cpu;
        for (b, c, h, w, o, k, s, p) in
            [(2, 5, 9, 7, 6, 3, 1, 1), (1, 3, 8, 8, 4, 3, 2, 1), (2, 4, 7, 9, 3, 3, 2, 0), (2, 6, 5, 5, 7, 1, 1, 0), (1, 2, 40, 300, 3, 3, 1, 1), (1, 3, 6, 6, 2, 4, 1, 2)]
        {
            let x = Tensor::randn(0f32, 1.0, (b, c, h, w), &dev).unwrap();
            let weight = Tensor::randn(0f32, 1.0, (o, c, k, k), &dev).unwrap();
            let bias = Tensor::randn(0f32, 1.0, o, &dev).unwrap();
            let conv = Conv2d { weight: weight.clone(), bias: Some(bias.clone()), stride: s, padding: p };
            let ours = conv.forward(&x).unwrap();
            let theirs = x.conv2d(&weight, p, s, 1, 1).unwrap().broadcast_add(&bias.reshape((1, o, 1, 1)).unwrap()).unwrap();
            assert_eq!(ours.dims(), theirs.dims());
            let err = super::super::simd::max_abs_diff(&ours, &theirs);
            assert!(err < 1e-4, "{b}×{c}×{h}×{w} → {o}, k{k} s{s} p{p}: max error {err}");
            let no_bias = Conv2d { bias: None, ..conv };
            let theirs = x.conv2d(&weight, p, s, 1, 1).unwrap();
            let err = super::super::simd::max_abs_diff(&no_bias.forward(&x).unwrap(), &theirs);
            assert!(err < 1e-4, "without bias: {err}");
        }
    }

    #[test]
    fn a_mismatched_weight_is_an_error() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((1, 3, 4, 4), DType::F32, &dev).unwrap();
        let conv = Conv2d { weight: Tensor::zeros((2, 4, 3, 3), DType::F32, &dev).unwrap(), bias: None, stride: 1, padding: 1 };
        assert!(conv.forward(&x).is_err());
    }
}
