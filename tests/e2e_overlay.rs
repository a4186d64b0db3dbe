//! End-to-end VXLAN overlays across simulated hosts: each host is a network
//! namespace on a shared underlay (a kernel bridge) running its own
//! `vswitchd --vtep`. Sandboxes on different hosts talk over the overlay,
//! remote MACs are learned against the sending VTEP, overlays with different
//! VNIs are isolated, and removing a peer or crashing a host's daemon cuts
//! traffic that comes back when the peer returns. Needs root.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use ctl::proto::{FdbEntry, PortKind, ShowTree};
use vswitch::overlay::{ip_of, mtu_of, sandbox_on};
use vswitch::overlay::{parse_vxlan, tunnel_port};
use vswitch::{
    Capture, Daemon, Frame, Underlay, netns_exec, ping, require_root, tcp_transfer, text, vtep_daemon, wait_for_ping,
};

#[test]
fn two_hosts_ping_tcp_and_learn_remote_macs() {
    if !require_root("two_hosts_ping_tcp_and_learn_remote_macs") {
        return;
    }
    let u = Underlay::new([10, 210, 1], 2);
    let (h1, h2) = (u.host(0), u.host(1));
    let d1 = vtep_daemon(h1, &[]);
    let d2 = vtep_daemon(h2, &[]);
    let net = u.name("ov");
    for d in [&d1, &d2] {
        let info = d.overlay_create(&net, "10.211.1.0/24", 4097, &["--attachable"]);
        assert!(info.attachable, "{info:?}");
        assert_eq!(info.options.get("com.docker.network.driver.mtu").map(String::as_str), Some("1450"), "{info:?}");
    }
    d1.peer_add(h2.vtep(), &[]);
    d2.peer_add(h1.vtep(), &[]);
    let (s1, e1) = sandbox_on(&d1, &net, "s", "10.211.1.11");
    let (s2, e2) = sandbox_on(&d2, &net, "s", "10.211.1.12");
    // Underlay MTU 1500 - 50 bytes of VXLAN encapsulation.
    assert_eq!(mtu_of(&s1, &e1.ifname), 1450, "overlay endpoint MTU on host 1");
    assert_eq!(mtu_of(&s2, &e2.ifname), 1450, "overlay endpoint MTU on host 2");

    assert!(ping(&s1, ip_of(&e2), 3), "{s1} (host 1) cannot ping {s2} (host 2) over the overlay");
    assert!(ping(&s2, ip_of(&e1), 3), "{s2} (host 2) cannot ping {s1} (host 1) over the overlay");
    // Each sandbox reaches its own host's gateway of the overlay: every host
    // has one, with the same address and MAC (anycast), and gateway traffic
    // never crosses the underlay. Neighbour caches are flushed so each
    // sandbox ARPs for the gateway: the broadcast must not reach (nor be
    // answered by) the other host's gateway.
    let gw_rx = |d: &Daemon| d.stats_map()[&(format!("gw:{net}"), net.clone())].rx_packets;
    for s in [&s1, &s2] {
        assert!(netns_exec(s, "ip", &["neigh", "flush", "all"]).status.success(), "ip neigh flush in {s}");
    }
    for (s, local, remote) in [(&s1, &d1, &d2), (&s2, &d2, &d1)] {
        let (local_before, remote_before) = (gw_rx(local), gw_rx(remote));
        assert!(ping(s, Ipv4Addr::new(10, 211, 1, 1), 3), "{s} cannot ping the overlay gateway");
        let (local_rx, remote_rx) = (gw_rx(local) - local_before, gw_rx(remote) - remote_before);
        assert!(local_rx >= 3, "{s}'s own gateway got {local_rx} frames");
        assert_eq!(remote_rx, 0, "the other host's gateway got {remote_rx} of {s}'s frames");
    }
    for (d, remote) in [(&d1, h2), (&d2, h1)] {
        let fdb: Vec<FdbEntry> = d.ctl_json(&["fdb", "show", &net]);
        let via_tunnel: Vec<_> = fdb.iter().filter(|f| f.port == tunnel_port(remote.vtep())).map(|f| f.mac).collect();
        assert!(
            !via_tunnel.contains(&mac_of_gateway(d, &net)),
            "the gateway MAC was learned behind the tunnel: {fdb:#?}"
        );
    }

    const LEN: u64 = 8 << 20;
    let r = tcp_transfer(&s2, ip_of(&e2), &s1, LEN).expect("TCP host 1 -> host 2");
    eprintln!("overlay tcp host1 -> host2: {} bytes in {:?} ({:.0} Mbit/s)", r.bytes, r.elapsed, r.mbit_per_s());
    assert!(r.intact, "TCP stream host 1 -> host 2 corrupted: {r:?}");
    let r = tcp_transfer(&s1, ip_of(&e1), &s2, 1 << 20).expect("TCP host 2 -> host 1");
    assert!(r.intact, "TCP stream host 2 -> host 1 corrupted: {r:?}");

    // Remote MACs are learned behind the tunnel port of the VTEP they came from.
    for (d, local, remote, remote_host) in [(&d1, &e1, &e2, h2), (&d2, &e2, &e1, h1)] {
        let fdb: Vec<FdbEntry> = d.ctl_json(&["fdb", "show", &net]);
        let entry = fdb
            .iter()
            .find(|f| f.mac == remote.mac)
            .unwrap_or_else(|| panic!("remote MAC {} not in fdb: {fdb:#?}", remote.mac));
        assert_eq!(entry.remote, Some(remote_host.vtep()), "remote of {entry:?}");
        assert_eq!(entry.port, tunnel_port(remote_host.vtep()), "{entry:?}");
        let own = fdb.iter().find(|f| f.mac == local.mac).unwrap_or_else(|| panic!("local MAC not in {fdb:#?}"));
        assert_eq!((own.port.as_str(), own.remote), (local.port.as_str(), None), "{own:?}");
    }
    let peers = d1.peers();
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert_eq!((peers[0].addr, peers[0].learned, peers[0].networks.clone()), (h2.vtep(), false, vec![net.clone()]));

    // The stream went through host 1's tunnel port and underlay endpoint.
    let stats = d1.stats_map();
    let tunnel = &stats[&(tunnel_port(h2.vtep()), net.clone())];
    assert!(tunnel.tx_bytes >= LEN, "tunnel port tx_bytes {tunnel:?}");
    let vtep = stats.iter().find(|((p, _), _)| p == "vtep").map(|(_, s)| s).expect("no vtep row in stats");
    assert!(vtep.tx_bytes >= LEN && vtep.rx_packets > 0, "vtep row {vtep:?}");
    // Everything that arrived was valid VXLAN from a peer (drops for lack
    // of capacity, e.g. a full queue on a busy machine, are only reported).
    eprintln!("underlay endpoint drops: {:?}", vtep.drops);
    for reason in ["vxlan_malformed", "vxlan_bad_flags", "unknown_vni", "unknown_peer"] {
        assert_eq!(vtep.drops.get(reason).copied().unwrap_or(0), 0, "{reason} drops: {vtep:?}");
    }
}

#[test]
fn three_hosts_full_mesh_all_pairs_ping() {
    if !require_root("three_hosts_full_mesh_all_pairs_ping") {
        return;
    }
    let u = Underlay::new([10, 210, 2], 3);
    let daemons: Vec<Daemon> = u.hosts().iter().map(|h| vtep_daemon(h, &[])).collect();
    let net = u.name("ov");
    let mut sandboxes = Vec::new();
    for (i, d) in daemons.iter().enumerate() {
        d.overlay_create(&net, "10.211.2.0/24", 4098, &["--attachable"]);
        for (j, h) in u.hosts().iter().enumerate() {
            if i != j {
                d.peer_add(h.vtep(), &[&net]);
            }
        }
        sandboxes.push(sandbox_on(d, &net, "s", &format!("10.211.2.{}", 11 + i)));
    }
    let mut failed = Vec::new();
    for (i, (from, _)) in sandboxes.iter().enumerate() {
        for (j, (_, to)) in sandboxes.iter().enumerate() {
            if i != j && !ping(from, ip_of(to), 2) {
                failed.push(format!("host {} -> host {} ({})", i + 1, j + 1, ip_of(to)));
            }
        }
    }
    assert!(failed.is_empty(), "pings failed in the full mesh: {failed:?}");
    // Each host learned every remote MAC against the right VTEP.
    for (i, d) in daemons.iter().enumerate() {
        let fdb: Vec<FdbEntry> = d.ctl_json(&["fdb", "show", &net]);
        for (j, (_, e)) in sandboxes.iter().enumerate() {
            if i == j {
                continue;
            }
            let entry = fdb.iter().find(|f| f.mac == e.mac);
            assert_eq!(
                entry.and_then(|f| f.remote),
                Some(u.host(j).vtep()),
                "host {}: MAC {} in {fdb:#?}",
                i + 1,
                e.mac
            );
        }
    }
}

/// The overlay frames in underlay captures, as (VNI, inner frame).
fn vxlan_inner(frames: &[Frame]) -> Vec<(u32, Vec<u8>)> {
    frames.iter().filter_map(|f| parse_vxlan(&f.bytes, 4789).map(|(_, vni, inner)| (vni, inner.to_vec()))).collect()
}

#[test]
fn overlays_with_different_vnis_are_isolated() {
    if !require_root("overlays_with_different_vnis_are_isolated") {
        return;
    }
    let u = Underlay::new([10, 210, 3], 2);
    let (h1, h2) = (u.host(0), u.host(1));
    let d1 = vtep_daemon(h1, &[]);
    let d2 = vtep_daemon(h2, &[]);
    let (na, nb) = (u.name("oa"), u.name("ob"));
    const VNI_A: u32 = 100;
    const VNI_B: u32 = 200;
    for d in [&d1, &d2] {
        d.overlay_create(&na, "10.211.3.0/24", VNI_A, &["--attachable"]);
        d.overlay_create(&nb, "10.211.4.0/24", VNI_B, &["--attachable"]);
    }
    d1.peer_add(h2.vtep(), &[]);
    d2.peer_add(h1.vtep(), &[]);
    let (a1, ea1) = sandbox_on(&d1, &na, "a", "10.211.3.11");
    let (_a2, ea2) = sandbox_on(&d2, &na, "a", "10.211.3.12");
    let (b1, eb1) = sandbox_on(&d1, &nb, "b", "10.211.4.11");
    let (b2, eb2) = sandbox_on(&d2, &nb, "b", "10.211.4.12");

    let cap_b2 = Capture::start(&b2, &eb2.ifname).expect("capture in b2");
    let cap_ul = Capture::start(&h2.ns, &h2.ifname).expect("capture on host 2's underlay");
    // Overlay A: ARP broadcasts (flushed cache, an address nobody has),
    // unicast pings and a broadcast ping.
    netns_exec(&a1, "ip", &["neigh", "flush", "all"]);
    assert!(ping(&a1, ip_of(&ea2), 3), "a1 cannot ping a2 on overlay A");
    assert!(!ping(&a1, Ipv4Addr::new(10, 211, 3, 200), 2), "nobody should answer 10.211.3.200");
    netns_exec(&a1, "ping", &["-b", "-c", "2", "-i", "0.2", "-W", "1", "10.211.3.255"]);
    // Positive control: overlay B's own traffic reaches b2's capture.
    netns_exec(&b1, "ip", &["neigh", "flush", "all"]);
    assert!(ping(&b1, ip_of(&eb2), 2), "b1 cannot ping b2 on overlay B");
    // Across overlays nothing gets through.
    assert!(!ping(&b1, ip_of(&ea2), 1), "b1 on overlay B reached a2 on overlay A");
    let (a1_mac, a2_mac, b1_mac) = (ea1.mac.octets(), ea2.mac.octets(), eb1.mac.octets());
    let from_b1 = |frames: &[Frame], ethertype: u16| {
        frames.iter().any(|f| !f.outgoing && f.src() == b1_mac && f.ethertype() == ethertype)
    };
    let src_of = |inner: &[u8]| <[u8; 6]>::try_from(&inner[6..12]).unwrap_or_default();
    let tunnelled_from = |frames: &[Frame], mac: [u8; 6]| vxlan_inner(frames).iter().any(|(_, i)| src_of(i) == mac);
    // Overlay B's traffic came after overlay A's, through the same switches:
    // once b2 and the underlay have shown it, anything of A's that leaked
    // would be there too.
    cap_b2.wait_for(Duration::from_secs(10), |f| from_b1(f, 0x0806) && from_b1(f, 0x0800));
    cap_ul.wait_for(Duration::from_secs(10), |f| tunnelled_from(f, a1_mac) && tunnelled_from(f, b1_mac));
    let seen_b2 = cap_b2.stop();
    let underlay = vxlan_inner(&cap_ul.stop());

    let list = |frames: &[Frame]| frames.iter().map(|f| format!("  {f}\n")).collect::<String>();
    assert!(from_b1(&seen_b2, 0x0806), "positive control: b2 saw no ARP from b1:\n{}", list(&seen_b2));
    assert!(from_b1(&seen_b2, 0x0800), "positive control: b2 saw no IPv4 from b1:\n{}", list(&seen_b2));
    let leaked: Vec<&Frame> =
        seen_b2.iter().filter(|f| !f.outgoing && (f.src() == a1_mac || f.src() == a2_mac)).collect();
    assert!(leaked.is_empty(), "frames of overlay A reached b2 on overlay B:\n{leaked:?}");
    // No ARP about overlay A's subnet (10.211.3.x sender or target) reached b2.
    let arp_a = seen_b2.iter().filter(|f| {
        f.ethertype() == 0x0806
            && f.bytes.len() >= 42
            && (f.bytes[28..31] == [10, 211, 3] || f.bytes[38..41] == [10, 211, 3])
    });
    assert_eq!(arp_a.count(), 0, "ARP of overlay A reached b2:\n{}", list(&seen_b2));

    // On the underlay, A's frames travel with A's VNI and B's with B's.
    let a_vnis: Vec<u32> =
        underlay.iter().filter(|(_, i)| i.len() >= 14 && src_of(i) == a1_mac).map(|(v, _)| *v).collect();
    let b_vnis: Vec<u32> =
        underlay.iter().filter(|(_, i)| i.len() >= 14 && src_of(i) == b1_mac).map(|(v, _)| *v).collect();
    assert!(!a_vnis.is_empty() && a_vnis.iter().all(|&v| v == VNI_A), "VNIs of a1's frames: {a_vnis:?}");
    assert!(!b_vnis.is_empty() && b_vnis.iter().all(|&v| v == VNI_B), "VNIs of b1's frames: {b_vnis:?}");
}

#[test]
fn peer_rm_cuts_traffic_and_a_restarted_host_rejoins() {
    if !require_root("peer_rm_cuts_traffic_and_a_restarted_host_rejoins") {
        return;
    }
    let u = Underlay::new([10, 210, 4], 2);
    let (h1, h2) = (u.host(0), u.host(1));
    let d1 = vtep_daemon(h1, &[]);
    let mut d2 = vtep_daemon(h2, &[]);
    let net = u.name("ov");
    for d in [&d1, &d2] {
        d.overlay_create(&net, "10.211.5.0/24", 4099, &["--attachable"]);
    }
    d1.peer_add(h2.vtep(), &[]);
    d2.peer_add(h1.vtep(), &[]);
    let (s1, e1) = sandbox_on(&d1, &net, "s", "10.211.5.11");
    let (s2, e2) = sandbox_on(&d2, &net, "s", "10.211.5.12");
    let ip2 = ip_of(&e2);
    assert!(ping(&s1, ip2, 2), "no overlay connectivity to start with");

    // peer rm: host 1 no longer sends to (or accepts from) host 2.
    let peer = h2.vtep().to_string();
    d1.ctl_ok(&["peer", "rm", &peer]);
    assert!(d1.peers().is_empty(), "peer ls after rm: {:?}", d1.peers());
    let show: ShowTree = d1.ctl_json(&["show"]);
    let ports: Vec<&str> = show.networks.iter().flat_map(|n| n.ports.iter()).map(|p| p.name.as_str()).collect();
    assert!(!ports.contains(&tunnel_port(h2.vtep()).as_str()), "tunnel port still shown after peer rm: {ports:?}");
    assert!(!ping(&s1, ip2, 2), "ping from host 1 to host 2 went through after peer rm");
    assert!(!ping(&s2, ip_of(&e1), 1), "ping from host 2 to host 1 went through after peer rm");

    d1.peer_add(h2.vtep(), &[]);
    let back = wait_for_ping(&s1, ip2, Duration::from_secs(10));
    assert!(back.is_some(), "no connectivity 10 s after adding the peer back");
    eprintln!("peer add: first ping after {:?}", back.unwrap_or_default());

    // kill -9 host 2's daemon and restart it: it rejoins the overlay.
    d2.kill9();
    let killed = Instant::now();
    assert!(!ping(&s1, ip2, 1), "ping reached host 2 with its vswitchd dead");
    let checked = killed.elapsed();
    d2.restart();
    let ready = killed.elapsed() - checked;
    let back = wait_for_ping(&s1, ip2, Duration::from_secs(30));
    let outage = killed.elapsed();
    eprintln!(
        "host 2 vswitchd kill -9 + restart: overlay outage {outage:?} from kill to first ping \
         ({checked:?} of it checking the dead switch, restart to ready {ready:?}, restart to first ping {:?})",
        outage - checked - ready
    );
    assert!(back.is_some(), "host 2 did not rejoin the overlay within 30 s of its restart");
    let peers = d2.peers();
    assert_eq!(peers.iter().map(|p| p.addr).collect::<Vec<_>>(), vec![h1.vtep()], "peers after restart: {peers:?}");
    let show: ShowTree = d2.ctl_json(&["show"]);
    let shown = show.networks.iter().find(|n| n.name == net).unwrap_or_else(|| panic!("{net} gone: {show:?}"));
    assert!(
        shown.ports.iter().any(|p| p.kind == PortKind::Tunnel && p.remote == Some(h1.vtep())),
        "no tunnel port to host 1 after restart: {shown:?}"
    );
    assert_eq!(shown.vni, Some(4099));
    let r = tcp_transfer(&s2, ip2, &s1, 2 << 20).expect("TCP after restart");
    assert!(r.intact, "TCP after restart corrupted: {r:?}");
    assert!(ping(&s2, ip_of(&e1), 1), "host 2 cannot reach host 1 after its restart");
}

#[test]
fn learn_peers_accepts_an_unconfigured_vtep_and_lists_it() {
    if !require_root("learn_peers_accepts_an_unconfigured_vtep_and_lists_it") {
        return;
    }
    let u = Underlay::new([10, 210, 9], 2);
    let (h1, h2) = (u.host(0), u.host(1));
    // Host 1 has no static peers but learns them; host 2 knows host 1.
    let d1 = vtep_daemon(h1, &["--learn-peers"]);
    let d2 = vtep_daemon(h2, &[]);
    let net = u.name("ov");
    for d in [&d1, &d2] {
        d.overlay_create(&net, "10.211.12.0/24", 4102, &["--attachable"]);
    }
    d2.peer_add(h1.vtep(), &[]);
    // No peers before any traffic (a new sandbox's own multicast, e.g.
    // IPv6 router solicitations, may already teach host 1 about host 2).
    assert!(d1.peers().is_empty(), "{:?}", d1.peers());
    let (s1, e1) = sandbox_on(&d1, &net, "s", "10.211.12.11");
    let (s2, e2) = sandbox_on(&d2, &net, "s", "10.211.12.12");

    assert!(ping(&s2, ip_of(&e1), 3), "host 2 cannot reach host 1, which learns peers");
    let peers = d1.peers();
    assert_eq!(peers.len(), 1, "host 1 should have learned host 2: {peers:?}");
    assert_eq!((peers[0].addr.ip(), peers[0].learned), (std::net::IpAddr::V4(h2.addr), true), "{peers:?}");
    assert!(ping(&s1, ip_of(&e2), 2), "host 1 cannot reach the peer it learned");
    let stats = d1.stats_map();
    let vtep = stats.iter().find(|((p, _), _)| p == "vtep").map(|(_, s)| s).expect("vtep row");
    assert_eq!(vtep.drops.get("unknown_peer").copied().unwrap_or(0), 0, "{vtep:?}");
}

/// The MAC of `net`'s gateway on `d`, from `show`.
fn mac_of_gateway(d: &Daemon, net: &str) -> ctl::MacAddr {
    let fdb: Vec<FdbEntry> = d.ctl_json(&["fdb", "show", net]);
    fdb.iter()
        .find(|f| f.port == format!("gw:{net}"))
        .map(|f| f.mac)
        .unwrap_or_else(|| panic!("no gateway MAC learned on gw:{net}: {fdb:#?}"))
}

/// Hosts that share an overlay allocate addresses independently; giving each
/// its own `--ip-range` of the common subnet (Docker's flag) keeps their
/// automatic addresses apart, so sandboxes connect without `--ip` and reach
/// each other. `network inspect` shows the range as Docker does.
#[test]
fn per_host_ip_ranges_give_distinct_automatic_addresses() {
    if !require_root("per_host_ip_ranges_give_distinct_automatic_addresses") {
        return;
    }
    let u = Underlay::new([10, 210, 10], 2);
    let (h1, h2) = (u.host(0), u.host(1));
    let d1 = vtep_daemon(h1, &[]);
    let d2 = vtep_daemon(h2, &[]);
    let net = u.name("ov");
    for (d, range) in [(&d1, "10.211.13.64/26"), (&d2, "10.211.13.128/26")] {
        let info = d.overlay_create(&net, "10.211.13.0/24", 4110, &["--attachable", "--ip-range", range]);
        let config = serde_json::to_value(&info.ipam.config).expect("IPAM config as JSON");
        assert_eq!(
            config,
            serde_json::json!([{"Subnet": "10.211.13.0/24", "IPRange": range, "Gateway": "10.211.13.1"}])
        );
    }
    d1.peer_add(h2.vtep(), &[]);
    d2.peer_add(h1.vtep(), &[]);
    let (s1, s2) = (d1.name("s"), d2.name("s"));
    d1.sandbox_create(&s1);
    d2.sandbox_create(&s2);
    let e1 = d1.connect(&net, &s1, None);
    let e2 = d2.connect(&net, &s2, None);
    assert_eq!(ip_of(&e1), Ipv4Addr::new(10, 211, 13, 64), "host 1 allocates from its range: {e1:?}");
    assert_eq!(ip_of(&e2), Ipv4Addr::new(10, 211, 13, 128), "host 2 allocates from its range: {e2:?}");
    assert!(ping(&s1, ip_of(&e2), 3), "{s1} (host 1) cannot ping {s2} (host 2)");
    assert!(ping(&s2, ip_of(&e1), 2), "{s2} (host 2) cannot ping {s1} (host 1)");
    // Outside the subnet the range is refused, and nothing changes.
    let refused = d1.ctl(&[
        "network",
        "create",
        "-d",
        "overlay",
        "bad",
        "--subnet",
        "10.99.0.0/24",
        "--ip-range",
        "10.98.0.0/25",
    ]);
    assert!(!refused.status.success(), "a range outside the subnet was accepted");
    assert!(text(&refused.stderr).contains("ip range 10.98.0.0/25 is not inside subnet 10.99.0.0/24"), "{refused:?}");
}
