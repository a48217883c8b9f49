//! Saving and loading trained interventions: one `.safetensors` file holding the weights, with a
//! JSON description (site, kind, dims, model identity, shapes) in its metadata (the container is
//! `formats::intervention_file`; this module checks what the description says). Written to a
//! temporary file in the same directory and renamed, so a crash never leaves half a file under
//! the final name.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use formats::intervention_file::{self, HostTensor};
use serde::{Deserialize, Serialize};

use crate::error::{Result, SubspaceError};
pub use crate::file_lock::FileLock;
use crate::fingerprint::Fnv;
use crate::intervention::{BoundlessSpace, Intervention, LowRankSpace, RotatedSpace, Unrotate};
use crate::lm::LanguageModel;
use crate::readout::to_host;
use crate::site::Site;

const FORMAT: &str = "subspace-intervention/1";

/// Which model an intervention belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelIdentity {
    pub name: String,
    pub hidden_size: usize,
    pub n_layers: usize,
    pub vocab_size: usize,
    /// Hash of the first embedding rows: tells two models of the same shape apart.
    pub fingerprint: String,
}

impl ModelIdentity {
    pub fn of(lm: &LanguageModel) -> Result<Self> {
        // The same values whether the embeddings are dense or packed (packed rows widen with
        // the dequantiser's own formula).
        let values = lm.model.embed_tokens.rows_of(&[0, 1, 2, 3]);
        // Over the f32 bit patterns (4 bytes each): saved files keep matching.
        let mut hash = Fnv::new();
        values
            .iter()
            .for_each(|v| hash.bytes(&v.to_bits().to_le_bytes()));
        Ok(ModelIdentity {
            name: lm.name.clone(),
            hidden_size: lm.hidden_size(),
            n_layers: lm.n_layers(),
            vocab_size: lm.model.config.vocab_size,
            fingerprint: hash.hex(),
        })
    }

    fn describe(&self) -> String {
        format!(
            "{} (hidden {}, {} layers, vocab {}, fingerprint {})",
            self.name, self.hidden_size, self.n_layers, self.vocab_size, self.fingerprint
        )
    }
}

/// The JSON stored beside the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterventionMeta {
    pub format: String,
    pub site: Site,
    pub kind: String,
    /// Patched dimensions (rotated: N; low-rank: k; neurons: their count).
    pub dims: Option<usize>,
    pub neurons: Option<Vec<usize>>,
    pub unrotate: Option<Unrotate>,
    pub temperature: Option<f32>,
    pub model: ModelIdentity,
    /// Tensor name -> shape.
    pub shapes: HashMap<String, Vec<usize>>,
    /// Free-form notes (training settings, losses, ...).
    #[serde(default)]
    pub notes: serde_json::Value,
}

/// A trained intervention with where it applies.
#[derive(Debug, Clone)]
pub struct Saved {
    pub site: Site,
    pub intervention: Intervention,
    pub meta: InterventionMeta,
}

fn io(action: &'static str, path: &Path, source: std::io::Error) -> SubspaceError {
    SubspaceError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Saves `intervention` (at `site`, for `lm`) to `path`, atomically.
pub fn save(
    path: &Path,
    lm: &LanguageModel,
    site: Site,
    intervention: &Intervention,
    notes: serde_json::Value,
) -> Result<()> {
    intervention.check(lm.site_width(site)?)?;
    let _lock = FileLock::acquire(path)?;
    let mut tensors: BTreeMap<String, HostTensor> = BTreeMap::new();
    let (mut dims, mut neurons, mut unrotate, mut temperature) = (None, None, None, None);
    let mut push = |name: &str, t: &Tensor<2>| -> Result<()> {
        tensors.insert(name.into(), host_tensor(t.clone())?);
        Ok(())
    };
    match intervention {
        Intervention::Rotated(r) => {
            push("rotation", &r.rotation)?;
            dims = Some(r.n_dims);
            unrotate = Some(r.unrotate);
        }
        Intervention::LowRank(l) => {
            push("basis", &l.basis)?;
            dims = Some(l.basis.dims()[1]);
        }
        Intervention::Boundless(b) => {
            push("rotation", &b.rotation)?;
            push("boundary", &b.boundary.clone().reshape([1, 1]))?;
            temperature = Some(b.temperature);
        }
        Intervention::Neurons(idx) => {
            dims = Some(idx.len());
            neurons = Some(idx.clone());
        }
        Intervention::Replace | Intervention::Zero | Intervention::Add => {}
    }
    let meta = InterventionMeta {
        format: FORMAT.into(),
        site,
        kind: intervention.kind().into(),
        dims,
        neurons,
        unrotate,
        temperature,
        model: ModelIdentity::of(lm)?,
        shapes: tensors
            .iter()
            .map(|(n, t)| (n.clone(), t.shape.clone()))
            .collect(),
        notes,
    };
    let meta_json = serde_json::to_string(&meta).map_err(|e| SubspaceError::Data(e.to_string()))?;
    let data = intervention_file::serialize(&meta_json, &tensors)?;
    write_atomic(path, &data)
}

/// A tensor copied to the host, for a container file.
pub(crate) fn host_tensor<const D: usize>(t: Tensor<D>) -> Result<HostTensor> {
    let shape = t.dims().to_vec();
    Ok(HostTensor::new(shape, to_host(t)?)?)
}

/// Writes `data` to `path` through a temporary file in the same directory and a rename; on any
/// error the temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| SubspaceError::BadSetting {
        name: "path",
        value: path.display().to_string(),
        expected: "a file path (it names a directory)".into(),
    })?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(|e| io("create", &tmp, e))?;
        f.write_all(data).map_err(|e| io("write", &tmp, e))?;
        f.sync_all().map_err(|e| io("sync", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| io("rename into", path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A container file's tensors and its metadata, whose `format` must be `format` (the
/// versioned read that saved interventions and training checkpoints share); `bad` words a
/// refusal for the kind of file the caller expected.
pub(crate) fn read_versioned<M: serde::de::DeserializeOwned>(
    bytes: &[u8],
    format: &str,
    bad: impl Fn(String) -> SubspaceError,
) -> Result<(M, intervention_file::ContainerFile)> {
    let file = intervention_file::parse(bytes).map_err(|e| bad(e.to_string()))?;
    let meta: serde_json::Value =
        serde_json::from_str(&file.metadata_json).map_err(|e| bad(format!("metadata: {e}")))?;
    let found = meta["format"].as_str().unwrap_or_default();
    if found != format {
        return Err(bad(format!("format `{found}`, expected `{format}`")));
    }
    let meta = serde_json::from_value(meta).map_err(|e| bad(format!("metadata: {e}")))?;
    Ok((meta, file))
}

/// Loads an intervention saved by [`save`], refusing one made for another model or shape.
pub fn load(path: &Path, lm: &LanguageModel) -> Result<Saved> {
    let bytes = std::fs::read(path).map_err(|e| io("read", path, e))?;
    let bad = |reason: String| SubspaceError::BadFile {
        path: path.to_path_buf(),
        reason,
    };
    let (meta, file): (InterventionMeta, _) = read_versioned(&bytes, FORMAT, bad)?;
    let current = ModelIdentity::of(lm)?;
    if meta.model.hidden_size != current.hidden_size
        || meta.model.n_layers != current.n_layers
        || meta.model.vocab_size != current.vocab_size
        || meta.model.fingerprint != current.fingerprint
    {
        return Err(SubspaceError::WrongModel {
            path: path.to_path_buf(),
            saved: meta.model.describe(),
            current: current.describe(),
        });
    }
    let d = lm.site_width(meta.site)?;
    let device = lm.device();
    let tensor = |name: &str| -> Result<Tensor<2>> {
        matrix(&file.tensors, name, meta.shapes.get(name), &device).map_err(bad)
    };
    let intervention = match meta.kind.as_str() {
        "rotated" => Intervention::Rotated(RotatedSpace {
            rotation: tensor("rotation")?,
            n_dims: meta
                .dims
                .ok_or_else(|| bad("rotated intervention without dims".into()))?,
            unrotate: meta.unrotate.unwrap_or_default(),
        }),
        "low_rank" => Intervention::LowRank(LowRankSpace {
            basis: tensor("basis")?,
        }),
        "boundless" => Intervention::Boundless(BoundlessSpace {
            rotation: tensor("rotation")?,
            boundary: tensor("boundary")?.reshape([1]),
            temperature: meta.temperature.unwrap_or(1.0),
        }),
        "neurons" => Intervention::Neurons(meta.neurons.clone().unwrap_or_default()),
        "replace" => Intervention::Replace,
        "zero" => Intervention::Zero,
        "add" => Intervention::Add,
        other => return Err(bad(format!("unknown intervention kind `{other}`"))),
    };
    intervention.check(d).map_err(|e| bad(e.to_string()))?;
    Ok(Saved {
        site: meta.site,
        intervention,
        meta,
    })
}

/// The matrix `name` of a container, whose shape must be the one the description states.
pub(crate) fn matrix(
    tensors: &BTreeMap<String, HostTensor>,
    name: &str,
    stated: Option<&Vec<usize>>,
    device: &Device,
) -> Result<Tensor<2>, String> {
    let t = tensors
        .get(name)
        .ok_or_else(|| format!("tensor `{name}` is missing"))?;
    match (stated, t.shape.as_slice()) {
        (Some(s), &[rows, cols]) if *s == t.shape => Ok(Tensor::from_data(
            TensorData::new(t.values.clone(), [rows, cols]),
            device,
        )),
        _ => Err(format!(
            "tensor `{name}` has shape {:?}, which its metadata contradicts",
            t.shape
        )),
    }
}
