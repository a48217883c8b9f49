//! Hugging Face checkpoints: `config.json` plus one `model.safetensors` or shards listed in
//! `model.safetensors.index.json`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use half::{bf16, f16};
use safetensors::{Dtype, SafeTensors};

use crate::config::{LlamaConfig, RopeLayout};
use crate::error::{LlamaError, Result};
use crate::load::build::WeightSource;
use kernels::{Bf16Matrix, PackedMatrix};

/// Reads `config.json` in `dir`.
pub fn read_config(dir: &Path) -> Result<LlamaConfig> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => LlamaError::Config(format!(
            "{} has no config.json; a Hugging Face model directory needs config.json, *.safetensors and tokenizer.json",
            dir.display()
        )),
        _ => LlamaError::io(&path, e),
    })?;
    let mut config = LlamaConfig::from_json(&text)?;
    config.rope_layout = RopeLayout::HalfSplit;
    Ok(config)
}

/// The shard file names listed in a `model.safetensors.index.json`, sorted and deduplicated.
pub fn shard_names(index: &Path) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: HashMap<String, String>,
    }
    let text = std::fs::read_to_string(index).map_err(|e| LlamaError::io(index, e))?;
    let parsed: Index = serde_json::from_str(&text).map_err(|e| LlamaError::Safetensors {
        path: index.to_path_buf(),
        reason: format!("invalid index: {e}"),
    })?;
    let mut files: Vec<String> = parsed.weight_map.into_values().collect();
    files.sort();
    files.dedup();
    Ok(files)
}

/// The safetensors files of a checkpoint directory, sharded or not.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let files = shard_names(&index)?;
        files
            .into_iter()
            .map(|f| {
                let p = dir.join(&f);
                if p.exists() {
                    Ok(p)
                } else {
                    Err(LlamaError::Safetensors {
                        path: p,
                        reason: "shard listed in model.safetensors.index.json is missing".into(),
                    })
                }
            })
            .collect()
    } else {
        let single = dir.join("model.safetensors");
        if single.exists() {
            Ok(vec![single])
        } else {
            Err(LlamaError::Safetensors {
                path: single,
                reason: "neither model.safetensors nor model.safetensors.index.json exists".into(),
            })
        }
    }
}

/// Memory-mapped safetensors files, indexed by tensor name. bf16 matrices are served packed and
/// read in place from the map (which they keep alive); everything else is copied out widened.
pub(crate) struct SafetensorsWeights {
    maps: Vec<(PathBuf, Arc<memmap2::Mmap>)>,
    index: HashMap<String, usize>,
}

impl SafetensorsWeights {
    #[allow(unsafe_code)] // the memory maps
    pub(crate) fn open(files: &[PathBuf]) -> Result<Self> {
        let mut maps = Vec::with_capacity(files.len());
        let mut index = HashMap::new();
        for (i, path) in files.iter().enumerate() {
            let file = std::fs::File::open(path).map_err(|e| LlamaError::io(path, e))?;
            // SAFETY: read-only private map of a file that is not modified while loading.
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| LlamaError::io(path, e))?;
            let st = SafeTensors::deserialize(&map).map_err(|e| LlamaError::Safetensors {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            for name in st.names() {
                index.insert(name.to_string(), i);
            }
            maps.push((path.clone(), Arc::new(map)));
        }
        Ok(SafetensorsWeights { maps, index })
    }
}

impl SafetensorsWeights {
    /// Calls `f` with the path and map of the file holding `name` and the tensor's view; `None`
    /// if no file has it.
    fn with_view<T>(
        &self,
        name: &str,
        f: impl FnOnce(
            &Path,
            &Arc<memmap2::Mmap>,
            safetensors::tensor::TensorView<'_>,
        ) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        let Some(&i) = self.index.get(name) else {
            return Ok(None);
        };
        let (path, map) = &self.maps[i];
        let err = |e: safetensors::SafeTensorError| LlamaError::Safetensors {
            path: path.clone(),
            reason: e.to_string(),
        };
        let st = SafeTensors::deserialize(map).map_err(err)?;
        let view = st.tensor(name).map_err(err)?;
        f(path, map, view)
    }
}

impl WeightSource for SafetensorsWeights {
    fn packed(&mut self, name: &str) -> Result<Option<PackedMatrix>> {
        self.with_view(name, |_, map, view| {
            let shape = view.shape();
            if view.dtype() != Dtype::BF16 || shape.len() != 2 {
                return Ok(None);
            }
            // The tensor's place in the map: its bytes are a sub-slice of the mapped file.
            let start = view.data().as_ptr() as usize - map.as_ptr() as usize;
            let range = start..start + view.data().len();
            Ok(Bf16Matrix::mapped(map.clone(), range, shape[0], shape[1]).map(PackedMatrix::Bf16))
        })
    }

    fn take(&mut self, name: &str) -> Result<Option<(Vec<f32>, Vec<usize>)>> {
        self.with_view(name, |path, _, view| {
            let bytes = view.data();
            let data: Vec<f32> = match view.dtype() {
                Dtype::F32 => bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                Dtype::F16 => bytes
                    .chunks_exact(2)
                    .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                Dtype::BF16 => bytes
                    .chunks_exact(2)
                    .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                other => {
                    return Err(LlamaError::Safetensors {
                        path: path.to_path_buf(),
                        reason: format!(
                            "tensor `{name}` has dtype {other:?}; only F32, F16 and BF16 are supported"
                        ),
                    });
                }
            };
    Ok(Some((data, view.shape().to_vec())))
        })
    }
}
