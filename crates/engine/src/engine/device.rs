//! Which device and weight dtype the engine computes on, as an operator
//! writes them in config (`[models] device = "cuda:0"`, `dtype = "bf16"`).
//!
//! A GPU asked for by a binary built without its feature is refused when the
//! engine starts, naming the build flag: otherwise a mistyped deploy would
//! serve on the CPU, a hundred times slower, and say nothing. Reading the
//! config only checks the value's form, so a config shared with GPU hosts
//! still serves commands that start no engine. `auto` is resolved when the
//! device is opened, once, not when it is read.

use candle_core::{DType, Device, DeviceLocation};

use crate::error::Result;

/// Where the engine computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The first GPU this build can open, else the CPU (decided by
    /// [`DeviceChoice::open`]).
    Auto,
    /// The CPU (always available).
    #[default]
    Cpu,
    /// A CUDA GPU by ordinal (needs the `cuda` feature).
    Cuda(usize),
    /// A Metal GPU by ordinal (needs the `metal` feature).
    Metal(usize),
}

/// What `[models] device` accepts, for error messages.
pub const DEVICE_VALUES: &str = "\"auto\", \"cpu\", \"cuda\", \"cuda:N\", \"metal\" or \"metal:N\"";

/// What `[models] dtype` accepts, for error messages.
pub const DTYPE_VALUES: &str = "\"auto\", \"f32\", \"f16\" or \"bf16\"";

impl DeviceChoice {
    /// Opens the device. For `Auto`, opening is tried, not just the feature
    /// checked: a CUDA build on a host without a driver or GPU serves on the
    /// CPU rather than failing to start.
    pub fn open(self) -> Result<Device> {
        Ok(match self {
            Self::Auto => first_gpu_or_cpu(),
            Self::Cpu => Device::Cpu,
            Self::Cuda(i) => Device::new_cuda(i)?,
            Self::Metal(i) => Device::new_metal(i)?,
        })
    }

    /// What an opened device is (never `Auto`).
    pub fn of(device: &Device) -> Self {
        match device.location() {
            DeviceLocation::Cpu => Self::Cpu,
            DeviceLocation::Cuda { gpu_id } => Self::Cuda(gpu_id),
            DeviceLocation::Metal { gpu_id } => Self::Metal(gpu_id),
        }
    }

    /// Reads a config value's form without asking what this binary was
    /// built with: `auto`, `cpu`, `cuda`, `cuda:N`, `metal`, `metal:N`.
    /// Config loading uses it, so that commands that start no engine
    /// (`keys`, `accounts`, `migrate`) accept a config shared with GPU hosts.
    pub fn parse_setting(value: &str) -> std::result::Result<Self, String> {
        let v = value.trim().to_ascii_lowercase();
        let (kind, ordinal) = match v.split_once(':') {
            Some((kind, n)) => (kind, Some(n.parse::<usize>().map_err(|_| format!("\"{value}\": the GPU ordinal after ':' must be a whole number; use {DEVICE_VALUES}"))?)),
            None => (v.as_str(), None),
        };
        match (kind, ordinal) {
            ("auto", None) => Ok(Self::Auto),
            ("cpu", None) => Ok(Self::Cpu),
            ("cuda" | "gpu", n) => Ok(Self::Cuda(n.unwrap_or(0))),
            ("metal", n) => Ok(Self::Metal(n.unwrap_or(0))),
            _ => Err(format!("\"{value}\" is not a device; use {DEVICE_VALUES}")),
        }
    }

    /// Reads a config value for starting the engine: [`Self::parse_setting`],
    /// and a GPU this binary was built without is an error that names the
    /// feature to build with.
    pub fn parse(value: &str) -> std::result::Result<Self, String> {
        let choice = Self::parse_setting(value)?;
        let (built, feature) = match choice {
            Self::Auto | Self::Cpu => (true, ""),
            Self::Cuda(_) => (candle_core::utils::cuda_is_available(), "cuda"),
            Self::Metal(_) => (candle_core::utils::metal_is_available(), "metal"),
        };
        if !built {
            return Err(format!("\"{value}\": this binary was built without the `{feature}` feature (build with `cargo build --release --features {feature}`), or use \"cpu\""));
        }
        Ok(choice)
    }
}

/// The first GPU this build can open, else the CPU.
fn first_gpu_or_cpu() -> Device {
    // A GPU build that ends up on the CPU says why: that is a host problem
    // (driver, visible devices) the operator wants to hear about.
    if candle_core::utils::cuda_is_available() {
        match Device::new_cuda(0) {
            Ok(device) => return device,
            Err(e) => tracing::warn!(error = %e, "built with cuda, but cuda:0 does not open; the engine computes on the CPU"),
        }
    }
    if candle_core::utils::metal_is_available() {
        match Device::new_metal(0) {
            Ok(device) => return device,
            Err(e) => tracing::warn!(error = %e, "built with metal, but metal:0 does not open; the engine computes on the CPU"),
        }
    }
    Device::Cpu
}

/// The dtype weights load in when config says `auto`: f32 on the CPU
/// (candle's CPU f16 kernels are slower than its f32 ones), f16 on GPUs.
pub fn default_dtype(device: &Device) -> DType {
    if device.is_cpu() { DType::F32 } else { DType::F16 }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
            Self::Metal(i) => write!(f, "metal:{i}"),
        }
    }
}

/// Reads `[models] dtype`: `auto` is `None` (the device's default).
pub fn parse_dtype(value: &str) -> std::result::Result<Option<DType>, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "auto" => Ok(None),
        "f32" | "float32" => Ok(Some(DType::F32)),
        "f16" | "float16" | "fp16" => Ok(Some(DType::F16)),
        "bf16" | "bfloat16" => Ok(Some(DType::BF16)),
        _ => Err(format!("\"{value}\" is not a weight dtype; use {DTYPE_VALUES}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_values_parse() {
        assert_eq!(DeviceChoice::parse("cpu"), Ok(DeviceChoice::Cpu));
        assert_eq!(DeviceChoice::parse(" CPU "), Ok(DeviceChoice::Cpu));
        assert_eq!(parse_dtype("auto"), Ok(None));
        assert_eq!(parse_dtype("BF16"), Ok(Some(DType::BF16)));
        assert_eq!(parse_dtype("f16"), Ok(Some(DType::F16)));
        let e = parse_dtype("int8").unwrap_err();
        assert!(e.contains("int8") && e.contains("bf16"), "{e}");
        for bad in ["tpu", "cpu:1", "cuda:x", "cuda:-1", ""] {
            let e = DeviceChoice::parse_setting(bad).unwrap_err();
            assert!(e.contains("auto") && e.contains("cuda:N"), "{bad}: {e}");
            assert_eq!(DeviceChoice::parse(bad).unwrap_err(), e);
        }
        assert_eq!(DeviceChoice::parse_setting("AUTO"), Ok(DeviceChoice::Auto));
        assert_eq!(DeviceChoice::parse_setting("cuda:2"), Ok(DeviceChoice::Cuda(2)));
        assert_eq!(DeviceChoice::parse_setting("metal"), Ok(DeviceChoice::Metal(0)));
    }

    #[test]
    fn a_gpu_this_build_lacks_names_the_feature() {
        if cfg!(feature = "cuda") {
            assert_eq!(DeviceChoice::parse("cuda:1"), Ok(DeviceChoice::Cuda(1)));
        } else {
            let e = DeviceChoice::parse("cuda:1").unwrap_err();
            assert!(e.contains("--features cuda") && e.contains("\"cpu\""), "{e}");
        }
        if !cfg!(feature = "metal") {
            assert!(DeviceChoice::parse("metal").unwrap_err().contains("--features metal"));
        }
    }

    #[test]
    fn auto_falls_back_to_the_cpu_without_a_gpu_build() {
        let auto = DeviceChoice::parse("auto").unwrap();
        assert_eq!(auto, DeviceChoice::Auto);
        let opened = auto.open().expect("auto opens a device");
        if !cfg!(feature = "cuda") && !cfg!(feature = "metal") {
            assert_eq!(DeviceChoice::of(&opened), DeviceChoice::Cpu);
        }
        assert_eq!(default_dtype(&Device::Cpu), DType::F32);
        assert_eq!(DeviceChoice::Cuda(3).to_string(), "cuda:3");
        assert_eq!(DeviceChoice::Auto.to_string(), "auto");
    }
}
