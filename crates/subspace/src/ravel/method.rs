//! The methods compared on RAVEL: two baselines (the whole vector, random neurons) and four
//! trained interventions (DAS, low-rank DAS, boundless DAS, multi-task DAS).

use serde::{Deserialize, Serialize};

use crate::error::{Result, bad_setting};

/// One method compared on RAVEL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Replace the whole vector.
    Residual,
    /// Replace `dims` random coordinates.
    Neurons,
    /// DAS: a full rotation, first `dims` rotated coordinates, trained on cause pairs.
    Das,
    /// Low-rank DAS: a `d × dims` orthonormal basis, trained on cause pairs.
    Lowrank,
    /// Boundless DAS: a full rotation with a learned soft boundary, trained on cause pairs.
    Boundless,
    /// Multi-task DAS: a full rotation trained on cause *and* isolate pairs.
    Mdas,
}

impl Method {
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "residual" => Method::Residual,
            "neurons" => Method::Neurons,
            "das" => Method::Das,
            "lowrank" => Method::Lowrank,
            "boundless" => Method::Boundless,
            "mdas" => Method::Mdas,
            other => {
                return bad_setting(
                    "method",
                    other,
                    "one of residual, neurons, das, lowrank, boundless, mdas",
                );
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::Residual => "residual",
            Method::Neurons => "neurons",
            Method::Das => "das",
            Method::Lowrank => "lowrank",
            Method::Boundless => "boundless",
            Method::Mdas => "mdas",
        }
    }

    pub fn trained(self) -> bool {
        matches!(
            self,
            Method::Das | Method::Lowrank | Method::Boundless | Method::Mdas
        )
    }
}
