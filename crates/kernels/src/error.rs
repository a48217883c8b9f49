//! What can go wrong in the runtime: a weight that cannot be kept packed. Messages name the
//! tensor type and why, for the model crate to pass on.

/// A matrix the packed storages cannot hold without changing a weight.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("cannot keep a {type_name} tensor in blocks: {reason}")]
    CannotPack {
        type_name: &'static str,
        reason: String,
    },
}

pub type Result<T, E = KernelError> = std::result::Result<T, E>;
