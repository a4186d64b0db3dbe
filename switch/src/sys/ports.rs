//! Free host ports for published ports the user left to the daemon
//! (`-p 80`, Docker's random host port).
//!
//! The kernel is asked, as Docker's port allocator asks it in effect: a
//! socket bound to port 0 gets a port from `net.ipv4.ip_local_port_range`
//! that no other socket holds. The daemon keeps such sockets bound (a
//! [`PortHold`]) until every port of a request is chosen, so two mappings
//! of one request never get the same port, and then lets go just before the
//! datapath binds its real listeners.

use std::io;
use std::net::{IpAddr, SocketAddr};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Sockets bound to a chosen port on each of its addresses: while held, no
/// other socket gets that port.
#[derive(Debug)]
pub struct PortHold {
    port: u16,
    _sockets: Vec<Socket>,
}

impl PortHold {
    /// The port held.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// What [`hold_port`] found.
#[derive(Debug)]
pub enum Probe {
    /// The port is held on every address.
    Free(PortHold),
    /// The kernel's port is taken on another of the addresses: ask again,
    /// keeping this hold until then so the kernel offers another port.
    Taken(PortHold),
}

/// Why no port could be held: the address that refused, and the error.
#[derive(Debug)]
pub struct HoldError {
    /// The address (with port 0 for the first, kernel-chosen bind).
    pub addr: SocketAddr,
    /// The OS error.
    pub source: io::Error,
}

/// Binds a socket (`tcp`: a stream socket, else a datagram one) to `port`
/// on each of `addresses` (`IPV6_V6ONLY` for IPv6, as the published port's
/// listeners are); port 0 lets the kernel choose one on the first address,
/// which the others then get. An address marked optional that the host
/// cannot bind (no IPv6) is left out, as the listeners leave it out.
pub fn hold_port(tcp: bool, addresses: &[(IpAddr, bool)], port: u16) -> Result<Probe, HoldError> {
    let mut sockets = Vec::with_capacity(addresses.len());
    let mut port = port;
    for &(ip, optional) in addresses {
        let addr = SocketAddr::new(ip, port);
        match bind(tcp, addr) {
            Ok(socket) => {
                if port == 0 {
                    port = local_port(&socket).map_err(|source| HoldError { addr, source })?;
                }
                sockets.push(socket);
            }
            Err(e) if port != 0 && e.kind() == io::ErrorKind::AddrInUse => {
                return Ok(Probe::Taken(PortHold { port, _sockets: sockets }));
            }
            Err(e) if optional && no_address_family(&e) => {}
            Err(source) => return Err(HoldError { addr, source }),
        }
    }
    Ok(Probe::Free(PortHold { port, _sockets: sockets }))
}

/// Whether this host (the daemon's network namespace) has IPv6 to listen
/// on: whether a socket binds `[::]`, as the `[::]` companion listener of a
/// port published on every address does.
pub fn host_has_ipv6() -> bool {
    let any = SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), 0);
    !bind(false, any).is_err_and(|e| no_address_family(&e))
}

/// One socket bound to `addr`, without `SO_REUSEADDR`: a port some socket
/// is bound to, listening or not, is refused.
fn bind(tcp: bool, addr: SocketAddr) -> io::Result<Socket> {
    let (kind, protocol) = if tcp { (Type::STREAM, Protocol::TCP) } else { (Type::DGRAM, Protocol::UDP) };
    let socket = Socket::new(Domain::for_address(addr), kind.cloexec(), Some(protocol))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&SockAddr::from(addr))?;
    Ok(socket)
}

fn local_port(socket: &Socket) -> io::Result<u16> {
    socket.local_addr()?.as_socket().map(|a| a.port()).ok_or_else(|| io::Error::other("not an inet socket"))
}

/// Whether a bind failure means the host has no such address family (no
/// IPv6), as the listeners judge their optional `[::]` companion.
fn no_address_family(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr, TcpListener, UdpSocket};

    const LOOPBACK: (IpAddr, bool) = (IpAddr::V4(Ipv4Addr::LOCALHOST), false);

    fn free(probe: Result<Probe, HoldError>) -> PortHold {
        match probe {
            Ok(Probe::Free(hold)) => hold,
            other => panic!("no free port: {other:?}"),
        }
    }

    #[test]
    fn a_held_port_is_free_until_dropped_and_refused_to_others_meanwhile() {
        for tcp in [true, false] {
            let hold = free(hold_port(tcp, &[LOOPBACK], 0));
            let port = hold.port();
            assert_ne!(port, 0);
            let addr = SocketAddr::new(LOOPBACK.0, port);
            let taken = if tcp { TcpListener::bind(addr).err() } else { UdpSocket::bind(addr).err() };
            assert_eq!(taken.map(|e| e.kind()), Some(io::ErrorKind::AddrInUse), "tcp={tcp}: the hold keeps it");
            let second = free(hold_port(tcp, &[LOOPBACK], 0));
            assert_ne!(second.port(), port, "tcp={tcp}: two holds, two ports");
            drop(hold);
            if tcp {
                TcpListener::bind(addr).expect("free once the hold is dropped");
            } else {
                UdpSocket::bind(addr).expect("free once the hold is dropped");
            }
        }
    }

    #[test]
    fn a_given_port_is_held_if_free_and_reported_taken_otherwise() {
        let first = free(hold_port(true, &[LOOPBACK], 0));
        match hold_port(true, &[LOOPBACK], first.port()) {
            Ok(Probe::Taken(hold)) => assert_eq!(hold.port(), first.port()),
            other => panic!("a held port must be taken: {other:?}"),
        }
        let port = first.port();
        drop(first);
        assert_eq!(free(hold_port(true, &[LOOPBACK], port)).port(), port, "free again once dropped");
    }

    #[test]
    fn every_address_of_a_mapping_gets_the_same_port_or_none() {
        let both = [(IpAddr::V4(Ipv4Addr::LOCALHOST), false), (IpAddr::V6(Ipv6Addr::LOCALHOST), true)];
        let hold = free(hold_port(true, &both, 0));
        let v6 = TcpListener::bind(SocketAddr::new(both[1].0, hold.port()));
        if let Err(e) = v6 {
            // The host has IPv6 loopback: then it is held too.
            assert!(
                e.kind() == io::ErrorKind::AddrInUse || no_address_family(&e),
                "[::1]:{} should be held or absent: {e}",
                hold.port()
            );
        }
        // A required address that is not the host's is an error naming it.
        let foreign = [(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 77)), false)];
        let e = hold_port(true, &foreign, 0).unwrap_err();
        assert_eq!((e.addr.ip(), e.source.kind()), (foreign[0].0, io::ErrorKind::AddrNotAvailable));
    }
}
