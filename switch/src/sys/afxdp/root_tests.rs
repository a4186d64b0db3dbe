//! AF_XDP against the real kernel (needs root): a veth pair in two test
//! namespaces, the redirect program on one end, frames in both directions.

use std::io;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{MAX_FRAME_LEN, RX_CHUNKS, TxChecksum, XdpPort, bpf};
use crate::sys::netlink::{LinkConfig, Netlink};
use crate::sys::netns::run_in;
use crate::sys::testutil::{NetGuard, have_root};

/// Waits (in poll, at most 5 s) for a frame that `want` accepts.
fn recv_until(port: &mut XdpPort, want: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; MAX_FRAME_LEN];
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

/// Runs `ip` with `args`, asserting that it succeeds.
fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("ip runs");
    assert!(status.success(), "ip {args:?}");
}

/// A veth pair between two test namespaces: `xsk0` in the switch's, up
/// for the port to open on, and its peer up in the other with `10.99.N.1/24`,
/// no IPv6 (no router or neighbour solicitations) and `10.99.N.2` as a
/// static neighbour (no ARP: nothing answers on the switch's side), so the
/// peer sends nothing but what a test sends.
struct PeerVeth {
    guard: NetGuard,
    switch_ns: crate::sys::netns::NetNs,
    peer_ns: crate::sys::netns::NetNs,
    switch_name: String,
    peer_ns_name: String,
    peer_name: String,
}

impl PeerVeth {
    /// The pair with `queues` queues each way, on subnet `10.99.subnet.0/24`.
    fn new(queues: u32, subnet: u8) -> PeerVeth {
        let mut guard = NetGuard::new();
        let (switch_ns, peer_ns) = (guard.netns(), guard.netns());
        let peer_name = guard.prefix().to_owned() + "p";
        let name_of = |ns: &crate::sys::netns::NetNs| ns.path().file_name().unwrap().to_string_lossy().into_owned();
        let (switch_name, peer_ns_name) = (name_of(&switch_ns), name_of(&peer_ns));
        let queues = queues.to_string();
        let q = ["numtxqueues", &queues, "numrxqueues", &queues];
        let mut add = vec!["-n", &switch_name, "link", "add", "xsk0"];
        add.extend(q);
        add.extend(["type", "veth", "peer", "name", &peer_name]);
        add.extend(q);
        add.extend(["netns", &peer_ns_name]);
        ip(&add);
        ip(&["-n", &switch_name, "link", "set", "xsk0", "up"]);
        ip(&["netns", "exec", &peer_ns_name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        let (address, neighbour) = (format!("10.99.{subnet}.1/24"), format!("10.99.{subnet}.2"));
        ip(&["-n", &peer_ns_name, "addr", "add", &address, "dev", &peer_name]);
        ip(&["-n", &peer_ns_name, "link", "set", &peer_name, "up"]);
        ip(&["-n", &peer_ns_name, "neigh", "add", &neighbour, "lladdr", "02:00:00:00:00:42", "dev", &peer_name]);
        PeerVeth { guard, switch_ns, peer_ns, switch_name, peer_ns_name, peer_name }
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
        nl.create_veth("xsk0", &pn, &peer_ns, 1).map_err(io::Error::other)?;
        // Jumbo frames: only a frags-capable program lets a veth take them.
        nl.set_mtu("xsk0", 9000).map_err(io::Error::other)?;
        nl.set_link_up("xsk0").map_err(io::Error::other)?;
        let mut peer = Netlink::open_in(&peer_ns).map_err(io::Error::other)?;
        let config = LinkConfig {
            ipv4: Some(("10.99.0.1".parse().unwrap(), 24)),
            up: true,
            mtu: Some(9000),
            ..LinkConfig::default()
        };
        peer.configure_link(&pn, &config).map_err(io::Error::other)?;
        XdpPort::open("xsk0").map_err(io::Error::other)
    })
    .unwrap()
    .expect("the port opens on a veth");
    assert!(port.mode().native, "veth has native XDP");
    assert!(!port.mode().zero_copy, "veth has no zero-copy AF_XDP");
    assert!(port.mode().multi_buffer, "copy mode has multi-buffer since 6.6");
    assert!(port.mode().csum_offload, "copy mode has TX metadata checksums since 6.8");
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
    port.socket().queues().send(&reply, TxChecksum::AsIs).expect("a TX chunk");
    port.socket().flush_tx().expect("kick");
    let echo = recv_until(&mut port, |f| f.len() >= 34 && f[12..14] == [0x08, 0x00] && f[23] == 1);
    assert_eq!(&echo[0..6], &ours, "sent to the MAC the ARP reply gave");
    let _ = ping.kill();
    let _ = ping.wait();

    // An 8,000-byte ping, not fragmented: it arrives as a descriptor chain,
    // and the reply leaves as one, its ICMP checksum completed by the kernel
    // from TX metadata (the field is zero: ICMP has no pseudo-header).
    let ping = Command::new("ip")
        .args(["netns", "exec", &ns_name, "ping", "-c", "1", "-s", "8000", "-M", "do", "-W", "5", "10.99.0.2"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let request = recv_until(&mut port, |f| f.len() == 14 + 20 + 8 + 8000 && f[23] == 1 && f[34] == 8);
    assert!(port.socket().queues().counters().multi_buffer >= 1, "a chain");
    let mut reply = request.clone();
    reply[..6].copy_from_slice(&request[6..12]);
    reply[6..12].copy_from_slice(&ours);
    reply[26..30].copy_from_slice(&request[30..34]);
    reply[30..34].copy_from_slice(&request[26..30]);
    reply[34] = 0;
    reply[36..38].fill(0);
    port.socket().queues().send(&reply, TxChecksum::Offload { start: 34, offset: 2 }).expect("chunks");
    port.socket().flush_tx().expect("kick");
    let status = ping.wait_with_output().unwrap().status;
    assert!(status.success(), "the peer accepted the jumbo reply");
    let c = port.socket().queues().counters();
    assert_eq!((c.multi_buffer, c.tx_csum_offloaded), (2, 1), "{c:?}");
    assert!(port.socket().stats().is_ok());
    drop(guard);
}

/// How many flows [`send_flows`] sends.
const FLOWS: u16 = 64;

/// Sends [`FLOWS`] flows from the peer of a [`PeerVeth`] on subnet 1 (one
/// datagram each, from a fresh socket: a connected one caches its queue)
/// to `10.99.1.2` ports 20000.., which its flow hash spreads over its
/// transmit queues.
fn send_flows(peer_ns: &crate::sys::netns::NetNs) {
    run_in(peer_ns, || {
        for i in 0..FLOWS {
            let flow = std::net::UdpSocket::bind("10.99.1.1:0").unwrap();
            flow.send_to(&i.to_be_bytes(), ("10.99.1.2", 20000 + i)).unwrap();
        }
    })
    .unwrap();
}

/// Sends [`send_flows`]' flows, waits until every one arrived on one of
/// `ports`' sockets, and returns how many each socket of each port carried.
fn flows_arrive(peer_ns: &crate::sys::netns::NetNs, ports: &mut [XdpPort]) -> Vec<Vec<u32>> {
    send_flows(peer_ns);
    let mut seen = [false; FLOWS as usize];
    let mut per_socket: Vec<Vec<u32>> = ports.iter().map(|p| vec![0; p.sockets_ref().len()]).collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; MAX_FRAME_LEN];
    while seen.iter().any(|s| !s) {
        for (port, counts) in ports.iter_mut().zip(&mut per_socket) {
            for (q, socket) in port.sockets().iter_mut().enumerate() {
                while let Some(r) = socket.queues().recv(&mut buf) {
                    let len = r.expect("a good descriptor");
                    let f = &buf[..len];
                    // IPv4, UDP, to 10.99.1.2, our port range, a 2-byte payload.
                    if len == 14 + 20 + 8 + 2 && f[12..14] == [8, 0] && f[23] == 17 && f[30..34] == [10, 99, 1, 2] {
                        let i = u16::from_be_bytes([f[42], f[43]]);
                        assert_eq!(u16::from_be_bytes([f[36], f[37]]), 20000 + i);
                        seen[usize::from(i)] = true;
                        counts[q] += 1;
                    }
                }
                socket.release_rx();
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "datagrams missing after 5 s: {:?}",
            (0..FLOWS).filter(|&i| !seen[usize::from(i)]).collect::<Vec<_>>()
        );
        let mut pfds: Vec<libc::pollfd> =
            ports.iter().map(|p| libc::pollfd { fd: p.event_fd(), events: libc::POLLIN, revents: 0 }).collect();
        // SAFETY: `pfds` is a valid array of pollfds of that length.
        unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, left.as_millis().min(100) as i32) };
    }
    per_socket
}

#[test]
fn every_receive_queue_of_a_multi_queue_veth_has_its_socket() {
    if !have_root("every_receive_queue_of_a_multi_queue_veth_has_its_socket") {
        return;
    }
    // Two queues each way: a veth hands a frame to the receive queue of the
    // transmit queue its sender picked (by flow hash).
    let pair = PeerVeth::new(2, 1);
    let (guard, switch_ns, peer_ns) = (pair.guard, pair.switch_ns, pair.peer_ns);
    let mut port = run_in(&switch_ns, || XdpPort::open("xsk0")).unwrap().expect("the port opens");
    assert_eq!(port.mode().queues, 2, "a socket per receive queue: {}", port.mode());
    assert!(port.mode().to_string().ends_with(", 2 queues"), "{}", port.mode());
    assert_ne!(port.event_fd(), port.socket_ref().as_raw_fd(), "an epoll instance stands for both sockets");

    let per_queue = flows_arrive(&peer_ns, std::slice::from_mut(&mut port));
    assert!(per_queue[0][0] > 0 && per_queue[0][1] > 0, "both queues carried flows: {per_queue:?}");
    let total: u64 = port.sockets_ref().iter().map(|s| s.stats().map(|s| s.rx_dropped + s.rx_ring_full).unwrap()).sum();
    assert_eq!(total, 0, "no kernel drops");

    // Split for two workers (three asked, two queues to give): a part per
    // queue, each its own socket's descriptor, and each still fed once the
    // other is gone.
    let mut parts = port.split(3).expect("the port splits");
    assert_eq!(parts.len(), 2);
    for part in &parts {
        assert_eq!(part.mode().queues, 1, "{}", part.mode());
        assert_eq!(part.event_fd(), part.socket_ref().as_raw_fd());
    }
    let per_part = flows_arrive(&peer_ns, &mut parts);
    assert!(per_part[0][0] > 0 && per_part[1][0] > 0, "both parts carried flows: {per_part:?}");
    drop(parts.remove(0));
    send_flows(&peer_ns);
    let ours =
        |f: &[u8]| f.len() == 14 + 20 + 8 + 2 && (20000..20000 + FLOWS).contains(&u16::from_be_bytes([f[36], f[37]]));
    recv_until(&mut parts[0], ours);
    drop(guard);
}

#[test]
fn a_socket_that_falls_behind_counts_each_lost_frame_once() {
    if !have_root("a_socket_that_falls_behind_counts_each_lost_frame_once") {
        return;
    }
    let pair = PeerVeth::new(1, 2);
    let (guard, switch_ns, peer_ns) = (pair.guard, pair.switch_ns, pair.peer_ns);
    let (switch_name, peer_ns_name, peer_name) = (pair.switch_name, pair.peer_ns_name, pair.peer_name);
    let mut port = run_in(&switch_ns, || XdpPort::open("xsk0")).unwrap().expect("the port opens");

    // The switch reads nothing meanwhile: the receive chunks in the fill
    // ring take the first datagrams, the kernel drops the rest.
    const SENT: u32 = RX_CHUNKS + 500;
    run_in(&peer_ns, || {
        let socket = std::net::UdpSocket::bind("10.99.2.1:0").unwrap();
        for i in 0..SENT {
            socket.send_to(&i.to_be_bytes(), ("10.99.2.2", 20000)).unwrap();
        }
    })
    .unwrap();
    // The sends returned, but the veth may still be delivering (its NAPI
    // can run later, in ksoftirqd): first wait until it handled every
    // datagram (its XDP program's frames count in xsk0's rx_packets) or
    // dropped it (the peer's tx_dropped), so none arrives while the RX ring
    // is read (reading refills the fill ring).
    let counter = |ns: &str, dev: &str, name: &str| -> i64 {
        let path = format!("/sys/class/net/{dev}/statistics/{name}");
        let out = Command::new("ip").args(["netns", "exec", ns, "cat", &path]).output().expect("cat runs");
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("a count")
    };
    let sent = i64::from(SENT);
    let deadline = Instant::now() + Duration::from_secs(5);
    let veth_dropped = loop {
        let (handled, dropped) =
            (counter(&switch_name, "xsk0", "rx_packets"), counter(&peer_ns_name, &peer_name, "tx_dropped"));
        if handled + dropped >= sent {
            break dropped;
        }
        assert!(Instant::now() < deadline, "the veth handled {handled} and dropped {dropped} of {sent} in 5 s");
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut buf = vec![0u8; MAX_FRAME_LEN];
    let mut received = 0;
    loop {
        while let Some(r) = port.socket().queues().recv(&mut buf) {
            let len = r.expect("a good descriptor");
            assert!(len == 14 + 20 + 8 + 4 && buf[23] == 17, "only the test's datagrams: {:?}", &buf[..len.min(64)]);
            received += 1;
        }
        let stats = port.socket().stats().expect("XDP_STATISTICS");
        let counted = i64::from(received) + stats.frames_dropped() as i64 + veth_dropped;
        if counted == sent {
            assert_eq!(received, RX_CHUNKS, "every receive chunk took one");
            // In copy mode the kernel counts each frame that found the
            // fill ring empty twice: as dropped and as an empty read.
            assert!(stats.rx_fill_empty >= stats.rx_dropped && stats.rx_dropped > 0, "{stats:?}");
            break;
        }
        // The last batch's descriptors or counts may lag a moment behind.
        assert!(
            Instant::now() < deadline,
            "{sent} sent but {received} received, {veth_dropped} dropped by the veth and {stats:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    port.socket().release_rx();
    drop(guard);
}
