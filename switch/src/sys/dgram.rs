//! Receiving many UDP datagrams with one system call (`recvmmsg`), each
//! into its own buffer at a fixed offset, so a published UDP port's
//! datagrams land where their frames' payloads go; sending many datagrams
//! or UDP GSO trains, each to its own destination, with one system call
//! (`sendmmsg`), or one train from a connected socket (`sendmsg`); and the
//! path MTU an IPv6 datagram socket learnt.

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd};

/// Most datagrams one call receives.
pub const MAX_BATCH: usize = 32;

/// One received datagram (or, on a socket with [`set_udp_gro`], a train
/// of them): its length and sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram {
    /// Bytes received (a longer datagram is cut to the buffer's room).
    pub len: usize,
    /// The sender (IPv4 or IPv6; another family reads as `0.0.0.0:0`).
    pub from: SocketAddr,
    /// With `Some(size)`, the bytes are a train the kernel coalesced
    /// (`UDP_GRO`): datagrams of `size` bytes, the last maybe shorter.
    pub segment: Option<u16>,
}

impl Datagram {
    /// A placeholder to fill an array with.
    pub const EMPTY: Datagram =
        Datagram { len: 0, from: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)), segment: None };
}

/// Asks the kernel to coalesce the datagrams of one flow that arrive
/// together into trains (`UDP_GRO`, Linux 5.0+), which [`recv_batch`]
/// reports with their segment size: one read, and one frame toward a
/// sandbox, for up to 64 datagrams.
pub fn set_udp_gro(fd: BorrowedFd<'_>) -> io::Result<()> {
    super::sockopt::set(fd, libc::SOL_UDP, libc::UDP_GRO, &(1 as libc::c_int))
}

/// Receives up to as many datagrams as `bufs` yields (at most
/// [`MAX_BATCH`]) without blocking, the `i`th into the `i`th buffer's
/// `offset..offset + room`; fills `out` and returns how many arrived
/// (`WouldBlock` when none).
pub fn recv_batch<'b>(
    fd: BorrowedFd<'_>,
    bufs: impl IntoIterator<Item = &'b mut [u8]>,
    offset: usize,
    room: usize,
    out: &mut [Datagram; MAX_BATCH],
) -> io::Result<usize> {
    let mut iovs: [MaybeUninit<libc::iovec>; MAX_BATCH] = [const { MaybeUninit::uninit() }; MAX_BATCH];
    // SAFETY: sockaddr_in6 is plain old data; all zeroes is a valid value.
    // It is large enough for a sockaddr_in too.
    let mut names: [libc::sockaddr_in6; MAX_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above for mmsghdr (null pointers, zero lengths).
    let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
    let mut cmsgs = [SegmentCmsg([0; 32]); MAX_BATCH];
    let mut n = 0;
    for (i, buf) in bufs.into_iter().take(MAX_BATCH).enumerate() {
        n = i + 1;
        let end = (offset + room).min(buf.len());
        let region = &mut buf[offset.min(end)..end];
        iovs[i].write(libc::iovec { iov_base: region.as_mut_ptr().cast(), iov_len: region.len() });
        let hdr = &mut msgs[i].msg_hdr;
        hdr.msg_iov = iovs[i].as_mut_ptr();
        hdr.msg_iovlen = 1;
        hdr.msg_name = (&raw mut names[i]).cast();
        hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        hdr.msg_control = cmsgs[i].0.as_mut_ptr().cast();
        hdr.msg_controllen = cmsgs[i].0.len() as _;
    }
    // SAFETY: each of the first `n` headers points at one live iovec that
    // covers a region of a buffer we hold mutably, at a sockaddr_in6 of the
    // size it declares and at a control buffer of the size it declares;
    // the kernel writes only within them.
    let got = unsafe {
        libc::recvmmsg(fd.as_raw_fd(), msgs.as_mut_ptr(), n as libc::c_uint, libc::MSG_DONTWAIT, std::ptr::null_mut())
    };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    let got = got as usize;
    for i in 0..got {
        let segment = gro_segment(&msgs[i].msg_hdr);
        out[i] = Datagram { len: msgs[i].msg_len as usize, from: sender(&names[i]), segment };
    }
    Ok(got)
}

/// The segment size of a `UDP_GRO` control message the kernel wrote into
/// `hdr`'s control buffer, if it wrote one.
fn gro_segment(hdr: &libc::msghdr) -> Option<u16> {
    // SAFETY: `hdr` is a header recvmmsg filled in: its control pointer and
    // length describe the control messages the kernel wrote into our
    // buffer, which the CMSG macros walk without leaving it.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == libc::UDP_GRO {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                return u16::try_from(size).ok().filter(|&s| s > 0);
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    None
}

/// Most messages one [`send_batch`] call sends.
pub const MAX_SEND_BATCH: usize = 64;

/// One message of [`send_batch`]: a datagram, or a UDP GSO train.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing<'a> {
    /// Where it goes.
    pub to: SocketAddr,
    /// The UDP payload, or the payloads of a GSO train back to back.
    pub contents: &'a [u8],
    /// With `Some(size)`, `contents` is a train of `size`-byte datagrams
    /// (the last may be shorter) the kernel cuts apart (`UDP_SEGMENT`).
    pub segment_size: Option<u16>,
}

impl Outgoing<'_> {
    /// A placeholder to fill an array with.
    pub const EMPTY: Outgoing<'static> = Outgoing { to: Datagram::EMPTY.from, contents: &[], segment_size: None };
}

/// Control message buffer of one message: room for one `UDP_SEGMENT`
/// (a `u16`), aligned as a `cmsghdr`.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct SegmentCmsg([u8; 32]);

/// Sends up to [`MAX_SEND_BATCH`] of `msgs` from `fd` in one `sendmmsg`
/// without blocking, in order. Returns how many were sent: fewer than
/// asked when one failed, whose error the next call (starting with it)
/// reports; an error only when the first failed.
pub fn send_batch(fd: BorrowedFd<'_>, msgs: &[Outgoing<'_>]) -> io::Result<usize> {
    let n = msgs.len().min(MAX_SEND_BATCH);
    if n == 0 {
        return Ok(0);
    }
    // SAFETY: plain old data; all zeroes is a valid value of each.
    let mut names: [libc::sockaddr_storage; MAX_SEND_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above (null pointers, zero lengths).
    let mut hdrs: [libc::mmsghdr; MAX_SEND_BATCH] = unsafe { std::mem::zeroed() };
    let mut iovs: [MaybeUninit<libc::iovec>; MAX_SEND_BATCH] = [const { MaybeUninit::uninit() }; MAX_SEND_BATCH];
    let mut cmsgs = [SegmentCmsg([0; 32]); MAX_SEND_BATCH];
    for (i, msg) in msgs[..n].iter().enumerate() {
        let header = Header { name: &mut names[i], iov: &mut iovs[i], cmsg: &mut cmsgs[i] };
        header.fill(&mut hdrs[i].msg_hdr, Some(msg.to), msg.contents, msg.segment_size);
    }
    loop {
        // SAFETY: each of the first `n` headers points at a live iovec over
        // a caller's buffer, a sockaddr of the length it declares and, for
        // a GSO train, one UDP_SEGMENT control message; the kernel only
        // reads them (and writes each header's msg_len).
        let sent = unsafe { libc::sendmmsg(fd.as_raw_fd(), hdrs.as_mut_ptr(), n as libc::c_uint, libc::MSG_DONTWAIT) };
        if sent >= 0 {
            return Ok(sent as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Sends `contents` from `fd` without blocking as one UDP GSO train of
/// `segment`-byte datagrams (the last may be shorter), to `to`, or to the
/// peer a connected socket has with `None`. The kernel refuses a train it
/// cannot cut (`EINVAL`: a segment larger than the path allows, or more
/// segments than one send carries; `EIO`: a route whose device cannot
/// checksum); the caller then sends the datagrams one by one.
pub fn send_train(fd: BorrowedFd<'_>, to: Option<SocketAddr>, contents: &[u8], segment: u16) -> io::Result<()> {
    // SAFETY: plain old data; all zeroes is a valid value of each.
    let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    // SAFETY: as above (null pointers, zero lengths).
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    let mut iov = MaybeUninit::uninit();
    let mut cmsg = SegmentCmsg([0; 32]);
    Header { name: &mut name, iov: &mut iov, cmsg: &mut cmsg }.fill(&mut hdr, to, contents, Some(segment));
    loop {
        // SAFETY: `hdr` points at a live iovec over `contents`, at most one
        // sockaddr of the length it declares and one UDP_SEGMENT control
        // message; the kernel only reads them.
        let sent = unsafe { libc::sendmsg(fd.as_raw_fd(), &hdr, libc::MSG_DONTWAIT) };
        if sent >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The storage one outgoing message's header points into.
struct Header<'a> {
    name: &'a mut libc::sockaddr_storage,
    iov: &'a mut MaybeUninit<libc::iovec>,
    cmsg: &'a mut SegmentCmsg,
}

impl Header<'_> {
    /// Points `hdr` at `to` (none: a connected socket's peer), at
    /// `contents` and, for a GSO train, at a `UDP_SEGMENT` control message
    /// of `segment_size`, each written into this storage.
    fn fill(self, hdr: &mut libc::msghdr, to: Option<SocketAddr>, contents: &[u8], segment_size: Option<u16>) {
        if let Some(to) = to {
            let name = socket2::SockAddr::from(to);
            // SAFETY: `name` holds `name.len()` valid bytes of a sockaddr,
            // no more than a sockaddr_storage, which `self.name` is.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    name.as_ptr().cast::<u8>(),
                    std::ptr::from_mut(self.name).cast::<u8>(),
                    name.len() as usize,
                );
            }
            hdr.msg_name = std::ptr::from_mut(self.name).cast();
            hdr.msg_namelen = name.len();
        }
        // The kernel only reads the buffer, though iovec's pointer is mut.
        let iov =
            self.iov.write(libc::iovec { iov_base: contents.as_ptr().cast_mut().cast(), iov_len: contents.len() });
        hdr.msg_iov = std::ptr::from_mut(iov);
        hdr.msg_iovlen = 1;
        if let Some(size) = segment_size {
            // SAFETY: pure arithmetic on a constant.
            let (space, len) = unsafe { (libc::CMSG_SPACE(2) as usize, libc::CMSG_LEN(2) as usize) };
            let cmsg = libc::cmsghdr { cmsg_len: len as _, cmsg_level: libc::SOL_UDP, cmsg_type: libc::UDP_SEGMENT };
            let buf = &mut self.cmsg.0;
            // SAFETY: the buffer is aligned for and larger than a cmsghdr.
            unsafe { std::ptr::write(buf.as_mut_ptr().cast::<libc::cmsghdr>(), cmsg) };
            let data = len - 2;
            buf[data..data + 2].copy_from_slice(&size.to_ne_bytes());
            hdr.msg_control = buf.as_mut_ptr().cast();
            hdr.msg_controllen = space as _;
        }
    }
}

/// The address in a `sockaddr_in6`-sized name the kernel filled in (a
/// `sockaddr_in` for an IPv4 sender).
fn sender(name: &libc::sockaddr_in6) -> SocketAddr {
    match i32::from(name.sin6_family) {
        libc::AF_INET6 => SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(name.sin6_addr.s6_addr),
            u16::from_be(name.sin6_port),
            u32::from_be(name.sin6_flowinfo),
            name.sin6_scope_id,
        )),
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in, which is smaller than
            // and laid out at the start of the sockaddr_in6 we read.
            let v4: &libc::sockaddr_in = unsafe { &*(name as *const libc::sockaddr_in6).cast::<libc::sockaddr_in>() };
            SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)),
                u16::from_be(v4.sin_port),
            ))
        }
        _ => Datagram::EMPTY.from,
    }
}

/// The path MTU a connected IPv6 socket knows toward its peer
/// (`IPV6_MTU`): after an ICMPv6 packet too big, the MTU it announced.
pub fn ipv6_path_mtu(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mtu: libc::c_int = super::sockopt::get(fd, libc::IPPROTO_IPV6, libc::IPV6_MTU)?;
    u32::try_from(mtu).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    use super::*;
    use crate::sys::testutil::recv_within;

    #[test]
    fn several_datagrams_in_one_call_each_at_its_offset_with_its_sender() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        for k in 0..3u8 {
            tx.send_to(&[k; 5][..usize::from(k) + 1], rx.local_addr().unwrap()).unwrap();
        }
        let mut bufs: Vec<Box<[u8]>> = (0..4).map(|_| vec![0xee; 64].into_boxed_slice()).collect();
        let mut out = [Datagram::EMPTY; MAX_BATCH];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut got = 0;
        while got < 3 && std::time::Instant::now() < deadline {
            match recv_batch(rx.as_fd(), bufs[got..].iter_mut().map(|b| &mut b[..]), 10, 20, &mut out) {
                Ok(n) => {
                    for (i, d) in out[..n].iter().enumerate() {
                        assert_eq!(d.from.to_string(), tx.local_addr().unwrap().to_string());
                        let k = (got + i) as u8;
                        assert_eq!(d.len, usize::from(k) + 1);
                        assert!(bufs[got + i][10..10 + d.len].iter().all(|&b| b == k));
                        assert_eq!(bufs[got + i][9], 0xee, "nothing written before the offset");
                    }
                    got += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, 3);
        assert_eq!(
            recv_batch(rx.as_fd(), bufs.iter_mut().map(|b| &mut b[..]), 10, 20, &mut out).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }

    #[test]
    fn one_call_sends_datagrams_and_gso_trains_to_several_destinations() {
        let (a, b) = (UdpSocket::bind("127.0.0.1:0").unwrap(), UdpSocket::bind("127.0.0.1:0").unwrap());
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let train: Vec<u8> = (0..250u32).map(|i| (i / 100) as u8 + 1).collect();
        let msgs = [
            Outgoing { to: a.local_addr().unwrap(), contents: b"one", segment_size: None },
            Outgoing { to: b.local_addr().unwrap(), contents: &train, segment_size: Some(100) },
            Outgoing { to: a.local_addr().unwrap(), contents: b"two", segment_size: None },
        ];
        assert_eq!(send_batch(tx.as_fd(), &msgs).expect("sendmmsg"), 3, "all in one call");
        let recv = |s: &UdpSocket| {
            let mut buf = [0u8; 512];
            let five = std::time::Duration::from_secs(5);
            let (len, from) = recv_within(five, |t| s.set_read_timeout(t), || s.recv_from(&mut buf)).unwrap();
            assert_eq!(from, tx.local_addr().unwrap());
            buf[..len].to_vec()
        };
        assert_eq!((recv(&a), recv(&a)), (b"one".to_vec(), b"two".to_vec()));
        let got: Vec<Vec<u8>> = (0..3).map(|_| recv(&b)).collect();
        assert_eq!(got, vec![vec![1; 100], vec![2; 100], vec![3; 50]], "the train cut at its segment size");
        assert_eq!(send_batch(tx.as_fd(), &[]).unwrap(), 0);
    }

    #[test]
    fn a_connected_socket_sends_a_train_the_kernel_cuts_and_refuses_one_it_cannot() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        let train: Vec<u8> = (0..350u32).map(|i| (i / 100) as u8 + 1).collect();
        send_train(tx.as_fd(), None, &train, 100).expect("a train to the connected peer");
        let mut buf = [0u8; 512];
        let five = std::time::Duration::from_secs(5);
        let mut recv = || {
            let n = recv_within(five, |t| rx.set_read_timeout(t), || rx.recv(&mut buf)).unwrap();
            buf[..n].to_vec()
        };
        let got: Vec<Vec<u8>> = (0..4).map(|_| recv()).collect();
        assert_eq!(got, vec![vec![1; 100], vec![2; 100], vec![3; 100], vec![4; 50]]);
        // More segments than one send may carry (64 or 128, by kernel).
        let e = send_train(tx.as_fd(), None, &[0; 1000], 1).expect_err("1,000 one-byte segments");
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}");
    }

    #[test]
    fn a_socket_with_udp_gro_reads_a_train_whole_with_its_segment_size() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        set_udp_gro(rx.as_fd()).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        // Loopback passes a GSO train on uncut: it arrives as sent.
        send_train(tx.as_fd(), None, &[9; 350], 100).unwrap();
        tx.send(b"lone").unwrap();
        let mut bufs: Vec<Box<[u8]>> = (0..2).map(|_| vec![0; 1024].into_boxed_slice()).collect();
        let mut out = [Datagram::EMPTY; MAX_BATCH];
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while got.len() < 2 && std::time::Instant::now() < deadline {
            match recv_batch(rx.as_fd(), bufs.iter_mut().map(|b| &mut b[..]), 0, 1024, &mut out) {
                Ok(n) => got.extend(out[..n].iter().map(|d| (d.len, d.segment))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, [(350, Some(100)), (4, None)], "the train whole, then the lone datagram");
    }

    #[test]
    fn ipv6_senders_are_read_whole_and_the_path_mtu_is_known() {
        let rx = UdpSocket::bind("[::1]:0").unwrap();
        let tx = UdpSocket::bind("[::1]:0").unwrap();
        tx.send_to(b"six", rx.local_addr().unwrap()).unwrap();
        let mut bufs: Vec<Box<[u8]>> = vec![vec![0; 64].into_boxed_slice()];
        let mut out = [Datagram::EMPTY; MAX_BATCH];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let n = loop {
            match recv_batch(rx.as_fd(), bufs.iter_mut().map(|b| &mut b[..]), 62, 2, &mut out) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && std::time::Instant::now() < deadline => {
                    std::thread::yield_now()
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(n, 1);
        assert_eq!(out[0].from, tx.local_addr().unwrap(), "the IPv6 sender, port included");
        assert_eq!((out[0].len, &bufs[0][62..64]), (2, &b"si"[..]), "cut to the room given");
        tx.connect(rx.local_addr().unwrap()).unwrap();
        let mtu = ipv6_path_mtu(tx.as_fd()).unwrap();
        assert!(mtu >= 1280, "loopback's MTU, got {mtu}");
    }
}
