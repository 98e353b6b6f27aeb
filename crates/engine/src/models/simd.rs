//! Vectorised f32 row kernels for the CPU paths (softmax, GELU).
//!
//! Each kernel is written once as plain loops over 16-lane chunks with no
//! calls into libm, so LLVM vectorises it; `multiversion!` compiles it for
//! AVX-512, for AVX2 + FMA and for the baseline, and picks one at run time.
//! The binary targets baseline x86-64, where `f32::exp` is a scalar libm
//! call per element: candle's softmax spent seconds of each SD 1.5 step
//! there (docs/benchmarks.md).

use candle_core::{CpuStorage, Layout, Result, bail};

const LANES: usize = 16;

/// The f32 data of a contiguous CPU tensor, for the custom ops' kernels.
pub fn f32_data<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((start, end))) => Ok(&data[start..end]),
        _ => bail!("{op} takes contiguous f32 tensors"),
    }
}

/// The largest absolute difference between two tensors (tests).
#[cfg(test)]
pub fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// Defines `pub fn $name` that runs `$body` compiled for the best
/// instruction set the CPU has.
macro_rules! multiversion {
    ($(#[$doc:meta])* pub fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty $body:block) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) -> $ret {
            #[inline(always)]
            fn generic($($arg: $ty),*) -> $ret $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512($($arg: $ty),*) -> $ret { generic($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) -> $ret { generic($($arg),*) }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has AVX2 and FMA.
                    return unsafe { avx2($($arg),*) };
                }
            }
            generic($($arg),*)
        }
    };
}

multiversion! {
    /// Replaces `row` by `exp(x − max(row))` and returns the sum of the new
    /// values (at least 1, from the maximum itself). `row` must not be empty.
    pub fn exp_shifted_in_place(row: &mut [f32]) -> f32 {
        let mut lanes = [f32::NEG_INFINITY; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for chunk in &mut chunks {
            for (m, &x) in lanes.iter_mut().zip(chunk) {
                *m = if x > *m { x } else { *m };
            }
        }
        let max = chunks.remainder().iter().chain(&lanes).fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
        let mut sums = [0f32; LANES];
        let mut chunks = row.chunks_exact_mut(LANES);
        for chunk in &mut chunks {
            for (s, x) in sums.iter_mut().zip(chunk.iter_mut()) {
                *x = exp_non_positive(*x - max);
                *s += *x;
            }
        }
        let mut sum: f32 = sums.iter().sum();
        for x in chunks.into_remainder() {
            *x = exp_non_positive(*x - max);
            sum += *x;
        }
        sum
    }
}

multiversion! {
    /// `x · gelu(gate)` element by element, written to `x`, with the exact
    /// erf GELU that PyTorch's `F.gelu` computes by default (what diffusers'
    /// GEGLU uses). `x` and `gate` have the same length.
    pub fn gelu_gate_in_place(x: &mut [f32], gate: &[f32]) -> () {
        for (x, &g) in x.iter_mut().zip(gate) {
            *x *= 0.5 * g * (1.0 + erf(g * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

multiversion! {
    /// The mean and the (biased) variance of `xs`, in two passes.
    pub fn mean_and_variance(xs: &[f32]) -> (f32, f32) {
        let n = xs.len().max(1) as f32;
        let mut lanes = [0f32; LANES];
        let mut chunks = xs.chunks_exact(LANES);
        for chunk in &mut chunks {
            lanes.iter_mut().zip(chunk).for_each(|(l, x)| *l += x);
        }
        let mean = (lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()) / n;
        let mut lanes = [0f32; LANES];
        let mut chunks = xs.chunks_exact(LANES);
        for chunk in &mut chunks {
            lanes.iter_mut().zip(chunk).for_each(|(l, x)| *l += (x - mean) * (x - mean));
        }
        let tail: f32 = chunks.remainder().iter().map(|x| (x - mean) * (x - mean)).sum();
        (mean, (lanes.iter().sum::<f32>() + tail) / n)
    }
}

multiversion! {
    /// `dst = src · scale + shift`, then SiLU (`v · sigmoid(v)`) if `silu`.
    pub fn scale_shift(dst: &mut [f32], src: &[f32], scale: f32, shift: f32, silu: bool) -> () {
        if silu {
            for (d, s) in dst.iter_mut().zip(src) {
                let v = s * scale + shift;
                // sigmoid from e^(−|v|), which cannot overflow.
                let e = exp_non_positive(if v < 0.0 { v } else { -v });
                let sigmoid = if v < 0.0 { e / (1.0 + e) } else { 1.0 / (1.0 + e) };
                *d = v * sigmoid;
            }
        } else {
            for (d, s) in dst.iter_mut().zip(src) {
                *d = s * scale + shift;
            }
        }
    }
}

/// `eˣ` for `x ≤ 0` (relative error below 3e-7; 0 below −87): `2ⁿ · e^y`
/// with `n = round(x·log₂e)` and `|y| ≤ ln2/2`, `e^y` by its Taylor series
/// to degree 7, `2ⁿ` built in the exponent bits.
#[inline(always)]
fn exp_non_positive(x: f32) -> f32 {
    // 1.5·2²³: adding it rounds to an integer held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = if x < -87.0 { -87.0 } else { x };
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    // ln 2 in two parts (Cody and Waite) so that `n · LN2_HI` is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let y = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0 + y * (1.0 + y * (1.0 / 2.0 + y * (1.0 / 6.0 + y * (1.0 / 24.0 + y * (1.0 / 120.0 + y * (1.0 / 720.0 + y * (1.0 / 5040.0)))))));
    let exponent = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32).wrapping_add(127);
    f32::from_bits((exponent << 23) as u32) * p
}

/// erf by Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7).
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = if x < 0.0 { -x } else { x };
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let r = 1.0 - poly * exp_non_positive(-a * a);
    if x < 0.0 { -r } else { r }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_libm_over_the_softmax_range() {
        let mut worst = 0f32;
        for i in 0..=200_000 {
            let x = -87.0 * i as f32 / 200_000.0;
            let want = x.exp();
            worst = worst.max(((exp_non_positive(x) - want) / want).abs());
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp_non_positive(0.0), 1.0);
        assert!(exp_non_positive(-1000.0) < 1e-37);
    }

    #[test]
    fn exp_shifted_is_a_softmax_numerator() {
        let mut row: Vec<f32> = (0..37).map(|i| (i as f32 * 0.7).sin() * 20.0).collect();
        let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let want: Vec<f32> = row.iter().map(|x| (x - max).exp()).collect();
        let sum = exp_shifted_in_place(&mut row);
        for (got, want) in row.iter().zip(&want) {
            assert!((got - want).abs() <= 3e-7 * want.max(1e-30), "{got} vs {want}");
        }
        assert!((sum - want.iter().sum::<f32>()).abs() < 1e-5);
    }

    #[test]
    fn gelu_matches_the_erf_definition() {
        let gate: Vec<f32> = (-200..=200).map(|i| i as f32 / 50.0).collect();
        let mut x = vec![2f32; gate.len()];
        gelu_gate_in_place(&mut x, &gate);
        for (got, g) in x.iter().zip(&gate) {
            // erf from its series, in f64, as the reference.
            let erf = libm_erf(*g as f64 / std::f64::consts::SQRT_2);
            let want = 2.0 * 0.5 * *g as f64 * (1.0 + erf);
            assert!((*got as f64 - want).abs() < 3e-6 * want.abs().max(1.0), "gelu({g}) = {got}, want {want}");
        }
    }

    /// erf(x) by its Maclaurin series (in f64 it stays accurate to 1e-12
    /// for |x| ≤ 3).
    fn libm_erf(x: f64) -> f64 {
        let (mut term, mut sum) = (x, x);
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }
}
