//! The one ethtool request the switch makes: turning transmit checksum
//! offload off on the sandbox's end of an AF_XDP port's veth pair.
//!
//! Why: a veth hands its peer frames whose TCP/UDP checksum is still partial
//! (`CHECKSUM_PARTIAL`: only the pseudo-header sum is filled in), which is
//! fine for the kernel but not for an XDP program, which sees the bytes
//! without the skb's checksum metadata; an AF_XDP socket would receive
//! frames with wrong checksums. With transmit checksumming off, the
//! sandbox's stack completes every checksum itself, as Open vSwitch's
//! AF_XDP documentation also prescribes for veths.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `ETHTOOL_STXCSUM`: set transmit checksum offload.
const ETHTOOL_STXCSUM: u32 = 0x17;
/// `ETHTOOL_GTXCSUM`: get it.
const ETHTOOL_GTXCSUM: u32 = 0x16;
/// `ETHTOOL_SGRO`: set generic receive offload.
const ETHTOOL_SGRO: u32 = 0x2c;

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

fn ethtool(ifname: &str, value: &mut EthtoolValue) -> io::Result<()> {
    if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("invalid interface name {ifname:?}")));
    }
    // SAFETY: plain socket creation; the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `ifreq` is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(ifname.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_data = (value as *mut EthtoolValue).cast();
    // SAFETY: `req` names the interface and points at `value`, which
    // outlives the call; SIOCETHTOOL reads and writes only those.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut req) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Turns transmit checksum offload of `ifname` (in the calling thread's
/// namespace) on or off; TSO, which needs it, goes off with it.
pub fn set_tx_checksum(ifname: &str, on: bool) -> io::Result<()> {
    ethtool(ifname, &mut EthtoolValue { cmd: ETHTOOL_STXCSUM, data: u32::from(on) })
}

/// Whether transmit checksum offload of `ifname` is on.
pub fn tx_checksum(ifname: &str) -> io::Result<bool> {
    let mut value = EthtoolValue { cmd: ETHTOOL_GTXCSUM, data: 0 };
    ethtool(ifname, &mut value)?;
    Ok(value.data != 0)
}

/// Turns generic receive offload of `ifname` on or off. On a veth this also
/// gives the device a NAPI context, so frames the switch writes into a
/// sandbox's veth are merged into large packets before its stack sees them.
pub fn set_gro(ifname: &str, on: bool) -> io::Result<()> {
    ethtool(ifname, &mut EthtoolValue { cmd: ETHTOOL_SGRO, data: u32::from(on) })
}
