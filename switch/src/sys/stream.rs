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
    // SAFETY: setsockopt reads exactly `size_of::<c_int>()` bytes from a
    // live local; the descriptor is borrowed, so it stays open.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEEK_OFF,
            (&raw const offset).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
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
