//! Receiving many UDP datagrams with one system call (`recvmmsg`), each
//! into its own buffer at a fixed offset, so a published UDP port's
//! datagrams land where their frames' payloads go.

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, BorrowedFd};

/// Most datagrams one call receives.
pub const MAX_BATCH: usize = 32;

/// One received datagram: its length and sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram {
    /// Bytes received (a longer datagram is cut to the buffer's room).
    pub len: usize,
    /// The sender (IPv4; another family reads as `0.0.0.0:0`).
    pub from: SocketAddrV4,
}

/// Receives up to `bufs.len()` (at most [`MAX_BATCH`]) datagrams without
/// blocking, the `i`th into `bufs[i][offset..offset + room]`; fills `out`
/// and returns how many arrived (`WouldBlock` when none).
pub fn recv_batch(
    fd: BorrowedFd<'_>,
    bufs: &mut [Box<[u8]>],
    offset: usize,
    room: usize,
    out: &mut [Datagram; MAX_BATCH],
) -> io::Result<usize> {
    let n = bufs.len().min(MAX_BATCH);
    let mut iovs: [MaybeUninit<libc::iovec>; MAX_BATCH] = [const { MaybeUninit::uninit() }; MAX_BATCH];
    // SAFETY: sockaddr_in is plain old data; all zeroes is a valid value.
    let mut names: [libc::sockaddr_in; MAX_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above for mmsghdr (null pointers, zero lengths).
    let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
    for i in 0..n {
        let buf = &mut bufs[i];
        let end = (offset + room).min(buf.len());
        let region = &mut buf[offset.min(end)..end];
        iovs[i].write(libc::iovec { iov_base: region.as_mut_ptr().cast(), iov_len: region.len() });
        msgs[i].msg_hdr.msg_iov = iovs[i].as_mut_ptr();
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = (&raw mut names[i]).cast();
        msgs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    }
    // SAFETY: each of the first `n` headers points at one live iovec that
    // covers a region of a buffer we hold mutably, and at a sockaddr_in of
    // the size it declares; the kernel writes only within them.
    let got = unsafe {
        libc::recvmmsg(fd.as_raw_fd(), msgs.as_mut_ptr(), n as libc::c_uint, libc::MSG_DONTWAIT, std::ptr::null_mut())
    };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    let got = got as usize;
    for i in 0..got {
        let name = &names[i];
        let from = if i32::from(name.sin_family) == libc::AF_INET {
            SocketAddrV4::new(Ipv4Addr::from(u32::from_be(name.sin_addr.s_addr)), u16::from_be(name.sin_port))
        } else {
            SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)
        };
        out[i] = Datagram { len: msgs[i].msg_len as usize, from };
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn several_datagrams_in_one_call_each_at_its_offset_with_its_sender() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        for k in 0..3u8 {
            tx.send_to(&[k; 5][..usize::from(k) + 1], rx.local_addr().unwrap()).unwrap();
        }
        let mut bufs: Vec<Box<[u8]>> = (0..4).map(|_| vec![0xee; 64].into_boxed_slice()).collect();
        let mut out = [Datagram { len: 0, from: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0) }; MAX_BATCH];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut got = 0;
        while got < 3 && std::time::Instant::now() < deadline {
            match recv_batch(rx.as_fd(), &mut bufs[got..], 10, 20, &mut out) {
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
        assert_eq!(recv_batch(rx.as_fd(), &mut bufs, 10, 20, &mut out).unwrap_err().kind(), io::ErrorKind::WouldBlock);
    }
}
