//! Stopping long work on request (Ctrl-C, SIGTERM, a caller's own condition).
//!
//! A [`StopFlag`] is shared by clones: a signal handler raises it, and every long loop of the
//! library reads it between pieces of work that take well under a second — each block of every
//! forward pass ([`crate::engine::Blocks`]), each training step, each batch of tokenization while
//! pairs are built. The work then returns [`SubspaceError::Interrupted`] instead of finishing:
//! nothing is half-written, since every file is saved whole or not at all
//! ([`crate::store::write_atomic`]) and only after the work it records is done.
//!
//! Each [`crate::LanguageModel`] carries one ([`crate::LanguageModel::stop_flag`]), read by every
//! call on it; training also reads [`crate::DasConfig::stop`], which stops only between steps.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Result, SubspaceError};

/// A flag another thread (a signal handler) raises to stop long work cleanly.
#[derive(Debug, Clone, Default)]
pub struct StopFlag(pub Arc<AtomicBool>);

impl StopFlag {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn raise(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Clears the flag, so that the same model can be used again after a stop.
    pub fn lower(&self) {
        self.0.store(false, Ordering::SeqCst);
    }

    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// [`SubspaceError::Interrupted`] if the flag is raised: `?` after a piece of work stops
    /// the caller there. `resume` says what was kept and how to go on.
    pub fn check(&self, resume: impl FnOnce() -> String) -> Result<()> {
        if self.is_raised() {
            return Err(SubspaceError::Interrupted {
                step: None,
                resume: resume(),
            });
        }
        Ok(())
    }
}

/// What an interrupted call that writes nothing says about resuming.
pub(crate) fn nothing_saved() -> String {
    "nothing was saved; run it again to start over".into()
}

/// Checks `stop` (if any) with [`nothing_saved`].
pub(crate) fn check(stop: Option<&StopFlag>) -> Result<()> {
    stop.map_or(Ok(()), |s| s.check(nothing_saved))
}
