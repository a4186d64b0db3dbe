//! The switch's L4 translator over IPv6, end to end, in the lab of
//! `vswitch::outside` (the daemon's namespace joined by a veth to an
//! "outside" one, both with IPv6): a dual-stack sandbox reaches an IPv6
//! address outside by TCP (bulk, every byte checked, both ways), UDP and
//! `ping -6`, the outside seeing the daemon's IPv6 address; ICMPv6 errors
//! come back (refused, unreachable, port unreachable); IPv4 goes on beside
//! it. Published ports listen on both families: an IPv6 client is seen by
//! the sandbox with its own IPv6 address and port (moby #17666), an IPv4
//! one with its IPv4 address, a loopback `[::1]` one as the IPv6 gateway;
//! UDP too; a sandbox without IPv6 is reached by IPv6 clients through its
//! IPv4 address; a service balances IPv6 clients over its replicas and
//! skips a refusing one; an IPv6-only network reaches out and is reached
//! by clients of both families; a sandbox on two networks sends from
//! either IPv6 address (weak host model). No firewall rule anywhere. Needs root,
//! python3, curl and ping.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use ctl::proto::EndpointInfo;
use serde_json::Value;
use vswitch::outside::{
    HttpServer, Outside, UdpEcho, curl, field, ping_once, require_nat_tools, transfer_checked, udp_query,
};
use vswitch::process::text;
use vswitch::{Daemon, in_netns, netns_exec, require_root, wait_until};

/// How long one curl may take.
const CURL_MAX: Duration = Duration::from_secs(10);
/// A failure that is answered (ICMPv6 error, RST) must come at least this fast.
const FAST: Duration = Duration::from_secs(3);
/// Bytes of each bulk transfer.
const BULK: u64 = 16 << 20;

fn prerequisites(test: &str) -> bool {
    require_root(test) && require_nat_tools(test)
}

fn sa(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

/// A curl that must succeed and answer `name`.
#[track_caller]
fn curl_ok(ns: &str, addr: SocketAddr, name: &str) -> vswitch::outside::Curl {
    let c = curl(ns, addr, CURL_MAX);
    assert!(c.ok, "{c}");
    assert_eq!(c.body.trim(), name, "{c}");
    c
}

/// Creates a dual-stack network with these subnets.
fn dual_stack(d: &Daemon, net: &str, subnet: &str, subnet6: &str) {
    d.ctl_ok(&["network", "create", net, "--ipv6", "--subnet", subnet, "--subnet", subnet6]);
}

/// Connects `sandbox` to `net` (publishing `publish`) and returns the endpoint.
fn connect(d: &Daemon, net: &str, sandbox: &str, publish: &[&str]) -> EndpointInfo {
    d.connect_publish(net, sandbox, publish)
}

/// The network's gateway of `ip`'s family, from `network inspect`.
fn gateway_like(d: &Daemon, net: &str, ip: IpAddr) -> IpAddr {
    let inspect: Value = d.ctl_json(&["network", "inspect", net]);
    let config = inspect[0]["IPAM"]["Config"].as_array().cloned().unwrap_or_default();
    let gw = config
        .iter()
        .filter_map(|c| c["Gateway"].as_str()?.parse::<IpAddr>().ok())
        .find(|g| g.is_ipv6() == ip.is_ipv6());
    gw.unwrap_or_else(|| panic!("no gateway like {ip} in {inspect}"))
}

/// The network's IPv6 gateway.
fn gateway6(d: &Daemon, net: &str) -> IpAddr {
    gateway_like(d, net, IpAddr::V6(Ipv6Addr::UNSPECIFIED))
}

/// The TCP flows of `nat ls` whose sandbox side is `local`.
fn flows_of(d: &Daemon, local: SocketAddr) -> Vec<Value> {
    d.nat_flows(None)
        .into_iter()
        .filter(|f| field(f, "proto") == "tcp" && field(f, "sandbox_addr") == local.to_string())
        .collect()
}

/// `vswitchctl port SB`'s lines, sorted.
fn port_lines(d: &Daemon, sb: &str) -> Vec<String> {
    let mut v: Vec<String> = d.ctl_ok(&["port", sb]).lines().map(|l| l.trim().to_owned()).collect();
    v.retain(|l| !l.is_empty());
    v.sort();
    v
}

/// The last client a server logged, its address unmapped (a dual-stack
/// server sees IPv4 clients as `::ffff:a.b.c.d`).
#[track_caller]
fn last_client(web: &HttpServer) -> SocketAddr {
    let c = *web.client_addrs().last().unwrap_or_else(|| panic!("no client logged:\n{}", web.log()));
    SocketAddr::new(c.ip().to_canonical(), c.port())
}

#[test]
fn ipv6_egress_carries_tcp_udp_and_ping_and_ipv4_goes_on_beside_it() {
    if !prerequisites("ipv6_egress_carries_tcp_udp_and_ping_and_ipv4_goes_on_beside_it") {
        return;
    }
    let lab = Outside::start(&[]);
    let d = &lab.daemon;
    let (net, sb) = (d.name("n"), d.name("a"));
    dual_stack(d, &net, "10.236.0.0/24", "fd00:236::/64");
    d.sandbox_create(&sb);
    let e = connect(d, &net, &sb, &[]);
    let mine = e.ipv6.expect("a dual-stack endpoint").addr();
    let web = HttpServer::start(&lab.outside_ns, Ipv6Addr::UNSPECIFIED, 80, "outside");
    let echo = UdpEcho::start(&lab.outside_ns, lab.far_addr6, 7);
    let (far6, near6) = (lab.far_addr6, lab.outside_addr6);

    // TCP to the far address (routed) and to the veth neighbour.
    for dst in [far6, near6] {
        let c = curl_ok(&sb, sa(dst, 80), "outside");
        assert!(c.elapsed < CURL_MAX, "{c}");
    }
    let clients = web.client_addrs();
    assert_eq!(clients.len(), 2, "{}", web.log());
    assert!(
        clients.iter().all(|c| c.ip() == IpAddr::V6(lab.daemon_addr6)),
        "the outside should see the daemon's IPv6 address {}, saw {clients:?}",
        lab.daemon_addr6
    );
    // IPv4 beside it.
    curl_ok(&sb, sa(lab.far_addr, 80), "outside");
    assert_eq!(last_client(&web).ip(), IpAddr::V4(lab.daemon_addr), "{}", web.log());

    // UDP: the echo names the sender it saw.
    let (local, reply) = udp_query(&sb, Ipv6Addr::UNSPECIFIED, sa(far6, 7), b"hello6", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("no UDP echo over IPv6: {e}; echo saw {:?}", echo.peer_addrs()));
    let (peer, payload) = reply.split_once(' ').unwrap_or((&reply, ""));
    assert_eq!(payload, "hello6");
    let peer: SocketAddr = peer.parse().unwrap_or_else(|e| panic!("echo answered {reply:?}: {e}"));
    assert_eq!(peer.ip(), IpAddr::V6(lab.daemon_addr6), "echo saw {peer}; the sandbox sent from {local} ({mine})");

    // ping -6, both addresses: through raw ICMPv6 sockets (a fresh
    // namespace allows no ping socket), then through ping sockets.
    for dst in [far6, near6] {
        let (out, _) = ping_once(&sb, dst, Duration::from_secs(5));
        assert!(out.status.success(), "ping -6 {dst} from {sb}: {}\n{}", text(&out.stdout), text(&out.stderr));
    }
    let allow = netns_exec(&lab.daemon_ns, "sysctl", &["-w", "net.ipv4.ping_group_range=0 2147483647"]);
    assert!(allow.status.success(), "sysctl in the daemon's namespace: {}", text(&allow.stderr));
    let (out, _) = ping_once(&sb, far6, Duration::from_secs(5));
    assert!(out.status.success(), "ping -6 through a ping socket: {}\n{}", text(&out.stdout), text(&out.stderr));

    // Bulk TCP both ways, every byte checked.
    let (outside, sandbox) = (lab.outside_ns.as_str(), sb.as_str());
    transfer_checked("IPv6 egress upload", outside, sa(far6, 9200), sandbox, sa(far6, 9200), BULK, false);
    transfer_checked("IPv6 egress download", outside, sa(far6, 9201), sandbox, sa(far6, 9201), BULK, true);

    // A connection held open is in `nat ls` with its IPv6 addresses.
    let listener = in_netns(&lab.outside_ns, move || TcpListener::bind(sa(far6, 9000))).unwrap().unwrap();
    let mut client = in_netns(&sb, move || TcpStream::connect_timeout(&sa(far6, 9000), Duration::from_secs(10)))
        .unwrap()
        .unwrap_or_else(|e| panic!("connect to [{far6}]:9000: {e}"));
    let (mut server, seen) = listener.accept().unwrap();
    assert_eq!(seen.ip(), IpAddr::V6(lab.daemon_addr6));
    client.write_all(b"up").unwrap();
    server.read_exact(&mut [0u8; 2]).unwrap();
    let local = client.local_addr().unwrap();
    let flow = wait_until(
        Duration::from_secs(5),
        || format!("a flow of {local} in nat ls: {:#?}", d.nat_flows(None)),
        || flows_of(d, local).into_iter().next(),
    );
    assert_eq!(field(&flow, "remote_addr"), sa(far6, 9000).to_string(), "{flow:#}");
    assert_eq!(field(&flow, "outer_remote"), sa(far6, 9000).to_string(), "{flow:#}");
    assert_eq!(field(&flow, "outer_local"), seen.to_string(), "{flow:#}");
    assert_eq!((field(&flow, "direction"), field(&flow, "state")), ("egress".into(), "established".into()));
    drop((client, server));

    // Errors come back as ICMPv6 or resets, at once: a refused port, a
    // destination the daemon has no route to, a UDP port nobody listens on.
    let refused = curl(&sb, sa(far6, 81), CURL_MAX);
    assert!(!refused.ok && refused.elapsed < FAST, "{refused}");
    assert!(refused.stderr.to_lowercase().contains("refused") || refused.stderr.contains("connect"), "{refused}");
    let nowhere: Ipv6Addr = "2001:db8:dead::1".parse().unwrap();
    let c = curl(&sb, sa(nowhere, 80), CURL_MAX);
    assert!(!c.ok && c.elapsed < FAST, "an unroutable IPv6 destination should fail at once: {c}");
    let (out, elapsed) = ping_once(&sb, nowhere, Duration::from_secs(5));
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr)).to_lowercase();
    assert!(!out.status.success() && elapsed < FAST && said.contains("unreachable"), "ping -6 {nowhere}: {said}");
    let port_unreachable = in_netns(&sb, move || -> std::io::Result<()> {
        let s = UdpSocket::bind("[::]:0")?;
        s.connect(sa(far6, 9))?;
        s.send(b"anyone?")?;
        vswitch::recv_within(&s, FAST, |s| s.recv(&mut [0u8; 16])).map(drop)
    })
    .unwrap();
    assert_eq!(
        port_unreachable.as_ref().map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionRefused),
        "a closed UDP port should answer ICMPv6 port unreachable"
    );
    lab.assert_rulesets_unchanged();
}

#[test]
fn an_ipv6_client_of_a_published_port_is_seen_with_its_own_ipv6_address() {
    if !prerequisites("an_ipv6_client_of_a_published_port_is_seen_with_its_own_ipv6_address") {
        return;
    }
    let lab = Outside::start(&[]);
    let d = &lab.daemon;
    let (net, sb) = (d.name("n"), d.name("w"));
    dual_stack(d, &net, "10.237.0.0/24", "fd00:237::/64");
    d.sandbox_create(&sb);
    let web = HttpServer::start(&sb, Ipv6Addr::UNSPECIFIED, 80, "inside");
    let echo = UdpEcho::start(&sb, Ipv6Addr::UNSPECIFIED, 53);
    connect(d, &net, &sb, &["8080:80", "[::1]:8081:80", "5353:53/udp", "9300-9301:9300-9301"]);
    let (outside6, daemon6) = (lab.outside_addr6, lab.daemon_addr6);

    // moby #17666: an IPv6 client is seen as itself, address and port.
    let c = curl_ok(&lab.outside_ns, sa(daemon6, 8080), "inside");
    let seen = last_client(&web);
    assert_eq!(seen.ip(), IpAddr::V6(outside6), "the sandbox should see the IPv6 client; log:\n{}", web.log());
    if let Some(port) = c.local_port {
        assert_eq!(seen.port(), port, "and its port; {c}");
    }
    // An IPv4 client of the same port as itself too, over IPv4.
    curl_ok(&lab.outside_ns, sa(lab.daemon_addr, 8080), "inside");
    assert_eq!(last_client(&web).ip(), IpAddr::V4(lab.outside_addr), "{}", web.log());
    // A loopback client is shown as the IPv6 gateway.
    curl_ok(&lab.daemon_ns, sa(Ipv6Addr::LOCALHOST, 8080), "inside");
    assert_eq!(last_client(&web).ip(), gateway6(d, &net), "{}", web.log());
    // [::1]:8081 is on loopback only.
    curl_ok(&lab.daemon_ns, sa(Ipv6Addr::LOCALHOST, 8081), "inside");
    assert!(!curl(&lab.outside_ns, sa(daemon6, 8081), Duration::from_secs(3)).ok, "8081 reachable from outside");
    let lines = port_lines(d, &sb);
    // A port on every address is listed on [::] too, where it was just reached.
    for want in ["80/tcp -> 0.0.0.0:8080", "80/tcp -> [::]:8080", "80/tcp -> [::1]:8081", "53/udp -> 0.0.0.0:5353"] {
        assert!(lines.contains(&want.to_owned()), "{want} not in {lines:?}");
    }

    // UDP: the echo in the sandbox names the IPv6 client it saw.
    for i in 0..3 {
        let payload = format!("six {i}");
        let (local, reply) =
            udp_query(&lab.outside_ns, outside6, sa(daemon6, 5353), payload.as_bytes(), Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("no UDP answer over IPv6: {e}; echo saw {:?}", echo.peer_addrs()));
        assert_eq!(reply, format!("{local} {payload}"), "the sandbox should see the IPv6 client's address and port");
    }
    let inbound: Vec<Value> = d.nat_flows(None).into_iter().filter(|f| field(f, "direction") == "inbound").collect();
    assert!(
        inbound
            .iter()
            .any(|f| field(f, "proto") == "udp" && field(f, "outer_remote").starts_with(&format!("[{outside6}]"))),
        "no inbound IPv6 UDP flow in nat ls: {inbound:#?}"
    );

    // Bulk through the published ports over IPv6, both ways.
    let (outside, sandbox) = (lab.outside_ns.as_str(), sb.as_str());
    let any6 = |p| sa(Ipv6Addr::UNSPECIFIED, p);
    transfer_checked("IPv6 published upload", sandbox, any6(9300), outside, sa(daemon6, 9300), BULK, false);
    transfer_checked("IPv6 published download", sandbox, any6(9301), outside, sa(daemon6, 9301), BULK, true);

    // A sandbox without IPv6 is reached by IPv6 clients all the same,
    // through its IPv4 address, the gateway standing in for the client.
    let (net4, old) = (d.name("v4"), d.name("o"));
    d.network_create(&net4, "10.238.0.0/24");
    d.sandbox_create(&old);
    let old_web = HttpServer::start(&old, Ipv4Addr::UNSPECIFIED, 80, "ipv4-only");
    let e = connect(d, &net4, &old, &["8090:80"]);
    assert!(e.ipv6.is_none());
    curl_ok(&lab.outside_ns, sa(daemon6, 8090), "ipv4-only");
    assert_eq!(
        old_web.clients().last().map(|c| *c.ip()),
        Some(Ipv4Addr::new(10, 238, 0, 1)),
        "the IPv4 gateway stands in for the IPv6 client; log:\n{}",
        old_web.log()
    );
    curl_ok(&lab.outside_ns, sa(lab.daemon_addr, 8090), "ipv4-only");
    assert_eq!(old_web.clients().last().map(|c| *c.ip()), Some(lab.outside_addr));
    lab.assert_rulesets_unchanged();
}

#[test]
fn a_service_balances_ipv6_clients_over_its_replicas_and_skips_a_refusing_one() {
    if !prerequisites("a_service_balances_ipv6_clients_over_its_replicas_and_skips_a_refusing_one") {
        return;
    }
    let lab = Outside::start(&[]);
    let d = &lab.daemon;
    let net = d.name("n");
    dual_stack(d, &net, "10.239.0.0/24", "fd00:239::/64");
    let names: Vec<String> = (1..=3).map(|i| d.name(&format!("r{i}"))).collect();
    let mut servers = Vec::new();
    for name in &names {
        d.sandbox_create(name);
        servers.push(HttpServer::start(name, Ipv6Addr::UNSPECIFIED, 80, name));
        d.ctl_ok(&["network", "connect", &net, name, "--service", "api"]);
    }
    d.ctl_ok(&["service", "publish", "api", "--network", &net, "-p", "8088:80"]);
    let target = sa(lab.daemon_addr6, 8088);
    // Every replica answers in turn.
    let mut seen = Vec::new();
    for _ in 0..6 {
        let c = curl(&lab.outside_ns, target, CURL_MAX);
        assert!(c.ok, "{c}");
        seen.push(c.body);
    }
    let served = |body: &str| names.iter().position(|n| n == body.trim());
    let mut order: Vec<usize> = seen.iter().filter_map(|b| served(b)).collect();
    assert_eq!(order.len(), 6, "{seen:?}");
    let mut distinct = order.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct, [0, 1, 2], "every replica answers: {seen:?}");
    order.dedup();
    assert_eq!(order.len(), 6, "round robin, never the same replica twice in a row: {seen:?}");
    for s in &servers {
        assert!(s.client_addrs().iter().all(|c| c.ip() == IpAddr::V6(lab.outside_addr6)), "{}", s.log());
    }
    // A refusing replica is skipped: every connection still succeeds.
    servers[1].stop();
    let start = Instant::now();
    for _ in 0..4 {
        let c = curl(&lab.outside_ns, target, CURL_MAX);
        assert!(c.ok, "{c}");
        assert_ne!(c.body.trim(), names[1], "{c}");
    }
    assert!(start.elapsed() < CURL_MAX, "failing over took {:?}", start.elapsed());
    // IPv4 clients are balanced over the same replicas.
    let c = curl(&lab.outside_ns, sa(lab.daemon_addr, 8088), CURL_MAX);
    assert!(c.ok && served(&c.body).is_some(), "{c}");
    lab.assert_rulesets_unchanged();
}

#[test]
fn an_ipv6_only_network_reaches_out_and_is_reached_from_both_families() {
    if !prerequisites("an_ipv6_only_network_reaches_out_and_is_reached_from_both_families") {
        return;
    }
    let lab = Outside::start(&[]);
    let d = &lab.daemon;
    let (net, sb) = (d.name("n"), d.name("s"));
    d.ctl_ok(&["network", "create", &net, "--ipv6", "--ipv4=false", "--subnet", "fd00:240::/64"]);
    d.sandbox_create(&sb);
    let web = HttpServer::start(&sb, Ipv6Addr::UNSPECIFIED, 80, "six-only");
    let e = connect(d, &net, &sb, &["8085:80"]);
    assert!(e.ipv4.is_none() && e.ipv6.is_some(), "{e:?}");
    // Out: TCP and ping -6.
    let _outside = HttpServer::start(&lab.outside_ns, Ipv6Addr::UNSPECIFIED, 80, "outside");
    curl_ok(&sb, sa(lab.far_addr6, 80), "outside");
    let (out, _) = ping_once(&sb, lab.far_addr6, Duration::from_secs(5));
    assert!(out.status.success(), "ping -6 from an IPv6-only sandbox: {}{}", text(&out.stdout), text(&out.stderr));
    // In: an IPv6 client as itself, an IPv4 one through the IPv6 gateway.
    curl_ok(&lab.outside_ns, sa(lab.daemon_addr6, 8085), "six-only");
    assert_eq!(last_client(&web).ip(), IpAddr::V6(lab.outside_addr6), "{}", web.log());
    curl_ok(&lab.outside_ns, sa(lab.daemon_addr, 8085), "six-only");
    assert_eq!(last_client(&web).ip(), gateway6(d, &net), "the IPv6 gateway stands in for the IPv4 client");
    lab.assert_rulesets_unchanged();
}

/// Over IPv6 too, a sandbox on two networks may send through its default
/// network's gateway from its address on the other, internal one (a socket
/// bound to it, Linux's weak host model), and is translated.
#[test]
fn a_sandbox_on_two_networks_routes_ipv6_from_either_address() {
    if !prerequisites("a_sandbox_on_two_networks_routes_ipv6_from_either_address") {
        return;
    }
    let lab = Outside::start(&[]);
    let d = &lab.daemon;
    let (first, second, sb) = (d.name("f"), d.name("s"), d.name("a"));
    dual_stack(d, &first, "10.239.1.0/24", "fd00:239:1::/64");
    // Internal: no source route sends its addresses through its own gateway.
    let subnets = ["--subnet", "10.239.2.0/24", "--subnet", "fd00:239:2::/64"];
    d.ctl_ok(&[&["network", "create", &second, "--ipv6", "--internal"][..], &subnets].concat());
    d.sandbox_create(&sb);
    let via = connect(d, &first, &sb, &[]);
    let other = connect(d, &second, &sb, &[]);
    let bound = other.ipv6.expect("a dual-stack endpoint").addr();
    let routes = vswitch::netns_exec_ok(&sb, "ip", &["-6", "route", "show", "default"]);
    assert!(routes.contains(&via.ifname), "the default route should use {}: {routes}", via.ifname);
    let echo = UdpEcho::start(&lab.outside_ns, lab.far_addr6, 7);
    let (local, reply) = udp_query(&sb, bound, sa(lab.far_addr6, 7), b"weak6", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("no echo for a socket bound to {bound}: {e}; echo saw {:?}", echo.peer_addrs()));
    assert_eq!(local.ip(), IpAddr::V6(bound));
    let (peer, payload) = reply.split_once(' ').unwrap_or((&reply, ""));
    assert_eq!(payload, "weak6");
    let peer: SocketAddr = peer.parse().unwrap_or_else(|e| panic!("echo answered {reply:?}: {e}"));
    assert_eq!(peer.ip(), IpAddr::V6(lab.daemon_addr6), "echo saw {peer}");
    let flows = d.nat_flows(Some(&first));
    assert!(flows.iter().any(|f| field(f, "sandbox_addr") == local.to_string()), "{flows:#?}");
}

/// A sandbox whose default network has no IPv6 routes IPv6 through its
/// first network that has (and an IPv6-only default network leaves IPv4
/// to the next): one gateway per family, as Docker chooses them.
#[test]
fn each_family_routes_through_the_first_network_that_has_it() {
    if !prerequisites("each_family_routes_through_the_first_network_that_has_it") {
        return;
    }
    let lab = Outside::start(&[]);
    let d = &lab.daemon;
    let (v4, dual, v6) = (d.name("f"), d.name("d"), d.name("s"));
    d.network_create(&v4, "10.241.1.0/24");
    dual_stack(d, &dual, "10.241.2.0/24", "fd00:241:2::/64");
    d.ctl_ok(&["network", "create", &v6, "--ipv6", "--ipv4=false", "--subnet", "fd00:241:3::/64"]);
    // The interface the kernel picks toward the far address (among every
    // default route, those learned from router advertisements included).
    let (far4, far6) = (lab.far_addr.to_string(), lab.far_addr6.to_string());
    let default_dev = |sb: &str, family: &str| {
        let far = if family == "-6" { &far6 } else { &far4 };
        let out = netns_exec(sb, "ip", &[family, "route", "get", far]);
        let routes = text(&out.stdout);
        routes.split_whitespace().skip_while(|w| *w != "dev").nth(1).map(str::to_owned)
    };
    let echo6 = UdpEcho::start(&lab.outside_ns, lab.far_addr6, 7);
    let echo4 = UdpEcho::start(&lab.outside_ns, lab.far_addr, 7);

    let a = d.name("a");
    d.sandbox_create(&a);
    let first = connect(d, &v4, &a, &[]);
    assert_eq!(default_dev(&a, "-6"), None, "no IPv6 network yet");
    let second = connect(d, &dual, &a, &[]);
    assert_eq!(default_dev(&a, "-4"), Some(first.ifname.clone()), "IPv4 stays with the default network");
    assert_eq!(default_dev(&a, "-6"), Some(second.ifname.clone()), "IPv6 through the first network that has it");
    let (_, reply) = udp_query(&a, Ipv6Addr::UNSPECIFIED, sa(lab.far_addr6, 7), b"six", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("no IPv6 egress: {e}; echo saw {:?}", echo6.peer_addrs()));
    assert!(reply.ends_with(" six"), "{reply}");
    d.ctl_ok(&["network", "disconnect", &dual, &a]);
    assert_eq!(default_dev(&a, "-6"), None, "its IPv6 route went with it");
    assert_eq!(default_dev(&a, "-4"), Some(first.ifname.clone()));

    // The other way round: an IPv6-only default network, IPv4 from the next.
    let b = d.name("b");
    d.sandbox_create(&b);
    let only6 = connect(d, &v6, &b, &[]);
    let then4 = connect(d, &v4, &b, &[]);
    assert_eq!(default_dev(&b, "-6"), Some(only6.ifname.clone()));
    assert_eq!(default_dev(&b, "-4"), Some(then4.ifname.clone()));
    let (_, reply) = udp_query(&b, Ipv4Addr::UNSPECIFIED, sa(lab.far_addr, 7), b"four", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("no IPv4 egress: {e}; echo saw {:?}", echo4.peers()));
    assert!(reply.ends_with(" four"), "{reply}");

    // `--gw-priority`: a later network of higher priority takes both
    // families; when it leaves, the default network takes IPv4 back.
    let c = d.name("c");
    d.sandbox_create(&c);
    let low = connect(d, &v4, &c, &[]);
    let high: EndpointInfo = d.ctl_json(&["network", "connect", &dual, &c, "--gw-priority", "10"]);
    assert!(high.default_gateway && high.gw_priority == 10, "{high:?}");
    assert_eq!(default_dev(&c, "-4"), Some(high.ifname.clone()), "IPv4 through the higher priority");
    assert_eq!(default_dev(&c, "-6"), Some(high.ifname.clone()));
    let shown: Vec<ctl::proto::SandboxInfo> = d.ctl_json(&["sandbox", "inspect", &c]);
    let flagged: Vec<&str> =
        shown[0].endpoints.iter().filter(|e| e.default_gateway).map(|e| e.ifname.as_str()).collect();
    assert_eq!(flagged, [high.ifname.as_str()], "{shown:?}");
    d.ctl_ok(&["network", "disconnect", &dual, &c]);
    assert_eq!(default_dev(&c, "-4"), Some(low.ifname.clone()));
    assert_eq!(default_dev(&c, "-6"), None);
}
