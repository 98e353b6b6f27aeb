//! Image sizes (`WxH`) and aspect ratios, and how a model's size rules accept them.

use std::fmt;
use std::str::FromStr;

/// A width and height in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Size {
    /// Pixels across.
    pub width: u32,
    /// Pixels down.
    pub height: u32,
}

impl Size {
    /// A size from width and height.
    pub const fn new(width: u32, height: u32) -> Self {
        Self { width, height }
    }

    /// Pixel count.
    pub fn pixels(self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

impl FromStr for Size {
    type Err = ();

    /// Parses `1024x1024` (also `1024*1024` and `1024X1024`, which clients send).
    fn from_str(s: &str) -> Result<Self, ()> {
        let s = s.trim();
        let (w, h) = s.split_once(['x', 'X', '*', '×']).ok_or(())?;
        let width: u32 = w.trim().parse().map_err(|_| ())?;
        let height: u32 = h.trim().parse().map_err(|_| ())?;
        if width == 0 || height == 0 {
            return Err(());
        }
        Ok(Self { width, height })
    }
}

/// The aspect ratios workflows and several dialects name.
pub const ASPECT_RATIOS: [&str; 9] = ["1:1", "4:3", "3:4", "3:2", "2:3", "16:9", "9:16", "21:9", "9:21"];

/// Parses `16:9` (or `16x9`, as Ideogram writes it) into its two sides.
pub fn parse_ratio(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.trim().split_once([':', 'x'])?;
    let a: u32 = a.trim().parse().ok()?;
    let b: u32 = b.trim().parse().ok()?;
    (a > 0 && b > 0).then_some((a, b))
}

/// The size with about `native_side`² pixels in the ratio `a:b`, each side a
/// multiple of `multiple`. This is how SDXL-class models pick their bucket
/// sizes (1024² → 1344x768 for 16:9 with multiple 64).
pub fn size_for_ratio(native_side: u32, (a, b): (u32, u32), multiple: u32) -> Size {
    let area = f64::from(native_side) * f64::from(native_side);
    let ratio = f64::from(a) / f64::from(b);
    let w = (area * ratio).sqrt();
    let h = w / ratio;
    let snap = |v: f64| ((v / f64::from(multiple)).round() as u32).max(1) * multiple;
    Size::new(snap(w), snap(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_spellings() {
        assert_eq!("1024x768".parse(), Ok(Size::new(1024, 768)));
        assert_eq!("1024*768".parse(), Ok(Size::new(1024, 768)));
        assert!("1024".parse::<Size>().is_err());
        assert!("0x5".parse::<Size>().is_err());
        assert!("-1x5".parse::<Size>().is_err());
    }

    #[test]
    fn ratio_sizes_match_sdxl_buckets() {
        assert_eq!(size_for_ratio(1024, (1, 1), 64), Size::new(1024, 1024));
        assert_eq!(size_for_ratio(1024, (16, 9), 64), Size::new(1344, 768));
        assert_eq!(size_for_ratio(1024, (9, 16), 64), Size::new(768, 1344));
        assert_eq!(size_for_ratio(1024, (21, 9), 64), Size::new(1536, 640));
    }
}
