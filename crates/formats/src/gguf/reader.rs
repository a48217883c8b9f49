//! A bounds-checked GGUF (v2/v3) reader: header, metadata and tensor directory.
//!
//! Every length in the header is checked against the bytes that are really there before
//! anything is allocated, so a corrupt or hostile file gives an error, never a huge allocation
//! or a panic. Tensor bytes are not copied: [`GgufFile::tensor_bytes`] borrows them from the
//! memory map and [`super::dequant`] turns them into `f32`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::types::GgmlType;
use crate::error::{FormatError, Result};

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// GGML tensors have at most four dimensions.
const MAX_DIMS: u32 = 4;

/// A metadata value. Arrays keep their element type so that a `[u32]` stays a `[u32]`.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<GgufValue>),
}

impl GgufValue {
    /// The value as an unsigned integer, whatever integer type the writer chose.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v.into()),
            GgufValue::U16(v) => Some(v.into()),
            GgufValue::U32(v) => Some(v.into()),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            GgufValue::I8(v) => Some(v.into()),
            GgufValue::I16(v) => Some(v.into()),
            GgufValue::I32(v) => Some(v.into()),
            GgufValue::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(v.into()),
            GgufValue::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            GgufValue::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(b) => Some(b),
            _ => None,
        }
    }
}

/// One entry of the tensor directory.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// GGML order: `dims[0]` varies fastest. The PyTorch shape is this reversed.
    pub dims: Vec<usize>,
    pub ggml_type: GgmlType,
    /// Byte offset from the start of the data section.
    pub offset: usize,
    /// Bytes the tensor occupies (checked to lie inside the file).
    pub n_bytes: usize,
}

impl TensorInfo {
    /// The shape in row-major (PyTorch) order.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }

    pub fn n_elements(&self) -> usize {
        self.dims.iter().product()
    }
}

enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// A parsed GGUF file. Tensor data stays in the (memory-mapped) file until asked for.
pub struct GgufFile {
    path: PathBuf,
    bytes: Bytes,
    pub version: u32,
    pub metadata: BTreeMap<String, GgufValue>,
    pub tensors: Vec<TensorInfo>,
    data_start: usize,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Opens and parses a GGUF file (memory-mapped; the tensor bytes are read lazily).
    #[allow(unsafe_code)] // the memory map
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| FormatError::io(path, e))?;
        // SAFETY: the map is read-only and private to this process. Another process truncating
        // the file while it is mapped would be undefined behaviour; model files are not edited
        // in place, which is the usual contract of every memory-mapping model loader.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| FormatError::io(path, e))?;
        Self::parse(path.to_path_buf(), Bytes::Mapped(map))
    }

    /// Parses GGUF bytes held in memory (tests, fuzzing).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        Self::parse(PathBuf::from("<memory>"), Bytes::Owned(bytes))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn parse(path: PathBuf, bytes: Bytes) -> Result<Self> {
        let err = |reason: String| FormatError::Gguf {
            path: path.clone(),
            reason,
        };
        let mut cur = Cursor {
            bytes: &bytes,
            pos: 0,
        };
        let magic = cur.take(4).map_err(&err)?;
        if magic != MAGIC {
            return Err(err(format!(
                "wrong magic {magic:?} (expected \"GGUF\"); is this really a GGUF model?"
            )));
        }
        let version = cur.u32().map_err(&err)?;
        if !(2..=3).contains(&version) {
            return Err(err(format!(
                "GGUF version {version} is not supported (this reader knows versions 2 and 3)"
            )));
        }
        let n_tensors = cur.u64().map_err(&err)?;
        let n_kv = cur.u64().map_err(&err)?;
        // A metadata entry takes at least 12 bytes (key length + type), a tensor entry at least
        // 24 (name length, n_dims, type, offset): claims beyond the file size are corrupt.
        let remaining = cur.remaining() as u64;
        if n_kv > remaining / 12 || n_tensors > remaining / 24 {
            return Err(err(format!(
                "header claims {n_kv} metadata entries and {n_tensors} tensors, more than the {} bytes of the file can hold",
                bytes.len()
            )));
        }

        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = cur.string().map_err(&err)?;
            let value_type = cur.u32().map_err(&err)?;
            let value = cur
                .value(value_type, 0)
                .map_err(|e| err(format!("metadata `{key}`: {e}")))?;
            metadata.insert(key, value);
        }

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 20 => a,
                _ => {
                    return Err(err(format!(
                        "general.alignment {v:?} is not a power of two"
                    )));
                }
            },
        };

        let mut infos = Vec::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let name = cur.string().map_err(&err)?;
            let n_dims = cur.u32().map_err(&err)?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(err(format!(
                    "tensor `{name}` has {n_dims} dimensions (GGML allows 1 to {MAX_DIMS})"
                )));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                let d = cur.u64().map_err(&err)?;
                let d = usize::try_from(d)
                    .ok()
                    .filter(|&d| d > 0)
                    .ok_or_else(|| err(format!("tensor `{name}` has dimension {d}")))?;
                dims.push(d);
            }
            let type_id = cur.u32().map_err(&err)?;
            let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| {
                err(format!(
                    "tensor `{name}` has unknown GGML type id {type_id}; the file may be newer than this reader or corrupt"
                ))
            })?;
            let offset = cur.u64().map_err(&err)?;
            infos.push((name, dims, ggml_type, offset));
        }

        let header_end = cur.pos as u64;
        let data_start = header_end.div_ceil(alignment) * alignment;
        let data_len = (bytes.len() as u64).saturating_sub(data_start);

        let mut tensors = Vec::with_capacity(infos.len());
        for (name, dims, ggml_type, offset) in infos {
            let n_elements = dims
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| err(format!("tensor `{name}` has too many elements {dims:?}")))?;
            let (block, block_bytes) = ggml_type.block_layout();
            if dims[0] % block != 0 {
                return Err(err(format!(
                    "tensor `{name}`: row length {} is not a multiple of the {} block size {block}",
                    dims[0],
                    ggml_type.name()
                )));
            }
            let n_bytes = (n_elements / block)
                .checked_mul(block_bytes)
                .ok_or_else(|| err(format!("tensor `{name}` is too large")))?;
            let end = offset.checked_add(n_bytes as u64);
            if offset % alignment != 0 || end.is_none_or(|end| end > data_len) {
                return Err(err(format!(
                    "tensor `{name}` claims bytes {offset}..{} but the data section holds {data_len} bytes; the file is truncated or corrupt",
                    offset.saturating_add(n_bytes as u64)
                )));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset: offset as usize,
                n_bytes,
            });
        }

        Ok(GgufFile {
            path,
            bytes,
            version,
            metadata,
            tensors,
            data_start: data_start as usize,
        })
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The raw (possibly quantised) bytes of a tensor.
    pub fn tensor_bytes(&self, info: &TensorInfo) -> &[u8] {
        let start = self.data_start + info.offset;
        // Bounds were checked when the directory was parsed.
        &self.bytes[start..start + info.n_bytes]
    }

    /// Says that this process is done with a tensor's bytes (a loader copied them out): the file
    /// pages they occupy leave the resident set now instead of when the file is closed, so that
    /// loading peaks near the size of what the model keeps, not that plus the whole file.
    /// Reading the bytes again stays valid: the pages are read back from the file.
    #[allow(unsafe_code)] // advice on the memory map
    pub fn release(&self, info: &TensorInfo) {
        #[cfg(unix)]
        if let Bytes::Mapped(map) = &self.bytes {
            // SAFETY: the map is read-only and private, and never written, so MADV_DONTNEED
            // only drops clean copies of file pages; any later read faults them back in with
            // the same contents. No reference into the map is invalidated.
            let _ = unsafe {
                map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    self.data_start + info.offset,
                    info.n_bytes,
                )
            };
        }
    }

    /// A tensor dequantised to `f32`, row-major in [`TensorInfo::shape`] order.
    pub fn dequantize(&self, info: &TensorInfo) -> Result<Vec<f32>> {
        super::dequant::dequantize(info.ggml_type, self.tensor_bytes(info), info.n_elements())
            .ok_or_else(|| FormatError::UnsupportedTensorType {
                name: info.name.clone(),
                type_name: info.ggml_type.name().to_string(),
            })
    }

    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }
}

/// A cursor that never reads past the end and never allocates more than what is left.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// Nested arrays deeper than this are refused (the format allows them; no model needs them).
const MAX_ARRAY_DEPTH: usize = 4;

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.remaining() {
            return Err(format!(
                "unexpected end of file at byte {} (needed {n} more bytes); the file is truncated",
                self.pos
            ));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn string(&mut self) -> Result<String, String> {
        let len = self.u64()?;
        let len = usize::try_from(len).map_err(|_| format!("string length {len} is too large"))?;
        let raw = self.take(len)?;
        // Vocabularies of some converters hold invalid UTF-8 pieces: keep them, lossily.
        Ok(String::from_utf8_lossy(raw).into_owned())
    }

    fn value(&mut self, value_type: u32, depth: usize) -> Result<GgufValue, String> {
        Ok(match value_type {
            0 => GgufValue::U8(u8::from_le_bytes(self.array()?)),
            1 => GgufValue::I8(i8::from_le_bytes(self.array()?)),
            2 => GgufValue::U16(u16::from_le_bytes(self.array()?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.array()?)),
            4 => GgufValue::U32(self.u32()?),
            5 => GgufValue::I32(i32::from_le_bytes(self.array()?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.array()?)),
            7 => match self.array::<1>()?[0] {
                0 => GgufValue::Bool(false),
                1 => GgufValue::Bool(true),
                b => return Err(format!("boolean byte {b} is neither 0 nor 1")),
            },
            8 => GgufValue::String(self.string()?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err("arrays nested too deeply".into());
                }
                let elem_type = self.u32()?;
                let len = self.u64()?;
                let min_size = match elem_type {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => 12,
                    t => return Err(format!("unknown array element type {t}")),
                };
                if len > (self.remaining() / min_size) as u64 {
                    return Err(format!(
                        "array of {len} elements does not fit in the {} bytes left",
                        self.remaining()
                    ));
                }
                let mut items = Vec::with_capacity(len as usize);
                for _ in 0..len {
                    items.push(self.value(elem_type, depth + 1)?);
                }
                GgufValue::Array(items)
            }
            10 => GgufValue::U64(self.u64()?),
            11 => GgufValue::I64(i64::from_le_bytes(self.array()?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.array()?)),
            t => return Err(format!("unknown metadata value type {t}")),
        })
    }
}
