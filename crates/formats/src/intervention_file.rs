//! The container of saved interventions and training checkpoints: one `.safetensors` file of
//! `f32` tensors, with a JSON description under the metadata key `subspace`.
//!
//! This module only knows the container: that the bytes are a well-formed safetensors file,
//! that it carries the JSON, and that every tensor is a finite `f32` matrix of the shape its
//! header states. What the JSON must say (site, kind, model identity) is checked by the caller.

use std::collections::{BTreeMap, HashMap};

use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::error::{FormatError, Result};

/// The metadata key holding the JSON description.
pub const META_KEY: &str = "subspace";

/// A row-major `f32` tensor on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

impl HostTensor {
    /// A tensor whose value count must equal the product of its shape.
    pub fn new(shape: Vec<usize>, values: Vec<f32>) -> Result<Self> {
        let n = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| bad(format!("shape {shape:?} overflows")))?;
        if n != values.len() {
            return Err(bad(format!(
                "shape {shape:?} needs {n} values, got {}",
                values.len()
            )));
        }
        Ok(HostTensor { shape, values })
    }

    /// A scalar stored as a `[1]` tensor.
    pub fn scalar(v: f32) -> Self {
        HostTensor {
            shape: vec![1],
            values: vec![v],
        }
    }
}

/// A parsed container: the JSON description and the named tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerFile {
    pub metadata_json: String,
    pub tensors: BTreeMap<String, HostTensor>,
}

fn bad(reason: String) -> FormatError {
    FormatError::InterventionFile(reason)
}

/// Serialises a container. Tensor names are stored sorted (safetensors' own order).
pub fn serialize(metadata_json: &str, tensors: &BTreeMap<String, HostTensor>) -> Result<Vec<u8>> {
    let bytes: Vec<(&String, &HostTensor, Vec<u8>)> = tensors
        .iter()
        .map(|(n, t)| {
            (
                n,
                t,
                t.values.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(n, t, b)| {
            TensorView::new(Dtype::F32, t.shape.clone(), b)
                .map(|v| ((*n).clone(), v))
                .map_err(|e| bad(format!("tensor `{n}`: {e}")))
        })
        .collect::<Result<_>>()?;
    let info = HashMap::from([(META_KEY.to_string(), metadata_json.to_string())]);
    safetensors::serialize(views, Some(info)).map_err(|e| bad(e.to_string()))
}

/// Parses a container, refusing anything that is not one (with the reason).
///
/// Allocation is bounded by the input: safetensors checks every offset against the buffer
/// before a tensor is read, and each tensor's values are copied from bytes that exist.
pub fn parse(bytes: &[u8]) -> Result<ContainerFile> {
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
    let metadata_json = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(META_KEY))
        .ok_or_else(|| bad("no `subspace` metadata (not written by subspace)".into()))?
        .clone();
    let st = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(bad(format!(
                "tensor `{name}` is {:?}, expected F32",
                view.dtype()
            )));
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if values.iter().any(|v| !v.is_finite()) {
            return Err(bad(format!("tensor `{name}` holds non-finite values")));
        }
        let tensor = HostTensor::new(view.shape().to_vec(), values)
            .map_err(|e| bad(format!("tensor `{name}`: {e}")))?;
        tensors.insert(name, tensor);
    }
    Ok(ContainerFile {
        metadata_json,
        tensors,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn sample() -> BTreeMap<String, HostTensor> {
        BTreeMap::from([
            (
                "a".to_string(),
                HostTensor::new(vec![2, 3], vec![1.0, -2.0, 3.5, 0.0, 1e-7, 6.0]).unwrap(),
            ),
            ("b".to_string(), HostTensor::scalar(0.25)),
        ])
    }

    #[test]
    fn round_trip_is_bit_exact() {
        let bytes = serialize(r#"{"x":1}"#, &sample()).unwrap();
        let file = parse(&bytes).unwrap();
        assert_eq!(file.metadata_json, r#"{"x":1}"#);
        assert_eq!(file.tensors, sample());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = serialize("{}", &sample()).unwrap();
        for cut in 0..bytes.len() {
            assert!(
                parse(&bytes[..cut]).is_err(),
                "prefix of {cut} bytes parsed"
            );
        }
    }

    #[test]
    fn missing_metadata_and_non_finite_values_are_refused() {
        let views = vec![(
            "a".to_string(),
            TensorView::new(Dtype::F32, vec![1], &[0, 0, 0x80, 0x7f]).unwrap(), // +inf
        )];
        let bytes = safetensors::serialize(views.clone(), None).unwrap();
        assert!(
            parse(&bytes)
                .unwrap_err()
                .to_string()
                .contains("no `subspace` metadata")
        );
        let info = HashMap::from([(META_KEY.to_string(), "{}".to_string())]);
        let bytes = safetensors::serialize(views, Some(info)).unwrap();
        assert!(
            parse(&bytes)
                .unwrap_err()
                .to_string()
                .contains("non-finite")
        );
    }

    #[test]
    fn value_count_must_match_shape() {
        assert!(HostTensor::new(vec![2, 2], vec![0.0; 3]).is_err());
        assert!(HostTensor::new(vec![usize::MAX, 2], vec![]).is_err());
    }
}
