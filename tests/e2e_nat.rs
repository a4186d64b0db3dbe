//! The switch's L4 translator, end to end: `vswitchd` runs in its own
//! namespace, joined by a veth to an "outside" namespace (see
//! `vswitch::outside`). Covers egress (TCP, UDP, ICMP echo from a sandbox to
//! an outside address, the outside server seeing the daemon's address),
//! networks without egress answering "network unreachable" at once,
//! published TCP and UDP ports keeping the client's real address and port,
//! `vswitchctl port`, publish/unpublish on a running sandbox, a host port
//! already in use (clear error, nothing half-applied), publishings after
//! `kill -9`, a service balanced over three replicas (a disconnected
//! replica and a refusing one skipped), `nat ls` and the NAT metrics, no
//! firewall rule anywhere, 10,000 connections held through each
//! direction (flow tables back to empty, RSS back to its level), UDP
//! datagrams larger than the MTU both ways, a sandbox on two networks
//! sending from either address (weak host model) and answering a port
//! published on its second network, and UDP trains (GSO from a
//! sandbox, GRO toward it, back-to-back datagrams) both ways. Needs
//! root, python3, curl and ping; iptables and nftables for the firewall
//! checks (skipped loudly without them).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use ctl::proto::SandboxInfo;
use serde_json::Value;
use vswitch::outside::{
    HttpServer, Outside, TcpHolder, TcpSink, UdpEcho, curl, field, note, ping_once, raise_nofile, require_nat_tools,
    rss_anon_kib, rss_kib, transfer_checked, udp_query,
};
use vswitch::process::text;
use vswitch::{Daemon, in_netns, require_root, wait_until};

/// How long one curl may take.
const CURL_MAX: Duration = Duration::from_secs(10);
/// A failure that is answered (ICMP unreachable, RST) must come at least this fast.
const FAST: Duration = Duration::from_secs(3);
/// Published host port of most tests.
const HOST_PORT: u16 = 8080;

fn prerequisites(test: &str) -> bool {
    require_root(test) && require_nat_tools(test)
}

fn sa(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

/// A curl that must succeed and answer `name`.
#[track_caller]
fn curl_ok(ns: &str, addr: SocketAddr, name: &str) -> vswitch::outside::Curl {
    let c = curl(ns, addr, CURL_MAX);
    assert!(c.ok, "{c}");
    assert_eq!(c.body.trim(), name, "{c}");
    c
}

/// Waits (up to 20 s) until a curl succeeds (listeners restored, replicas
/// reachable); returns it.
fn wait_curl(ns: &str, addr: SocketAddr) -> vswitch::outside::Curl {
    let mut last = None;
    let got = vswitch::wait::wait_for(Duration::from_secs(20), || {
        let c = curl(ns, addr, Duration::from_secs(3));
        if c.ok {
            return Some(c);
        }
        last = Some(c);
        None
    });
    got.unwrap_or_else(|| panic!("no successful curl to {addr} from {ns} within 20 s; last: {}", last.unwrap()))
}

/// `vswitchctl port SB [SPEC]`'s lines, sorted.
fn port_lines(d: &Daemon, args: &[&str]) -> Vec<String> {
    let mut full = vec!["port"];
    full.extend_from_slice(args);
    let mut v: Vec<String> = d.ctl_ok(&full).lines().map(|l| l.trim().to_owned()).filter(|l| !l.is_empty()).collect();
    v.sort();
    v
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// True if a TCP connection to `addr` from `ns` is refused (nothing listens).
fn refused(ns: &str, addr: SocketAddr) -> bool {
    in_netns(ns, move || TcpStream::connect_timeout(&addr, Duration::from_secs(5)))
        .map(|r| r.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused))
        .unwrap_or(false)
}

/// The egress TCP flows of `nat ls` whose sandbox side is `local`.
fn flows_of(d: &Daemon, local: SocketAddr) -> Vec<Value> {
    d.nat_flows(None)
        .into_iter()
        .filter(|f| field(f, "proto") == "tcp" && field(f, "sandbox_addr") == local.to_string())
        .collect()
}

fn as_u64(v: &Value) -> u64 {
    v.as_u64().or_else(|| v.as_str()?.parse().ok()).unwrap_or(0)
}

#[test]
fn egress_reaches_the_outside_by_tcp_udp_and_icmp_and_nat_ls_shows_it() {
    if !prerequisites("egress_reaches_the_outside_by_tcp_udp_and_icmp_and_nat_ls_shows_it") {
        return;
    }
    let lab = Outside::start(&[]);
    let d = &lab.daemon;
    let (net, sb) = (d.name("n"), d.name("a"));
    d.network_create(&net, "10.226.0.0/24");
    d.sandbox_create(&sb);
    d.connect(&net, &sb, None);
    let web = HttpServer::start(&lab.outside_ns, Ipv4Addr::UNSPECIFIED, 80, "outside");
    // Bound to the address it is asked at: a wildcard-bound UDP server
    // answers from the address its route picks (the veth's), which no
    // connected socket (and no NAT) takes as an answer.
    let echo = UdpEcho::start(&lab.outside_ns, lab.far_addr, 7);
    let host_web = HttpServer::start(&lab.daemon_ns, Ipv4Addr::UNSPECIFIED, 81, "daemon-host");

    // TCP, to the far address (routed) and the veth neighbour (connected).
    for dst in [lab.far_addr, lab.outside_addr] {
        let c = curl_ok(&sb, sa(dst, 80), "outside");
        assert!(c.elapsed < CURL_MAX, "{c}");
    }
    let clients = web.clients();
    assert_eq!(clients.len(), 2, "server log:\n{}", web.log());
    assert!(
        clients.iter().all(|c| *c.ip() == lab.daemon_addr),
        "the outside server should see the daemon namespace's address {}, saw {clients:?}",
        lab.daemon_addr
    );
    // The daemon's own host addresses are reachable too.
    curl_ok(&sb, sa(lab.daemon_addr, 81), "daemon-host");
    assert_eq!(host_web.clients().len(), 1, "{}", host_web.log());

    // UDP: the echo names the sender it saw.
    let (local, reply) = udp_query(&sb, Ipv4Addr::UNSPECIFIED, sa(lab.far_addr, 7), b"hello", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("no UDP echo through egress: {e}; echo saw {:?}", echo.peers()));
    let (peer, payload) = reply.split_once(' ').unwrap_or((&reply, ""));
    assert_eq!(payload, "hello");
    let peer: SocketAddr = peer.parse().unwrap_or_else(|e| panic!("echo answered {reply:?}: {e}"));
    assert_eq!(peer.ip(), std::net::IpAddr::V4(lab.daemon_addr), "echo saw {peer}; sandbox sent from {local}");

    // ICMP echo.
    for dst in [lab.far_addr, lab.outside_addr] {
        let (out, _) = ping_once(&sb, dst, Duration::from_secs(5));
        assert!(out.status.success(), "ping {dst} from {sb}: {}\n{}", text(&out.stdout), text(&out.stderr));
    }

    // A connection held open is listed by `nat ls` and counted.
    let far = lab.far_addr;
    let listener = in_netns(&lab.outside_ns, move || TcpListener::bind((far, 9000))).unwrap().unwrap();
    let mut client = in_netns(&sb, move || TcpStream::connect_timeout(&sa(far, 9000), Duration::from_secs(10)))
        .unwrap()
        .unwrap_or_else(|e| panic!("egress connect to {far}:9000: {e}"));
    let (mut server, _) = listener.accept().expect("accept the sandbox's connection");
    client.write_all(&[1u8; 1000]).unwrap();
    server.read_exact(&mut [0u8; 1000]).expect("the server gets the sandbox's 1000 bytes");
    server.write_all(&[2u8; 500]).unwrap();
    client.read_exact(&mut [0u8; 500]).expect("the sandbox gets the server's 500 bytes");
    let local = client.local_addr().unwrap();
    let flow = wait_until(
        Duration::from_secs(5),
        || format!("a flow of {local} with 1000/500 bytes in nat ls: {:#?}", d.nat_flows(None)),
        || {
            flows_of(d, local)
                .into_iter()
                .find(|f| as_u64(&f["bytes_from_sandbox"]) >= 1000 && as_u64(&f["bytes_to_sandbox"]) >= 500)
        },
    );
    assert_eq!(field(&flow, "direction"), "egress", "{flow:#}");
    assert_eq!(field(&flow, "remote_addr"), format!("{far}:9000"), "{flow:#}");
    assert_eq!(field(&flow, "outer_remote"), format!("{far}:9000"), "{flow:#}");
    assert_eq!(field(&flow, "state"), "established", "{flow:#}");
    assert!(flow.get("age_ms").is_some(), "{flow:#}");
    assert_eq!(d.nat_flows(Some(&net)).len(), d.nat_flows(None).len(), "nat ls NET should list this network's flows");
    assert!(d.metric_sum("vswitch_nat_flows_active").is_some_and(|n| n >= 1.0), "no active flow in the metrics");
    assert!(d.metric_sum("vswitch_nat_flows_opened_total").is_some_and(|n| n >= 5.0), "flows opened not counted");
    drop(client);
    drop(server);
    wait_until(
        Duration::from_secs(30),
        || format!("{local}'s flow to leave nat ls: {:#?}", flows_of(d, local)),
        || flows_of(d, local).is_empty().then_some(()),
    );
    lab.assert_rulesets_unchanged();
}

/// Drops for `reason` on `port`'s `stats` row.
fn port_drops(d: &Daemon, port: &str, reason: &str) -> u64 {
    let rows: Vec<ctl::proto::PortStats> = d.ctl_json(&["stats"]);
    rows.iter().filter(|r| r.port == port).map(|r| r.drops.get(reason).copied().unwrap_or(0)).sum()
}

#[test]
fn a_sandbox_translates_only_its_own_addresses() {
    if !prerequisites("a_sandbox_translates_only_its_own_addresses") {
        return;
    }
    let lab = Outside::start(&[]);
    let d = &lab.daemon;
    let (net, sb) = (d.name("n"), d.name("a"));
    d.network_create(&net, "10.233.0.0/24");
    d.sandbox_create(&sb);
    let ep = d.connect(&net, &sb, None);
    let echo = UdpEcho::start(&lab.outside_ns, lab.far_addr, 7);
    let own = udp_query(&sb, Ipv4Addr::UNSPECIFIED, sa(lab.far_addr, 7), b"own", Duration::from_secs(5));
    assert!(own.is_ok(), "no echo from the sandbox's own address: {own:?}; echo saw {:?}", echo.peers());
    assert_eq!(port_drops(d, &ep.port, "nat_spoofed_source"), 0);

    // An address of the subnet the switch did not give the sandbox.
    let claimed = Ipv4Addr::new(10, 233, 0, 99);
    vswitch::netns_exec_ok(&sb, "ip", &["addr", "add", "10.233.0.99/24", "dev", &ep.ifname]);
    let spoofed = udp_query(&sb, claimed, sa(lab.far_addr, 7), b"spoofed", Duration::from_secs(2));
    assert!(spoofed.is_err(), "a datagram from {claimed} was translated: {spoofed:?}");
    let drops = port_drops(d, &ep.port, "nat_spoofed_source");
    assert!(drops >= 1, "the datagram from {claimed} was not counted as nat_spoofed_source");
    let from_claimed = |f: &&Value| field(f, "sandbox_addr").starts_with(&format!("{claimed}:"));
    assert!(!d.nat_flows(None).iter().any(|f| from_claimed(&f)), "a flow opened for {claimed}");
    assert!(echo.peers().iter().all(|p| *p.ip() == lab.daemon_addr), "{:?}", echo.peers());
    // Its own address still works, beside the claimed one.
    let again = udp_query(&sb, Ipv4Addr::UNSPECIFIED, sa(lab.far_addr, 7), b"again", Duration::from_secs(5));
    assert!(again.is_ok(), "the sandbox's own address stopped working: {again:?}");
}

/// A sandbox on two networks whose socket is bound to its address on an
/// `--internal` one (which routes nothing: no source route) routes through
/// the other's gateway, its default route: Linux's weak host model, which
/// Docker's masquerade translates. The switch translates it too (answering
/// the ARP request for its gateway that carries the other network's
/// address), and the flow ends when the endpoint whose address it has
/// leaves, on whichever worker it runs.
#[test]
fn a_sandbox_on_two_networks_routes_from_either_address() {
    if !prerequisites("a_sandbox_on_two_networks_routes_from_either_address") {
        return;
    }
    let lab = Outside::start(&[]);
    let d = &lab.daemon;
    let (first, second, sb) = (d.name("f"), d.name("s"), d.name("a"));
    d.network_create(&first, "10.234.1.0/24");
    d.ctl_ok(&["network", "create", &second, "--subnet", "10.234.2.0/24", "--internal"]);
    d.sandbox_create(&sb);
    let via = d.connect(&first, &sb, None);
    let other = d.connect(&second, &sb, None);
    let bound = other.ipv4.expect("an IPv4 address on the second network").addr();
    let routes = vswitch::netns_exec_ok(&sb, "ip", &["-4", "route", "show", "default"]);
    assert!(routes.contains(&via.ifname), "the default route should use {}: {routes}", via.ifname);
    let echo = UdpEcho::start(&lab.outside_ns, lab.far_addr, 7);

    // First thing the sandbox sends: its ARP request for the first
    // network's gateway carries the second network's address.
    let (local, reply) = udp_query(&sb, bound, sa(lab.far_addr, 7), b"weak", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("no echo for a socket bound to {bound}: {e}; echo saw {:?}", echo.peers()));
    assert_eq!(local.ip(), std::net::IpAddr::V4(bound));
    assert!(reply.ends_with(" weak") && reply.starts_with(&format!("{}:", lab.daemon_addr)), "{reply}");
    assert_eq!(port_drops(d, &via.port, "nat_spoofed_source"), 0);
    let flows = d.nat_flows(Some(&first));
    let weak: Vec<&Value> = flows.iter().filter(|f| field(f, "sandbox_addr") == local.to_string()).collect();
    assert_eq!(weak.len(), 1, "one flow on {first} from {local}: {flows:#?}");
    // The sandbox's own address on that network still works beside it.
    let own = udp_query(&sb, Ipv4Addr::UNSPECIFIED, sa(lab.far_addr, 7), b"own", Duration::from_secs(5));
    assert!(own.is_ok(), "{own:?}");

    // The endpoint whose address the flow has leaves: the flow ends with it
    // (it would otherwise outlive the address, which the pool may give to
    // another sandbox).
    d.ctl_ok(&["network", "disconnect", &second, &sb]);
    wait_until(
        Duration::from_secs(5),
        || format!("the flow from {local} to end: {:#?}", d.nat_flows(None)),
        || (!d.nat_flows(None).iter().any(|f| field(f, "sandbox_addr") == local.to_string())).then_some(()),
    );
    assert!(
        d.nat_flows(None)
            .iter()
            .any(|f| field(f, "sandbox_addr").starts_with(&format!("{}:", via.ipv4.unwrap().addr()))),
        "the sandbox's own flow stays: {:#?}",
        d.nat_flows(None)
    );
    lab.assert_rulesets_unchanged();
}

/// A port published on a sandbox's network that does not carry its default
/// route is answered: the sandbox routes from its address there through
/// that network's gateway (source-based routing the switch sets up in the
/// sandbox), and a socket bound to that address leaves through it too.
/// When the endpoint leaves, so do its rules.
#[test]
fn a_port_published_on_a_sandboxs_second_network_is_answered_through_it() {
    if !prerequisites("a_port_published_on_a_sandboxs_second_network_is_answered_through_it") {
        return;
    }
    let lab = Outside::start(&[]);
    let d = &lab.daemon;
    let (first, second, sb) = (d.name("f"), d.name("s"), d.name("a"));
    d.network_create(&first, "10.235.1.0/24");
    d.network_create(&second, "10.235.2.0/24");
    d.sandbox_create(&sb);
    let via = d.connect(&first, &sb, None);
    let other = d.connect_publish(&second, &sb, &[&format!("{HOST_PORT}:80"), "5300:53/udp"]);
    let second_addr = other.ipv4.expect("an address on the second network").addr();
    let routes = vswitch::netns_exec_ok(&sb, "ip", &["-4", "route", "show", "default"]);
    assert!(routes.contains(&via.ifname) && !routes.contains(&other.ifname), "default via {}: {routes}", via.ifname);
    let _web = HttpServer::start(&sb, Ipv4Addr::UNSPECIFIED, 80, "second");
    let _echo = UdpEcho::start(&sb, second_addr, 53);

    // TCP and UDP clients outside reach the port and get the answers.
    let c = curl_ok(&lab.outside_ns, sa(lab.daemon_addr, HOST_PORT), "second");
    assert!(c.elapsed < CURL_MAX, "{c}");
    let (_, reply) = udp_query(&lab.outside_ns, Ipv4Addr::UNSPECIFIED, sa(lab.daemon_addr, 5300), b"q", FAST)
        .unwrap_or_else(|e| panic!("no answer from the UDP port published on {second}: {e}"));
    assert!(reply.ends_with(" q"), "{reply}");
    for (port, reason) in [(&via.port, "nat_spoofed_source"), (&other.port, "nat_spoofed_source")] {
        assert_eq!(port_drops(d, port, reason), 0, "{port}");
    }

    // A socket bound to the second address leaves through its gateway.
    let echo = UdpEcho::start(&lab.outside_ns, lab.far_addr, 7);
    let (local, _) = udp_query(&sb, second_addr, sa(lab.far_addr, 7), b"bound", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("no echo for a socket bound to {second_addr}: {e}; echo saw {:?}", echo.peers()));
    let on_second = d.nat_flows(Some(&second));
    assert!(on_second.iter().any(|f| field(f, "sandbox_addr") == local.to_string()), "{on_second:#?}");

    // Its rules leave with the endpoint; the sandbox's own stay.
    let rules = || vswitch::netns_exec_ok(&sb, "ip", &["-4", "rule", "show"]);
    let before = rules();
    assert!(before.contains(&format!("from {second_addr} lookup")), "{before}");
    d.ctl_ok(&["network", "disconnect", &second, &sb]);
    let after = rules();
    assert!(!after.contains(&second_addr.to_string()), "{after}");
    assert!(after.contains(&format!("from {} lookup", via.ipv4.unwrap().addr())), "{after}");
    lab.assert_rulesets_unchanged();
}

/// Asserts that `ping` and `curl` from `sb` to `dst` fail at once with an
/// unreachable error.
#[track_caller]
fn assert_unreachable_fast(sb: &str, dst: Ipv4Addr) {
    let (out, elapsed) = ping_once(sb, dst, Duration::from_secs(5));
    let said = format!("{}\n{}", text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "ping {dst} from {sb} got an answer:\n{said}");
    assert!(elapsed < FAST, "ping {dst} from {sb} took {elapsed:?} to fail (no ICMP unreachable?):\n{said}");
    assert!(said.to_lowercase().contains("unreachable"), "ping {dst} from {sb} should say unreachable:\n{said}");
    let c = curl(sb, sa(dst, 80), CURL_MAX);
    assert!(!c.ok, "{c}");
    assert!(c.elapsed < FAST, "curl should fail fast: {c}");
    let err = c.stderr.to_lowercase();
    assert!(err.contains("unreachable") || err.contains("couldn't connect"), "{c}");
}

#[test]
fn networks_without_egress_and_unroutable_destinations_fail_fast() {
    if !prerequisites("networks_without_egress_and_unroutable_destinations_fail_fast") {
        return;
    }
    let lab = Outside::start(&[]);
    let d = &lab.daemon;
    let _web = HttpServer::start(&lab.outside_ns, Ipv4Addr::UNSPECIFIED, 80, "outside");
    let (internal, off, on) = (d.name("i"), d.name("f"), d.name("e"));
    d.ctl_ok(&["network", "create", &internal, "--subnet", "10.227.1.0/24", "--internal"]);
    d.ctl_ok(&["network", "create", &off, "--subnet", "10.227.2.0/24", "-o", "egress=false"]);
    d.network_create(&on, "10.227.3.0/24");
    let (a, b, c) = (d.name("a"), d.name("b"), d.name("c"));
    for (net, sb) in [(&internal, &a), (&off, &b), (&on, &c)] {
        d.sandbox_create(sb);
        d.connect(net, sb, None);
    }
    assert_unreachable_fast(&a, lab.far_addr);
    assert_unreachable_fast(&b, lab.far_addr);
    // Egress on: the far address answers, an address with no route does not.
    curl_ok(&c, sa(lab.far_addr, 80), "outside");
    assert_unreachable_fast(&c, Ipv4Addr::new(203, 0, 113, 1));
    lab.assert_rulesets_unchanged();
}

#[test]
fn published_tcp_port_keeps_the_client_address_and_port_lists_and_unpublishes() {
    if !prerequisites("published_tcp_port_keeps_the_client_address_and_port_lists_and_unpublishes") {
        return;
    }
    let lab = Outside::start(&[]);
    let d = &lab.daemon;
    let (net, sb) = (d.name("n"), d.name("w"));
    d.network_create(&net, "10.228.0.0/24");
    d.sandbox_create(&sb);
    let web = HttpServer::start(&sb, Ipv4Addr::UNSPECIFIED, 80, "inside");
    d.connect_publish(&net, &sb, &["8080:80", "127.0.0.1:8081:80", "9000-9001:90-91", "5353:53/udp"]);

    // From the daemon's namespace: loopback, the veth address, the host-IP-bound publishing.
    curl_ok(&lab.daemon_ns, sa(Ipv4Addr::LOCALHOST, HOST_PORT), "inside");
    curl_ok(&lab.daemon_ns, sa(lab.daemon_addr, HOST_PORT), "inside");
    curl_ok(&lab.daemon_ns, sa(Ipv4Addr::LOCALHOST, 8081), "inside");
    // From outside: the server sees the client's own address and port.
    let c = curl_ok(&lab.outside_ns, sa(lab.daemon_addr, HOST_PORT), "inside");
    let seen = *web.clients().last().expect("the server logged the request");
    assert_eq!(
        *seen.ip(),
        lab.outside_addr,
        "the sandbox should see the outside client's address; log:\n{}",
        web.log()
    );
    if let Some(port) = c.local_port {
        assert_eq!(seen.port(), port, "the sandbox should see the client's port; {c}");
    }
    // 127.0.0.1:8081 is bound to loopback only.
    assert!(
        !curl(&lab.outside_ns, sa(lab.daemon_addr, 8081), Duration::from_secs(3)).ok,
        "8081 reachable from outside"
    );

    // `docker port` output: a port on every address is listened on [::]
    // too (the daemon's namespace has IPv6), and listed as Docker lists it.
    assert_eq!(
        port_lines(d, &[&sb]),
        sorted(&[
            "80/tcp -> 0.0.0.0:8080",
            "80/tcp -> [::]:8080",
            "80/tcp -> 127.0.0.1:8081",
            "90/tcp -> 0.0.0.0:9000",
            "90/tcp -> [::]:9000",
            "91/tcp -> 0.0.0.0:9001",
            "91/tcp -> [::]:9001",
            "53/udp -> 0.0.0.0:5353",
            "53/udp -> [::]:5353"
        ])
    );
    assert_eq!(port_lines(d, &[&sb, "80"]), sorted(&["0.0.0.0:8080", "[::]:8080", "127.0.0.1:8081"]));
    assert_eq!(port_lines(d, &[&sb, "80/tcp"]), sorted(&["0.0.0.0:8080", "[::]:8080", "127.0.0.1:8081"]));
    assert_eq!(port_lines(d, &[&sb, "53/udp"]), sorted(&["0.0.0.0:5353", "[::]:5353"]));
    d.ctl_err(&["port", &sb, "99"]);

    // Publish and unpublish on the running sandbox.
    d.ctl_ok(&["sandbox", "unpublish", &sb, "-p", "127.0.0.1:8081:80"]);
    assert_eq!(port_lines(d, &[&sb, "80"]), sorted(&["0.0.0.0:8080", "[::]:8080"]));
    assert!(refused(&lab.daemon_ns, sa(Ipv4Addr::LOCALHOST, 8081)), "8081 still accepts after unpublish");
    d.ctl_ok(&["sandbox", "publish", &sb, "-p", "8082:80"]);
    curl_ok(&lab.outside_ns, sa(lab.daemon_addr, 8082), "inside");
    assert!(port_lines(d, &[&sb, "80"]).contains(&"0.0.0.0:8082".to_owned()));
    // Disconnecting ends the publishings.
    d.ctl_ok(&["network", "disconnect", &net, &sb]);
    assert!(refused(&lab.daemon_ns, sa(lab.daemon_addr, HOST_PORT)), "8080 still accepts after disconnect");
    lab.assert_rulesets_unchanged();
}

/// Docker's `-o com.docker.network.bridge.host_binding_ipv4=127.0.0.1`:
/// ports published on the network without a host address listen on the
/// loopback only (reachable from the daemon's namespace by 127.0.0.1, not
/// from outside), at connect and by `sandbox publish`, are listed so, and
/// are unpublished as they were asked for.
#[test]
fn a_host_binding_network_publishes_on_its_address_only() {
    if !prerequisites("a_host_binding_network_publishes_on_its_address_only") {
        return;
    }
    let lab = Outside::start(&[]);
    let d = &lab.daemon;
    let (net, sb) = (d.name("lo"), d.name("w"));
    let binding = "com.docker.network.bridge.host_binding_ipv4=127.0.0.1";
    d.ctl_ok(&["network", "create", "--subnet", "10.228.3.0/24", "-o", binding, &net]);
    d.sandbox_create(&sb);
    let _web = HttpServer::start(&sb, Ipv4Addr::UNSPECIFIED, 80, "inside");
    d.connect_publish(&net, &sb, &["8085:80"]);
    d.ctl_ok(&["sandbox", "publish", &sb, "-p", "8086:80"]);
    for port in [8085, 8086] {
        curl_ok(&lab.daemon_ns, sa(Ipv4Addr::LOCALHOST, port), "inside");
        assert!(
            !curl(&lab.outside_ns, sa(lab.daemon_addr, port), Duration::from_secs(3)).ok,
            "{port} reachable from outside"
        );
    }
    assert_eq!(port_lines(d, &[&sb, "80"]), sorted(&["127.0.0.1:8085", "127.0.0.1:8086"]));
    // Naming every address publishes on every address, as in Docker.
    d.ctl_ok(&["sandbox", "publish", &sb, "-p", "0.0.0.0:8087:80"]);
    curl_ok(&lab.outside_ns, sa(lab.daemon_addr, 8087), "inside");
    assert!(port_lines(d, &[&sb, "80"]).contains(&"0.0.0.0:8087".to_owned()), "{:?}", port_lines(d, &[&sb, "80"]));
    // `-p 8087:80` is 127.0.0.1:8087 here: not what is published.
    let err = d.ctl_err(&["sandbox", "unpublish", &sb, "-p", "8087:80"]);
    assert!(err.contains("127.0.0.1:8087:80"), "{err}");
    // One mapping named twice is closed once.
    d.ctl_ok(&["sandbox", "unpublish", &sb, "-p", "8086:80", "-p", "127.0.0.1:8086:80", "-p", "0.0.0.0:8087:80"]);
    for port in [8086, 8087] {
        assert!(refused(&lab.daemon_ns, sa(Ipv4Addr::LOCALHOST, port)), "{port} still accepts after unpublish");
    }
    assert_eq!(port_lines(d, &[&sb, "80"]), ["127.0.0.1:8085"]);
    lab.assert_rulesets_unchanged();
}

#[test]
fn published_udp_port_keeps_the_client_address_and_port() {
    if !prerequisites("published_udp_port_keeps_the_client_address_and_port") {
        return;
    }
    let lab = Outside::start(&[]);
    let d = &lab.daemon;
    let (net, sb) = (d.name("n"), d.name("u"));
    d.network_create(&net, "10.229.0.0/24");
    d.sandbox_create(&sb);
    let echo = UdpEcho::start(&sb, Ipv4Addr::UNSPECIFIED, 53);
    d.connect_publish(&net, &sb, &["5353:53/udp"]);
    for i in 0..3 {
        let payload = format!("ping {i}");
        let (local, reply) = udp_query(
            &lab.outside_ns,
            lab.outside_addr,
            sa(lab.daemon_addr, 5353),
            payload.as_bytes(),
            Duration::from_secs(5),
        )
        .unwrap_or_else(|e| panic!("no UDP answer through the published port: {e}; echo saw {:?}", echo.peers()));
        assert_eq!(reply, format!("{local} {payload}"), "the sandbox should see the client's address and port");
    }
    // From the daemon's own namespace too.
    let (_, reply) =
        udp_query(&lab.daemon_ns, Ipv4Addr::LOCALHOST, sa(Ipv4Addr::LOCALHOST, 5353), b"local", Duration::from_secs(5))
            .expect("UDP answer from the daemon's namespace");
    assert!(reply.ends_with(" local"), "{reply:?}");
    assert!(
        d.nat_flows(None).iter().any(|f| field(f, "proto") == "udp" && field(f, "direction") == "inbound"),
        "no inbound UDP flow in nat ls: {:#?}",
        d.nat_flows(None)
    );
    lab.assert_rulesets_unchanged();
}

/// The sandbox's endpoints, from `sandbox ls`.
fn endpoints_of(d: &Daemon, sb: &str) -> usize {
    let all: Vec<SandboxInfo> = d.ctl_json(&["sandbox", "ls"]);
    all.iter().find(|s| s.name == sb).map_or(0, |s| s.endpoints.len())
}

#[test]
fn host_port_in_use_is_a_clear_error_and_nothing_is_half_applied() {
    if !prerequisites("host_port_in_use_is_a_clear_error_and_nothing_is_half_applied") {
        return;
    }
    let lab = Outside::start(&[]);
    let d = &lab.daemon;
    let (net, sb) = (d.name("n"), d.name("b"));
    d.network_create(&net, "10.230.0.0/24");
    d.sandbox_create(&sb);
    let _web = HttpServer::start(&sb, Ipv4Addr::UNSPECIFIED, 80, "inside");
    // Someone else holds 8080 in the daemon's namespace.
    let squatter = HttpServer::start(&lab.daemon_ns, Ipv4Addr::UNSPECIFIED, HOST_PORT, "squatter");

    let err = d.ctl_err(&["network", "connect", &net, &sb, "-p", "8081:80", "-p", "8080:80"]);
    assert!(err.contains("8080"), "the error should name the port: {err}");
    assert!(err.to_lowercase().contains("in use"), "the error should say the port is in use: {err}");
    assert_eq!(endpoints_of(d, &sb), 0, "the sandbox was connected anyway");
    assert!(refused(&lab.daemon_ns, sa(lab.daemon_addr, 8081)), "8081 was published although the connect failed");
    curl_ok(&lab.daemon_ns, sa(lab.daemon_addr, HOST_PORT), "squatter");

    // Connected without publishing, a publish of the taken port fails alike.
    d.connect(&net, &sb, None);
    let err = d.ctl_err(&["sandbox", "publish", &sb, "-p", "8082:80", "-p", "8080:80"]);
    assert!(err.contains("8080") && err.to_lowercase().contains("in use"), "{err}");
    assert!(port_lines(d, &[&sb]).is_empty(), "a failed publish left: {:?}", port_lines(d, &[&sb]));
    assert!(refused(&lab.daemon_ns, sa(lab.daemon_addr, 8082)), "8082 was published although the publish failed");

    // Once the port is free, the same publish works.
    drop(squatter);
    d.ctl_ok(&["sandbox", "publish", &sb, "-p", "8080:80"]);
    curl_ok(&lab.outside_ns, sa(lab.daemon_addr, HOST_PORT), "inside");
}

/// The one host port `vswitchctl port SB SPEC` lists on `ip`.
fn listed_port(d: &Daemon, sb: &str, spec: &str, ip: &str) -> u16 {
    let lines = port_lines(d, &[sb, spec]);
    let port = lines.iter().find_map(|l| l.strip_prefix(ip)?.strip_prefix(':')?.parse().ok());
    port.unwrap_or_else(|| panic!("no {ip} host port for {spec} in {lines:?}"))
}

#[test]
fn random_and_range_host_ports_are_free_listed_reachable_kept_after_kill_9_and_unpublished_by_container_port() {
    if !prerequisites(
        "random_and_range_host_ports_are_free_listed_reachable_kept_after_kill_9_and_unpublished_by_container_port",
    ) {
        return;
    }
    let mut lab = Outside::start(&[]);
    let (net, sb, other) = (lab.daemon.name("n"), lab.daemon.name("w"), lab.daemon.name("o"));
    let range = in_netns(&lab.daemon_ns, || std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range"))
        .expect("netns")
        .expect("ip_local_port_range");
    let bounds: Vec<u16> = range.split_whitespace().map(|p| p.parse().expect("port")).collect();
    let d = &lab.daemon;
    d.network_create(&net, "10.232.0.0/24");
    for s in [&sb, &other] {
        d.sandbox_create(s);
    }
    let _web = HttpServer::start(&sb, Ipv4Addr::UNSPECIFIED, 80, "inside");
    let _other_web = HttpServer::start(&other, Ipv4Addr::UNSPECIFIED, 80, "other");
    let _echo = UdpEcho::start(&sb, Ipv4Addr::UNSPECIFIED, 53);
    // Docker's three ways of leaving the host port out.
    let info = d.connect_publish(&net, &sb, &["80", "127.0.0.1::80", "0:53/udp"]);
    assert!(info.publish.iter().all(|m| m.host_port != 0), "the reply lists a port 0: {:?}", info.publish);
    let any = listed_port(d, &sb, "80", "0.0.0.0");
    let local = listed_port(d, &sb, "80", "127.0.0.1");
    let udp = listed_port(d, &sb, "53/udp", "0.0.0.0");
    assert_ne!(any, local, "0.0.0.0 and 127.0.0.1 share the port's IPv4 loopback");
    for port in [any, local, udp] {
        assert!((bounds[0]..=bounds[1]).contains(&port), "port {port} is outside ip_local_port_range {range:?}");
    }
    curl_ok(&lab.outside_ns, sa(lab.daemon_addr, any), "inside");
    curl_ok(&lab.daemon_ns, sa(Ipv4Addr::LOCALHOST, local), "inside");
    let (client, reply) =
        udp_query(&lab.outside_ns, lab.outside_addr, sa(lab.daemon_addr, udp), b"r", Duration::from_secs(5))
            .expect("the random UDP port answers");
    assert_eq!(reply, format!("{client} r"));
    // Another sandbox asking for the same container port gets another host port.
    d.connect_publish(&net, &other, &["80"]);
    let others = listed_port(d, &other, "80", "0.0.0.0");
    // (TCP and UDP ports are separate spaces: `udp` may share a number.)
    assert!(![any, local].contains(&others), "{others} was given twice");
    curl_ok(&lab.outside_ns, sa(lab.daemon_addr, others), "other");

    // The chosen ports are the state: the same after kill -9.
    let before = port_lines(d, &[&sb]);
    lab.daemon.restart();
    assert_eq!(port_lines(&lab.daemon, &[&sb]), before, "random ports changed across the restart");
    wait_curl(&lab.outside_ns, sa(lab.daemon_addr, any));

    // `-p 80` closes what `-p 80` opened: the first 0.0.0.0 mapping of 80/tcp.
    lab.daemon.ctl_ok(&["sandbox", "unpublish", &sb, "-p", "80"]);
    assert_eq!(port_lines(&lab.daemon, &[&sb, "80"]), [format!("127.0.0.1:{local}")]);
    assert!(refused(&lab.daemon_ns, sa(lab.daemon_addr, any)), "{any} still accepts after unpublish -p 80");
    let err = lab.daemon.ctl_err(&["sandbox", "unpublish", &sb, "-p", "80"]);
    assert!(err.contains("not published"), "{err}");
    curl_ok(&lab.daemon_ns, sa(Ipv4Addr::LOCALHOST, local), "inside");

    // A host range for one container port: its lowest free port. The
    // daemon's namespace is the test's own, so these ports are free but
    // for the one a squatter holds.
    let squatter = in_netns(&lab.daemon_ns, || TcpListener::bind((Ipv4Addr::LOCALHOST, 47_000))).unwrap().unwrap();
    lab.daemon.ctl_ok(&["sandbox", "publish", &sb, "-p", "127.0.0.1:47000-47003:80"]);
    assert!(port_lines(&lab.daemon, &[&sb, "80"]).contains(&"127.0.0.1:47001".to_owned()));
    curl_ok(&lab.daemon_ns, sa(Ipv4Addr::LOCALHOST, 47_001), "inside");
    let before = port_lines(&lab.daemon, &[&sb]);
    let err = lab.daemon.ctl_err(&["sandbox", "publish", &sb, "-p", "127.0.0.1:47000-47001:80"]);
    assert!(err.contains("no free host port in 47000-47001"), "{err}");
    assert_eq!(port_lines(&lab.daemon, &[&sb]), before, "a refused range changed the mappings");
    lab.daemon.ctl_ok(&["sandbox", "unpublish", &sb, "-p", "127.0.0.1:47000-47003:80"]);
    assert!(refused(&lab.daemon_ns, sa(Ipv4Addr::LOCALHOST, 47_001)), "47001 still accepts after unpublish");
    drop(squatter);
}

#[test]
fn publishings_work_again_after_kill_9() {
    if !prerequisites("publishings_work_again_after_kill_9") {
        return;
    }
    let mut lab = Outside::start(&[]);
    let (net, sb) = (lab.daemon.name("n"), lab.daemon.name("r"));
    lab.daemon.network_create(&net, "10.237.0.0/24");
    lab.daemon.sandbox_create(&sb);
    let _web = HttpServer::start(&sb, Ipv4Addr::UNSPECIFIED, 80, "inside");
    let _echo = UdpEcho::start(&sb, Ipv4Addr::UNSPECIFIED, 53);
    lab.daemon.connect_publish(&net, &sb, &["8080:80", "5353:53/udp"]);
    curl_ok(&lab.outside_ns, sa(lab.daemon_addr, HOST_PORT), "inside");
    let before = port_lines(&lab.daemon, &[&sb]);

    lab.daemon.restart();
    wait_curl(&lab.outside_ns, sa(lab.daemon_addr, HOST_PORT));
    let (local, reply) =
        udp_query(&lab.outside_ns, lab.outside_addr, sa(lab.daemon_addr, 5353), b"again", Duration::from_secs(5))
            .expect("the published UDP port answers after the restart");
    assert_eq!(reply, format!("{local} again"));
    assert_eq!(port_lines(&lab.daemon, &[&sb]), before, "`port` changed across the restart");
    // Egress too.
    let _out = HttpServer::start(&lab.outside_ns, Ipv4Addr::UNSPECIFIED, 80, "outside");
    wait_curl(&sb, sa(lab.far_addr, 80));
}

#[test]
fn a_service_balances_over_its_replicas_and_skips_gone_and_refusing_ones() {
    if !prerequisites("a_service_balances_over_its_replicas_and_skips_gone_and_refusing_ones") {
        return;
    }
    let lab = Outside::start(&[]);
    let d = &lab.daemon;
    let net = d.name("n");
    d.network_create(&net, "10.238.0.0/24");
    let names: Vec<String> = (1..=3).map(|i| d.name(&format!("r{i}"))).collect();
    let mut servers = Vec::new();
    for n in &names {
        d.sandbox_create(n);
        servers.push(HttpServer::start(n, Ipv4Addr::UNSPECIFIED, 80, n));
        d.ctl_ok(&["network", "connect", &net, n, "--service", "web"]);
    }
    d.ctl_ok(&["service", "publish", "web", "--network", &net, "-p", "8080:80"]);
    let svc = sa(lab.daemon_addr, HOST_PORT);
    let answers = |n: usize| -> Vec<String> {
        (0..n)
            .map(|_| {
                let c = curl(&lab.outside_ns, svc, CURL_MAX);
                assert!(c.ok, "a request through the service failed: {c}");
                c.body.trim().to_owned()
            })
            .collect()
    };
    let got = answers(9);
    for n in &names {
        assert!(got.iter().filter(|g| *g == n).count() >= 2, "{n} answered too few of {got:?}");
    }
    let ls = d.ctl_ok(&["service", "ls"]);
    assert!(ls.contains("web"), "service ls:\n{ls}");

    // A disconnected replica gets nothing more.
    d.ctl_ok(&["network", "disconnect", &net, &names[0]]);
    let seen_by_first = servers[0].clients().len();
    let got = answers(6);
    assert!(!got.contains(&names[0]), "the disconnected replica answered: {got:?}");
    assert!(got.contains(&names[1]) && got.contains(&names[2]), "{got:?}");
    assert_eq!(servers[0].clients().len(), seen_by_first, "the disconnected replica still got requests");

    // A replica that refuses is skipped: every request still succeeds.
    servers[1].stop();
    let got = answers(6);
    assert!(got.iter().all(|g| *g == names[2]), "{got:?}");

    d.ctl_ok(&["service", "rm", "web"]);
    assert!(refused(&lab.outside_ns, svc), "the service's port still accepts after service rm");
    assert!(!d.ctl_ok(&["service", "ls"]).contains("web"));
}

// ---------------------------------------------------------------------------- scale

/// Connections held in each direction (`NAT_SCALE_CONNS` overrides).
fn scale_conns() -> usize {
    std::env::var("NAT_SCALE_CONNS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000)
}

/// Both ends of `n` TCP connections through the switch, each held by a
/// python process (each may hold only as many sockets as its open-file
/// limit, and raising the hard limit needs a capability that containers
/// often lack).
struct Held {
    clients: TcpHolder,
    servers: TcpSink,
}

impl Held {
    /// Closes the clients' ends, then the servers'.
    fn close(self) {
        self.clients.close();
        self.servers.close();
    }
}

/// Opens `n` connections from `client_ns` to `target`, accepted by a
/// listener on `listen` in `server_ns`, and waits until all are accepted.
fn hold(server_ns: &str, listen: SocketAddrV4, client_ns: &str, target: SocketAddr, n: usize) -> Held {
    let servers = TcpSink::start(server_ns, *listen.ip(), listen.port(), n);
    let start = Instant::now();
    let clients = TcpHolder::open(client_ns, target, n, Duration::from_secs(300));
    servers.wait_accepted(Duration::from_secs(60));
    note(&format!("{n} connections to {target} held after {:?}; the client said:\n{}", start.elapsed(), clients.log()));
    Held { clients, servers }
}

/// The daemon's flows and the `vswitch_nat_flows_active` metric.
fn flow_counts(d: &Daemon) -> (usize, f64) {
    (d.nat_flows(None).len(), d.metric_sum("vswitch_nat_flows_active").unwrap_or(-1.0))
}

/// Holds `n` connections, checks them counted, closes them, waits for the
/// tables to empty and the RSS to come back; returns the RSS delta per
/// connection while held, in bytes.
fn hold_and_release(
    lab: &Outside,
    what: &str,
    server_ns: &str,
    listen: SocketAddrV4,
    client_ns: &str,
    target: SocketAddr,
    n: usize,
) -> f64 {
    let d = &lab.daemon;
    let pid = d.pid().expect("daemon pid");
    // Anonymous memory: what the daemon allocates. File-backed pages (the
    // binary's code, ~15 MB of a debug build) grow as code paths run for
    // the first time and are not per connection.
    let base = rss_anon_kib(pid).expect("daemon RSS");
    let start_rss = rss_kib(pid).expect("daemon RSS");
    let held = hold(server_ns, listen, client_ns, target, n);
    let (listed, active) = wait_until(
        Duration::from_secs(30),
        || format!("{n} {what} flows listed and active: {:?}", flow_counts(d)),
        || {
            let (l, a) = flow_counts(d);
            (l >= n && a >= n as f64).then_some((l, a))
        },
    );
    let at_peak = rss_anon_kib(pid).expect("daemon RSS");
    let per_conn = (at_peak.saturating_sub(base) as f64 * 1024.0) / n as f64;
    note(&format!(
        "{what}: {n} connections held: {listed} flows listed, {active} active; daemon anonymous RSS {base} KiB -> {at_peak} KiB, {per_conn:.0} bytes per connection"
    ));
    held.close();
    wait_until(
        Duration::from_secs(60),
        || format!("{what}: flow table to empty after closing: (listed, active) = {:?}", flow_counts(d)),
        || (flow_counts(d) == (0, 0.0)).then_some(()),
    );
    // The issue's criterion, "RSS back within 10% of its starting level",
    // applied to the memory that can leak: anonymous memory may end at most
    // a tenth of the starting RSS above where it started.
    let limit = base + start_rss / 10;
    let after = vswitch::wait::wait_for(Duration::from_secs(15), || rss_anon_kib(pid).filter(|&r| r <= limit));
    if let Some(after) = after {
        note(&format!(
            "{what}: daemon anonymous RSS {after} KiB after closing (start {base} KiB of {start_rss} KiB RSS, limit {limit} KiB)"
        ));
    }
    assert!(
        after.is_some(),
        "{what}: daemon anonymous RSS {} KiB did not return within 10% of the starting RSS ({start_rss} KiB) above {base} KiB after closing {n} connections",
        rss_anon_kib(pid).unwrap_or(0),
    );
    per_conn
}

#[test]
fn ten_thousand_connections_through_egress_and_a_published_port_leave_nothing_behind() {
    if !prerequisites("ten_thousand_connections_through_egress_and_a_published_port_leave_nothing_behind") {
        return;
    }
    let n = scale_conns();
    // This process holds the servers' ends, a python process the clients',
    // the daemon (which inherits the limit) one host socket per connection.
    let limit = raise_nofile((n + 1024) as u64).expect("raise RLIMIT_NOFILE");
    assert!(limit >= (n + 256) as u64, "the open-file limit {limit} is too low for {n} connections");
    let lab = Outside::start(&[]);
    let d = &lab.daemon;
    let (net, sb) = (d.name("n"), d.name("s"));
    d.network_create(&net, "10.239.0.0/24");
    d.sandbox_create(&sb);
    d.connect_publish(&net, &sb, &["8080:9100"]);
    // Warm up each direction once, so lazily made structures count in the base.
    let far = lab.far_addr;
    for (server_ns, listen, client_ns, target) in [
        (lab.outside_ns.as_str(), SocketAddrV4::new(far, 9101), sb.as_str(), sa(far, 9101)),
        (
            sb.as_str(),
            SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 9100),
            lab.outside_ns.as_str(),
            sa(lab.daemon_addr, HOST_PORT),
        ),
    ] {
        hold(server_ns, listen, client_ns, target, 1).close();
    }
    wait_until(
        Duration::from_secs(30),
        || format!("warm-up flows to close: {:?}", flow_counts(d)),
        || (flow_counts(d).0 == 0).then_some(()),
    );
    let egress = hold_and_release(&lab, "egress", &lab.outside_ns, SocketAddrV4::new(far, 9101), &sb, sa(far, 9101), n);
    let inbound = hold_and_release(
        &lab,
        "published port",
        &sb,
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 9100),
        &lab.outside_ns,
        sa(lab.daemon_addr, HOST_PORT),
        n,
    );
    note(&format!(
        "per-connection daemon RSS at {n} idle connections: egress {egress:.0} B, published port {inbound:.0} B \
         (target <= 16384 B; kernel socket buffers are not in RSS)"
    ));
}

#[test]
fn bulk_streams_cross_the_translator_intact_both_ways() {
    if !prerequisites("bulk_streams_cross_the_translator_intact_both_ways") {
        return;
    }
    const LEN: u64 = 24 << 20;
    let lab = Outside::start(&[]);
    let d = &lab.daemon;
    let (net, sb) = (d.name("n"), d.name("b"));
    d.network_create(&net, "10.227.0.0/24");
    d.sandbox_create(&sb);
    d.connect_publish(&net, &sb, &["9300-9301:9300-9301"]);
    let far = lab.far_addr;
    let (outside, sandbox) = (lab.outside_ns.as_str(), sb.as_str());
    // A port per transfer: nothing of one connection lingers in the next.
    let (published, any) = (|p| sa(lab.daemon_addr, p), |p| sa(Ipv4Addr::UNSPECIFIED, p));
    transfer_checked("egress upload", outside, sa(far, 9200), sandbox, sa(far, 9200), LEN, false);
    transfer_checked("egress download", outside, sa(far, 9201), sandbox, sa(far, 9201), LEN, true);
    transfer_checked("published upload", sandbox, any(9300), outside, published(9300), LEN, false);
    transfer_checked("published download", sandbox, any(9301), outside, published(9301), LEN, true);
    wait_until(
        Duration::from_secs(20),
        || format!("flows to end: {:#?}", d.nat_flows(None)),
        || d.nat_flows(None).iter().all(|f| field(f, "proto") != "tcp").then_some(()),
    );
}

/// UDP datagrams larger than the sandbox's MTU cross the translator whole
/// both ways: the sandbox sends them in IP fragments, which the translator
/// makes whole before sending them on, and the translator fragments the
/// ones it receives for the sandbox, whose kernel makes them whole. A
/// client's 3,000-byte question to a published UDP port and the
/// sandbox's 3,000-byte answer, and a 3,000-byte datagram through egress
/// to a server outside and its 3,000-byte answer, all arrive intact.
/// Nothing is counted as a dropped fragment or an oversize frame.
#[test]
fn fragmented_udp_datagrams_cross_the_translator_whole_both_ways() {
    if !prerequisites("fragmented_udp_datagrams_cross_the_translator_whole_both_ways") {
        return;
    }
    let lab = Outside::start(&[]);
    let d = &lab.daemon;
    let (net, sb) = (d.name("n"), d.name("f"));
    d.network_create(&net, "10.235.0.0/24");
    d.sandbox_create(&sb);
    let big: Vec<u8> = (0..3000u32).map(|i| b'a' + (i % 26) as u8).collect();
    // In the sandbox: a server that answers one question with `big`.
    let server = in_netns(&sb, || std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 53))).unwrap().unwrap();
    let answer = big.clone();
    let answering = std::thread::spawn(move || -> std::io::Result<(Vec<u8>, usize)> {
        let mut buf = vec![0u8; 65536];
        let (n, from) = vswitch::recv_within(&server, Duration::from_secs(10), |s| s.recv_from(&mut buf))?;
        Ok((buf[..n].to_vec(), server.send_to(&answer, from)?))
    });
    let info = d.connect_publish(&net, &sb, &["5353:53/udp"]);
    let own = info.ipv4.expect("an IPv4 address").addr();

    let (outside_addr, far_addr) = (lab.outside_addr, lab.far_addr);
    let client = in_netns(&lab.outside_ns, move || std::net::UdpSocket::bind((outside_addr, 0))).unwrap().unwrap();
    let question: Vec<u8> = big.iter().rev().copied().collect();
    client.send_to(&question, sa(lab.daemon_addr, 5353)).unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = vswitch::recv_within(&client, Duration::from_secs(10), |s| s.recv_from(&mut buf))
        .expect("the 3,000-byte answer reaches the client");
    let (asked, sent) = answering.join().unwrap().unwrap();
    assert_eq!(asked, question, "the question, fragmented by the translator, reached the sandbox whole");
    assert_eq!(sent, 3000, "sent whole by the sandbox's socket");
    assert_eq!(&buf[..n], &big[..], "the answer, fragmented by the sandbox, arrives whole");

    let far = in_netns(&lab.outside_ns, move || std::net::UdpSocket::bind((far_addr, 7007))).unwrap().unwrap();
    let sender = in_netns(&sb, move || std::net::UdpSocket::bind((own, 0))).unwrap().unwrap();
    sender.send_to(&big, sa(lab.far_addr, 7007)).unwrap();
    let (n, from) = vswitch::recv_within(&far, Duration::from_secs(10), |s| s.recv_from(&mut buf))
        .expect("the 3,000-byte datagram reaches the server outside");
    assert_eq!(&buf[..n], &big[..], "whole and intact");
    assert_eq!(from.ip(), lab.daemon_addr, "from the daemon's address, translated");
    // A large answer and a small one right behind it: the large one goes
    // to the sandbox in fragments, and still first.
    far.send_to(&question, from).unwrap();
    far.send_to(b"after", from).unwrap();
    let (n, _) = vswitch::recv_within(&sender, Duration::from_secs(10), |s| s.recv_from(&mut buf))
        .expect("the server's 3,000-byte answer reaches the sandbox");
    assert!(
        buf[..n] == question[..],
        "{n} bytes ({:?}...) came where the 3,000-byte answer was due first",
        &buf[..n.min(8)]
    );
    let (n, _) = vswitch::recv_within(&sender, Duration::from_secs(10), |s| s.recv_from(&mut buf))
        .expect("the small answer reaches the sandbox");
    assert_eq!(&buf[..n], b"after");
    // Echo replies wider than the MTU come back in fragments too (through
    // a raw ICMP socket: a fresh namespace allows no ping socket).
    let out = vswitch::netns_exec(
        &sb,
        "ping",
        &["-n", "-c", "3", "-i", "0.2", "-W", "5", "-s", "3000", &lab.far_addr.to_string()],
    );
    assert!(out.status.success(), "3,000-byte pings: {}\n{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("3 received"), "{}", text(&out.stdout));
    assert_eq!(d.drops_of(&info.port, "nat_fragments"), 0);
    let gateway = format!("gw:{net}");
    assert_eq!(d.drops_of(&gateway, "oversize"), 0, "nothing over the MTU toward the sandbox");
}

/// Makes every send on `socket` a UDP GSO train of `segment`-byte
/// datagrams (`UDP_SEGMENT`), as QUIC stacks send.
fn set_udp_segment(socket: &std::net::UdpSocket, segment: u16) {
    use std::os::fd::AsRawFd;
    let value = libc::c_int::from(segment);
    // SAFETY: a c_int option value, of the size given, on a live socket.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "UDP_SEGMENT: {}", std::io::Error::last_os_error());
}

/// Receives `n` datagrams on `socket` (10 s each at most).
fn receive_datagrams(socket: &std::net::UdpSocket, n: usize) -> Vec<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0u8; 65536];
    (0..n)
        .map(|k| {
            let (len, from) = vswitch::recv_within(socket, Duration::from_secs(10), |s| s.recv_from(&mut buf))
                .unwrap_or_else(|e| panic!("datagram {k} of {n}: {e}"));
            (buf[..len].to_vec(), from)
        })
        .collect()
}

/// The UDP train tests' lab: a daemon with egress, one network and one
/// sandbox on it, and the train they send: 3,500 bytes in 1,000-byte
/// segments (three full datagrams and a short one, each of its own bytes),
/// with the datagrams a receiver must see.
struct TrainLab {
    lab: Outside,
    net: String,
    sb: String,
    train: Vec<u8>,
    want: Vec<Vec<u8>>,
}

impl TrainLab {
    fn start(subnet: &str, sandbox: &str) -> TrainLab {
        let lab = Outside::start(&[]);
        let (net, sb) = (lab.daemon.name("n"), lab.daemon.name(sandbox));
        lab.daemon.network_create(&net, subnet);
        lab.daemon.sandbox_create(&sb);
        let train: Vec<u8> = (0..3500u32).map(|i| (i / 1000) as u8 + b'a').collect();
        let want = train.chunks(1000).map(<[u8]>::to_vec).collect();
        TrainLab { lab, net, sb, train, want }
    }
}

#[test]
fn udp_gso_trains_from_a_sandbox_leave_as_their_datagrams_both_ways() {
    if !prerequisites("udp_gso_trains_from_a_sandbox_leave_as_their_datagrams_both_ways") {
        return;
    }
    let TrainLab { lab, net, sb, train, want } = TrainLab::start("10.236.0.0/24", "g");
    let d = &lab.daemon;

    // A server in the sandbox behind a published UDP port answers with a train.
    let server = in_netns(&sb, || std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 53))).unwrap().unwrap();
    set_udp_segment(&server, 1000);
    let answer = train.clone();
    let answering = std::thread::spawn(move || -> std::io::Result<usize> {
        let mut buf = [0u8; 512];
        let (_, from) = vswitch::recv_within(&server, Duration::from_secs(10), |s| s.recv_from(&mut buf))?;
        server.send_to(&answer, from)
    });
    let info = d.connect_publish(&net, &sb, &["5353:53/udp"]);
    let own = info.ipv4.expect("an IPv4 address").addr();
    let outside_addr = lab.outside_addr;
    let client = in_netns(&lab.outside_ns, move || std::net::UdpSocket::bind((outside_addr, 0))).unwrap().unwrap();
    client.send_to(b"q", sa(lab.daemon_addr, 5353)).unwrap();
    let got = receive_datagrams(&client, want.len());
    assert_eq!(answering.join().unwrap().unwrap(), 3500, "one send of the whole train");
    let answers: Vec<Vec<u8>> = got.iter().map(|(b, _)| b.clone()).collect();
    assert_eq!(answers, want, "the answer's datagrams, in order, each whole");
    assert!(got.iter().all(|(_, from)| *from == sa(lab.daemon_addr, 5353)), "from the published port: {got:?}");

    // Egress: the sandbox sends a train to a server outside.
    let far_addr = lab.far_addr;
    let far = in_netns(&lab.outside_ns, move || std::net::UdpSocket::bind((far_addr, 7008))).unwrap().unwrap();
    let sender = in_netns(&sb, move || std::net::UdpSocket::bind((own, 0))).unwrap().unwrap();
    set_udp_segment(&sender, 1000);
    assert_eq!(sender.send_to(&train, sa(lab.far_addr, 7008)).unwrap(), 3500);
    let got = receive_datagrams(&far, want.len());
    let datagrams: Vec<Vec<u8>> = got.iter().map(|(b, _)| b.clone()).collect();
    assert_eq!(datagrams, want, "the train's datagrams, in order, each whole");
    assert!(got.iter().all(|(_, from)| from.ip() == lab.daemon_addr), "translated to the daemon's address: {got:?}");
    assert_eq!(d.drops_of(&info.port, "nat_unsupported"), 0, "no train refused");

    // Datagrams sent one by one, back to back, which the translator may
    // send on as trains of its own: every one whole, in order.
    let plain = in_netns(&sb, move || std::net::UdpSocket::bind((own, 0))).unwrap().unwrap();
    let burst: Vec<Vec<u8>> = (0..40u8).map(|k| vec![k; 900 + usize::from(k % 3) * 50]).collect();
    for datagram in &burst {
        plain.send_to(datagram, sa(lab.far_addr, 7008)).unwrap();
    }
    let got: Vec<Vec<u8>> = receive_datagrams(&far, burst.len()).into_iter().map(|(b, _)| b).collect();
    assert_eq!(got, burst, "each datagram whole, in order");
}

/// Frames the switch sent out of port `port` (summed over networks).
fn frames_sent_to(d: &Daemon, port: &str) -> u64 {
    d.stats_map().iter().filter(|((p, _), _)| p == port).map(|(_, s)| s.tx_packets).sum()
}

#[test]
fn udp_trains_toward_a_sandbox_arrive_as_one_frame_that_its_kernel_cuts() {
    if !prerequisites("udp_trains_toward_a_sandbox_arrive_as_one_frame_that_its_kernel_cuts") {
        return;
    }
    if !switch::sys::tap::kernel_takes_uso() {
        eprintln!(
            "SKIPPED udp_trains_toward_a_sandbox_arrive_as_one_frame_that_its_kernel_cuts: \
             this kernel (before 6.2) writes no UDP trains into TAPs, so the daemon reads datagrams one by one"
        );
        return;
    }
    let TrainLab { lab, net, sb, train, want } = TrainLab::start("10.237.0.0/24", "r");
    let d = &lab.daemon;

    // A published UDP port: a client outside sends a train (UDP GSO), which
    // the daemon's socket reads whole (UDP GRO) and hands to the sandbox as
    // one frame; the sandbox's socket reads the four datagrams.
    let server = in_netns(&sb, || std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 53))).unwrap().unwrap();
    let info = d.connect_publish(&net, &sb, &["5353:53/udp"]);
    let own = info.ipv4.expect("an IPv4 address").addr();
    let outside_addr = lab.outside_addr;
    let client = in_netns(&lab.outside_ns, move || std::net::UdpSocket::bind((outside_addr, 0))).unwrap().unwrap();
    set_udp_segment(&client, 1000);
    let before = frames_sent_to(d, &info.port);
    client.send_to(&train, sa(lab.daemon_addr, 5353)).unwrap();
    let got = receive_datagrams(&server, want.len());
    let datagrams: Vec<Vec<u8>> = got.iter().map(|(b, _)| b.clone()).collect();
    assert_eq!(datagrams, want, "the client's datagrams, in order, each whole");
    assert!(got.iter().all(|(_, from)| *from == client.local_addr().unwrap()), "from the client itself: {got:?}");
    let frames = frames_sent_to(d, &info.port) - before;
    assert!(frames < want.len() as u64, "{} datagrams reached the sandbox in {frames} frames: one train", want.len());

    // Egress: the sandbox asks a server outside, which answers with a train.
    let far_addr = lab.far_addr;
    let far = in_netns(&lab.outside_ns, move || std::net::UdpSocket::bind((far_addr, 7009))).unwrap().unwrap();
    set_udp_segment(&far, 1000);
    let asker = in_netns(&sb, move || std::net::UdpSocket::bind((own, 0))).unwrap().unwrap();
    asker.send_to(b"q", sa(lab.far_addr, 7009)).unwrap();
    let (_, from) = receive_datagrams(&far, 1).remove(0);
    let before = frames_sent_to(d, &info.port);
    far.send_to(&train, from).unwrap();
    let got = receive_datagrams(&asker, want.len());
    let datagrams: Vec<Vec<u8>> = got.iter().map(|(b, _)| b.clone()).collect();
    assert_eq!(datagrams, want, "the answer's datagrams, in order, each whole");
    let frames = frames_sent_to(d, &info.port) - before;
    assert!(frames < want.len() as u64, "{} datagrams reached the sandbox in {frames} frames: one train", want.len());
}
