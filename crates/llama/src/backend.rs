//! Which burn backend runs the model. burn 0.22 picks the backend at run time from the
//! [`Device`]; this enum names the ones this project builds and tests.

use burn::tensor::Device;

use crate::error::{LlamaError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// burn's pure-Rust CPU backend (the default: fastest measured here, no system library).
    #[default]
    Flex,
    /// burn's ndarray CPU backend (`--features ndarray`; deprecated upstream, kept for comparison).
    NdArray,
    /// LibTorch on the CPU (`--features tch`).
    LibTorchCpu,
    /// LibTorch on CUDA device 0 (`--features tch`, a CUDA build of torch, a GPU).
    LibTorchCuda,
}

impl Backend {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "flex" | "cpu" => Ok(Backend::Flex),
            "ndarray" => Ok(Backend::NdArray),
            "tch" | "libtorch" | "tch-cpu" => Ok(Backend::LibTorchCpu),
            "cuda" | "tch-cuda" => Ok(Backend::LibTorchCuda),
            other => Err(LlamaError::Input(format!(
                "unknown backend `{other}`; choose flex, ndarray, tch (LibTorch CPU) or cuda (LibTorch CUDA)"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::NdArray => "ndarray",
            Backend::LibTorchCpu => "tch",
            Backend::LibTorchCuda => "cuda",
        }
    }

    /// The device for this backend, or an error saying how to enable it.
    pub fn device(self) -> Result<Device> {
        match self {
            Backend::Flex => Ok(Device::flex()),
            #[cfg(feature = "tch")]
            // burn marks burn-tch deprecated in favour of CubeCL, whose CPU backend cannot be
            // built offline here; LibTorch stays this project's path to a GPU.
            #[allow(deprecated)]
            Backend::LibTorchCpu => Ok(Device::libtorch()),
            #[cfg(feature = "tch")]
            #[allow(deprecated)]
            Backend::LibTorchCuda => Ok(Device::libtorch_cuda(0)),
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)]
            Backend::NdArray => Ok(Device::ndarray()),
            #[cfg(not(feature = "ndarray"))]
            Backend::NdArray => Err(LlamaError::Input(
                "backend `ndarray` needs a build with `--features ndarray`".into(),
            )),
            #[cfg(not(feature = "tch"))]
            _ => Err(LlamaError::Input(format!(
                "backend `{}` needs LibTorch: build with `--features tch` (see README, section Backends)",
                self.name()
            ))),
        }
    }

    /// The backend named by `SUBSPACE_BACKEND`, or flex.
    pub fn from_env() -> Result<Self> {
        match std::env::var("SUBSPACE_BACKEND") {
            Ok(name) if !name.is_empty() => Self::parse(&name),
            _ => Ok(Backend::Flex),
        }
    }
}
