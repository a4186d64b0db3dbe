//! Typed socket options: the one place where an option's value crosses
//! `getsockopt`/`setsockopt` as a raw pointer and a length.
//!
//! The value types are the kernel's own C structures and integers, marked
//! [`OptionValue`]; callers name the option and get or pass a value, with
//! no `unsafe` of their own. [`receive_drops`] and [`force_buffer_sizes`]
//! are the two options that more than one kind of socket needs.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// A value a socket option reads or writes whole: a C integer or a plain C
/// structure of integers.
///
/// # Safety
/// Every bit pattern of the type's size must be a valid value: the kernel
/// writes whatever it has into it (after it starts all-zero), and writes
/// fewer bytes than the type's size where an older kernel's structure is
/// shorter.
pub unsafe trait OptionValue: Copy {}

// SAFETY: plain integers; every bit pattern is valid.
unsafe impl OptionValue for libc::c_int {}
// SAFETY: as above.
unsafe impl OptionValue for u32 {}
// SAFETY: as above.
unsafe impl<const N: usize> OptionValue for [u32; N] {}
// SAFETY: C structures of integers only.
unsafe impl OptionValue for libc::tpacket_stats {}
// SAFETY: as above.
unsafe impl OptionValue for libc::packet_mreq {}
// SAFETY: as above.
unsafe impl OptionValue for libc::xdp_statistics {}
// SAFETY: as above.
unsafe impl OptionValue for libc::xdp_options {}
// SAFETY: as above.
unsafe impl OptionValue for libc::xdp_mmap_offsets {}
// SAFETY: as above.
unsafe impl OptionValue for libc::xdp_umem_reg {}
// SAFETY: as above.
unsafe impl OptionValue for libc::tcp_info {}
// SAFETY: a length and a raw pointer, both valid with any bits (the kernel
// only follows the pointer on `setsockopt`, where the caller built it).
unsafe impl OptionValue for libc::sock_fprog {}

/// `getsockopt(fd, level, name)` into a `T`.
///
/// The kernel may answer with fewer bytes than `T` holds (an older kernel's
/// shorter `tcp_info` or `xdp_statistics`): the fields it did not write stay
/// zero, which is what every caller wants of a counter or field the kernel
/// does not have, so the returned length is not checked.
pub fn get<T: OptionValue>(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int) -> io::Result<T> {
    // SAFETY: all-zero is a valid `T` (`OptionValue`'s promise).
    let mut value: T = unsafe { std::mem::zeroed() };
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `value`, a live
    // local; any bytes it writes leave a valid `T`. The descriptor is
    // borrowed, so it stays open for the call.
    let r = unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, (&raw mut value).cast(), &mut len) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(value) }
}

/// `setsockopt(fd, level, name, value)`.
pub fn set<T: OptionValue>(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: the kernel reads exactly `size_of::<T>()` bytes from `value`,
    // a live reference; the descriptor is borrowed, so it stays open.
    let r = unsafe {
        libc::setsockopt(fd.as_raw_fd(), level, name, (value as *const T).cast(), size_of::<T>() as libc::socklen_t)
    };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// The socket's pending error (`SO_ERROR`, which reading clears).
pub fn take_error(fd: BorrowedFd<'_>) -> io::Result<Option<io::Error>> {
    let code: libc::c_int = get(fd, libc::SOL_SOCKET, libc::SO_ERROR)?;
    Ok((code != 0).then(|| io::Error::from_raw_os_error(code)))
}

/// Index of the drop counter in `SO_MEMINFO`'s array (`SK_MEMINFO_DROPS`,
/// `include/uapi/linux/sock_diag.h`).
const SK_MEMINFO_DROPS: usize = 8;

/// Packets the kernel dropped on their way into this socket since it was
/// opened (its receive buffer was full, or a filter refused them): the
/// socket's `sk_drops`, read through `SO_MEMINFO` (Linux 4.12+), the
/// counter `ss -m` shows as `d`. It wraps at 2^32: take differences with
/// `wrapping_sub`. A dropped UDP GRO train counts at least once (once on
/// Linux 6.18, measured: a train of 10 datagrams dropped whole added 1).
pub fn receive_drops(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let meminfo: [u32; SK_MEMINFO_DROPS + 1] = get(fd, libc::SOL_SOCKET, libc::SO_MEMINFO)?;
    Ok(meminfo[SK_MEMINFO_DROPS])
}

/// Receive and send buffer sizes a socket ended up with, in bytes as the
/// kernel accounts them (twice what was asked: the kernel's bookkeeping
/// share).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferSizes {
    /// `SO_RCVBUF` as read back.
    pub receive: usize,
    /// `SO_SNDBUF` as read back.
    pub send: usize,
}

/// Asks for `bytes` of receive and send buffer. `SO_RCVBUF`/`SO_SNDBUF`
/// are capped by `net.core.rmem_max`/`wmem_max` (208 KiB on a default
/// host), so where the cap cut the size down, the `…FORCE` variants (which
/// need `CAP_NET_ADMIN`, as the daemon has) set it past the cap. Best
/// effort: returns what the socket has in the end.
pub fn force_buffer_sizes(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<BufferSizes> {
    let want = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    for (name, force) in [(libc::SO_RCVBUF, libc::SO_RCVBUFFORCE), (libc::SO_SNDBUF, libc::SO_SNDBUFFORCE)] {
        let _ = set(fd, libc::SOL_SOCKET, name, &want);
        let got: libc::c_int = get(fd, libc::SOL_SOCKET, name)?;
        // The kernel doubles what it is given.
        if (got as usize) < bytes.saturating_mul(2) {
            let _ = set(fd, libc::SOL_SOCKET, force, &want);
        }
    }
    let receive: libc::c_int = get(fd, libc::SOL_SOCKET, libc::SO_RCVBUF)?;
    let send: libc::c_int = get(fd, libc::SOL_SOCKET, libc::SO_SNDBUF)?;
    Ok(BufferSizes { receive: receive.max(0) as usize, send: send.max(0) as usize })
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn a_full_receive_buffer_counts_every_datagram_it_turned_away() {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        // The smallest buffer the kernel allows (it rounds up to its floor).
        set(rx.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, &0).expect("SO_RCVBUF");
        assert_eq!(receive_drops(rx.as_fd()).expect("SO_MEMINFO"), 0, "nothing dropped yet");
        let sent: u64 = 2_000;
        for i in 0..sent {
            tx.send_to(&(i as u32).to_be_bytes(), rx.local_addr().expect("addr")).expect("send on loopback");
        }
        rx.set_nonblocking(true).expect("nonblocking");
        let mut received = 0;
        let mut buf = [0u8; 16];
        while rx.recv(&mut buf).is_ok() {
            received += 1;
        }
        let dropped = u64::from(receive_drops(rx.as_fd()).expect("SO_MEMINFO"));
        assert!(received < sent, "a minimal buffer cannot hold {sent} datagrams (got all)");
        assert_eq!(received + dropped, sent, "every datagram was either read or counted as dropped");
    }

    #[test]
    fn buffer_sizes_are_what_was_asked_or_the_hosts_cap_without_root() {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let cap = |name: &str| -> usize {
            let path = format!("/proc/sys/net/core/{name}");
            std::fs::read_to_string(&path).expect("the host's cap").trim().parse().expect("a number")
        };
        let want = 1 << 20;
        let sizes = force_buffer_sizes(socket.as_fd(), want).expect("buffer sizes");
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        // The kernel doubles what it is given; without CAP_NET_ADMIN the
        // host's cap holds it.
        let expected = |name| 2 * if root { want } else { want.min(cap(name)) };
        assert_eq!((sizes.receive, sizes.send), (expected("rmem_max"), expected("wmem_max")));
    }

    #[test]
    fn buffer_sizes_are_forced_past_the_hosts_cap_as_root() {
        if !crate::sys::testutil::have_root("buffer_sizes_are_forced_past_the_hosts_cap_as_root") {
            return;
        }
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        // Above any rmem_max a host is likely to have (4 MiB here, 208 KiB
        // by default): only the FORCE options get there.
        let want = 24 << 20;
        let sizes = force_buffer_sizes(socket.as_fd(), want).expect("buffer sizes");
        assert_eq!((sizes.receive, sizes.send), (2 * want, 2 * want), "doubled by the kernel, as asked");
    }
}
