//! The underlay's `SO_REUSEPORT` group: one receiving UDP socket per
//! datapath worker on the VTEP's address and port, and the classic BPF
//! program that picks, for every datagram, the socket of the worker that
//! owns its overlay network (socket index = VNI % workers), so a packet
//! never crosses threads.
//!
//! The kernel runs a group's program (`SO_ATTACH_REUSEPORT_CBPF`) with the
//! packet's UDP payload at offset 0 and takes its return value as the index
//! of the socket, in the order the sockets joined the group; an index past
//! the group (or a packet too short to read, for which a classic program
//! returns 0) falls back to the kernel's hash or socket 0. Two formats carry
//! a VNI:
//!
//! - plain VXLAN (RFC 7348): flags byte 0 with the I bit `0x08` set, the
//!   VNI in bytes 4..7 (its top 24 bits);
//! - vswitch's encrypted packets (`crypto` wire format): type byte `0xE1` or
//!   `0xE3` (bit `0x08` clear), the VNI in bytes 1..4.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;

use libc::{
    BPF_ABS, BPF_ALU, BPF_AND, BPF_B, BPF_JA, BPF_JMP, BPF_JSET, BPF_K, BPF_LD, BPF_MOD, BPF_RET, BPF_RSH, BPF_W,
    sock_filter, sock_fprog,
};
use socket2::{Domain, Protocol, Socket, Type};

/// One classic BPF instruction without jumps.
const fn stmt(code: u32, k: u32) -> sock_filter {
    sock_filter { code: code as u16, jt: 0, jf: 0, k }
}

/// One classic BPF conditional jump.
const fn jump(code: u32, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code: code as u16, jt, jf, k }
}

/// The steering program for a group of `sockets` sockets: it returns the
/// VNI of the datagram modulo `sockets`.
pub fn steering_program(sockets: u32) -> [sock_filter; 8] {
    let sockets = sockets.max(1);
    [
        // 0: A = byte 0 (VXLAN flags, or vswitch's encrypted type byte).
        stmt(BPF_LD | BPF_B | BPF_ABS, 0),
        // 1: the VXLAN I flag set: plain VXLAN (go to 2), else encrypted (go to 5).
        jump(BPF_JMP | BPF_JSET | BPF_K, 0x08, 0, 3),
        // 2: A = bytes 4..7 (big-endian): VNI << 8 | reserved byte.
        stmt(BPF_LD | BPF_W | BPF_ABS, 4),
        // 3: A = VNI.
        stmt(BPF_ALU | BPF_RSH | BPF_K, 8),
        // 4: to the modulo.
        stmt(BPF_JMP | BPF_JA, 2),
        // 5: A = bytes 0..3 (big-endian): type byte << 24 | VNI.
        stmt(BPF_LD | BPF_W | BPF_ABS, 0),
        // 6: A = VNI.
        stmt(BPF_ALU | BPF_AND | BPF_K, 0x00ff_ffff),
        // 7: A = VNI % sockets (`program` appends `return A`).
        stmt(BPF_ALU | BPF_MOD | BPF_K, sockets),
    ]
}

/// The whole program: [`steering_program`] and `return A`.
fn program(sockets: u32) -> Vec<sock_filter> {
    let mut code = steering_program(sockets).to_vec();
    code.push(stmt(BPF_RET | libc::BPF_A, 0));
    code
}

/// Binds `count` UDP sockets to `addr` as one `SO_REUSEPORT` group steered
/// by VNI (socket `k` receives the VNIs with `vni % count == k`). With one
/// socket there is no group: it is bound alone, as a single-threaded
/// datapath always did. An IPv6 socket is `IPV6_V6ONLY`. With `addr`'s port
/// 0 the group shares the port the first socket was given.
pub fn bind_steered(addr: SocketAddr, count: usize) -> io::Result<Vec<UdpSocket>> {
    let count = count.max(1);
    let mut addr = addr;
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        if count > 1 {
            socket.set_reuse_port(true)?;
        }
        socket.bind(&addr.into())?;
        if addr.port() == 0 {
            addr = socket.local_addr()?.as_socket().unwrap_or(addr);
        }
        sockets.push(UdpSocket::from(socket));
    }
    if count > 1 {
        attach(&sockets[0], &program(count as u32))?;
    }
    Ok(sockets)
}

/// Attaches `code` to the reuseport group of `socket`.
fn attach(socket: &UdpSocket, code: &[sock_filter]) -> io::Result<()> {
    let len = u16::try_from(code.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let fprog = sock_fprog { len, filter: code.as_ptr().cast_mut() };
    // `fprog` points at `code`, which outlives the call (the kernel copies
    // the program).
    super::sockopt::set(socket.as_fd(), libc::SOL_SOCKET, libc::SO_ATTACH_REUSEPORT_CBPF, &fprog)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A plain VXLAN header for `vni`.
    fn vxlan(vni: u32) -> Vec<u8> {
        let mut p = vec![0x08, 0, 0, 0];
        p.extend_from_slice(&(vni << 8).to_be_bytes());
        p.extend_from_slice(&[0xAA; 14]);
        p
    }

    /// The first bytes of a vswitch encrypted packet for `vni`.
    fn encrypted(kind: u8, vni: u32) -> Vec<u8> {
        let mut p = vni.to_be_bytes().to_vec();
        p[0] = kind;
        p.extend_from_slice(&[0x55; 40]);
        p
    }

    /// Which socket of `group` got a datagram (each gets at most one).
    fn receiver(group: &[UdpSocket]) -> Vec<usize> {
        let mut buf = [0u8; 128];
        let mut got = Vec::new();
        for (k, s) in group.iter().enumerate() {
            if s.recv(&mut buf).is_ok() {
                got.push(k);
            }
        }
        got
    }

    #[test]
    fn the_group_steers_each_vni_to_its_socket() {
        for workers in [2usize, 3] {
            let group = bind_steered("127.0.0.1:0".parse().unwrap(), workers).expect("a steered group");
            let to = group[0].local_addr().unwrap();
            assert!(group.iter().all(|s| s.local_addr().unwrap() == to), "one shared port");
            for s in &group {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            }
            let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
            for vni in [1u32, 2, 3, 4, 5, 100, 101, 0xff_fffe, 0xff_ffff] {
                for packet in [vxlan(vni), encrypted(0xE1, vni), encrypted(0xE3, vni)] {
                    tx.send_to(&packet, to).unwrap();
                    // Blocking read on the expected socket; the others must be empty.
                    let want = vni as usize % workers;
                    let mut buf = [0u8; 128];
                    let n = group[want].recv(&mut buf).expect("the VNI's socket receives it");
                    assert_eq!(&buf[..n], &packet[..], "VNI {vni} on socket {want}");
                    for s in &group {
                        s.set_nonblocking(true).unwrap();
                    }
                    assert!(receiver(&group).is_empty(), "no other socket got VNI {vni}");
                    for s in &group {
                        s.set_nonblocking(false).unwrap();
                    }
                }
            }
        }
    }

    #[test]
    fn one_socket_is_not_a_group() {
        let group = bind_steered("127.0.0.1:0".parse().unwrap(), 1).unwrap();
        let taken = group[0].local_addr().unwrap();
        assert!(UdpSocket::bind(taken).is_err(), "a lone VTEP socket keeps its port to itself");
    }
}
