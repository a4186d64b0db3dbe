//! The C structures of `sendmmsg`/`recvmmsg` (Linux, 64-bit layout), shared
//! by the std-only load generators that are built with plain `rustc`
//! (`benches/e2e/udpflood.rs`, `benches/attack/macflood.rs`) through
//! `#[path = "../support/mmsg.rs"] mod mmsg;`.

use std::os::raw::{c_int, c_uint, c_void};

/// `struct iovec` from `<sys/uio.h>`.
#[repr(C)]
pub struct IoVec {
    pub base: *mut c_void,
    pub len: usize,
}

/// `struct msghdr` from `<sys/socket.h>` (Linux, 64-bit layout).
#[repr(C)]
pub struct MsgHdr {
    pub name: *mut c_void,
    pub namelen: u32,
    pub iov: *mut IoVec,
    pub iovlen: usize,
    pub control: *mut c_void,
    pub controllen: usize,
    pub flags: c_int,
}

/// `struct mmsghdr` from `<sys/socket.h>`.
#[repr(C)]
pub struct MMsgHdr {
    pub hdr: MsgHdr,
    pub len: c_uint,
}

unsafe extern "C" {
    /// Sends up to `vlen` messages in one system call.
    pub fn sendmmsg(fd: c_int, msgs: *mut MMsgHdr, vlen: c_uint, flags: c_int) -> c_int;
}
