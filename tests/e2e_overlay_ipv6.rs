//! VXLAN overlays over an IPv6 underlay: simulated hosts (network
//! namespaces on a shared kernel bridge) with IPv6 underlay addresses run
//! `vswitchd --vtep [ADDR]:PORT`. Dual-stack sandboxes on different hosts
//! ping (`ping` and `ping -6`) and carry TCP over IPv4 and IPv6 across,
//! remote MACs are learned against IPv6 VTEPs, the overlay MTU is the
//! underlay's less 70 bytes (and the switch's ICMP "fragmentation needed"
//! and ICMPv6 "packet too big" say so), an IPv6 VTEP is learned from its
//! traffic, static IPv6 peers and entries toward them survive `kill -9`, a peer
//! of the other family is refused, the underlay capture decodes as
//! IPv6/UDP/VXLAN with real UDP checksums on the wire, an encrypted overlay
//! works, and the Linux kernel's `vxlan` over IPv6 interoperates. Needs
//! root (and tshark for the decoding tests).

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ctl::proto::{EndpointInfo, FdbEntry, FdbKind, PeerInfo, ShowTree};
use vswitch::encrypted::{CRYPTO_DROPS, EncryptedHeader, SecretFile, contains_bytes};
use vswitch::overlay::{ip_of, mtu_of, sandbox_on, tunnel_port, udp6_datagram, vtep_daemon_at};
use vswitch::{
    Binaries, Capture, Daemon, Frame, Underlay, UnderlayHost, netns_exec, netns_exec_ok, ping, require_root,
    require_tshark, tcp_transfer, text, tshark_fields, vtep_daemon, vtep6_daemon, wait_for_ping, wait_until,
    write_pcap,
};

/// The IPv6 underlay prefix of test `n`: `fd00:212:n::/64`.
fn net6(n: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x212, n, 0, 0, 0, 0, 0)
}

/// Underlay hosts' drop reasons that must stay zero between good peers.
const UNDERLAY_DROPS: [&str; 4] = ["vxlan_malformed", "vxlan_bad_flags", "unknown_vni", "unknown_peer"];

/// Creates sandbox `suffix` on `d` and connects it to the dual-stack
/// network `net` with addresses `ip4` and `ip6` (each host allocates on its
/// own: the tests pick addresses that differ between hosts).
fn dual_on(d: &Daemon, net: &str, suffix: &str, ip4: &str, ip6: &str) -> (String, EndpointInfo) {
    let name = d.name(suffix);
    d.sandbox_create(&name);
    let e: EndpointInfo = d.ctl_json(&["network", "connect", net, &name, "--ip", ip4, "--ip6", ip6]);
    assert_eq!(e.ipv4.map(|n| n.addr().to_string()).as_deref(), Some(ip4), "{e:?}");
    assert_eq!(e.ipv6.map(|n| n.addr().to_string()).as_deref(), Some(ip6), "{e:?}");
    (name, e)
}

/// The endpoint's IPv6 address.
fn ip6_of(e: &EndpointInfo) -> Ipv6Addr {
    e.ipv6.unwrap_or_else(|| panic!("{e:?} has no IPv6 address")).addr()
}

/// `ping -6 -M do -s SIZE` from `ns` to `dst`: what it printed, and whether
/// a reply came.
fn ping6_df(ns: &str, dst: Ipv6Addr, size: usize, count: u32) -> (bool, String) {
    let (size, count, dst) = (size.to_string(), count.to_string(), dst.to_string());
    let out =
        netns_exec(ns, "ping", &["-6", "-n", "-M", "do", "-s", &size, "-c", &count, "-i", "0.2", "-W", "1", &dst]);
    (out.status.success(), format!("{}{}", text(&out.stdout), text(&out.stderr)))
}

/// The `vtep` row of `stats`.
fn vtep_row(d: &Daemon) -> ctl::proto::PortStats {
    d.stats_map().into_iter().find(|((p, _), _)| p == "vtep").map(|(_, s)| s).expect("no vtep row in stats")
}

/// `ip route get DST` in `ns`: the cached path MTU, if any.
fn cached_pmtu(ns: &str, dst: Ipv4Addr) -> Option<u64> {
    let out = netns_exec_ok(ns, "ip", &["-j", "route", "get", &dst.to_string()]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    v[0]["metrics"].as_array()?.iter().find_map(|m| m["mtu"].as_u64())
}

/// The VXLAN datagrams (to or from port 4789) between two hosts' IPv6
/// addresses in a capture: (source, destination, UDP checksum field, payload).
fn vxlan6(frames: &[Frame], hosts: [&UnderlayHost; 2]) -> Vec<(SocketAddr, SocketAddr, u16, Vec<u8>)> {
    let ours: BTreeSet<Ipv6Addr> = hosts.iter().map(|h| h.ipv6()).collect();
    frames
        .iter()
        .filter_map(|f| udp6_datagram(&f.bytes))
        .filter(|(s, d, _, _)| {
            let ip6 = |a: &SocketAddr| match a.ip() {
                std::net::IpAddr::V6(v6) => ours.contains(&v6),
                std::net::IpAddr::V4(_) => false,
            };
            ip6(s) && ip6(d) && (s.port() == 4789 || d.port() == 4789)
        })
        .map(|(s, d, c, p)| (s, d, c, p.to_vec()))
        .collect()
}

/// A temp dir for pcap files, removed on drop.
struct PcapDir(PathBuf);

impl PcapDir {
    fn new(u: &Underlay) -> PcapDir {
        let dir = std::env::temp_dir().join(format!("vswitch-e2e-{}", u.name("pcap6")));
        std::fs::create_dir_all(&dir).expect("pcap dir");
        PcapDir(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for PcapDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `vswitchctl capture ARGS -w FILE` in the background, killed on drop.
struct CtlCapture {
    child: Child,
    log: PathBuf,
}

impl CtlCapture {
    /// Starts it and waits until the daemon has set the capture up.
    fn start(d: &Daemon, args: &[&str], file: &Path) -> CtlCapture {
        let log = file.with_extension("log");
        let stderr = std::fs::File::create(&log).expect("capture log");
        let child = Command::new(&Binaries::get().vswitchctl)
            .arg("--socket")
            .arg(d.socket())
            .arg("capture")
            .args(args)
            .arg("-w")
            .arg(file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run vswitchctl capture: {e}"));
        let mut run = CtlCapture { child, log };
        let log = run.log.clone();
        let read = move || std::fs::read_to_string(&log).unwrap_or_default();
        wait_until(
            Duration::from_secs(20),
            || format!("capture {args:?} to start: {}", read()),
            || {
                let started = read().contains("capturing on");
                assert!(started || matches!(run.child.try_wait(), Ok(None)), "capture exited: {}", read());
                started.then_some(())
            },
        );
        run
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for it to end on its own (`-c N`); returns its stderr.
    fn finish(mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    assert!(status.success(), "capture failed: {}", self.stderr());
                    return self.stderr();
                }
                _ if Instant::now() > deadline => panic!("capture did not end: {}", self.stderr()),
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Drop for CtlCapture {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn two_hosts_on_an_ipv6_underlay_ping_carry_tcp_and_learn_remote_macs() {
    if !require_root("two_hosts_on_an_ipv6_underlay_ping_carry_tcp_and_learn_remote_macs") {
        return;
    }
    let u = Underlay::dual_stack([10, 212, 1], net6(1), 2);
    let (h1, h2) = (u.host(0), u.host(1));
    let d1 = vtep6_daemon(h1, &[]);
    let d2 = vtep6_daemon(h2, &[]);
    let (net, big) = (u.name("ov"), u.name("big"));
    for d in [&d1, &d2] {
        let info =
            d.overlay_create(&net, "10.213.1.0/24", 4801, &["--attachable", "--ipv6", "--subnet", "fd00:213:1::/64"]);
        let mtu = info.options.get("com.docker.network.driver.mtu").map(String::as_str);
        assert_eq!(mtu, Some("1430"), "1500-byte IPv6 underlay less 70 bytes: {info:?}");
        // An overlay that claims more than the tunnel carries, for the ICMP.
        let dual = ["--attachable", "--mtu", "1500", "--ipv6", "--subnet", "fd00:213:2::/64"];
        d.overlay_create(&big, "10.213.2.0/24", 4802, &dual);
    }
    // `[ADDR]:PORT` and bare `ADDR` both name an IPv6 VTEP.
    d1.ctl_ok(&["peer", "add", &h2.vtep6().to_string()]);
    d2.ctl_ok(&["peer", "add", &h1.ipv6().to_string()]);
    // The other family is refused, and changes nothing.
    let refused = d1.ctl_err(&["peer", "add", &h2.addr.to_string()]);
    let expected = format!("peer {} is IPv4 but this host's VTEP {} is IPv6", h2.vtep(), h1.vtep6());
    assert!(refused.contains(&expected), "{refused}");
    let peers: Vec<PeerInfo> = d1.peers();
    assert_eq!(peers.iter().map(|p| (p.addr, p.learned)).collect::<Vec<_>>(), [(h2.vtep6(), false)], "{peers:?}");
    let table = d1.ctl_ok(&["peer", "ls"]);
    assert!(table.contains(&format!("[{}]:4789", h2.ipv6())) && table.contains("static"), "peer ls:\n{table}");

    // Dual-stack sandboxes.
    let (s1, e1) = dual_on(&d1, &net, "s", "10.213.1.11", "fd00:213:1::11");
    let (s2, e2) = dual_on(&d2, &net, "s", "10.213.1.12", "fd00:213:1::12");
    assert_eq!((mtu_of(&s1, &e1.ifname), mtu_of(&s2, &e2.ifname)), (1430, 1430), "endpoint MTUs");
    let show = d1.ctl_ok(&["show"]);
    assert!(show.contains("mtu: 1430") && show.contains(&format!("Port {}", tunnel_port(h2.vtep6()))), "{show}");
    let tree: ShowTree = d1.ctl_json(&["show"]);
    let shown = tree.networks.iter().find(|n| n.name == net).expect("the overlay in show");
    assert!(shown.ports.iter().any(|p| p.remote == Some(h2.vtep6())), "{shown:?}");

    assert!(ping(&s1, ip_of(&e2), 3), "{s1} (host 1) cannot ping {s2} (host 2) over the IPv6 underlay");
    assert!(ping(&s2, ip_of(&e1), 3), "{s2} (host 2) cannot ping {s1} (host 1) over the IPv6 underlay");
    const LEN: u64 = 8 << 20;
    let r = tcp_transfer(&s2, ip_of(&e2), &s1, LEN).expect("TCP host 1 -> host 2");
    eprintln!("IPv6 underlay tcp host1 -> host2: {} bytes in {:?} ({:.0} Mbit/s)", r.bytes, r.elapsed, r.mbit_per_s());
    assert!(r.intact, "TCP host 1 -> host 2 corrupted: {r:?}");
    let r = tcp_transfer(&s1, ip_of(&e1), &s2, 2 << 20).expect("TCP host 2 -> host 1");
    assert!(r.intact, "TCP host 2 -> host 1 corrupted: {r:?}");
    // IPv6 inside, over the IPv6 underlay: ping -6 and TCP both ways.
    assert!(ping(&s1, ip6_of(&e2), 3), "{s1} cannot ping -6 {s2} over the IPv6 underlay");
    assert!(ping(&s2, ip6_of(&e1), 3), "{s2} cannot ping -6 {s1} over the IPv6 underlay");
    let r = tcp_transfer(&s2, ip6_of(&e2), &s1, 4 << 20).expect("TCP over IPv6, host 1 -> host 2");
    eprintln!("IPv6 in IPv6 tcp host1 -> host2: {} bytes in {:?} ({:.0} Mbit/s)", r.bytes, r.elapsed, r.mbit_per_s());
    assert!(r.intact, "TCP over IPv6 host 1 -> host 2 corrupted: {r:?}");
    let r = tcp_transfer(&s1, ip6_of(&e1), &s2, 1 << 20).expect("TCP over IPv6, host 2 -> host 1");
    assert!(r.intact, "TCP over IPv6 host 2 -> host 1 corrupted: {r:?}");

    for (d, remote, remote_host) in [(&d1, &e2, h2), (&d2, &e1, h1)] {
        let fdb: Vec<FdbEntry> = d.ctl_json(&["fdb", "show", &net]);
        let entry =
            fdb.iter().find(|f| f.mac == remote.mac).unwrap_or_else(|| panic!("{} not in {fdb:#?}", remote.mac));
        assert_eq!((entry.port.clone(), entry.remote), (tunnel_port(remote_host.vtep6()), Some(remote_host.vtep6())));
    }
    let stats = d1.stats_map();
    assert!(stats[&(tunnel_port(h2.vtep6()), net.clone())].tx_bytes >= LEN, "{stats:?}");
    let vtep = vtep_row(&d1);
    assert!(vtep.tx_bytes >= LEN && vtep.rx_packets > 0, "{vtep:?}");
    for reason in UNDERLAY_DROPS {
        assert_eq!(vtep.drops.get(reason).copied().unwrap_or(0), 0, "{reason}: {vtep:?}");
    }

    // Path MTU: 1430 bytes cross, 1431 get "fragmentation needed" from the
    // overlay's gateway, announcing 1430; TCP gets through by PMTUD.
    let (t1, f1) = dual_on(&d1, &big, "t", "10.213.2.11", "fd00:213:2::11");
    let (t2, f2) = dual_on(&d2, &big, "t", "10.213.2.12", "fd00:213:2::12");
    let t2_ip = ip_of(&f2).to_string();
    let out = netns_exec(&t1, "ping", &["-n", "-M", "do", "-s", "1402", "-c", "2", "-i", "0.2", "-W", "2", &t2_ip]);
    assert!(out.status.success(), "a 1430-byte DF ping failed: {}", text(&out.stdout));
    let out = netns_exec(&t1, "ping", &["-n", "-M", "do", "-s", "1403", "-c", "3", "-i", "0.2", "-W", "1", &t2_ip]);
    let printed = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        printed.contains("From 10.213.2.1 ") && printed.contains("Frag needed and DF set (mtu = 1430)"),
        "no ICMP fragmentation needed (mtu = 1430) from the gateway:\n{printed}"
    );
    assert_eq!(cached_pmtu(&t1, ip_of(&f2)), Some(1430), "t1's path MTU after the ICMP");
    let too_big = d1.stats_map()[&(tunnel_port(h2.vtep6()), big.clone())].drops.get("too_big_for_tunnel").copied();
    // One at least (the sender caches the path MTU and stops at the next).
    assert!(too_big.unwrap_or(0) >= 1, "too_big_for_tunnel: {too_big:?}");
    let r = tcp_transfer(&t1, ip_of(&f1), &t2, 2 << 20).expect("TCP with PMTUD over the IPv6 underlay");
    assert!(r.intact, "TCP with PMTUD corrupted: {r:?}");
    // IPv6 inside: 1430 bytes cross (1382 + ICMPv6 8 + IPv6 40), 1431 get
    // an ICMPv6 "packet too big" (mtu 1430) from the gateway; TCP over
    // IPv6 gets through by PMTUD too.
    let (crossed, printed) = ping6_df(&t1, ip6_of(&f2), 1382, 2);
    assert!(crossed, "a 1430-byte IPv6 ping failed:\n{printed}");
    let (crossed, printed) = ping6_df(&t1, ip6_of(&f2), 1383, 3);
    assert!(!crossed && printed.contains("Packet too big: mtu=1430"), "no ICMPv6 packet too big (1430):\n{printed}");
    let r = tcp_transfer(&t1, ip6_of(&f1), &t2, 2 << 20).expect("TCP over IPv6 with PMTUD");
    assert!(r.intact, "TCP over IPv6 with PMTUD corrupted: {r:?}");
}

#[test]
fn ipv6_peers_and_static_entries_toward_them_survive_kill_9() {
    if !require_root("ipv6_peers_and_static_entries_toward_them_survive_kill_9") {
        return;
    }
    let u = Underlay::dual_stack([10, 212, 2], net6(2), 2);
    let (h1, h2) = (u.host(0), u.host(1));
    let mut d1 = vtep6_daemon(h1, &[]);
    let mut d2 = vtep6_daemon(h2, &[]);
    let net = u.name("ov");
    for d in [&d1, &d2] {
        d.overlay_create(&net, "10.213.3.0/24", 4803, &["--attachable"]);
    }
    // Host 1 also has a peer nobody answers for: floods reach it, unicast
    // for a static entry must not.
    let silent: SocketAddr = SocketAddr::new(Ipv6Addr::from(u128::from(net6(2)) | 0x99).into(), 4789);
    d1.peer_add(h2.vtep6(), &[]);
    d1.peer_add(silent, &[net.as_str()]);
    d2.peer_add(h1.vtep6(), &[]);
    let (s1, _e1) = sandbox_on(&d1, &net, "s", "10.213.3.11");
    let (s2, e2) = sandbox_on(&d2, &net, "s", "10.213.3.12");
    assert!(ping(&s1, ip_of(&e2), 2), "no overlay connectivity to start with");

    // A static entry toward host 2's tunnel port, as `show` names it.
    let mac = "02:42:0a:d5:03:63";
    d1.ctl_ok(&["fdb", "add", &net, mac, &tunnel_port(h2.vtep6())]);
    let static_entry = |d: &Daemon| {
        let fdb: Vec<FdbEntry> = d.ctl_json(&["fdb", "show", &net]);
        fdb.iter().find(|f| f.mac.to_string() == mac).map(|f| (f.port.clone(), f.kind, f.remote))
    };
    let expected = Some((tunnel_port(h2.vtep6()), FdbKind::Static, Some(h2.vtep6())));
    assert_eq!(static_entry(&d1), expected);
    let refused = d1.ctl_err(&["fdb", "add", &net, "02:42:0a:d5:03:64", "vx:[fd00:212:2::77]:4789"]);
    assert!(refused.contains("is not a tunnel port of network"), "{refused}");

    // Unicast to it goes to host 2 only (an address pinned to the MAC),
    // while floods reach the silent peer too.
    // (The silent peer gets a neighbour entry, so its datagrams do leave.)
    let silent_ip = silent.ip().to_string();
    let ul = h1.ifname.as_str();
    netns_exec_ok(
        &h1.ns,
        "ip",
        &["neigh", "replace", &silent_ip, "lladdr", "02:00:00:00:00:99", "dev", ul, "nud", "permanent"],
    );
    let wire = Capture::start(&h1.ns, &h1.ifname).expect("capture on host 1's underlay");
    netns_exec_ok(&s1, "ip", &["neigh", "replace", "10.213.3.99", "lladdr", mac, "dev", "eth0", "nud", "permanent"]);
    assert!(!ping(&s1, Ipv4Addr::new(10, 213, 3, 99), 3), "nobody has 10.213.3.99");
    // An ARP request (broadcast) for an address nobody has.
    assert!(!ping(&s1, Ipv4Addr::new(10, 213, 3, 98), 1), "nobody has 10.213.3.98");
    let sent = wire.stop();
    let to = |dest: SocketAddr, dst_mac: &str| {
        let dst_mac: Vec<u8> = dst_mac.split(':').map(|b| u8::from_str_radix(b, 16).expect("hex")).collect();
        sent.iter()
            .filter_map(|f| udp6_datagram(&f.bytes))
            .filter(|(_, d, _, payload)| *d == dest && payload.get(8..14) == Some(&dst_mac[..]))
            .count()
    };
    assert!(to(h2.vtep6(), mac) >= 3, "the pings did not go to host 2");
    assert_eq!(to(silent, mac), 0, "unicast to a static entry was flooded to the silent peer");
    assert!(to(silent, "ff:ff:ff:ff:ff:ff") >= 1, "positive control: a broadcast did not reach the silent peer");

    // kill -9 host 1: its peers and the entry come back with it.
    d1.kill9();
    d1.restart();
    let back = wait_for_ping(&s1, ip_of(&e2), Duration::from_secs(30));
    assert!(back.is_some(), "host 1 did not rejoin within 30 s of its restart");
    let peers: BTreeSet<SocketAddr> = d1.peers().iter().map(|p| p.addr).collect();
    assert_eq!(peers, BTreeSet::from([h2.vtep6(), silent]), "peers after kill -9");
    assert_eq!(static_entry(&d1), expected, "the static entry after kill -9");
    // And host 2's peer after its own kill -9.
    d2.kill9();
    d2.restart();
    assert!(wait_for_ping(&s2, Ipv4Addr::new(10, 213, 3, 11), Duration::from_secs(30)).is_some());
    assert_eq!(d2.peers().iter().map(|p| p.addr).collect::<Vec<_>>(), [h1.vtep6()]);

    // `peer rm` takes the entry with the tunnel port.
    d1.ctl_ok(&["peer", "rm", &h2.vtep6().to_string()]);
    assert_eq!(static_entry(&d1), None, "the entry outlived its peer");
}

#[test]
fn the_ipv6_underlay_capture_decodes_as_vxlan_and_the_wire_carries_real_udp_checksums() {
    let test = "the_ipv6_underlay_capture_decodes_as_vxlan_and_the_wire_carries_real_udp_checksums";
    if !require_root(test) || !require_tshark(test) {
        return;
    }
    let u = Underlay::dual_stack([10, 212, 3], net6(3), 2);
    let (h1, h2) = (u.host(0), u.host(1));
    let d1 = vtep6_daemon(h1, &[]);
    let d2 = vtep6_daemon(h2, &[]);
    let net = u.name("ov");
    for d in [&d1, &d2] {
        d.overlay_create(&net, "10.213.4.0/24", 4804, &["--attachable"]);
    }
    d1.peer_add(h2.vtep6(), &[]);
    d2.peer_add(h1.vtep6(), &[]);
    let (s1, e1) = sandbox_on(&d1, &net, "s", "10.213.4.11");
    let (_s2, e2) = sandbox_on(&d2, &net, "s", "10.213.4.12");
    assert!(ping(&s1, ip_of(&e2), 1), "no overlay connectivity to start with");
    let pcaps = PcapDir::new(&u);

    // `capture vtep --outer`: the datagrams with an IPv6 and UDP header.
    let outer = pcaps.file("outer.pcap");
    // ICMP inside VXLAN: libpcap indexes IPv6 packets from the IPv6 header
    // (40 + UDP 8 + VXLAN 8 + inner Ethernet 12: the inner EtherType).
    let filter = "ip6 and udp port 4789 and ip6[68:2] = 0x0800 and ip6[79] = 1";
    let cap = CtlCapture::start(&d1, &["vtep", "--outer", "--filter", filter, "-c", "4"], &outer);
    // The tunnel port, named as `show` names it: the inner frames.
    let inner = pcaps.file("inner.pcap");
    let tunnel = tunnel_port(h2.vtep6());
    let cap_inner = CtlCapture::start(&d1, &[&tunnel, "--filter", "icmp", "-c", "4"], &inner);
    let wire = Capture::start(&h2.ns, &h2.ifname).expect("capture on host 2's underlay");
    assert!(ping(&s1, ip_of(&e2), 2), "{s1} cannot ping host 2's sandbox");
    let summary = cap.finish();
    assert!(summary.contains("4 frames captured"), "{summary}");
    cap_inner.finish();
    let (i1, i2) = (ip_of(&e1).to_string(), ip_of(&e2).to_string());
    let rows = tshark_fields(&inner, &[], "", &["ip.src", "icmp.type", "vxlan.vni"]);
    let expected: Vec<Vec<String>> = (0..2)
        .flat_map(|_| [vec![i1.clone(), "8".into(), String::new()], vec![i2.clone(), "0".into(), String::new()]])
        .collect();
    assert_eq!(rows, expected, "{tunnel}: the inner frames");
    let fields = ["ipv6.src", "ipv6.dst", "udp.dstport", "udp.checksum.status", "vxlan.vni", "ip.src", "icmp.type"];
    let rows = tshark_fields(&outer, &["udp.check_checksum:TRUE"], "", &fields);
    let (v1, v2) = (h1.ipv6().to_string(), h2.ipv6().to_string());
    let hop = |src: &str, dst: &str, inner: &str, icmp: &str| {
        [src, dst, "4789", "1", "4804", inner, icmp].map(str::to_owned).to_vec()
    };
    let expected: Vec<Vec<String>> = (0..2).flat_map(|_| [hop(&v1, &v2, &i1, "8"), hop(&v2, &v1, &i2, "0")]).collect();
    assert_eq!(rows, expected, "the underlay capture, decoded by tshark as IPv6/UDP/VXLAN");

    // On the wire every datagram asks for a UDP checksum (a zero field
    // would be a datagram without one: RFC 8200 forbids it for VXLAN).
    let seen = vxlan6(&wire.stop(), [h1, h2]);
    assert!(seen.len() >= 4, "too few VXLAN datagrams on the wire: {}", seen.len());
    let zero: Vec<_> = seen.iter().filter(|(_, _, checksum, _)| *checksum == 0).collect();
    assert!(zero.is_empty(), "datagrams with a zero UDP checksum: {zero:?}");

    // With transmit offloads off the kernel completes the checksum itself
    // before the datagram leaves: tshark finds every one correct.
    for h in [h1, h2] {
        let out = netns_exec(&h.ns, "ethtool", &["-K", &h.ifname, "tx", "off"]);
        assert!(out.status.success(), "ethtool -K {} tx off: {}", h.ifname, text(&out.stderr));
    }
    let wire = Capture::start(&h2.ns, &h2.ifname).expect("capture on host 2's underlay");
    assert!(ping(&s1, ip_of(&e2), 3), "{s1} cannot ping host 2's sandbox with offloads off");
    let frames = wire.stop();
    let file = pcaps.file("wire.pcap");
    write_pcap(&file, &frames).expect("write pcap");
    let rows = tshark_fields(&file, &["udp.check_checksum:TRUE"], "vxlan", &["ipv6.src", "udp.checksum.status"]);
    let from = |a: &str| rows.iter().filter(|r| r[0] == a).collect::<Vec<_>>();
    let (from_h1, from_h2) = (from(&v1), from(&v2));
    assert!(from_h1.len() >= 3 && from_h2.len() >= 3, "VXLAN on the wire: {rows:?}");
    let bad: Vec<_> = rows.iter().filter(|r| r[1] != "1").collect();
    assert!(bad.is_empty(), "UDP checksums tshark did not find good (1): {bad:?}");
}

#[test]
fn an_encrypted_overlay_over_an_ipv6_underlay() {
    if !require_root("an_encrypted_overlay_over_an_ipv6_underlay") {
        return;
    }
    let u = Underlay::dual_stack([10, 212, 4], net6(4), 2);
    let (h1, h2) = (u.host(0), u.host(1));
    let secret = SecretFile::generate(0o600);
    let path = secret.path().to_string_lossy().into_owned();
    // Host 2 has no static peer: it learns host 1 from its (authenticated) traffic.
    let d1 = vtep6_daemon(h1, &["--secret-file", &path]);
    let d2 = vtep6_daemon(h2, &["--secret-file", &path, "--learn-peers"]);
    let net = u.name("sec");
    for d in [&d1, &d2] {
        let dual = ["--attachable", "-o", "encrypted", "--ipv6", "--subnet", "fd00:213:5::/64"];
        let info = d.overlay_create(&net, "10.213.5.0/24", 4805, &dual);
        let mtu = info.options.get("com.docker.network.driver.mtu").map(String::as_str);
        assert_eq!(mtu, Some("1398"), "1500 - 70 - 32: {info:?}");
    }
    d1.peer_add(h2.vtep6(), &[]);
    let (s1, e1) = dual_on(&d1, &net, "s", "10.213.5.11", "fd00:213:5::11");
    let (s2, e2) = dual_on(&d2, &net, "s", "10.213.5.12", "fd00:213:5::12");
    assert_eq!(mtu_of(&s1, &e1.ifname), 1398);

    let wire = Capture::start(&h2.ns, &h2.ifname).expect("capture on host 2's underlay");
    let inside = Capture::start(&s2, &e2.ifname).expect("capture in s2");
    // A marker in the pings: in the clear inside the sandbox, never on the wire.
    let out = netns_exec(
        &s1,
        "ping",
        &["-c", "3", "-i", "0.2", "-W", "2", "-p", "5a17c0de5a17c0de", &ip_of(&e2).to_string()],
    );
    assert!(out.status.success(), "encrypted ping over IPv6 failed: {}", text(&out.stdout));
    let r = tcp_transfer(&s2, ip_of(&e2), &s1, 4 << 20).expect("TCP over the encrypted IPv6 overlay");
    assert!(r.intact, "{r:?}");
    let r = tcp_transfer(&s1, ip_of(&e1), &s2, 1 << 20).expect("TCP back");
    assert!(r.intact, "{r:?}");
    assert!(ping(&s2, ip6_of(&e1), 2), "ping -6 over the encrypted IPv6 overlay");
    let r = tcp_transfer(&s1, ip6_of(&e1), &s2, 2 << 20).expect("TCP over IPv6 on the encrypted overlay");
    assert!(r.intact, "{r:?}");
    let learned: Vec<(SocketAddr, bool)> = d2.peers().iter().map(|p| (p.addr, p.learned)).collect();
    assert_eq!(learned, [(h1.vtep6(), true)], "host 2 learned host 1's IPv6 VTEP");
    let marker = [0x5a, 0x17, 0xc0, 0xde, 0x5a, 0x17, 0xc0, 0xde];
    assert!(inside.stop().iter().any(|f| contains_bytes(&f.bytes, &marker)), "positive control: s2 saw no marker");
    let seen = vxlan6(&wire.stop(), [h1, h2]);
    assert!(seen.len() > 100, "too few datagrams on the wire: {}", seen.len());
    for (src, dst, checksum, payload) in &seen {
        let header = EncryptedHeader::parse(payload).unwrap_or_else(|| panic!("{src} -> {dst}: not encrypted"));
        assert_eq!(header.vni, 4805);
        assert!(!contains_bytes(payload, &marker), "{src} -> {dst}: the marker in the clear");
        assert_ne!(*checksum, 0, "{src} -> {dst}: a zero UDP checksum");
    }
    for d in [&d1, &d2] {
        let vtep = vtep_row(d);
        for reason in CRYPTO_DROPS.iter().chain(&UNDERLAY_DROPS) {
            assert_eq!(vtep.drops.get(*reason).copied().unwrap_or(0), 0, "{reason}: {vtep:?}");
        }
    }
}

#[test]
fn vswitchd_and_kernel_vxlan_interoperate_over_ipv6() {
    let test = "vswitchd_and_kernel_vxlan_interoperate_over_ipv6";
    if !require_root(test) || !require_tshark(test) {
        return;
    }
    const VNI: u32 = 4806;
    let mut u = Underlay::dual_stack([10, 212, 5], net6(5), 2);
    let (h1, h2) = (u.host(0).clone(), u.host(1).clone());
    let d1 = vtep6_daemon(&h1, &[]);
    let net = u.name("ov");
    d1.overlay_create(&net, "10.213.6.0/24", VNI, &["--attachable", "--ipv6", "--subnet", "fd00:213:6::/64"]);
    d1.peer_add(h2.vtep6(), &[]);
    let (s1, e1) = dual_on(&d1, &net, "s", "10.213.6.11", "fd00:213:6::11");
    let container = u.kernel_vxlan6_container(1, VNI, &[h1.ipv6()], "10.213.6.22/24");
    netns_exec_ok(&container, "ip", &["-6", "addr", "add", "fd00:213:6::22/64", "dev", "eth0", "nodad"]);
    let c_ip6 = Ipv6Addr::new(0xfd00, 0x213, 6, 0, 0, 0, 0, 0x22);
    let c_ip: Ipv4Addr = "10.213.6.22".parse().expect("an address");
    assert_eq!(mtu_of(&container, "eth0"), 1430);

    let cap = Capture::start(&h1.ns, &h1.ifname).expect("capture on host 1's underlay");
    netns_exec(&s1, "ip", &["neigh", "flush", "all"]);
    netns_exec(&container, "ip", &["neigh", "flush", "all"]);
    assert!(ping(&s1, c_ip, 3), "vswitchd sandbox cannot ping the kernel-VXLAN container over IPv6");
    assert!(ping(&container, ip_of(&e1), 3), "kernel-VXLAN container cannot ping the vswitchd sandbox over IPv6");
    let r = tcp_transfer(&container, c_ip, &s1, 8_000_000).expect("TCP vswitchd -> kernel");
    assert!(r.intact, "TCP vswitchd -> kernel corrupted: {r:?}");
    let r = tcp_transfer(&s1, ip_of(&e1), &container, 8_000_000).expect("TCP kernel -> vswitchd");
    assert!(r.intact, "TCP kernel -> vswitchd corrupted: {r:?}");
    assert!(ping(&s1, c_ip6, 2), "ping -6 from the vswitchd sandbox to the kernel-VXLAN container");
    assert!(ping(&container, ip6_of(&e1), 2), "ping -6 from the kernel-VXLAN container to the vswitchd sandbox");
    let r = tcp_transfer(&container, c_ip6, &s1, 2_000_000).expect("TCP over IPv6 vswitchd -> kernel");
    assert!(r.intact, "TCP over IPv6 vswitchd -> kernel corrupted: {r:?}");
    let frames = cap.stop();

    let c_mac = vswitch::link_info(&container, "eth0").expect("container eth0")["address"]
        .as_str()
        .expect("container MAC")
        .to_owned();
    let fdb: Vec<FdbEntry> = d1.ctl_json(&["fdb", "show", &net]);
    let entry = fdb.iter().find(|f| f.mac.to_string() == c_mac).unwrap_or_else(|| panic!("{c_mac} not in {fdb:#?}"));
    assert_eq!((entry.port.clone(), entry.remote), (tunnel_port(h2.vtep6()), Some(h2.vtep6())));

    let pcaps = PcapDir::new(&u);
    let file = pcaps.file("underlay.pcap");
    write_pcap(&file, &frames).expect("write pcap");
    let fields = [
        "ipv6.src",
        "ipv6.dst",
        "udp.dstport",
        "vxlan.flags",
        "vxlan.vni",
        "tcp.checksum.status",
        "tcp.checksum",
        "tcp.checksum_calculated",
    ];
    let rows = tshark_fields(&file, &["tcp.check_checksum:TRUE"], "vxlan", &fields);
    let (v1, v2) = (h1.ipv6().to_string(), h2.ipv6().to_string());
    // Inner IPv6 (the sandboxes' own neighbour discovery) adds its
    // addresses after the outer ones.
    let outer = |r: &Vec<String>| {
        (r[0].split(',').next().unwrap_or("").to_owned(), r[1].split(',').next().unwrap_or("").to_owned())
    };
    let ours = rows.iter().filter(|r| outer(r).0 == v1).count();
    let theirs = rows.iter().filter(|r| outer(r).0 == v2).count();
    assert!(ours > 100 && theirs > 100, "VXLAN over IPv6 decoded: {ours} from vswitchd, {theirs} from the kernel");
    for r in &rows {
        let (src, dst) = outer(r);
        assert!((src == v1 && dst == v2) || (src == v2 && dst == v1), "outer addresses: {r:?}");
        assert_eq!((r[2].as_str(), r[4].as_str()), ("4789", "4806"), "{r:?}");
        let flags = u16::from_str_radix(r[3].trim_start_matches("0x"), 16).unwrap_or(0xffff);
        assert_eq!(flags, 0x0800, "VXLAN flags: {r:?}");
        // Inner TCP checksums are good (1). vswitchd writes a zero result as
        // 0, as Linux's TCP segmentation does; the kernel's software
        // completion (`skb_checksum_help`) writes it as 0xffff, the same
        // value in ones' complement, which tshark calls bad.
        let kernels_zero = src == v2 && r[6] == "0xffff" && r[7] == "0x0000";
        assert!(r[5].is_empty() || r[5] == "1" || kernels_zero, "inner TCP checksum not good: {r:?}");
    }
    let vtep = vtep_row(&d1);
    for reason in UNDERLAY_DROPS {
        assert_eq!(vtep.drops.get(reason).copied().unwrap_or(0), 0, "{reason}: {vtep:?}");
    }
}

#[test]
fn mixed_families_and_unusable_vtep_addresses_are_refused() {
    if !require_root("mixed_families_and_unusable_vtep_addresses_are_refused") {
        return;
    }
    let u = Underlay::dual_stack([10, 212, 6], net6(6), 2);
    let (h1, h2) = (u.host(0), u.host(1));
    // An IPv4 VTEP refuses IPv6 peers, bracketed or not, with the reason.
    let d1 = vtep_daemon(h1, &[]);
    for given in [h2.vtep6().to_string(), h2.ipv6().to_string()] {
        let refused = d1.ctl_err(&["peer", "add", &given]);
        let expected = format!("peer {} is IPv6 but this host's VTEP {} is IPv4", h2.vtep6(), h1.vtep());
        assert!(refused.contains(&expected), "{given}: {refused}");
    }
    assert!(d1.peers().is_empty(), "{:?}", d1.peers());
    d1.peer_add(h2.vtep(), &[]);

    // vswitchd itself refuses a VTEP it could not serve, and says why.
    let start = |vtep: &str, extra: &[&str]| {
        let dir = std::env::temp_dir().join(format!("vswitch-e2e-{}", u.name(&format!("bad{}", extra.len()))));
        let (socket, state) = (dir.join("sock").display().to_string(), dir.join("state").display().to_string());
        let vswitchd = Binaries::get().vswitchd.display().to_string();
        let mut args = vec!["10", vswitchd.as_str(), "--ctl-socket", &socket, "--state-dir", &state, "--vtep", vtep];
        args.extend_from_slice(extra);
        let out = netns_exec(&h1.ns, "timeout", &args);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(!out.status.success(), "vswitchd --vtep {vtep} {extra:?} started");
        text(&out.stderr)
    };
    let stderr = start("[fe80::1]:4789", &[]);
    assert!(stderr.contains("link-local"), "{stderr}");
    let stderr = start("[fd00:212:6::77]:4789", &[]);
    assert!(stderr.contains("not on an interface of this network namespace"), "{stderr}");
    let stderr = start(&h1.vtep6().to_string(), &["--underlay-mtu", "1200"]);
    assert!(stderr.contains("below IPv6's minimum of 1280"), "{stderr}");
    // The same host on its IPv6 address works, with its peers' family.
    let d = vtep_daemon_at(h1, &h1.ipv6().to_string(), &[]);
    d.ctl_ok(&["peer", "add", &h2.ipv6().to_string()]);
    assert_eq!(d.peers().iter().map(|p| p.addr).collect::<Vec<_>>(), [h2.vtep6()]);
}
