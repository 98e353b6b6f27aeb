//! The sampler names clients may ask for. Stability's ten names each map to
//! their own implementation in the engine; FLUX and SD3 use flow-matching Euler.

use std::fmt;
use std::str::FromStr;

/// A sampler, named as Stability's API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[allow(missing_docs)]
pub enum Sampler {
    #[serde(rename = "DDIM")]
    Ddim,
    #[serde(rename = "DDPM")]
    Ddpm,
    #[serde(rename = "K_EULER")]
    KEuler,
    #[serde(rename = "K_EULER_ANCESTRAL")]
    KEulerAncestral,
    #[serde(rename = "K_HEUN")]
    KHeun,
    #[serde(rename = "K_LMS")]
    KLms,
    #[serde(rename = "K_DPM_2")]
    KDpm2,
    #[serde(rename = "K_DPM_2_ANCESTRAL")]
    KDpm2Ancestral,
    #[serde(rename = "K_DPMPP_2M")]
    KDpmpp2m,
    #[serde(rename = "K_DPMPP_2S_ANCESTRAL")]
    KDpmpp2sAncestral,
    /// Flow-matching Euler (FLUX, SD3); not a Stability v1 name.
    #[serde(rename = "FLOW_EULER")]
    FlowEuler,
}

impl Sampler {
    /// The ten names Stability v1 accepts, in its documented order.
    pub const STABILITY: [Sampler; 10] =
        [Self::Ddim, Self::Ddpm, Self::KDpmpp2m, Self::KDpmpp2sAncestral, Self::KDpm2, Self::KDpm2Ancestral, Self::KEuler, Self::KEulerAncestral, Self::KHeun, Self::KLms];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ddim => "DDIM",
            Self::Ddpm => "DDPM",
            Self::KEuler => "K_EULER",
            Self::KEulerAncestral => "K_EULER_ANCESTRAL",
            Self::KHeun => "K_HEUN",
            Self::KLms => "K_LMS",
            Self::KDpm2 => "K_DPM_2",
            Self::KDpm2Ancestral => "K_DPM_2_ANCESTRAL",
            Self::KDpmpp2m => "K_DPMPP_2M",
            Self::KDpmpp2sAncestral => "K_DPMPP_2S_ANCESTRAL",
            Self::FlowEuler => "FLOW_EULER",
        }
    }

    /// Whether the sampler draws fresh noise at each step.
    pub fn is_ancestral(self) -> bool {
        matches!(self, Self::Ddpm | Self::KEulerAncestral | Self::KDpm2Ancestral | Self::KDpmpp2sAncestral)
    }

    /// A comma-separated list of the accepted names, for error messages.
    pub fn allowed_list() -> String {
        Self::STABILITY.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for Sampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Sampler {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        Self::STABILITY.into_iter().chain([Self::FlowEuler]).find(|x| x.as_str().eq_ignore_ascii_case(s.trim())).ok_or(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in Sampler::STABILITY {
            assert_eq!(s.as_str().parse::<Sampler>(), Ok(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert!("K_MAGIC".parse::<Sampler>().is_err());
    }
}
