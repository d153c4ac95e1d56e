//! The data directory and its lock.
//!
//! The embedded store allows one process per data directory. [`DataDir::open`]
//! takes an advisory lock on `<dir>/cairn.lock` and writes who holds it, so a
//! second command fails at once naming the holder instead of corrupting the
//! store. The lock goes away with the process, even on `SIGKILL`.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::error::{IndexError, Result};
use crate::registry::Registry;

/// A locked data directory.
#[derive(Debug)]
pub struct DataDir {
    root: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Creates (if needed) and locks `root`; `holder` describes this process
    /// (`cairn serve`), recorded with its pid for whoever finds it locked.
    pub fn open(root: &Path, holder: &str) -> Result<Self> {
        std::fs::create_dir_all(root)
            .map_err(|e| IndexError::io(format!("failed to create data dir {}", root.display()), e))?;
        let path = root.join("cairn.lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| IndexError::io(format!("failed to open {}", path.display()), e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut held = String::new();
                let _ = file.read_to_string(&mut held);
                let held = held.trim();
                return Err(IndexError::DataDirBusy {
                    dir: root.to_path_buf(),
                    holder: if held.is_empty() {
                        "another process".to_string()
                    } else {
                        held.to_string()
                    },
                });
            }
            Err(TryLockError::Error(e)) => {
                return Err(IndexError::io(format!("failed to lock {}", path.display()), e));
            }
        }
        let who = format!("{holder}, pid {}", std::process::id());
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(who.as_bytes()))
            .map_err(|e| IndexError::io(format!("failed to write {}", path.display()), e))?;
        Ok(Self {
            root: root.to_path_buf(),
            _lock: file,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of the serving generation's embedded store
    /// (`store/edge` unless the model changed since the first index; see
    /// [`crate::generation`]).
    pub fn edge_store(&self) -> PathBuf {
        let name = crate::generation::load(&self.root)
            .ok()
            .flatten()
            .map_or_else(|| crate::generation::LEGACY.to_string(), |g| g.name);
        self.edge_shard(&name)
    }

    /// Directory of the embedded store of generation `name`.
    pub fn edge_shard(&self, name: &str) -> PathBuf {
        self.root.join("store").join(name)
    }

    /// The registry of indexed repositories.
    pub fn registry(&self) -> Registry {
        Registry::new(self.root.join("repos.json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_open_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let _held = DataDir::open(dir.path(), "cairn serve").unwrap();
        let err = DataDir::open(dir.path(), "cairn index").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("is in use by cairn serve, pid"), "{msg}");
        assert!(msg.ends_with("use its HTTP API"), "{msg}");
    }

    #[test]
    fn lock_is_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        drop(DataDir::open(dir.path(), "a").unwrap());
        DataDir::open(dir.path(), "b").unwrap();
    }
}
