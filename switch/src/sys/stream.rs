//! The TCP socket calls the L4 translator needs beyond std and socket2:
//! peeking at a receive queue from a moving offset (`SO_PEEK_OFF`), and
//! dropping acknowledged bytes from its front without copying them
//! (`MSG_TRUNC`). Together they let the kernel's receive buffer be the only
//! copy of bytes in flight toward a sandbox.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Sets the socket's peek offset: the next `MSG_PEEK` read starts `offset`
/// bytes into the receive queue and advances it; a non-peeking read (or
/// discard) of `n` bytes moves it back by `n`. Linux supports it on TCP
/// sockets since 6.10.
pub fn set_peek_offset(fd: BorrowedFd<'_>, offset: i32) -> io::Result<()> {
    super::sockopt::set(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, &offset)
}

/// Copies up to `buf.len()` bytes from the receive queue, from the peek
/// offset on, without removing them. Returns 0 at end of stream.
pub fn peek(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`, which
    // is valid for writes of that length.
    let n =
        unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}

/// Removes up to `len` bytes from the front of a TCP receive queue without
/// copying them (`MSG_TRUNC` on TCP discards). Returns how many went.
pub fn discard(fd: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    // SAFETY: with MSG_TRUNC on a TCP socket the kernel writes nothing to
    // the (null) buffer; it only drops `len` bytes from the queue.
    let n = unsafe { libc::recv(fd.as_raw_fd(), std::ptr::null_mut(), len, libc::MSG_TRUNC | libc::MSG_DONTWAIT) };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}

/// Writes bytes to a stream socket without blocking and without SIGPIPE
/// (a peer that reset the connection gives `EPIPE`).
pub fn send(fd: BorrowedFd<'_>, data: &[u8]) -> io::Result<usize> {
    // SAFETY: the kernel reads at most `data.len()` bytes from `data`.
    let n = unsafe {
        libc::send(fd.as_raw_fd(), data.as_ptr().cast(), data.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
    };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn peeking_from_an_offset_then_discarding_what_was_acknowledged() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client.write_all(b"abcdefgh").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        set_peek_offset(server.as_fd(), 0).unwrap();
        let mut buf = [0u8; 3];
        // Wait for the bytes to arrive (loopback is quick, but not instant).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match peek(server.as_fd(), &mut buf) {
                Ok(3) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && std::time::Instant::now() < deadline => {
                    std::thread::yield_now()
                }
                other => panic!("unexpected peek result {other:?}"),
            }
        }
        assert_eq!(&buf, b"abc");
        assert_eq!(peek(server.as_fd(), &mut buf).unwrap(), 3);
        assert_eq!(&buf, b"def", "the peek offset advanced");
        assert_eq!(discard(server.as_fd(), 2).unwrap(), 2);
        assert_eq!(peek(server.as_fd(), &mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"gh", "discarding moved the offset back with the queue's front");
        assert_eq!(peek(server.as_fd(), &mut buf).unwrap(), 0, "end of stream after everything peeked");
        set_peek_offset(server.as_fd(), 0).unwrap();
        let mut all = [0u8; 8];
        assert_eq!(peek(server.as_fd(), &mut all).unwrap(), 6);
        assert_eq!(&all[..6], b"cdefgh", "rewound to the front");
    }
}

/// Peeks, from the front of the receive queue, `skip.len()` bytes into
/// `skip` (bytes already sent on) and what follows into `buf`, for kernels
/// without `SO_PEEK_OFF` on TCP (before Linux 6.10): one call, the kernel
/// copying the skipped part too. Returns the bytes that landed in `buf`;
/// 0 at end of stream (the peer closed and nothing is left beyond `skip`),
/// `WouldBlock` when nothing new is queued yet.
pub fn peek_after(fd: BorrowedFd<'_>, skip: &mut [u8], buf: &mut [u8]) -> io::Result<usize> {
    let mut iov = [
        libc::iovec { iov_base: skip.as_mut_ptr().cast(), iov_len: skip.len() },
        libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() },
    ];
    // SAFETY: msghdr is plain old data; zeroed it has no name and no control.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len() as _;
    // SAFETY: both iovecs cover buffers we hold mutably; the kernel writes
    // within them only.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    if n == 0 || n > skip.len() {
        return Ok(n.saturating_sub(skip.len()));
    }
    // Nothing beyond what was sent: the end of the stream, if the peer
    // closed, shows only as the connection's state.
    if peer_closed(fd)? { Ok(0) } else { Err(io::ErrorKind::WouldBlock.into()) }
}

/// Whether the peer sent FIN (the connection is past ESTABLISHED on the
/// receiving side).
fn peer_closed(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let info: libc::tcp_info = super::sockopt::get(fd, libc::IPPROTO_TCP, libc::TCP_INFO)?;
    // CLOSE_WAIT, LAST_ACK, CLOSING, TIME_WAIT, CLOSE (include/net/tcp_states.h).
    Ok(matches!(info.tcpi_state, 7 | 8 | 9 | 6 | 11))
}

/// Whether this kernel supports `SO_PEEK_OFF` on TCP sockets.
pub fn tcp_peek_offset_supported() -> bool {
    socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .is_ok_and(|s| set_peek_offset(std::os::fd::AsFd::as_fd(&s), 0).is_ok())
}

#[cfg(test)]
mod fallback_tests {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn peeking_past_what_was_sent_without_a_peek_offset() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client.write_all(b"abcdef").unwrap();
        let fd = server.as_fd();
        let (mut skip, mut buf) = ([0u8; 2], [0u8; 8]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let n = loop {
            match peek_after(fd, &mut skip, &mut buf) {
                Ok(n) if n >= 4 => break n,
                Ok(_) | Err(_) if std::time::Instant::now() < deadline => std::thread::yield_now(),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(&buf[..n], b"cdef");
        let mut all = [0u8; 6];
        let err = peek_after(fd, &mut all, &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "nothing new, peer still open");
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while peek_after(fd, &mut all, &mut buf).is_err() {
            assert!(std::time::Instant::now() < deadline, "end of stream never seen");
            std::thread::yield_now();
        }
        assert_eq!(peek_after(fd, &mut all, &mut buf).unwrap(), 0, "end of stream beyond what was sent");
        assert_eq!(discard(fd, 6).unwrap(), 6);
        assert_eq!(peek_after(fd, &mut [], &mut buf).unwrap(), 0, "empty and closed");
    }
}
