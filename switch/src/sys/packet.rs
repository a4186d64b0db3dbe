//! `AF_PACKET` sockets on a host interface: the `raw` uplink port type.
//!
//! The socket is bound to one interface with `ETH_P_ALL` and set up so it
//! behaves like a TAP queue for the datapath:
//!
//! - `PACKET_VNET_HDR` with `PACKET_VNET_HDR_SZ` = 12 (Linux 6.2+): every
//!   frame read or written carries the same virtio-net header as the TAPs'
//!   (GSO type and size, partial checksums), so a TCP stream crosses an
//!   uplink as 64 KiB GSO frames and nothing is segmented in userspace;
//! - `PACKET_IGNORE_OUTGOING`: frames the host (or the switch) sends out of
//!   the interface are not read back;
//! - `PACKET_QDISC_BYPASS`: writes go straight to the driver;
//! - promiscuous membership (`PACKET_MR_PROMISC`), so frames for the
//!   sandboxes' MACs are received; the kernel drops it with the socket;
//! - non-blocking, for the datapath's edge-triggered epoll.
//!
//! The socket is created with protocol 0 (it receives nothing) and only the
//! `bind` names `ETH_P_ALL`, so no frame of another interface slips in
//! before it is bound.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Length of the virtio-net header in front of every frame.
const VNET_HDR_LEN: libc::c_int = 12;

/// One `AF_PACKET` socket bound to an interface (see the module docs).
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifname: String,
}

fn setopt(fd: RawFd, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` is a live int of the size passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

fn op_err(op: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("AF_PACKET {op}: {e}"))
}

impl PacketSocket {
    /// Opens a socket on `ifname` (in the calling thread's namespace).
    pub fn open(ifname: &str) -> io::Result<PacketSocket> {
        let name = std::ffi::CString::new(ifname).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `name` is a NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: plain socket creation.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(op_err("socket", io::Error::last_os_error()));
        }
        // SAFETY: the kernel just returned this descriptor; we own it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let raw = fd.as_raw_fd();
        setopt(raw, libc::PACKET_VNET_HDR, 1).map_err(|e| op_err("PACKET_VNET_HDR", e))?;
        setopt(raw, libc::PACKET_VNET_HDR_SZ, VNET_HDR_LEN).map_err(|e| op_err("PACKET_VNET_HDR_SZ", e))?;
        setopt(raw, libc::PACKET_IGNORE_OUTGOING, 1).map_err(|e| op_err("PACKET_IGNORE_OUTGOING", e))?;
        setopt(raw, libc::PACKET_QDISC_BYPASS, 1).map_err(|e| op_err("PACKET_QDISC_BYPASS", e))?;
        // SAFETY: `sockaddr_ll` is plain data; all-zero is valid.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: `addr` is a valid `sockaddr_ll` of the size passed.
        let r = unsafe {
            libc::bind(
                raw,
                (&addr as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(op_err("bind", io::Error::last_os_error()));
        }
        // SAFETY: `packet_mreq` is plain data; all-zero is valid.
        let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mreq.mr_ifindex = ifindex as i32;
        mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
        // SAFETY: `mreq` is a valid `packet_mreq` of the size passed.
        let r = unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                (&mreq as *const libc::packet_mreq).cast(),
                size_of::<libc::packet_mreq>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(op_err("promiscuous membership", io::Error::last_os_error()));
        }
        Ok(PacketSocket { fd, ifname: ifname.to_owned() })
    }

    /// The interface.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Reads one frame, virtio-net header first; `ENETDOWN` once the
    /// interface is gone.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
    }

    /// Writes one frame, virtio-net header first.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: the kernel reads `buf.len()` bytes from `buf`.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
    }

    /// Writes one frame gathered from `bufs` (header, then frame).
    pub fn send_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // SAFETY: `IoSlice` is ABI-compatible with `iovec`; the kernel reads
        // only the slices' bytes.
        let n = unsafe { libc::writev(self.fd.as_raw_fd(), bufs.as_ptr().cast(), bufs.len() as libc::c_int) };
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
    }

    /// The socket's pending error (`SO_ERROR`).
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        let mut code: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: the kernel writes one int into `code`.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut code as *mut i32).cast(),
                &mut len,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((code != 0).then(|| io::Error::from_raw_os_error(code)))
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
