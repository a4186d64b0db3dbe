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
//! Frames move in batches: [`PacketSocket::recv_batch`] reads up to
//! [`MAX_BATCH`] frames with one `recvmmsg`, each into its own buffer, and
//! [`PacketSocket::send_batch`] writes up to [`MAX_BATCH`] with one
//! `sendmmsg`. Every message is one whole frame behind its virtio-net
//! header, as with `read`/`write`: the kernel hands GSO frames over whole
//! (a TCP stream's 64 KiB super-frames) and takes them the same way.
//! `recvmmsg` rather than a `PACKET_MMAP` ring (`TPACKET_V3`): a ring slot
//! must hold the largest frame, a 64 KiB GSO frame, and the frame would
//! still be copied out of the ring into the datapath's batch buffer, where
//! `recvmmsg` puts it directly.
//!
//! The socket is created with protocol 0 (it receives nothing) and only the
//! `bind` names `ETH_P_ALL`, so no frame of another interface slips in
//! before it is bound.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::sockopt;

/// Most frames one [`PacketSocket::recv_batch`] or
/// [`PacketSocket::send_batch`] call moves.
pub const MAX_BATCH: usize = 32;

/// One frame [`PacketSocket::recv_batch`] read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    /// Bytes in the buffer, virtio-net header included.
    pub len: usize,
    /// The frame was longer than its buffer and was cut (`MSG_TRUNC`).
    pub truncated: bool,
}

/// Length of the virtio-net header in front of every frame.
const VNET_HDR_LEN: libc::c_int = 12;

/// One `AF_PACKET` socket bound to an interface (see the module docs).
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifname: String,
}

fn setopt(fd: BorrowedFd<'_>, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    sockopt::set(fd, libc::SOL_PACKET, name, &value)
}

fn op_err(op: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("AF_PACKET {op}: {e}"))
}

impl PacketSocket {
    /// Opens a socket on `ifname` (in the calling thread's namespace).
    pub fn open(ifname: &str) -> io::Result<PacketSocket> {
        PacketSocket::open_as(ifname, false)
    }

    /// [`PacketSocket::open`]; `deaf`: a filter that drops every frame is
    /// attached before the socket is bound, so it queues nothing until the
    /// caller detaches it ([`PacketSocket::hear`]).
    fn open_as(ifname: &str, deaf: bool) -> io::Result<PacketSocket> {
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
        setopt(fd.as_fd(), libc::PACKET_VNET_HDR, 1).map_err(|e| op_err("PACKET_VNET_HDR", e))?;
        setopt(fd.as_fd(), libc::PACKET_VNET_HDR_SZ, VNET_HDR_LEN).map_err(|e| op_err("PACKET_VNET_HDR_SZ", e))?;
        setopt(fd.as_fd(), libc::PACKET_IGNORE_OUTGOING, 1).map_err(|e| op_err("PACKET_IGNORE_OUTGOING", e))?;
        setopt(fd.as_fd(), libc::PACKET_QDISC_BYPASS, 1).map_err(|e| op_err("PACKET_QDISC_BYPASS", e))?;
        if deaf {
            // One instruction: `ret #0`, keep no byte of any frame.
            let code = [libc::sock_filter { code: (libc::BPF_RET | libc::BPF_K) as u16, jt: 0, jf: 0, k: 0 }];
            let fprog = libc::sock_fprog { len: 1, filter: code.as_ptr().cast_mut() };
            // `fprog` points at `code`, which outlives the call (the kernel
            // copies the program).
            sockopt::set(fd.as_fd(), libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)
                .map_err(|e| op_err("SO_ATTACH_FILTER", e))?;
        }
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
        sockopt::set(fd.as_fd(), libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)
            .map_err(|e| op_err("promiscuous membership", e))?;
        Ok(PacketSocket { fd, ifname: ifname.to_owned() })
    }

    /// Opens `members` sockets on `ifname` that share its frames, one per
    /// datapath worker of a spread network: with more than one they form a
    /// `PACKET_FANOUT` group (an id the kernel picks, `..._FLAG_UNIQUEID`)
    /// of type `PACKET_FANOUT_HASH`, so each frame is read by exactly one
    /// of them, chosen by the flow's symmetric hash (both directions of a
    /// connection on one socket), as a NIC's RSS picks a queue. The group
    /// ignores frames the host sends out of the interface
    /// (`PACKET_FANOUT_FLAG_IGNORE_OUTGOING`: a member's own
    /// `PACKET_IGNORE_OUTGOING` no longer applies once its frames reach it
    /// through the group). Every member can write.
    pub fn open_group(ifname: &str, members: usize) -> io::Result<Vec<PacketSocket>> {
        let first = PacketSocket::open(ifname)?;
        if members <= 1 {
            return Ok(vec![first]);
        }
        let flags = libc::PACKET_FANOUT_HASH | libc::PACKET_FANOUT_FLAG_IGNORE_OUTGOING;
        let join = |socket: &PacketSocket, arg: libc::c_uint| {
            setopt(socket.fd.as_fd(), libc::PACKET_FANOUT, arg as libc::c_int).map_err(|e| op_err("PACKET_FANOUT", e))
        };
        join(&first, (flags | libc::PACKET_FANOUT_FLAG_UNIQUEID) << 16)?;
        // The group as the kernel made it: its id in the low 16 bits.
        let group: libc::c_int = sockopt::get(first.fd.as_fd(), libc::SOL_PACKET, libc::PACKET_FANOUT)
            .map_err(|e| op_err("PACKET_FANOUT", e))?;
        let id = group as libc::c_uint & 0xffff;
        let mut sockets = vec![first];
        for _ in 1..members {
            // Deaf until it joined: bound and not yet in the group, it
            // would queue its own copy of every frame the group also hands
            // to one of its members (a duplicate the switch would forward).
            let socket = PacketSocket::open_as(ifname, true)?;
            join(&socket, id | flags << 16)?;
            socket.hear()?;
            sockets.push(socket);
        }
        Ok(sockets)
    }

    /// Takes the drop-everything filter of [`PacketSocket::open_as`] off.
    fn hear(&self) -> io::Result<()> {
        let unused: libc::c_int = 0;
        sockopt::set(self.fd.as_fd(), libc::SOL_SOCKET, libc::SO_DETACH_FILTER, &unused)
            .map_err(|e| op_err("SO_DETACH_FILTER", e))
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

    /// Reads up to `bufs.len()` (at most [`MAX_BATCH`]) frames without
    /// blocking, the `i`th into `bufs[i]`, virtio-net header first, with one
    /// `recvmmsg`; fills `out` and returns how many arrived (`WouldBlock`
    /// when none, `ENETDOWN` once the interface is gone). Fewer than asked
    /// means the socket's queue was empty.
    pub fn recv_batch<B: AsMut<[u8]>>(&self, bufs: &mut [B], out: &mut [Received; MAX_BATCH]) -> io::Result<usize> {
        let n = bufs.len().min(MAX_BATCH);
        if n == 0 {
            return Ok(0);
        }
        let mut iovs: [MaybeUninit<libc::iovec>; MAX_BATCH] = [const { MaybeUninit::uninit() }; MAX_BATCH];
        // SAFETY: mmsghdr is plain old data; all zeroes (null pointers,
        // zero lengths) is a valid value.
        let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
        for (i, buf) in bufs[..n].iter_mut().enumerate() {
            let buf = buf.as_mut();
            iovs[i].write(libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() });
            msgs[i].msg_hdr.msg_iov = iovs[i].as_mut_ptr();
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: each of the first `n` headers points at one live iovec
        // covering a buffer we hold mutably (no name, no control buffer);
        // the kernel writes only within them and into the headers.
        let got = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        let got = got as usize;
        for (slot, msg) in out.iter_mut().zip(&msgs[..got]) {
            *slot = Received { len: msg.msg_len as usize, truncated: msg.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 };
        }
        Ok(got)
    }

    /// Writes up to [`MAX_BATCH`] of `frames` (each virtio-net header
    /// first) with one `sendmmsg`, in order, without blocking. Returns how
    /// many were sent: fewer than asked when one failed, whose error the
    /// next call (starting with it) reports; an error only when the first
    /// failed.
    pub fn send_batch(&self, frames: &[&[u8]]) -> io::Result<usize> {
        let n = frames.len().min(MAX_BATCH);
        if n == 0 {
            return Ok(0);
        }
        let mut iovs: [MaybeUninit<libc::iovec>; MAX_BATCH] = [const { MaybeUninit::uninit() }; MAX_BATCH];
        // SAFETY: as in `recv_batch`.
        let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
        for (i, frame) in frames[..n].iter().enumerate() {
            // The kernel only reads the frame, though iovec's pointer is mut.
            iovs[i].write(libc::iovec { iov_base: frame.as_ptr().cast_mut().cast(), iov_len: frame.len() });
            msgs[i].msg_hdr.msg_iov = iovs[i].as_mut_ptr();
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        loop {
            // SAFETY: each of the first `n` headers points at a live iovec
            // over a caller's frame (no name: the socket is bound, no
            // control buffer); the kernel only reads them and writes each
            // header's msg_len.
            let sent = unsafe {
                libc::sendmmsg(self.fd.as_raw_fd(), msgs.as_mut_ptr(), n as libc::c_uint, libc::MSG_DONTWAIT)
            };
            if sent >= 0 {
                return Ok(sent as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
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

    /// Frames the kernel dropped for this socket since the last call (its
    /// receive buffer was full): `PACKET_STATISTICS`, which the kernel
    /// resets on every read.
    pub fn take_drops(&self) -> io::Result<u64> {
        let stats: libc::tpacket_stats = sockopt::get(self.fd.as_fd(), libc::SOL_PACKET, libc::PACKET_STATISTICS)
            .map_err(|e| op_err("PACKET_STATISTICS", e))?;
        Ok(u64::from(stats.tp_drops))
    }

    /// The socket's pending error (`SO_ERROR`).
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        sockopt::take_error(self.fd.as_fd())
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::sys::netns;
    use crate::sys::testutil::{NetGuard, have_root};

    /// A frame of the local experimental EtherType 0x88b5 (nothing else
    /// on a fresh veth uses it), `len` bytes, numbered `n`, behind an
    /// all-zero virtio-net header.
    fn frame(n: u8, len: usize) -> Vec<u8> {
        let mut f = vec![0u8; VNET_HDR_LEN as usize];
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x88, 0xb5]);
        f.resize(VNET_HDR_LEN as usize + len, n);
        f
    }

    fn ip(args: &[&str]) {
        let out = Command::new("ip").args(args).output().expect("spawn ip");
        assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A veth pair `pa`/`pb` in a namespace of `g`, up, with a socket on
    /// each end.
    fn socket_pair(g: &mut NetGuard) -> (PacketSocket, PacketSocket) {
        let ns = veth_pair(g);
        let (a, b) = netns::run_in(&ns, || (PacketSocket::open("pa"), PacketSocket::open("pb"))).expect("run in ns");
        (a.expect("socket on pa"), b.expect("socket on pb"))
    }

    /// A veth pair `pa`/`pb` in a new namespace of `g`, up; the namespace.
    fn veth_pair(g: &mut NetGuard) -> netns::NetNs {
        let ns = g.netns();
        let name = ns.name().expect("a named namespace").to_owned();
        // No IPv6 on the links (they inherit `default`): no DAD, router or
        // MLD frames of the kernel's own, so the sockets carry only the
        // tests' frames and the drop statistics count only those.
        netns::run_in(&ns, || std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1"))
            .expect("run in ns")
            .expect("disable IPv6 in the test namespace");
        ip(&["-n", &name, "link", "add", "pa", "type", "veth", "peer", "name", "pb"]);
        for l in ["pa", "pb"] {
            ip(&["-n", &name, "link", "set", l, "up"]);
        }
        ns
    }

    #[test]
    fn frames_cross_a_veth_32_per_call_and_a_cut_frame_says_so() {
        if !have_root("frames_cross_a_veth_32_per_call_and_a_cut_frame_says_so") {
            return;
        }
        let mut g = NetGuard::new();
        let (a, b) = socket_pair(&mut g);

        let frames: Vec<Vec<u8>> = (0..40u8).map(|n| frame(n, 60 + usize::from(n))).collect();
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        assert_eq!(a.send_batch(&refs).expect("sendmmsg"), MAX_BATCH, "at most 32 per call");
        assert_eq!(a.send_batch(&refs[MAX_BATCH..]).expect("sendmmsg"), 8);

        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut bufs: Vec<Box<[u8]>> = (0..MAX_BATCH).map(|_| vec![0u8; 2048].into_boxed_slice()).collect();
        let mut out = [Received::default(); MAX_BATCH];
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < frames.len() {
            assert!(Instant::now() < deadline, "only {} frames arrived", got.len());
            match b.recv_batch(&mut bufs, &mut out) {
                Ok(n) => {
                    for (buf, r) in bufs.iter().zip(&out[..n]) {
                        assert!(!r.truncated);
                        let f = &buf[..r.len];
                        // Only ours: the kernel may send its own (IPv6) frames.
                        if f.len() > 26 && f[24..26] == [0x88, 0xb5] {
                            got.push(f.to_vec());
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("recvmmsg: {e}"),
            }
        }
        assert_eq!(got, frames, "every frame, whole and in order");

        // A frame longer than its buffer is cut, and says so.
        a.send_batch(&[&frame(99, 500)]).expect("sendmmsg");
        let mut small = [vec![0u8; 100].into_boxed_slice()];
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            assert!(Instant::now() < deadline, "the long frame did not arrive");
            match b.recv_batch(&mut small, &mut out) {
                Ok(1) if small[0][24..26] == [0x88, 0xb5] => {
                    assert!(out[0].truncated && out[0].len == 100, "{:?}", out[0]);
                    break;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("recvmmsg: {e}"),
            }
        }
    }

    /// Reads every frame of ours waiting on `sock` (until `WouldBlock`).
    fn drain(sock: &PacketSocket) -> usize {
        let mut bufs: Vec<Box<[u8]>> = (0..MAX_BATCH).map(|_| vec![0u8; 2048].into_boxed_slice()).collect();
        let mut out = [Received::default(); MAX_BATCH];
        let mut ours = 0;
        loop {
            match sock.recv_batch(&mut bufs, &mut out) {
                Ok(n) => {
                    ours +=
                        bufs[..n].iter().zip(&out[..n]).filter(|(b, r)| r.len > 26 && b[24..26] == [0x88, 0xb5]).count()
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ours,
                Err(e) => panic!("recvmmsg: {e}"),
            }
        }
    }

    /// An IPv4/UDP frame from `10.9.0.1:port` to `10.9.0.2:9` behind an
    /// all-zero virtio-net header (checksums left zero: only the flow
    /// hash reads it).
    fn udp_frame(port: u16) -> Vec<u8> {
        let mut f = vec![0u8; VNET_HDR_LEN as usize];
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00]);
        f.extend_from_slice(&[0x45, 0, 0, 30, 0, 0, 0, 0, 64, 17, 0, 0, 10, 9, 0, 1, 10, 9, 0, 2]);
        f.extend_from_slice(&port.to_be_bytes());
        f.extend_from_slice(&[0, 9, 0, 10, 0, 0, 0xab, 0xcd]);
        f
    }

    /// The (source address, source port) of the IPv4/UDP frames to port 9
    /// waiting on `sock`.
    fn drain_udp(sock: &PacketSocket) -> Vec<([u8; 4], u16)> {
        let mut bufs: Vec<Box<[u8]>> = (0..MAX_BATCH).map(|_| vec![0u8; 2048].into_boxed_slice()).collect();
        let mut out = [Received::default(); MAX_BATCH];
        let mut got = Vec::new();
        loop {
            match sock.recv_batch(&mut bufs, &mut out) {
                Ok(n) => {
                    for (b, r) in bufs[..n].iter().zip(&out[..n]) {
                        let f = &b[VNET_HDR_LEN as usize..r.len];
                        if f.len() >= 14 + 28 && f[12..14] == [8, 0] && f[23] == 17 && f[36..38] == [0, 9] {
                            got.push((<[u8; 4]>::try_from(&f[26..30]).unwrap(), u16::from_be_bytes([f[34], f[35]])));
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return got,
                Err(e) => panic!("recvmmsg: {e}"),
            }
        }
    }

    #[test]
    fn a_group_of_sockets_reads_each_frame_once_spread_by_flow() {
        if !have_root("a_group_of_sockets_reads_each_frame_once_spread_by_flow") {
            return;
        }
        let mut g = NetGuard::new();
        let ns = veth_pair(&mut g);
        let (a, group) =
            netns::run_in(&ns, || (PacketSocket::open("pa"), PacketSocket::open_group("pb", 2))).expect("run in ns");
        let (a, group) = (a.expect("socket on pa"), group.expect("a group"));
        assert_eq!(group.len(), 2);

        // 64 flows, two frames each: every frame is read once, by the one
        // socket its flow hashes to, and both sockets read some.
        const FLOWS: u16 = 64;
        let frames: Vec<Vec<u8>> = (0..2 * FLOWS).map(|i| udp_frame(20000 + i % FLOWS)).collect();
        for chunk in frames.chunks(MAX_BATCH) {
            let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
            assert_eq!(a.send_batch(&refs).expect("sendmmsg"), refs.len());
        }
        let mut got: Vec<Vec<u16>> = vec![Vec::new(); 2];
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.iter().map(Vec::len).sum::<usize>() < frames.len() {
            assert!(Instant::now() < deadline, "only {:?} arrived", got);
            for (socket, ports) in group.iter().zip(&mut got) {
                ports.extend(drain_udp(socket).into_iter().map(|(_, port)| port));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!got[0].is_empty() && !got[1].is_empty(), "both members read flows: {got:?}");
        for port in 20000..20000 + FLOWS {
            let per_member: Vec<usize> = got.iter().map(|p| p.iter().filter(|&&q| q == port).count()).collect();
            assert!(per_member == [2, 0] || per_member == [0, 2], "flow {port} split or lost: {per_member:?}");
        }

        // What the host's own stack sends out of the interface is not read
        // by the group (a datagram from 10.9.0.2, to a static neighbour).
        let name = ns.name().expect("a named namespace").to_owned();
        ip(&["-n", &name, "addr", "add", "10.9.0.2/24", "dev", "pb"]);
        ip(&["-n", &name, "neigh", "add", "10.9.0.1", "lladdr", "02:00:00:00:00:01", "dev", "pb"]);
        netns::run_in(&ns, || {
            let udp = std::net::UdpSocket::bind("10.9.0.2:7").unwrap();
            udp.send_to(b"out", "10.9.0.1:9").unwrap();
        })
        .expect("run in ns");
        crosses_unread(&a, &group, ([10, 9, 0, 2], 7), "the host's outgoing datagram");
        // A member writes, and no member reads it back (its writes bypass
        // the qdisc, so no tap sees them).
        assert_eq!(group[1].send_batch(&[&udp_frame(1)]).expect("sendmmsg"), 1);
        crosses_unread(&a, &group, ([10, 9, 0, 1], 1), "a member's written frame");
    }

    /// Waits until the datagram from `source` (address, port) arrived on
    /// `far` (the other end of the veth), then checks that no member of
    /// `group` read it.
    fn crosses_unread(far: &PacketSocket, group: &[PacketSocket], source: ([u8; 4], u16), what: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !drain_udp(far).contains(&source) {
            assert!(Instant::now() < deadline, "{what} did not cross");
            std::thread::sleep(Duration::from_millis(5));
        }
        let read_back: Vec<_> = group.iter().flat_map(drain_udp).collect();
        assert!(!read_back.contains(&source), "the group read {what}: {read_back:?}");
    }

    #[test]
    fn a_full_receive_buffer_drops_frames_and_the_statistics_say_how_many() {
        if !have_root("a_full_receive_buffer_drops_frames_and_the_statistics_say_how_many") {
            return;
        }
        let mut g = NetGuard::new();
        let (a, b) = socket_pair(&mut g);
        assert_eq!(b.take_drops().expect("statistics"), 0, "nothing dropped yet");

        // 2,000 frames of 1,000 bytes (2 MB) into a receive buffer of the
        // default size (about 200 KiB) that nobody reads.
        let frames: Vec<Vec<u8>> = (0..MAX_BATCH as u8).map(|n| frame(n, 1000)).collect();
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let mut sent = 0;
        while sent < 2000 {
            sent += a.send_batch(&refs).expect("sendmmsg");
        }
        let dropped = b.take_drops().expect("statistics");
        let held = drain(&b);
        assert!(dropped > 0 && held > 0, "dropped {dropped}, held {held} of {sent}");
        assert!(dropped as usize + held <= sent, "dropped {dropped} + held {held} > sent {sent}");

        // The kernel resets the count on every read: with room in the
        // buffer again, nothing more is dropped.
        assert_eq!(a.send_batch(&refs[..8]).expect("sendmmsg"), 8);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut got = 0;
        while got < 8 {
            assert!(Instant::now() < deadline, "only {got} of 8 frames arrived");
            match drain(&b) {
                0 => std::thread::sleep(Duration::from_millis(5)),
                n => got += n,
            }
        }
        assert_eq!(b.take_drops().expect("statistics"), 0, "counted once, and nothing dropped since");
    }
}
