//! AF_XDP against the real kernel (needs root): a veth pair in two test
//! namespaces, the redirect program on one end, frames in both directions.

use std::io;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{XdpPort, bpf};
use crate::sys::netlink::{LinkConfig, Netlink};
use crate::sys::netns::run_in;
use crate::sys::testutil::{NetGuard, have_root};

/// Waits (in poll, at most 5 s) for a frame that `want` accepts.
fn recv_until(port: &mut XdpPort, want: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 4096];
    loop {
        while let Some(r) = port.socket().queues().recv(&mut buf) {
            let len = r.expect("a good descriptor");
            if want(&buf[..len]) {
                return buf[..len].to_vec();
            }
        }
        port.socket().release_rx();
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no matching frame within 5 s");
        let mut pfd = libc::pollfd { fd: port.socket_ref().as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, left.as_millis() as i32) };
    }
}

#[test]
fn the_program_loads_and_its_map_takes_a_socket() {
    if !have_root("the_program_loads_and_its_map_takes_a_socket") {
        return;
    }
    let prog = bpf::XdpRedirect::load(1).expect("map and program");
    // A non-XDP socket is refused by the map; that proves the update reaches it.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let e = prog.insert(0, udp.as_raw_fd()).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP), "{e}");
}

#[test]
fn frames_cross_a_veth_through_the_socket_both_ways() {
    if !have_root("frames_cross_a_veth_through_the_socket_both_ways") {
        return;
    }
    let mut guard = NetGuard::new();
    let switch_ns = guard.netns();
    let peer_ns = guard.netns();
    let peer_name = guard.prefix().to_owned() + "p";
    let peer_path = peer_ns.path().to_owned();
    let ns_name = peer_path.file_name().unwrap().to_string_lossy().into_owned();
    let pn = peer_name.clone();
    let mut port = run_in(&switch_ns, move || -> io::Result<XdpPort> {
        let mut nl = Netlink::open().map_err(io::Error::other)?;
        nl.create_veth("xsk0", &pn, &peer_ns).map_err(io::Error::other)?;
        nl.set_link_up("xsk0").map_err(io::Error::other)?;
        let mut peer = Netlink::open_in(&peer_ns).map_err(io::Error::other)?;
        let config = LinkConfig { ipv4: Some(("10.99.0.1".parse().unwrap(), 24)), up: true, ..LinkConfig::default() };
        peer.configure_link(&pn, &config).map_err(io::Error::other)?;
        XdpPort::open("xsk0").map_err(io::Error::other)
    })
    .unwrap()
    .expect("the port opens on a veth");
    assert!(port.mode().native, "veth has native XDP");
    assert!(!port.mode().zero_copy, "veth has no zero-copy AF_XDP");
    // The peer pings an address behind the switch: its ARP request arrives.
    let mut ping = Command::new("ip")
        .args(["netns", "exec", &ns_name, "ping", "-c", "30", "-i", "0.2", "-W", "1", "10.99.0.2"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let arp = recv_until(&mut port, |f| f.len() >= 42 && f[12..14] == [0x08, 0x06]);
    assert_eq!(&arp[38..42], &[10, 99, 0, 2], "who-has 10.99.0.2");
    // Answer it through the TX ring: the peer's ICMP echo then arrives.
    let peer_mac: [u8; 6] = arp[6..12].try_into().unwrap();
    let ours = [0x02, 0, 0, 0, 0, 0x42];
    let mut reply = Vec::new();
    reply.extend_from_slice(&peer_mac);
    reply.extend_from_slice(&ours);
    reply.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 2]);
    reply.extend_from_slice(&ours);
    reply.extend_from_slice(&[10, 99, 0, 2]);
    reply.extend_from_slice(&peer_mac);
    reply.extend_from_slice(&[10, 99, 0, 1]);
    let (addr, chunk) = port.socket().queues().tx_chunk().expect("a TX chunk");
    chunk[..reply.len()].copy_from_slice(&reply);
    port.socket().queues().commit_tx(addr, reply.len() as u32);
    port.socket().flush_tx().expect("kick");
    let echo = recv_until(&mut port, |f| f.len() >= 34 && f[12..14] == [0x08, 0x00] && f[23] == 1);
    assert_eq!(&echo[0..6], &ours, "sent to the MAC the ARP reply gave");
    let _ = ping.kill();
    let _ = ping.wait();
    assert!(port.socket().stats().is_ok());
    drop(guard);
}
