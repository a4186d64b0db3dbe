//! TAP devices with a virtio-net header and checksum/segmentation offloads.
//!
//! A [`Tap`] is one queue (one file descriptor) of a multi-queue TAP opened
//! with `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE`. Every frame read
//! or written is prefixed by a 12-byte [`VirtioNetHdr`]. The descriptor is
//! non-blocking and close-on-exec; register it with mio/epoll through
//! [`AsRawFd`]/[`AsFd`] and treat [`io::ErrorKind::WouldBlock`] as "no more
//! frames for now".
//!
//! Offloads are probed once per open: the richest set the kernel accepts is
//! kept (see [`Offloads`]), and frames read from the TAP may then be GSO
//! super-frames (up to 64 KiB) or carry a partial checksum. Writing such a
//! frame, header included, to another TAP that negotiated the same offloads is
//! always valid; any other destination must segment/checksum in software.
//!
//! Namespaces: a TAP name is resolved in the network namespace of the thread
//! that opens `/dev/net/tun`. After a TAP has been moved into a sandbox, a
//! re-attach by name (after a daemon restart, or [`Tap::open_queue`]) must run
//! inside that namespace, e.g. `netns::run_in(&ns, || Tap::create(..))`, and
//! under the name it has there.

mod ioctl;

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, Ordering};

use thiserror::Error;

use crate::wire::VirtioNetHdr;

/// Path of the TUN/TAP clone device.
const TUN_PATH: &str = "/dev/net/tun";

/// Errors from creating or controlling a TAP.
#[derive(Debug, Error)]
pub enum TapError {
    /// The interface name is not a valid Linux interface name.
    #[error("invalid TAP name {0:?}: must be 1-15 bytes without '/', ':', NUL or whitespace and not '.' or '..'")]
    InvalidName(String),
    /// Attaching was requested but no interface of that name exists in this namespace.
    #[error("no interface named {0:?} exists in the current network namespace")]
    NotFound(String),
    /// Opening the TUN clone device failed.
    #[error("cannot open {TUN_PATH}")]
    OpenTun(#[source] io::Error),
    /// An ioctl on the TAP failed.
    #[error("{op} on TAP {name:?} failed")]
    Ioctl {
        /// The ioctl, e.g. `TUNSETIFF`.
        op: &'static str,
        /// The interface name.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Checksum/segmentation offloads negotiated with `TUNSETOFFLOAD`
/// (a set of `TUN_F_*` bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Offloads(u32);

impl Offloads {
    /// No offloads: every frame is complete and checksummed.
    pub const NONE: Self = Self(0);
    /// Partial checksums (`VirtioNetHdr::FLAG_NEEDS_CSUM`).
    pub const CSUM: Self = Self(libc::TUN_F_CSUM);
    /// TCP/IPv4 segmentation offload.
    pub const TSO4: Self = Self(libc::TUN_F_TSO4);
    /// TCP/IPv6 segmentation offload.
    pub const TSO6: Self = Self(libc::TUN_F_TSO6);
    /// TSO with ECN (CWR) bits.
    pub const TSO_ECN: Self = Self(libc::TUN_F_TSO_ECN);
    /// UDP/IPv4 segmentation offload (Linux 6.2+).
    pub const USO4: Self = Self(libc::TUN_F_USO4);
    /// UDP/IPv6 segmentation offload (Linux 6.2+).
    pub const USO6: Self = Self(libc::TUN_F_USO6);

    /// The sets tried in order; the first one the kernel accepts wins.
    const PROBE_ORDER: [Self; 4] = [
        Self(
            libc::TUN_F_CSUM
                | libc::TUN_F_TSO4
                | libc::TUN_F_TSO6
                | libc::TUN_F_TSO_ECN
                | libc::TUN_F_USO4
                | libc::TUN_F_USO6,
        ),
        Self(libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN),
        Self(libc::TUN_F_CSUM),
        Self(0),
    ];

    /// The raw `TUN_F_*` bits.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// True if every bit of `other` is set in `self`.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Offloads {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl std::fmt::Display for Offloads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const NAMES: [(Offloads, &str); 6] = [
            (Offloads::CSUM, "csum"),
            (Offloads::TSO4, "tso4"),
            (Offloads::TSO6, "tso6"),
            (Offloads::TSO_ECN, "tso_ecn"),
            (Offloads::USO4, "uso4"),
            (Offloads::USO6, "uso6"),
        ];
        let names: Vec<&str> = NAMES.iter().filter(|(o, _)| self.contains(*o)).map(|(_, n)| *n).collect();
        if names.is_empty() { f.write_str("none") } else { f.write_str(&names.join(",")) }
    }
}

/// How [`Tap::create`] treats an existing interface of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TapMode {
    /// Create the TAP, or attach a new queue to an existing TAP of that name.
    #[default]
    CreateOrAttach,
    /// Create the TAP; fail (`EBUSY`) if the name exists (`IFF_TUN_EXCL`).
    CreateNew,
    /// Attach to an existing TAP (e.g. a persistent one after a restart);
    /// fail with [`TapError::NotFound`] if there is none.
    AttachExisting,
}

/// Options for [`Tap::create`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TapOptions {
    /// Make the device persistent (`TUNSETPERSIST`): it survives the process
    /// (even `kill -9`) and can be re-attached by name.
    pub persist: bool,
    /// Create / attach semantics.
    pub mode: TapMode,
}

/// The flags every queue is opened with.
const BASE_FLAGS: libc::c_int = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR | libc::IFF_MULTI_QUEUE;

/// Logged once per process when the kernel refused the richest offload set.
static OFFLOAD_FALLBACK_LOGGED: AtomicBool = AtomicBool::new(false);

/// One queue of a TAP device (see the module docs).
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
    offloads: Offloads,
}

impl Tap {
    /// A receive buffer of this size holds any frame, including a 64 KiB GSO
    /// super-frame with its Ethernet/VLAN header and the virtio-net header.
    pub const RECV_BUF_LEN: usize = VirtioNetHdr::LEN + 65_536 + 64;

    /// Opens (creates or attaches, per `opts.mode`) the TAP `name` in the
    /// calling thread's network namespace, sets the 12-byte vnet header and
    /// negotiates offloads. An empty `name` lets the kernel choose (`tapN`;
    /// not allowed with [`TapMode::AttachExisting`]).
    pub fn create(name: &str, opts: TapOptions) -> Result<Tap, TapError> {
        validate_name(name, opts.mode == TapMode::AttachExisting)?;
        if opts.mode == TapMode::AttachExisting && ioctl::if_nametoindex(name).is_none() {
            return Err(TapError::NotFound(name.to_owned()));
        }
        let mut flags = BASE_FLAGS;
        if opts.mode == TapMode::CreateNew {
            flags |= libc::IFF_TUN_EXCL;
        }
        let mut tap = Self::open_queue_fd(name, flags)?;
        tap.offloads = tap.negotiate_offloads()?;
        if opts.persist {
            tap.set_persist(true)?;
        }
        tracing::debug!(tap = %tap.name, offloads = %tap.offloads, persist = opts.persist, "TAP queue opened");
        Ok(tap)
    }

    /// Attaches one more queue to this multi-queue TAP. Like a re-attach, it
    /// must be called in the namespace where the device now lives, under its
    /// current name there (see [`Tap::current_name`]).
    pub fn open_queue(&self) -> Result<Tap, TapError> {
        let name = self.current_name()?;
        Tap::create(&name, TapOptions { persist: false, mode: TapMode::AttachExisting })
    }

    fn open_queue_fd(name: &str, flags: libc::c_int) -> Result<Tap, TapError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK) // std adds O_CLOEXEC
            .open(TUN_PATH)
            .map_err(TapError::OpenTun)?;
        let mut req = ioctl::IfReqFlags::new(name, flags);
        ioctl::ifreq(file.as_fd(), libc::TUNSETIFF, &mut req).map_err(|source| TapError::Ioctl {
            op: "TUNSETIFF",
            name: name.to_owned(),
            source,
        })?;
        let name = req.name();
        ioctl::int_ptr(file.as_fd(), libc::TUNSETVNETHDRSZ, VirtioNetHdr::LEN as libc::c_int)
            .map_err(|source| TapError::Ioctl { op: "TUNSETVNETHDRSZ", name: name.clone(), source })?;
        Ok(Tap { file, name, offloads: Offloads::NONE })
    }

    /// Tries the offload sets richest first; `EINVAL` means "not supported,
    /// try less", any other error is fatal.
    fn negotiate_offloads(&self) -> Result<Offloads, TapError> {
        let mut last_err = None;
        for (i, set) in Offloads::PROBE_ORDER.iter().enumerate() {
            match ioctl::by_value(self.as_fd(), libc::TUNSETOFFLOAD, libc::c_ulong::from(set.0)) {
                Ok(()) => {
                    if i > 0 && !OFFLOAD_FALLBACK_LOGGED.swap(true, Ordering::Relaxed) {
                        tracing::info!(
                            tap = %self.name,
                            wanted = %Offloads::PROBE_ORDER[0],
                            got = %set,
                            "kernel refused some TAP offloads; using a smaller set"
                        );
                    }
                    return Ok(*set);
                }
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last_err = Some(e),
                Err(source) => {
                    return Err(TapError::Ioctl { op: "TUNSETOFFLOAD", name: self.name.clone(), source });
                }
            }
        }
        Err(TapError::Ioctl {
            op: "TUNSETOFFLOAD",
            name: self.name.clone(),
            source: last_err.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL)),
        })
    }

    /// The name the device had when this queue was opened.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device's current name and flags (`TUNGETIFF`).
    fn get_iff(&self) -> Result<ioctl::IfReqFlags, TapError> {
        let mut req = ioctl::IfReqFlags::new("", 0);
        ioctl::ifreq(self.as_fd(), libc::TUNGETIFF, &mut req).map_err(|source| TapError::Ioctl {
            op: "TUNGETIFF",
            name: self.name.clone(),
            source,
        })?;
        Ok(req)
    }

    /// The device's name now (`TUNGETIFF`); differs from [`Tap::name`] after
    /// a rename, e.g. to `eth0` inside a sandbox.
    pub fn current_name(&self) -> Result<String, TapError> {
        Ok(self.get_iff()?.name())
    }

    /// True if the device is persistent (`IFF_PERSIST`, read via `TUNGETIFF`).
    pub fn is_persistent(&self) -> Result<bool, TapError> {
        Ok(self.get_iff()?.flags() & libc::IFF_PERSIST != 0)
    }

    /// The offloads the kernel accepted for this device.
    pub fn offloads(&self) -> Offloads {
        self.offloads
    }

    /// Sets or clears persistence. A non-persistent device disappears when
    /// its last queue is closed.
    pub fn set_persist(&self, persist: bool) -> Result<(), TapError> {
        ioctl::by_value(self.as_fd(), libc::TUNSETPERSIST, libc::c_ulong::from(persist))
            .map_err(|source| TapError::Ioctl { op: "TUNSETPERSIST", name: self.name.clone(), source })
    }

    /// Clears persistence and closes this queue: the device is removed once
    /// no other queue holds it.
    pub fn delete(self) -> Result<(), TapError> {
        self.set_persist(false)
    }

    /// Enables or disables this queue for transmit steering (`TUNSETQUEUE`
    /// with `IFF_ATTACH_QUEUE`/`IFF_DETACH_QUEUE`).
    pub fn set_queue_enabled(&self, enabled: bool) -> Result<(), TapError> {
        let flag = if enabled { libc::IFF_ATTACH_QUEUE } else { libc::IFF_DETACH_QUEUE };
        let mut req = ioctl::IfReqFlags::new("", flag);
        ioctl::ifreq(self.as_fd(), libc::TUNSETQUEUE, &mut req).map_err(|source| TapError::Ioctl {
            op: "TUNSETQUEUE",
            name: self.name.clone(),
            source,
        })
    }

    /// Reads one frame: `buf` receives the 12-byte [`VirtioNetHdr`] followed
    /// by the Ethernet frame; returns the total length. Bytes 10..12
    /// (`num_buffers`) are zeroed, the kernel does not write them. Use a
    /// buffer of [`Tap::RECV_BUF_LEN`]; a shorter one truncates GSO frames.
    /// Returns `WouldBlock` when no frame is queued.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(nb) = buf.get_mut(10..VirtioNetHdr::LEN) {
            nb.fill(0);
        }
        (&self.file).read(buf)
    }

    /// Writes one frame; `buf` starts with the 12-byte [`VirtioNetHdr`].
    /// Returns `WouldBlock` if the device queue is full.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        (&self.file).write(buf)
    }

    /// Writes one frame gathered from `bufs` (e.g. header, then frame)
    /// without copying. The slices together form exactly one frame.
    pub fn send_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        (&self.file).write_vectored(bufs)
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// Linux `dev_valid_name` rules, plus the TUN length limit.
/// Whether this kernel's TAPs (and packet sockets) take `GSO_UDP_L4`
/// frames written with a virtio-net header: UDP segmentation offload in
/// tun and `virtio_net_hdr_to_skb` came with Linux 6.2. Read from the
/// running kernel's release; an unreadable one counts as too old.
pub fn kernel_takes_uso() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .and_then(|release| release_version(&release))
        .is_some_and(|version| version >= (6, 2))
}

/// The (major, minor) of a kernel release string such as `6.18.0-1-amd64`.
fn release_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn validate_name(name: &str, required: bool) -> Result<(), TapError> {
    let bad = (required && name.is_empty())
        || name.len() >= ioctl::IFNAMSIZ
        || name == "."
        || name == ".."
        || name.bytes().any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace());
    if bad { Err(TapError::InvalidName(name.to_owned())) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn kernel_releases_read_as_major_and_minor() {
        assert_eq!(release_version("6.18.0-1-amd64\n"), Some((6, 18)));
        assert_eq!(release_version("6.2"), Some((6, 2)));
        assert_eq!(release_version("5.15.0-91-generic"), Some((5, 15)));
        assert_eq!(release_version("garbage"), None);
        assert!(release_version("6.1.0").is_some_and(|v| v < (6, 2)));
    }

    use super::*;

    #[test]
    fn names_are_validated() {
        for bad in [".", "..", "a/b", "a:b", "a b", "a\0b", "0123456789abcdef"] {
            assert!(matches!(validate_name(bad, false), Err(TapError::InvalidName(_))), "{bad:?}");
        }
        assert!(validate_name("", true).is_err());
        assert!(validate_name("", false).is_ok());
        assert!(validate_name("0123456789abcde", true).is_ok());
        assert!(validate_name("tap-vs.1_x", true).is_ok());
    }

    #[test]
    fn offloads_display_and_contains() {
        let all = Offloads::PROBE_ORDER[0];
        assert_eq!(all.to_string(), "csum,tso4,tso6,tso_ecn,uso4,uso6");
        assert_eq!(Offloads::NONE.to_string(), "none");
        assert!(all.contains(Offloads::TSO4 | Offloads::CSUM));
        assert!(!Offloads::CSUM.contains(Offloads::TSO4));
        // Every fallback is a subset of the previous set.
        for w in Offloads::PROBE_ORDER.windows(2) {
            assert!(w[0].contains(w[1]));
        }
    }

    #[test]
    fn ifreq_roundtrips_name_and_flags() {
        let r = ioctl::IfReqFlags::new("vs-tap0", BASE_FLAGS);
        assert_eq!(r.name(), "vs-tap0");
        assert_eq!(r.flags(), BASE_FLAGS);
    }
}
