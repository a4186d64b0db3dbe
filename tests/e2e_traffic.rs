//! End-to-end traffic through a real `vswitchd`: sandboxes (network
//! namespaces) attached with TAPs ping each other and move data over TCP,
//! networks are isolated from each other down to ARP broadcasts, and the
//! switch's gateway answers ARP and ping. Needs root.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use ctl::proto::{EndpointInfo, FdbEntry, PortStats, ShowTree};
use vswitch::overlay::ip_of;
use vswitch::{Capture, Daemon, Frame, netns_exec, ping, require_root, tcp_transfer};

fn stats_by_port(d: &Daemon) -> BTreeMap<String, PortStats> {
    d.ctl_json::<Vec<PortStats>>(&["stats"]).into_iter().map(|s| (s.port.clone(), s)).collect()
}

/// The interface inside the sandbox carries the endpoint's MAC and address,
/// and the default route goes via the network's gateway.
fn assert_interface(sandbox: &str, e: &EndpointInfo, gateway: Ipv4Addr) {
    let info = vswitch::link_info(sandbox, &e.ifname)
        .unwrap_or_else(|| panic!("no {} in sandbox {sandbox}: {:?}", e.ifname, vswitch::link_names(sandbox)));
    assert_eq!(info["address"].as_str(), Some(e.mac.to_string().as_str()), "MAC of {}: {info}", e.ifname);
    assert!(info["flags"].as_array().is_some_and(|f| f.iter().any(|x| x == "UP")), "{} not up: {info}", e.ifname);
    assert_eq!(info["mtu"], 1500, "default MTU of {}: {info}", e.ifname);
    let ip = e.ipv4.expect("endpoint address").to_string();
    assert_eq!(vswitch::ipv4_addrs(sandbox, &e.ifname), vec![ip], "addresses of {} in {sandbox}", e.ifname);
    let route = netns_exec(sandbox, "ip", &["-j", "route", "show", "default"]);
    let routes: serde_json::Value = serde_json::from_slice(&route.stdout).unwrap_or_default();
    assert_eq!(routes[0]["gateway"].as_str(), Some(gateway.to_string().as_str()), "default route in {sandbox}");
}

#[test]
fn two_sandboxes_ping_and_move_20_mib_over_tcp() {
    if !require_root("two_sandboxes_ping_and_move_20_mib_over_tcp") {
        return;
    }
    let d = Daemon::start();
    let net = d.name("n");
    let (a, b) = (d.name("a"), d.name("b"));
    d.network_create(&net, "10.201.0.0/24");
    d.sandbox_create(&a);
    d.sandbox_create(&b);
    let ea = d.connect(&net, &a, None);
    let eb = d.connect(&net, &b, None);
    assert_eq!((ip_of(&ea), ip_of(&eb)), (Ipv4Addr::new(10, 201, 0, 2), Ipv4Addr::new(10, 201, 0, 3)));
    assert_eq!((ea.ifname.as_str(), eb.ifname.as_str()), ("eth0", "eth0"));
    assert_ne!(ea.port, eb.port);
    let gw = Ipv4Addr::new(10, 201, 0, 1);
    assert_interface(&a, &ea, gw);
    assert_interface(&b, &eb, gw);

    assert!(ping(&a, ip_of(&eb), 3), "{a} cannot ping {b} at {}", ip_of(&eb));
    assert!(ping(&b, ip_of(&ea), 3), "{b} cannot ping {a} at {}", ip_of(&ea));

    let before = stats_by_port(&d);
    const LEN: u64 = 20 << 20;
    let r = tcp_transfer(&b, ip_of(&eb), &a, LEN).expect("TCP transfer from a to b");
    eprintln!("tcp {a} -> {b}: {} bytes in {:?} ({:.0} Mbit/s)", r.bytes, r.elapsed, r.mbit_per_s());
    assert!(r.intact, "TCP stream corrupted: got {} of {LEN} bytes or a wrong checksum", r.bytes);

    let fdb: Vec<FdbEntry> = d.ctl_json(&["fdb", "show", &net]);
    for e in [&ea, &eb] {
        let entry = fdb.iter().find(|f| f.mac == e.mac).unwrap_or_else(|| panic!("{} not in fdb: {fdb:?}", e.mac));
        assert_eq!((entry.port.as_str(), entry.network.as_str()), (e.port.as_str(), net.as_str()), "{entry:?}");
    }

    let after = stats_by_port(&d);
    let delta = |port: &str, f: fn(&PortStats) -> u64| {
        let get = |m: &BTreeMap<String, PortStats>| m.get(port).map(f).unwrap_or(0);
        assert!(after.contains_key(port), "no stats for port {port}: {:?}", after.keys());
        get(&after) - get(&before)
    };
    // a sent the stream into the switch; the switch sent it out to b.
    assert!(delta(&ea.port, |s| s.rx_bytes) >= LEN, "rx_bytes of {}: {:?}", ea.port, after[&ea.port]);
    assert!(delta(&eb.port, |s| s.tx_bytes) >= LEN, "tx_bytes of {}: {:?}", eb.port, after[&eb.port]);
    // b acknowledged it.
    assert!(delta(&eb.port, |s| s.rx_packets) > 0 && delta(&ea.port, |s| s.tx_packets) > 0, "{after:?}");
    assert_eq!(after[&ea.port].network, net);
}

/// Frames received (not sent) by a capture.
fn incoming(frames: &[Frame]) -> Vec<&Frame> {
    frames.iter().filter(|f| !f.outgoing).collect()
}

#[test]
fn networks_are_isolated_even_for_broadcasts() {
    if !require_root("networks_are_isolated_even_for_broadcasts") {
        return;
    }
    let d = Daemon::start();
    let (n1, n2) = (d.name("n1"), d.name("n2"));
    let (a, b, c) = (d.name("a"), d.name("b"), d.name("c"));
    d.network_create(&n1, "10.202.1.0/24");
    d.network_create(&n2, "10.202.2.0/24");
    for s in [&a, &b, &c] {
        d.sandbox_create(s);
    }
    let ea = d.connect(&n1, &a, None);
    let eb = d.connect(&n1, &b, None);
    let ec = d.connect(&n2, &c, None);
    let gw2_mac = switch::gateway::gateway_mac(Ipv4Addr::new(10, 202, 2, 1)).0;

    let cap_b = Capture::start(&b, &eb.ifname).expect("capture in b");
    let cap_c = Capture::start(&c, &ec.ifname).expect("capture in c");
    // Unicast, ARP broadcasts (neighbour cache flushed, and an address nobody
    // has), and broadcast ICMP on network 1.
    netns_exec(&a, "ip", &["neigh", "flush", "all"]);
    assert!(ping(&a, ip_of(&eb), 3), "a cannot ping b on the same network");
    assert!(!ping(&a, Ipv4Addr::new(10, 202, 1, 200), 2), "nobody should answer 10.202.1.200");
    netns_exec(&a, "ping", &["-b", "-c", "2", "-i", "0.2", "-W", "1", "10.202.1.255"]);
    // And c must not reach a across networks, though it reaches its own gateway.
    assert!(!ping(&c, ip_of(&ea), 2), "c on {n2} reached a on {n1}");
    assert!(ping(&c, Ipv4Addr::new(10, 202, 2, 1), 1), "c cannot ping its gateway");
    // The switch handled everything above before the gateway's echo reply
    // to c's last ping reached c: once both captures have read what they
    // must show, anything that leaked would be there too.
    let a_mac = ea.mac.octets();
    let arp_bcast_from_a = |frames: &[Frame]| {
        frames.iter().any(|f| !f.outgoing && f.src() == a_mac && f.dst() == [0xff; 6] && f.ethertype() == 0x0806)
    };
    let ipv4_from_a =
        |frames: &[Frame]| frames.iter().any(|f| !f.outgoing && f.src() == a_mac && f.ethertype() == 0x0800);
    let echo_reply_from_gw2 = |frames: &[Frame]| {
        incoming(frames).iter().any(|f| f.src() == gw2_mac && is_icmp_echo_reply_from(f, Ipv4Addr::new(10, 202, 2, 1)))
    };
    cap_b.wait_for(Duration::from_secs(10), |f| arp_bcast_from_a(f) && ipv4_from_a(f));
    cap_c.wait_for(Duration::from_secs(10), echo_reply_from_gw2);
    let seen_b = cap_b.stop();
    let seen_c = cap_c.stop();

    // Positive control: the same capture sees network 1's traffic on network 1.
    assert!(arp_bcast_from_a(&seen_b), "b saw no ARP broadcast from a:\n{}", list(&seen_b));
    assert!(ipv4_from_a(&seen_b), "b saw no IPv4 from a:\n{}", list(&seen_b));
    // c's capture works (its gateway's replies are there), and nothing from
    // network 1 (or anyone but c's own gateway) reached c.
    assert!(echo_reply_from_gw2(&seen_c), "c's capture saw no gateway reply:\n{}", list(&seen_c));
    let foreign: Vec<&Frame> = incoming(&seen_c).into_iter().filter(|f| f.src() != gw2_mac).collect();
    assert!(foreign.is_empty(), "frames leaked into {n2}:\n{}", list_refs(&foreign));
    // c's own frames (ARP for its gateway etc.) did not leak into network 1.
    let c_mac = ec.mac.octets();
    assert!(!seen_b.iter().any(|f| f.src() == c_mac), "b saw frames from c on the other network:\n{}", list(&seen_b));
}

/// A network created with Docker's `enable_icc=false` isolates its
/// sandboxes from one another: ARP between them gets no answer, and a ping
/// to the other's MAC set by hand is dropped by the switch and counted as
/// `isolated`, while each sandbox still reaches its gateway and a network
/// with the default lets the same pair talk. The setting outlives `kill -9`;
/// Docker's `-o com.docker.network.driver.mtu` is the network's MTU.
#[test]
fn inter_container_communication_off_isolates_sandboxes_but_not_from_their_gateway() {
    if !require_root("inter_container_communication_off_isolates_sandboxes_but_not_from_their_gateway") {
        return;
    }
    let mut d = Daemon::start();
    let (closed, open) = (d.name("closed"), d.name("open"));
    let icc_off = "com.docker.network.bridge.enable_icc=false";
    d.ctl_ok(&["network", "create", "--subnet", "10.202.3.0/24", "-o", icc_off, &closed]);
    d.ctl_ok(&["network", "create", "--subnet", "10.202.4.0/24", "-o", "com.docker.network.driver.mtu=1400", &open]);
    let (a, b, c, e) = (d.name("a"), d.name("b"), d.name("c"), d.name("e"));
    let eps = d.sandboxes_on(&closed, &[&a, &b]);
    let (ea, eb) = (&eps[0], &eps[1]);
    let gateway = Ipv4Addr::new(10, 202, 3, 1);
    let isolated =
        |d: &Daemon, port: &str| stats_by_port(d).get(port).and_then(|s| s.drops.get("isolated").copied()).unwrap_or(0);

    let check = |d: &Daemon, round: &str| {
        assert!(ping(&a, gateway, 1), "{round}: a cannot ping its gateway");
        assert!(ping(&b, gateway, 1), "{round}: b cannot ping its gateway");
        // Every entry, the one set by hand in an earlier round included.
        netns_exec(&a, "ip", &["neigh", "flush", "all", "nud", "all"]);
        assert!(!ping(&a, ip_of(eb), 1), "{round}: a reached b, whose MAC it had to ask for");
        // With b's MAC given by hand, the switch itself must refuse.
        let before = isolated(d, &ea.port);
        let mac = eb.mac.to_string();
        let lladdr =
            ["neigh", "replace", &ip_of(eb).to_string(), "lladdr", &mac, "dev", &ea.ifname, "nud", "permanent"];
        assert!(netns_exec(&a, "ip", &lladdr).status.success(), "{round}: cannot set b's MAC in a");
        assert!(!ping(&a, ip_of(eb), 2), "{round}: a reached b by its MAC");
        assert!(isolated(d, &ea.port) >= before + 2, "{round}: the echo requests were not counted as isolated");
    };
    check(&d, "created");
    d.restart();
    check(&d, "after kill -9");

    let inspect: Vec<serde_json::Value> = d.ctl_json(&["network", "inspect", &closed, &open]);
    assert_eq!(inspect[0]["Options"]["com.docker.network.bridge.enable_icc"], "false", "{}", inspect[0]);
    assert_eq!(inspect[1]["Options"]["com.docker.network.driver.mtu"], "1400", "{}", inspect[1]);
    // The control: on a network with the default, the same pair talks,
    // at the MTU Docker's option gave.
    let eps = d.sandboxes_on(&open, &[&c, &e]);
    assert!(ping(&c, ip_of(&eps[1]), 1), "c cannot ping e on a network with inter-container communication on");
    let link = vswitch::link_info(&c, &eps[0].ifname).expect("c's interface");
    assert_eq!(link["mtu"], 1400, "{link}");
}

/// True if `f` is an IPv4 ICMP echo reply from `ip`.
fn is_icmp_echo_reply_from(f: &Frame, ip: Ipv4Addr) -> bool {
    let b = &f.bytes;
    let ihl = usize::from(b.get(14).copied().unwrap_or(0) & 0x0f) * 4;
    f.ethertype() == 0x0800
        && b.get(23) == Some(&1)
        && b.get(26..30) == Some(&ip.octets()[..])
        && b.get(14 + ihl) == Some(&0)
}

fn list(frames: &[Frame]) -> String {
    frames.iter().map(|f| format!("  {f}\n")).collect()
}

fn list_refs(frames: &[&Frame]) -> String {
    frames.iter().map(|f| format!("  {f}\n")).collect()
}

#[test]
fn gateway_answers_arp_and_ping() {
    if !require_root("gateway_answers_arp_and_ping") {
        return;
    }
    let d = Daemon::start();
    let net = d.name("n");
    let a = d.name("a");
    let info = d.network_create(&net, "10.203.0.0/24");
    assert_eq!(info.ipam.config[0].gateway.map(|g| g.to_string()).as_deref(), Some("10.203.0.1"), "{info:?}");
    d.sandbox_create(&a);
    let ea = d.connect(&net, &a, None);
    let gw = Ipv4Addr::new(10, 203, 0, 1);

    netns_exec(&a, "ip", &["neigh", "flush", "all"]);
    assert!(ping(&a, gw, 3), "gateway {gw} does not answer ping");
    let out = netns_exec(&a, "ip", &["-j", "neigh", "show", "to", "10.203.0.1", "dev", &ea.ifname]);
    let neigh: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let expected = switch::gateway::gateway_mac(gw).0.map(|b| format!("{b:02x}")).join(":");
    assert_eq!(neigh[0]["lladdr"].as_str(), Some(expected.as_str()), "neighbour entry for the gateway: {neigh}");
    let state = neigh[0]["state"].to_string();
    assert!(!state.contains("FAILED") && !state.contains("INCOMPLETE"), "gateway neighbour state {state}");

    // The gateway is an internal port of the network.
    let show: ShowTree = d.ctl_json(&["show"]);
    let shown = show.networks.iter().find(|n| n.name == net).unwrap_or_else(|| panic!("{net} not in show"));
    let gw_port = format!("gw:{net}");
    assert!(shown.ports.iter().any(|p| p.name == gw_port), "no port {gw_port} in {shown:?}");
    assert!(shown.ports.iter().any(|p| p.name == ea.port), "no port {} in {shown:?}", ea.port);
    assert_eq!(shown.gateway, Some(gw));
}

/// On a network without egress (`-o egress=false`), nothing outside the
/// sandbox's networks is reachable: the gateway answers packets routed
/// through it with ICMP network unreachable, so `ping` reports it and
/// `connect` fails with `ENETUNREACH` instead of timing out, and the drops
/// are counted. (With egress the daemon, here in the host's namespace,
/// would send them to the host's network, which tests must not reach.)
#[test]
fn outside_addresses_are_answered_network_unreachable() {
    if !require_root("outside_addresses_are_answered_network_unreachable") {
        return;
    }
    let d = Daemon::start();
    let net = d.name("n");
    let a = d.name("a");
    let _: ctl::proto::NetworkInfo =
        d.ctl_json(&["network", "create", &net, "--subnet", "10.218.0.0/24", "-o", "egress=false"]);
    d.sandbox_create(&a);
    let ea = d.connect(&net, &a, None);
    let out = netns_exec(&a, "ping", &["-n", "-c", "2", "-i", "0.2", "-W", "1", "192.0.2.1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("From 10.218.0.1") && text.contains("Destination Net Unreachable"), "ping said: {text}");
    let connected = vswitch::in_netns(&a, || {
        std::net::TcpStream::connect_timeout(&"192.0.2.1:80".parse().unwrap(), std::time::Duration::from_secs(20))
    })
    .expect("a thread in the sandbox");
    let error = connected.expect_err("connected to an address outside the network");
    assert_eq!(error.kind(), std::io::ErrorKind::NetworkUnreachable, "{error}");
    let stats = stats_by_port(&d);
    let drops = stats[&ea.port].drops.get("no_route").copied().unwrap_or(0);
    assert!(drops >= 3, "no_route drops on {}: {:?}", ea.port, stats[&ea.port]);
    // The gateway itself still answers.
    assert!(ping(&a, Ipv4Addr::new(10, 218, 0, 1), 1));
}
