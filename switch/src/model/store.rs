//! Persistence of the [`Model`] in a state directory: `state.json`
//! (versioned JSON, replaced atomically) guarded by an exclusive lock on
//! `state.lock` so two daemons cannot share one directory.

use std::fs::{self, DirBuilder, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::ModelError;
use super::state::{Model, STATE_VERSION};

/// Name of the state file inside the state directory.
pub const STATE_FILE: &str = "state.json";
/// Name of the temporary file a save writes before renaming it over [`STATE_FILE`].
pub const TMP_FILE: &str = "state.json.tmp";
/// Name of the lock file inside the state directory.
pub const LOCK_FILE: &str = "state.lock";

/// Why the state could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// cannot {op} {path}: {source}
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done ("create", "read", "write", "rename to", "sync", "lock").
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// state directory {dir} is in use by another vswitchd (lock on {dir}/state.lock is held)
    #[error(
        "state directory {} is in use by another vswitchd (lock on {} is held)",
        dir.display(),
        dir.join(LOCK_FILE).display()
    )]
    Locked {
        /// The state directory.
        dir: PathBuf,
    },
    /// state file {path} is corrupt ({reason}); repair it or move it away to start from an empty state
    #[error(
        "state file {} is corrupt ({reason}); repair it or move it away to start from an empty state",
        path.display()
    )]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// state file {path} has version {version}, but this vswitchd only reads version 1
    #[error(
        "state file {} has version {version}, but this vswitchd only reads version {STATE_VERSION}",
        path.display()
    )]
    UnsupportedVersion {
        /// The state file.
        path: PathBuf,
        /// The version found.
        version: u64,
    },
}

/// Why [`Store::apply`] failed; in either case the live model is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The model refused the change.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The change was valid but could not be persisted.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An open, locked state directory. The lock is held until the `Store` is dropped.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    _lock: File,
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { op, path, source }
}

impl Store {
    /// Opens (creating with mode 0700 if missing) and locks `state_dir`, and
    /// loads its model. Without a state file the model is fresh (predefined
    /// networks only) and is saved at once, so their ids stay stable.
    pub fn open(state_dir: impl AsRef<Path>) -> Result<(Store, Model), StoreError> {
        let dir = state_dir.as_ref().to_path_buf();
        DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(io_err("create", &dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_err("open", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(StoreError::Locked { dir }),
            Err(TryLockError::Error(e)) => return Err(io_err("lock", &lock_path)(e)),
        }
        let store = Store { dir, _lock: lock };
        let path = store.state_path();
        let model = match fs::read(&path) {
            Ok(bytes) => decode(&path, &bytes)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let model = Model::new();
                store.save(&model)?;
                model
            }
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        Ok((store, model))
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The state file's path.
    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Persists `model` atomically: write `state.json.tmp`, fsync it, rename
    /// it over `state.json`, fsync the directory. A crash at any point leaves
    /// either the old or the new state; a leftover `.tmp` is overwritten by
    /// the next save and never read. An error means the old state is still
    /// the saved one.
    pub fn save(&self, model: &Model) -> Result<(), StoreError> {
        let tmp = self.dir.join(TMP_FILE);
        let path = self.state_path();
        let mut bytes = serde_json::to_vec_pretty(model).map_err(|e| StoreError::Io {
            op: "serialize state for",
            path: path.clone(),
            source: io::Error::other(e),
        })?;
        bytes.push(b'\n');
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        f.write_all(&bytes).map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("sync", &tmp))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io_err("rename to", &path))?;
        // From the rename on, the new state is the state: any restart (kill
        // -9 included) reads it, and only a power loss before the directory
        // reaches the disk could bring the old one back. So a directory sync
        // that fails is logged, not returned: an error would tell the caller
        // that nothing changed, and it would undo what a restart keeps.
        if let Err(e) = File::open(&self.dir).and_then(|d| d.sync_all()) {
            tracing::error!(dir = %self.dir.display(), error = %e, "state saved, but its directory could not be synced");
        }
        Ok(())
    }

    /// Applies `op` to a copy of `model`, persists the copy, then replaces
    /// `model` with it. On any error `model` (and the state file) is unchanged.
    ///
    /// When the daemon has side effects that may fail, it can instead do the
    /// steps itself: clone, apply, perform side effects, [`Store::save`], swap.
    pub fn apply<T>(
        &self,
        model: &mut Model,
        op: impl FnOnce(&mut Model) -> Result<T, ModelError>,
    ) -> Result<T, ApplyError> {
        let mut next = model.clone();
        let out = op(&mut next)?;
        self.save(&next)?;
        *model = next;
        Ok(out)
    }
}

/// Parses a state file's bytes, checking the version before the layout.
fn decode(path: &Path, bytes: &[u8]) -> Result<Model, StoreError> {
    #[derive(Deserialize)]
    struct Header {
        version: u64,
    }
    let corrupt = |e: serde_json::Error| StoreError::Corrupt { path: path.to_path_buf(), reason: e.to_string() };
    let header: Header = serde_json::from_slice(bytes).map_err(corrupt)?;
    if header.version != u64::from(STATE_VERSION) {
        return Err(StoreError::UnsupportedVersion { path: path.to_path_buf(), version: header.version });
    }
    serde_json::from_slice(bytes).map_err(corrupt)
}
