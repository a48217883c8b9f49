//! Stopping and resuming training: every `K` steps the trainable tensors, both Adam moments and
//! the step count are written, atomically, to one file; a run started with the same file picks up
//! where the last complete checkpoint left off and reaches bit for bit the weights of an
//! uninterrupted run (the minibatch schedule and temperature depend only on the step number).
//!
//! A checkpoint belongs to one run: it stores a fingerprint of the examples, the settings and the
//! initial weights, and a run with anything different refuses it rather than silently mixing two
//! runs. Written with [`crate::store::write_atomic`], so a crash mid-save leaves the previous
//! checkpoint whole.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use formats::intervention_file::{self, HostTensor};
use serde::{Deserialize, Serialize};

use super::adam::AdamState;
use super::config::DasConfig;
use super::params::{Moments, Params};
use crate::error::{Result, SubspaceError};
use crate::fingerprint::Fnv;
use crate::pair::Example;
use crate::store::{host_tensor, read_versioned, write_atomic};

const FORMAT: &str = "subspace-checkpoint/1";

/// The optimiser state of one run at the end of step `step`.
#[derive(Debug, Clone)]
pub(super) struct Checkpoint {
    pub step: usize,
    pub losses: Vec<f32>,
    pub params: Params,
    pub moments: Moments,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    format: String,
    run: String,
    step: usize,
    kind: String,
    losses: Vec<f32>,
    adam_step: usize,
    adam_boundary_step: Option<usize>,
}

/// A fingerprint of everything that determines a run: examples, settings and initial weights.
pub(super) fn run_fingerprint(
    examples: &[Example],
    config: &DasConfig,
    initial: &Params,
) -> Result<String> {
    let mut h = Fnv::new();
    for e in examples {
        let p = &e.pair;
        for ids in [&p.base.ids, &p.source.ids] {
            h.usize(ids.len());
            ids.iter().for_each(|&i| h.u64(u64::from(i)));
        }
        // One aligned token hashes as the single positions always did (old checkpoints resume).
        for a in &p.positions {
            h.usize(a.base);
            h.usize(a.source);
        }
        h.u64(u64::from(e.target));
        // Only a weight other than 1 enters, so checkpoints written before weights existed
        // still match their run.
        if e.weight != 1.0 {
            h.u64(u64::from(e.weight.to_bits()));
        }
    }
    let mut settings = format!(
        "{:?}|{}|{:?}|{:?}|{}|{:?}",
        config.site, config.steps, config.adam, config.batch_size, config.seed, config.temperature
    );
    if !config.schedule.is_constant() {
        settings.push_str(&format!("|{:?}", config.schedule));
    }
    settings.bytes().for_each(|b| h.u64(u64::from(b)));
    for t in initial.host_tensors()? {
        t.values.iter().for_each(|v| h.u64(u64::from(v.to_bits())));
    }
    Ok(h.hex())
}

/// Writes `checkpoint` to `path` atomically.
pub(super) fn save(path: &Path, run: &str, checkpoint: &Checkpoint) -> Result<()> {
    let mut tensors = BTreeMap::new();
    let (kind, names): (&str, &[&str]) = match &checkpoint.params {
        Params::Exp { .. } => ("exp", &["base", "generator"]),
        Params::Frame(_) => ("frame", &["frame"]),
        Params::Boundless(..) => ("boundless", &["rotation", "boundary"]),
    };
    for (name, t) in names.iter().zip(checkpoint.params.host_tensors()?) {
        tensors.insert(format!("param.{name}"), t);
    }
    tensors.insert(
        "adam.m".into(),
        host_tensor(checkpoint.moments.main.m.clone())?,
    );
    tensors.insert(
        "adam.v".into(),
        host_tensor(checkpoint.moments.main.v.clone())?,
    );
    if let Some(b) = &checkpoint.moments.boundary {
        tensors.insert("adam_boundary.m".into(), host_tensor(b.m.clone())?);
        tensors.insert("adam_boundary.v".into(), host_tensor(b.v.clone())?);
    }
    let meta = Meta {
        format: FORMAT.into(),
        run: run.into(),
        step: checkpoint.step,
        kind: kind.into(),
        losses: checkpoint.losses.clone(),
        adam_step: checkpoint.moments.main.step,
        adam_boundary_step: checkpoint.moments.boundary.as_ref().map(|b| b.step),
    };
    let json = serde_json::to_string(&meta).map_err(|e| SubspaceError::Data(e.to_string()))?;
    write_atomic(path, &intervention_file::serialize(&json, &tensors)?)
}

/// Loads the checkpoint at `path` if there is one. `Ok(None)`: no file (a fresh run). A file
/// from another run, or one that is not a checkpoint, is an error naming the file.
pub(super) fn load(
    path: &Path,
    run: &str,
    like: &Params,
    device: &Device,
) -> Result<Option<Checkpoint>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SubspaceError::Io {
                action: "read",
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let bad = |reason: String| SubspaceError::BadCheckpoint {
        path: path.to_path_buf(),
        reason,
    };
    let (meta, file): (Meta, _) = read_versioned(&bytes, FORMAT, bad)?;
    if meta.run != run {
        return Err(bad(
            "it was written by a different run (other examples, settings or initial weights)"
                .into(),
        ));
    }
    let get = |name: &str, like: &[usize]| -> Result<HostTensor> {
        let t = file
            .tensors
            .get(name)
            .ok_or_else(|| bad(format!("tensor `{name}` is missing")))?;
        if t.shape != like {
            return Err(bad(format!(
                "tensor `{name}` has shape {:?}, expected {like:?}",
                t.shape
            )));
        }
        Ok(t.clone())
    };
    let m2 = |t: HostTensor| -> Tensor<2> {
        let [r, c] = [t.shape[0], t.shape[1]];
        Tensor::from_data(TensorData::new(t.values, [r, c]), device)
    };
    let m1 = |t: HostTensor| -> Tensor<1> {
        let n = t.shape[0];
        Tensor::from_data(TensorData::new(t.values, [n]), device)
    };
    let shape2 = |t: &Tensor<2>| t.dims().to_vec();
    let (params, trained_shape) = match like {
        Params::Exp { base, l } => (
            Params::Exp {
                base: m2(get("param.base", &shape2(base))?),
                l: m2(get("param.generator", &shape2(l))?),
            },
            shape2(l),
        ),
        Params::Frame(f) => (
            Params::Frame(m2(get("param.frame", &shape2(f))?)),
            shape2(f),
        ),
        Params::Boundless(r, b) => (
            Params::Boundless(
                m2(get("param.rotation", &shape2(r))?),
                m1(get("param.boundary", &b.dims())?),
            ),
            shape2(r),
        ),
    };
    let adam = AdamState {
        m: m2(get("adam.m", &trained_shape)?),
        v: m2(get("adam.v", &trained_shape)?),
        step: meta.adam_step,
    };
    let adam_boundary = match (like, meta.adam_boundary_step) {
        (Params::Boundless(_, b), Some(step)) => Some(AdamState {
            m: m1(get("adam_boundary.m", &b.dims())?),
            v: m1(get("adam_boundary.v", &b.dims())?),
            step,
        }),
        (Params::Boundless(..), None) => {
            return Err(bad("the boundary's optimiser state is missing".into()));
        }
        _ => None,
    };
    if meta.losses.len() != meta.step {
        return Err(bad(format!(
            "{} losses recorded for {} steps",
            meta.losses.len(),
            meta.step
        )));
    }
    Ok(Some(Checkpoint {
        step: meta.step,
        losses: meta.losses,
        params,
        moments: Moments {
            main: adam,
            boundary: adam_boundary,
        },
    }))
}
