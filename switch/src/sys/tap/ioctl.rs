//! The handful of `ioctl(2)` calls on `/dev/net/tun` file descriptors, each a
//! thin safe function. Nothing here knows about policy.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Length of an interface name buffer, including the trailing NUL.
pub(super) const IFNAMSIZ: usize = libc::IFNAMSIZ;

/// `struct ifreq` restricted to the members TUN ioctls use: the name and the
/// `short` flags word of the union. Padded to the full size of `ifreq`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct IfReqFlags {
    name: [libc::c_char; IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

const _: () = assert!(size_of::<IfReqFlags>() == size_of::<libc::ifreq>());

impl IfReqFlags {
    /// A request for `name` (at most `IFNAMSIZ - 1` bytes, checked by the
    /// caller; longer input is truncated) with `flags`.
    pub(super) fn new(name: &str, flags: libc::c_int) -> Self {
        let mut req = Self {
            name: [0; IFNAMSIZ],
            // The TUN flags all fit in the 16-bit `ifr_flags`.
            flags: flags as libc::c_short,
            _pad: [0; 22],
        };
        for (dst, src) in req.name.iter_mut().zip(name.bytes().take(IFNAMSIZ - 1)) {
            *dst = src as libc::c_char;
        }
        req
    }

    /// The interface name the kernel wrote back.
    pub(super) fn name(&self) -> String {
        let bytes: Vec<u8> = self.name.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The flags word the kernel wrote back.
    pub(super) fn flags(&self) -> libc::c_int {
        libc::c_int::from(self.flags) & 0xffff
    }
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// An ioctl whose argument is a pointer to an `ifreq` (`TUNSETIFF`,
/// `TUNGETIFF`, `TUNSETQUEUE`).
pub(super) fn ifreq(fd: BorrowedFd<'_>, request: libc::Ioctl, req: &mut IfReqFlags) -> io::Result<()> {
    // SAFETY: `fd` is a valid open descriptor for the duration of the call and
    // `req` points to a writable `struct ifreq` of the right size (asserted
    // above) that outlives the call. Only its size matters: the kernel copies
    // it in and out with copy_{from,to}_user, which need no alignment (it is
    // 2-aligned, a libc ifreq 8).
    check(unsafe { libc::ioctl(fd.as_raw_fd(), request, req as *mut IfReqFlags) })
}

/// An ioctl whose argument is a pointer to an `int` (`TUNSETVNETHDRSZ`).
pub(super) fn int_ptr(fd: BorrowedFd<'_>, request: libc::Ioctl, value: libc::c_int) -> io::Result<()> {
    let mut v = value;
    // SAFETY: `fd` is valid for the call; the kernel reads one `int` through
    // the pointer, which refers to a live local.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), request, &mut v as *mut libc::c_int) })
}

/// An ioctl whose argument is an integer passed by value (`TUNSETOFFLOAD`,
/// `TUNSETPERSIST`).
pub(super) fn by_value(fd: BorrowedFd<'_>, request: libc::Ioctl, value: libc::c_ulong) -> io::Result<()> {
    // SAFETY: `fd` is valid for the call; the argument is a plain integer, no
    // memory is passed to the kernel.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), request, value) })
}

/// `if_nametoindex(3)` in the calling thread's network namespace; `None` if no
/// such interface exists there.
pub(super) fn if_nametoindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}
