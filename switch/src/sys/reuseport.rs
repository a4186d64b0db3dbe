//! The underlay's `SO_REUSEPORT` group: one receiving UDP socket per
//! datapath worker on the VTEP's address and port, and the classic BPF
//! program that picks, for every datagram, the socket of the worker that
//! owns its overlay network (socket index = VNI % workers), so a packet
//! never crosses threads; a spread overlay's plain packets are left to the
//! kernel's hash instead, and its encrypted ones go by their sender
//! session ([`Steering::hash`]: every worker serves it).
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
//! - vswitch's encrypted packets (`crypto` wire format): type byte `0xE1`,
//!   `0xE3`, `0xE5` or `0xE7` (bit `0x08` clear), the VNI in bytes 1..4.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;

use libc::{
    BPF_ABS, BPF_ALU, BPF_AND, BPF_B, BPF_JA, BPF_JEQ, BPF_JMP, BPF_JSET, BPF_K, BPF_LD, BPF_MOD, BPF_RET, BPF_RSH,
    BPF_W, sock_filter, sock_fprog,
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

/// Where [`program`] finds what it steers by in a datagram (its UDP
/// payload): a plain VXLAN header's VNI is the top 24 bits of the word at
/// byte 4; an encrypted packet's type byte and VNI are the word at byte 0,
/// and the low 32 bits of its sender session id the word at byte 12.
const PLAIN_VNI_WORD: u32 = 4;
const SESSION_LOW_WORD: u32 = 12;

/// The steering program for a group of `sockets` sockets: each datagram
/// goes to socket `VNI % sockets`, except for the VNIs in `hashed` (spread
/// overlays, served by every worker). For those, a plain VXLAN packet gets
/// an index past the group, and the kernel picks the socket by its hash of
/// the addresses and ports, whose outer source port carries the inner
/// flow's hash (RFC 7348 §5), so each flow stays on one worker; an
/// encrypted packet goes to socket `session % sockets` (the low 32 bits of
/// its sender session id, which the tag authenticates), so every packet of
/// a session reaches the one worker holding its replay window, whatever
/// its outer addresses say (`crypto::lanes`).
fn program(sockets: u32, hashed: &[u32]) -> Vec<sock_filter> {
    let sockets = sockets.max(1);
    // Each list of VNI tests jumps just past its end on a match, and a
    // classic jump reaches at most 255 ahead.
    let tests = |code: &mut Vec<sock_filter>| {
        for (i, &vni) in hashed.iter().enumerate() {
            let to_match = u8::try_from(hashed.len() - i).unwrap_or(u8::MAX);
            code.push(jump(BPF_JMP | BPF_JEQ | BPF_K, vni, to_match, 0));
        }
    };
    let mut code = vec![
        // A = byte 0 (VXLAN flags, or vswitch's encrypted type byte).
        stmt(BPF_LD | BPF_B | BPF_ABS, 0),
        // The VXLAN I flag set: plain VXLAN (next), else encrypted (patched below).
        jump(BPF_JMP | BPF_JSET | BPF_K, 0x08, 0, 0),
        // Plain: A = bytes 4..7 (big-endian) = VNI << 8 | reserved byte; A = VNI.
        stmt(BPF_LD | BPF_W | BPF_ABS, PLAIN_VNI_WORD),
        stmt(BPF_ALU | BPF_RSH | BPF_K, 8),
    ];
    tests(&mut code);
    let plain_to_modulo = code.len();
    code.push(stmt(BPF_JMP | BPF_JA, 0)); // to the modulo (patched below)
    // A hashed VNI, plain: past the group, to the kernel's hash.
    code.push(stmt(BPF_RET | BPF_K, u32::MAX));
    let encrypted = code.len();
    code.extend([
        // Encrypted: A = bytes 0..3 (big-endian) = type byte << 24 | VNI; A = VNI.
        stmt(BPF_LD | BPF_W | BPF_ABS, 0),
        stmt(BPF_ALU | BPF_AND | BPF_K, 0x00ff_ffff),
    ]);
    tests(&mut code);
    let encrypted_to_modulo = code.len();
    code.push(stmt(BPF_JMP | BPF_JA, 0)); // to the modulo (patched below)
    // A hashed VNI, encrypted: A = the session id's low 32 bits.
    code.push(stmt(BPF_LD | BPF_W | BPF_ABS, SESSION_LOW_WORD));
    let modulo = code.len();
    // A % sockets, the socket's index.
    code.push(stmt(BPF_ALU | BPF_MOD | BPF_K, sockets));
    code.push(stmt(BPF_RET | libc::BPF_A, 0));
    code[1].jf = u8::try_from(encrypted - 2).unwrap_or(u8::MAX);
    code[plain_to_modulo].k = (modulo - plain_to_modulo - 1) as u32;
    code[encrypted_to_modulo].k = (modulo - encrypted_to_modulo - 1) as u32;
    code
}

/// Most VNIs [`program`] hashes: each is one instruction, and a classic
/// jump reaches at most 255 ahead.
pub const MAX_HASHED_VNIS: usize = 250;

/// A handle on a group's program, kept by the control side to change it
/// as spread overlays come and go ([`Steering::hash`]).
#[derive(Debug)]
pub struct Steering {
    /// A descriptor of the group's first socket (a `dup`: the same socket).
    socket: UdpSocket,
    sockets: u32,
}

impl Steering {
    /// Spreads the VNIs in `hashed` over every socket (plain packets by the
    /// kernel's hash, encrypted ones by their sender session, see
    /// [`program`]) and steers every other by `VNI % sockets`, from the
    /// next datagram on. At most [`MAX_HASHED_VNIS`]: more is refused
    /// (`InvalidInput`).
    pub fn hash(&self, hashed: &[u32]) -> io::Result<()> {
        if hashed.len() > MAX_HASHED_VNIS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "too many spread overlays for the steering program",
            ));
        }
        attach(&self.socket, &program(self.sockets, hashed))
    }
}

/// Binds `count` UDP sockets to `addr` as one `SO_REUSEPORT` group steered
/// by VNI (socket `k` receives the VNIs with `vni % count == k`). With one
/// socket there is no group: it is bound alone, as a single-threaded
/// datapath always did. An IPv6 socket is `IPV6_V6ONLY`. With `addr`'s port
/// 0 the group shares the port the first socket was given.
pub fn bind_steered(addr: SocketAddr, count: usize) -> io::Result<(Vec<UdpSocket>, Option<Steering>)> {
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
    if count == 1 {
        return Ok((sockets, None));
    }
    attach(&sockets[0], &program(count as u32, &[]))?;
    let steering = Steering { socket: sockets[0].try_clone()?, sockets: count as u32 };
    Ok((sockets, Some(steering)))
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
    use crate::sys::testutil::recv_within;

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

    /// An encrypted packet for `vni` of sender session `session`.
    fn sealed(vni: u32, session: u64) -> Vec<u8> {
        let mut p = encrypted(0xE1, vni);
        p[8..16].copy_from_slice(&session.to_be_bytes());
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
            let (group, _) = bind_steered("127.0.0.1:0".parse().unwrap(), workers).expect("a steered group");
            let to = group[0].local_addr().unwrap();
            assert!(group.iter().all(|s| s.local_addr().unwrap() == to), "one shared port");
            let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
            for vni in [1u32, 2, 3, 4, 5, 100, 101, 0xff_fffe, 0xff_ffff] {
                let sealed = [0xE1, 0xE3, 0xE5, 0xE7].map(|kind| encrypted(kind, vni));
                for packet in std::iter::once(vxlan(vni)).chain(sealed) {
                    tx.send_to(&packet, to).unwrap();
                    // Blocking read on the expected socket; the others must be empty.
                    let want = vni as usize % workers;
                    let mut buf = [0u8; 128];
                    let s = &group[want];
                    let n = recv_within(Duration::from_secs(5), |t| s.set_read_timeout(t), || s.recv(&mut buf))
                        .expect("the VNI's socket receives it");
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
        let (group, steering) = bind_steered("127.0.0.1:0".parse().unwrap(), 1).unwrap();
        assert!(steering.is_none(), "nothing to steer");
        let taken = group[0].local_addr().unwrap();
        assert!(UdpSocket::bind(taken).is_err(), "a lone VTEP socket keeps its port to itself");
    }

    #[test]
    fn a_hashed_vni_is_spread_by_source_port_and_the_others_stay_steered() {
        let (group, steering) = bind_steered("127.0.0.1:0".parse().unwrap(), 2).expect("a steered group");
        let steering = steering.expect("a group has a program");
        steering.hash(&[7, 1000]).expect("the program is replaced");
        let to = group[0].local_addr().unwrap();
        for s in &group {
            s.set_nonblocking(true).unwrap();
        }
        // 32 senders (source ports) per VNI; wait until all 32 arrived.
        let count = |vni: u32| {
            let mut per_socket = [0usize; 2];
            let senders: Vec<UdpSocket> = (0..32).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
            for tx in &senders {
                tx.send_to(&vxlan(vni), to).unwrap();
            }
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while per_socket.iter().sum::<usize>() < senders.len() {
                assert!(std::time::Instant::now() < deadline, "VNI {vni}: only {per_socket:?} arrived");
                for k in receiver(&group) {
                    per_socket[k] += 1;
                }
            }
            per_socket
        };
        // Hashed: both sockets get some (all 32 on one: 2^-31).
        for vni in [7, 1000] {
            let per_socket = count(vni);
            assert!(per_socket[0] > 0 && per_socket[1] > 0, "VNI {vni} not spread: {per_socket:?}");
        }
        // Not hashed: VNI % 2, every one of them.
        assert_eq!(count(8), [32, 0]);
        assert_eq!(count(9), [0, 32]);
        // Back to plain steering.
        steering.hash(&[]).unwrap();
        assert_eq!(count(7), [0, 32]);
        assert!(steering.hash(&[1; MAX_HASHED_VNIS + 1]).is_err(), "a program too long is refused");
    }

    #[test]
    fn a_hashed_vnis_encrypted_packets_go_by_their_session_whatever_their_source_port() {
        for workers in [2usize, 3] {
            let (group, steering) = bind_steered("127.0.0.1:0".parse().unwrap(), workers).expect("a steered group");
            let steering = steering.expect("a group has a program");
            // The longest list: the jumps over it still land.
            let hashed: Vec<u32> = (1..=MAX_HASHED_VNIS as u32).collect();
            steering.hash(&hashed).expect("the program is replaced");
            let to = group[0].local_addr().unwrap();
            for s in &group {
                s.set_nonblocking(true).unwrap();
            }
            let senders: Vec<UdpSocket> = (0..8).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
            for (vni, session) in [(1u32, 0x1234_5678_0000_0000u64), (7, 0x99), (250, 0xffff_ffff_0000_0005)] {
                let want = (session as u32) as usize % workers;
                for tx in &senders {
                    tx.send_to(&sealed(vni, session), to).unwrap();
                }
                let mut got = Vec::new();
                let deadline = std::time::Instant::now() + Duration::from_secs(5);
                while got.len() < senders.len() {
                    assert!(std::time::Instant::now() < deadline, "VNI {vni}: only {got:?} arrived");
                    got.extend(receiver(&group));
                }
                assert!(
                    got.iter().all(|&k| k == want),
                    "session {session:#x} of VNI {vni} went to {got:?}, not {want}"
                );
            }
            // A VNI not hashed: by VNI, whatever its session; plain VXLAN of
            // a hashed VNI is not steered by bytes 12..16.
            for (packet, want) in [(sealed(MAX_HASHED_VNIS as u32 + 1, 0), (MAX_HASHED_VNIS + 1) % workers)] {
                senders[0].send_to(&packet, to).unwrap();
                let mut got = Vec::new();
                let deadline = std::time::Instant::now() + Duration::from_secs(5);
                while got.is_empty() {
                    assert!(std::time::Instant::now() < deadline, "nothing arrived");
                    got.extend(receiver(&group));
                }
                assert_eq!(got, vec![want]);
            }
        }
    }
}
