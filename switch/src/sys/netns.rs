//! Network namespaces: create/remove named ones the way `ip netns add/del`
//! does (so `ip netns exec NAME` works on them), open existing ones by path,
//! and run code inside one on a dedicated thread ([`run_in`]).
//!
//! Namespaces are per thread for `setns(2)`/`unshare(2)`; this module never
//! changes the namespace of a caller's thread. A socket keeps the namespace it
//! was created in, so the usual pattern is "create the socket (or TAP queue)
//! inside [`run_in`], use it from anywhere".

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use thiserror::Error;

use super::netlink::{Netlink, NetlinkError};

/// Directory holding the bind mounts of named namespaces (iproute2's choice).
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Longest accepted namespace name (`NAME_MAX`).
const MAX_NAME_LEN: usize = 255;

/// Errors from namespace operations.
#[derive(Debug, Error)]
pub enum NetNsError {
    /// The name cannot be a file name in `/run/netns`.
    #[error("invalid netns name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A namespace of that name already exists.
    #[error("netns {0:?} already exists")]
    AlreadyExists(String),
    /// No namespace file at that path.
    #[error("netns {0} does not exist")]
    NotFound(PathBuf),
    /// A file-system or mount operation failed.
    #[error("{op} {path} failed")]
    Io {
        /// What was being done (`mkdir`, `mount --bind`, `umount`, ...).
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `unshare(CLONE_NEWNET)` failed.
    #[error("unshare(CLONE_NEWNET) failed")]
    Unshare(#[source] io::Error),
    /// `setns(fd, CLONE_NEWNET)` failed.
    #[error("setns into netns failed")]
    Setns(#[source] io::Error),
    /// The helper thread could not be spawned.
    #[error("cannot spawn netns helper thread")]
    Spawn(#[source] io::Error),
    /// The closure run inside the namespace panicked.
    #[error("the closure run inside the netns panicked")]
    Panicked,
    /// Bringing `lo` up in the new namespace failed.
    #[error("bringing lo up in new netns failed")]
    Loopback(#[source] Box<NetlinkError>),
}

/// An open network namespace (a file descriptor on its nsfs inode).
#[derive(Debug)]
pub struct NetNs {
    file: File,
    path: PathBuf,
    name: Option<String>,
}

impl NetNs {
    /// Creates the named namespace `/run/netns/NAME` like `ip netns add NAME`
    /// and brings its `lo` up. Fails with [`NetNsError::AlreadyExists`] if
    /// the name is taken. The namespace outlives this handle until
    /// [`NetNs::remove_named`].
    pub fn create_named(name: &str) -> Result<NetNs, NetNsError> {
        validate_name(name)?;
        prepare_run_dir()?;
        let path = Path::new(NETNS_RUN_DIR).join(name);
        // The mount point: an empty file, created exclusively.
        match OpenOptions::new().read(true).write(true).create_new(true).mode(0o0).open(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(NetNsError::AlreadyExists(name.to_owned()));
            }
            Err(source) => return Err(NetNsError::Io { op: "create", path, source }),
        }
        let result = bind_new_netns(&path).and_then(|()| {
            let ns = NetNs::open_path(&path)?;
            Netlink::open_in(&ns)
                .and_then(|mut nl| nl.set_link_up("lo"))
                .map_err(|e| NetNsError::Loopback(Box::new(e)))?;
            Ok(ns)
        });
        match result {
            Ok(mut ns) => {
                ns.name = Some(name.to_owned());
                Ok(ns)
            }
            Err(e) => {
                // Best effort: leave nothing half-made behind.
                let _ = umount_detach(&path);
                let _ = fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// Opens `/run/netns/NAME`.
    pub fn open_named(name: &str) -> Result<NetNs, NetNsError> {
        validate_name(name)?;
        let mut ns = NetNs::open_path(Path::new(NETNS_RUN_DIR).join(name))?;
        ns.name = Some(name.to_owned());
        Ok(ns)
    }

    /// Opens a namespace file, e.g. `/proc/PID/ns/net` or `/run/netns/NAME`.
    pub fn open_path(path: impl AsRef<Path>) -> Result<NetNs, NetNsError> {
        let path = path.as_ref().to_path_buf();
        match OpenOptions::new().read(true).custom_flags(libc::O_CLOEXEC).open(&path) {
            Ok(file) => Ok(NetNs { file, path, name: None }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(NetNsError::NotFound(path)),
            Err(source) => Err(NetNsError::Io { op: "open", path, source }),
        }
    }

    /// The namespace of the calling thread (normally the host namespace the
    /// daemon runs in).
    pub fn current() -> Result<NetNs, NetNsError> {
        NetNs::open_path("/proc/thread-self/ns/net")
    }

    /// Removes a named namespace like `ip netns del NAME`: lazy unmount, then
    /// unlink. The namespace itself dies when nothing else holds it (open
    /// handles, sockets, processes).
    pub fn remove_named(name: &str) -> Result<(), NetNsError> {
        validate_name(name)?;
        let path = Path::new(NETNS_RUN_DIR).join(name);
        if fs::symlink_metadata(&path).is_err() {
            return Err(NetNsError::NotFound(path));
        }
        // EINVAL: not a mount point (half-created); still unlink it.
        if let Err(source) = umount_detach(&path)
            && source.raw_os_error() != Some(libc::EINVAL)
        {
            return Err(NetNsError::Io { op: "umount", path, source });
        }
        fs::remove_file(&path).map_err(|source| NetNsError::Io { op: "unlink", path, source })
    }

    /// The name, if opened or created by name.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The path the handle was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The namespace identity (device, inode of its nsfs file); equal for two
    /// handles on the same namespace.
    pub fn id(&self) -> Result<(u64, u64), NetNsError> {
        let md =
            self.file.metadata().map_err(|source| NetNsError::Io { op: "fstat", path: self.path.clone(), source })?;
        Ok((md.dev(), md.ino()))
    }

    /// True if the calling thread is in this namespace.
    pub fn is_current(&self) -> Result<bool, NetNsError> {
        Ok(self.id()? == NetNs::current()?.id()?)
    }
}

impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl AsRawFd for NetNs {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// Runs `f` on a fresh thread that first joins `ns` (`setns`), and returns its
/// result. The caller's thread is never moved. Sockets and TAP queues opened
/// inside `f` stay bound to `ns` after `f` returns.
pub fn run_in<T, F>(ns: &NetNs, f: F) -> Result<T, NetNsError>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let fd = ns.as_fd();
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name("netns".into())
            .spawn_scoped(s, move || {
                setns_net(fd)?;
                Ok(f())
            })
            .map_err(NetNsError::Spawn)?;
        handle.join().map_err(|_| NetNsError::Panicked)?
    })
}

fn validate_name(name: &str) -> Result<(), NetNsError> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name.len() > MAX_NAME_LEN {
        Some("longer than 255 bytes")
    } else if name == "." || name == ".." {
        Some("'.' and '..' are not names")
    } else if name.contains('/') {
        Some("contains '/'")
    } else if name.contains('\0') {
        Some("contains NUL")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(NetNsError::InvalidName { name: name.to_owned(), reason }),
        None => Ok(()),
    }
}

/// Makes `/run/netns` exist and be a shared mount (bind-mounted onto itself
/// first if it is not a mount point), so bind mounts made in it propagate to
/// other mount namespaces, exactly as iproute2 does.
fn prepare_run_dir() -> Result<(), NetNsError> {
    // Serialised so two concurrent creators do not both bind-mount the
    // directory onto itself.
    static LOCK: Mutex<()> = Mutex::new(());
    let _held = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = Path::new(NETNS_RUN_DIR);
    if let Err(source) = fs::create_dir_all(dir) {
        return Err(NetNsError::Io { op: "mkdir", path: dir.into(), source });
    }
    let mut bound = false;
    loop {
        match mount(None, dir, libc::MS_SHARED | libc::MS_REC) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && !bound => {
                // Not a mount point yet: bind it onto itself and retry.
                mount(Some(dir), dir, libc::MS_BIND | libc::MS_REC).map_err(|source| NetNsError::Io {
                    op: "mount --bind",
                    path: dir.into(),
                    source,
                })?;
                bound = true;
            }
            Err(source) => {
                return Err(NetNsError::Io { op: "mount --make-shared", path: dir.into(), source });
            }
        }
    }
}

/// On a short-lived thread: `unshare(CLONE_NEWNET)` then bind-mount the
/// thread's new namespace onto `target`.
fn bind_new_netns(target: &Path) -> Result<(), NetNsError> {
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name("netns-create".into())
            .spawn_scoped(s, || {
                // SAFETY: unshare takes a flag word and touches no memory of ours;
                // it only changes this (throw-away) thread's network namespace.
                if unsafe { libc::unshare(libc::CLONE_NEWNET) } < 0 {
                    return Err(NetNsError::Unshare(io::Error::last_os_error()));
                }
                let src = Path::new("/proc/thread-self/ns/net");
                mount(Some(src), target, libc::MS_BIND).map_err(|source| NetNsError::Io {
                    op: "mount --bind /proc/thread-self/ns/net",
                    path: target.into(),
                    source,
                })
            })
            .map_err(NetNsError::Spawn)?;
        handle.join().map_err(|_| NetNsError::Panicked)?
    })
}

fn setns_net(fd: BorrowedFd<'_>) -> Result<(), NetNsError> {
    // SAFETY: `fd` is a valid descriptor borrowed for the call; setns only
    // changes the calling thread's namespace.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
        return Err(NetNsError::Setns(io::Error::last_os_error()));
    }
    Ok(())
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `mount(source, target, "none", flags, NULL)`; `source` `None` means "" (for
/// propagation changes).
fn mount(source: Option<&Path>, target: &Path, flags: libc::c_ulong) -> io::Result<()> {
    let src = match source {
        Some(p) => cpath(p)?,
        None => CString::default(),
    };
    let tgt = cpath(target)?;
    let fstype = c"none";
    // SAFETY: all pointers are valid NUL-terminated strings that outlive the
    // call; `data` is NULL, which mount(2) accepts for bind/propagation mounts.
    let rc = unsafe { libc::mount(src.as_ptr(), tgt.as_ptr(), fstype.as_ptr(), flags, std::ptr::null()) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

fn umount_detach(target: &Path) -> io::Result<()> {
    let tgt = cpath(target)?;
    // SAFETY: `tgt` is a valid NUL-terminated string that outlives the call.
    if unsafe { libc::umount2(tgt.as_ptr(), libc::MNT_DETACH) } < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_names_are_refused_with_typed_error() {
        let long = "x".repeat(256);
        for bad in ["", ".", "..", "a/b", "/etc", "a\0b", long.as_str()] {
            match NetNs::create_named(bad) {
                Err(NetNsError::InvalidName { name, .. }) => assert_eq!(name, bad),
                other => panic!("{bad:?}: expected InvalidName, got {other:?}"),
            }
            assert!(matches!(NetNs::remove_named(bad), Err(NetNsError::InvalidName { .. })));
        }
        assert!(validate_name(&"x".repeat(255)).is_ok());
    }

    #[test]
    fn opening_a_missing_path_is_not_found() {
        assert!(matches!(NetNs::open_path("/nonexistent/vswitch/ns"), Err(NetNsError::NotFound(_))));
    }
}
