//! One writer per saved file: an exclusive lock on a sidecar `.<file>.lock`, so that two
//! processes saving (or training into) the same path do not interleave, and the second is told
//! instead of silently overwriting the first.
//!
//! The lock is the operating system's (`flock` on Unix, `LockFileEx` on Windows, through
//! [`std::fs::File::try_lock`]): a process that dies releases it. The holder removes the sidecar
//! before unlocking; a process that opened the old sidecar just before that notices (the path no
//! longer names the file it locked) and tries again, so two processes never both hold a lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::error::{Result, SubspaceError};

/// Held while a file is written; released (and its sidecar removed) on drop.
#[derive(Debug)]
pub struct FileLock {
    file: Option<File>,
    lock_path: PathBuf,
}

/// The sidecar of `path`: `dir/.name.lock`.
pub fn lock_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.lock"))
}

impl FileLock {
    /// Takes the lock of `path`, or fails at once with [`SubspaceError::Busy`] if another
    /// process (or another handle in this one) holds it.
    pub fn acquire(path: &Path) -> Result<FileLock> {
        let lock_path = lock_path(path);
        let io = |action, source| SubspaceError::Io {
            action,
            path: lock_path.clone(),
            source,
        };
        for _ in 0..16 {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(|e| io("create the lock file", e))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    return Err(SubspaceError::Busy {
                        path: path.to_path_buf(),
                        lock: lock_path,
                    });
                }
                Err(TryLockError::Error(e)) => return Err(io("lock", e)),
            }
            if same_file(&file, &lock_path) {
                return Ok(FileLock {
                    file: Some(file),
                    lock_path,
                });
            }
            // The previous holder removed the sidecar between our open and our lock: we locked
            // a file nobody else will see. Try again with a fresh one.
        }
        Err(SubspaceError::Busy {
            path: path.to_path_buf(),
            lock: lock_path,
        })
    }
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    // Windows does not let an open file be removed, so the sidecar cannot change under us.
    path.exists()
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Remove first, then unlock (closing the file): see the module's note.
        let _ = std::fs::remove_file(&self.lock_path);
        drop(self.file.take());
    }
}
