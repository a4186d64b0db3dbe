//! The ingress routing mesh across three `vswitchd` hosts sharing one etcd:
//! a service published (default `ingress` mode) on a cluster overlay with a
//! replica on host 1 and one on host 2 is reachable on host 3's published
//! port although host 3 has no replica, and repeated connections reach
//! both replicas; other nodes' replicas see host 3's mesh address (source
//! NAT), a node's own replica sees the client. A `host`-mode service on
//! host 3 balances over host 3's replicas only (none: refused). Host 3
//! restarted after `kill -9` serves again from the same mesh address. When host 1
//! dies, its replica leaves the balancing within the lease's TTL.
//! UDP and IPv6 clients (on a dual-stack overlay) reach a remote replica
//! from the mesh address of their family. Clients connect from inside a
//! host's namespace to its own address (or `[::1]`).
//! Needs root, `/usr/bin/etcd`, python3 and curl.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use ctl::proto::{ServiceInfo, ServiceMode};
use vswitch::cluster::ClusterHosts;
use vswitch::outside::{HttpServer, UdpEcho, curl, udp_query};
use vswitch::{in_netns, require_root_and_etcd, wait_until};

/// Long enough for a loaded machine; the wait ends as soon as it succeeds.
const SETTLE: Duration = Duration::from_secs(40);
/// The daemons' lease TTL.
const TTL: u64 = 5;
const SUBNET: &str = "10.236.7.0/24";

fn service(d: &vswitch::Daemon, name: &str) -> ServiceInfo {
    let v: Vec<ServiceInfo> = d.ctl_json(&["service", "inspect", name]);
    v.into_iter().next().expect("one service")
}

/// One request through `addr` from namespace `ns`: the answering replica's name.
fn ask(ns: &str, addr: SocketAddr) -> Option<String> {
    let c = curl(ns, addr, Duration::from_secs(10));
    c.ok.then(|| c.body.trim().to_owned())
}

fn refused(ns: &str, addr: SocketAddr) -> bool {
    let got = in_netns(ns, move || {
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        use std::io::{Read, Write};
        s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
        let mut buf = [0u8; 64];
        vswitch::recv_within(&s, Duration::from_secs(5), |mut s| s.read(&mut buf))
    });
    // Accepted by the kernel (the listener is open) and then reset, or
    // closed with nothing: no backend answered.
    matches!(got, Ok(Err(_)) | Ok(Ok(0)))
}

fn in_subnet(ip: Ipv4Addr) -> bool {
    SUBNET.parse::<ctl::Ipv4Net>().unwrap().contains(&ip)
}

#[test]
fn every_node_serves_an_ingress_service_over_every_replica() {
    if !require_root_and_etcd("every_node_serves_an_ingress_service_over_every_replica") {
        return;
    }
    let mut c = ClusterHosts::builder(3).tls(false).ttl(TTL).underlay([10, 233, 7]).start();
    let net = c.name("ov");
    c.host(0).cluster_overlay_create(&net, SUBNET, &["--attachable"]);
    for i in 1..3 {
        c.wait_network(i, &net);
    }

    // A replica on host 1 and one on host 2, each answering its own name.
    let (r1, r2) = (c.host(0).name("r1"), c.host(1).name("r2"));
    let mut servers = Vec::new();
    for (i, r) in [(0, &r1), (1, &r2)] {
        let d = c.host(i);
        d.sandbox_create(r);
        servers.push(HttpServer::start(r, Ipv4Addr::UNSPECIFIED, 80, r));
        d.ctl_ok(&["network", "connect", &net, r, "--service", "web"]);
    }
    // Every host serves an ingress service's ports: a random one is refused, changing nothing.
    let e = c.host(0).ctl_err(&["service", "publish", "web", "--network", &net, "-p", "80"]);
    assert!(e.contains("give each host port"), "{e}");
    assert!(
        c.host(0).ctl(&["service", "inspect", "web"]).status.code() != Some(0),
        "a refused publish made the service"
    );
    // Published on host 1; every host serves it.
    let published: ServiceInfo = c.host(0).ctl_json(&["service", "publish", "web", "--network", &net, "-p", "8080:80"]);
    assert_eq!(published.mode, ServiceMode::Ingress, "the default on a cluster overlay");
    let on3 = SocketAddr::new(c.addr(2), 8080);
    let ns3 = c.ns(2).to_owned();

    // Host 3 has no replica: its port reaches both others' replicas.
    let started = Instant::now();
    let seen = std::cell::RefCell::new(Vec::new());
    wait_until(
        SETTLE,
        || format!("both replicas to answer on host 3, got {:?}; {:?}", seen.borrow(), service(c.host(2), "web")),
        || {
            let mut seen = seen.borrow_mut();
            if let Some(name) = ask(&ns3, on3) {
                seen.push(name);
            }
            (seen.contains(&r1) && seen.contains(&r2)).then_some(())
        },
    );
    eprintln!("both replicas answered on host 3 after {:?}", started.elapsed());
    let answers: Vec<String> = (0..8).map(|_| ask(&ns3, on3).expect("a request through host 3 failed")).collect();
    for r in [&r1, &r2] {
        assert!(answers.iter().filter(|a| *a == r).count() >= 3, "{r} answered too few of {answers:?}");
    }
    let info = service(c.host(2), "web");
    assert_eq!(info.mode, ServiceMode::Ingress);
    let mut nodes: Vec<Option<String>> = info.replicas.iter().map(|r| r.node.clone()).collect();
    nodes.sort();
    assert_eq!(nodes, [Some(ClusterHosts::node_name(0)), Some(ClusterHosts::node_name(1))], "{info:?}");

    // The replicas saw host 3's mesh address (source NAT), one address
    // for both, inside the overlay's subnet and not the client's.
    let mesh: Vec<Ipv4Addr> = servers.iter().flat_map(|s| s.clients()).map(|a| *a.ip()).collect();
    assert!(!mesh.is_empty());
    assert!(mesh.iter().all(|ip| *ip == mesh[0] && in_subnet(*ip)), "{mesh:?}");
    assert_ne!(IpAddr::V4(mesh[0]), c.addr(2));

    // Host 1 serves it too; its own replica sees the client itself.
    let on1 = SocketAddr::new(c.addr(0), 8080);
    let before = servers[0].clients().len();
    let answers: Vec<String> = (0..4).map(|_| ask(c.ns(0), on1).expect("a request through host 1 failed")).collect();
    assert!(answers.contains(&r1) && answers.contains(&r2), "{answers:?}");
    let own = &servers[0].clients()[before..];
    assert!(own.iter().any(|a| IpAddr::V4(*a.ip()) == c.addr(0)), "host 1's replica did not see the client: {own:?}");

    // Host 3 restarted after kill -9 serves it again, from the same mesh
    // address (its claim outlives the process).
    let seen_before: Vec<usize> = servers.iter().map(|s| s.clients().len()).collect();
    c.host_mut(2).restart();
    let again = std::cell::RefCell::new(Vec::new());
    wait_until(
        SETTLE,
        || format!("both replicas to answer on host 3 after its restart, got {:?}", again.borrow()),
        || {
            let mut again = again.borrow_mut();
            if let Some(name) = ask(&ns3, on3) {
                again.push(name);
            }
            (again.contains(&r1) && again.contains(&r2)).then_some(())
        },
    );
    let later: Vec<Ipv4Addr> =
        servers.iter().zip(&seen_before).flat_map(|(s, n)| s.clients().split_off(*n)).map(|a| *a.ip()).collect();
    assert!(!later.is_empty() && later.iter().all(|ip| *ip == mesh[0]), "{later:?} (before: {})", mesh[0]);

    // A host-mode service stays on its node: host 3 has no replica of it,
    // although host 1 has one; host 1 does not serve it.
    let r1b = c.host(0).name("r1b");
    c.host(0).sandbox_create(&r1b);
    servers.push(HttpServer::start(&r1b, Ipv4Addr::UNSPECIFIED, 80, &r1b));
    c.host(0).ctl_ok(&["network", "connect", &net, &r1b, "--service", "local"]);
    let host_mode: ServiceInfo =
        c.host(2).ctl_json(&["service", "publish", "local", "--network", &net, "-p", "8081:80", "--mode", "host"]);
    assert_eq!((host_mode.mode, host_mode.replicas.len()), (ServiceMode::Host, 0));
    assert!(refused(&ns3, SocketAddr::new(c.addr(2), 8081)), "a host-mode service reached another node's replica");
    assert!(servers[2].clients().is_empty());
    assert!(c.host(0).ctl(&["service", "inspect", "local"]).status.code() != Some(0), "host mode went to host 1");
    let e = c.host(2).ctl_err(&["service", "publish", "local", "-p", "8082:80", "--mode", "ingress"]);
    assert!(e.contains("host mode"), "{e}");

    // Host 1 dies: its replica leaves host 3's balancing within the TTL.
    c.host_mut(0).kill9();
    let died = Instant::now();
    wait_until(
        Duration::from_secs(TTL * 3 + 20),
        || format!("host 1's replica to leave: {:?}", service(c.host(2), "web")),
        || {
            let info = service(c.host(2), "web");
            (info.replicas.len() == 1 && info.replicas[0].node == Some(ClusterHosts::node_name(1))).then_some(())
        },
    );
    let gone_after = died.elapsed();
    eprintln!("host 1's replica left host 3's backends {gone_after:?} after kill -9 (TTL {TTL} s)");
    assert!(gone_after < Duration::from_secs(TTL * 2 + 5), "{gone_after:?}");
    let answers: Vec<String> = (0..6).map(|_| ask(&ns3, on3).expect("a request after host 1 died failed")).collect();
    assert!(answers.iter().all(|a| *a == r2), "{answers:?}");

    // service rm removes it everywhere.
    c.host(1).ctl_ok(&["service", "rm", "web"]);
    wait_until(
        SETTLE,
        || "host 3 to close the service's port".into(),
        || (!c.host(2).ctl(&["service", "inspect", "web"]).status.success() && ask(&ns3, on3).is_none()).then_some(()),
    );
}

#[test]
fn udp_and_ipv6_clients_reach_a_remote_replica_through_the_mesh() {
    if !require_root_and_etcd("udp_and_ipv6_clients_reach_a_remote_replica_through_the_mesh") {
        return;
    }
    const SUBNET6: &str = "fd00:236:8::/64";
    let c = ClusterHosts::builder(2).tls(false).underlay([10, 233, 8]).start();
    let net = c.name("ov6");
    c.host(0).cluster_overlay_create(&net, "10.236.8.0/24", &["--attachable", "--ipv6", "--subnet", SUBNET6]);
    c.wait_network(1, &net);
    // The replica on host 1 serves HTTP on both families and UDP echo.
    let r1 = c.host(0).name("r1");
    c.host(0).sandbox_create(&r1);
    let http = HttpServer::start(&r1, "::".parse::<IpAddr>().unwrap(), 80, &r1);
    let echo = UdpEcho::start(&r1, Ipv4Addr::UNSPECIFIED, 53);
    c.host(0).ctl_ok(&["network", "connect", &net, &r1, "--service", "api"]);
    // Published on host 2, which has no replica.
    c.host(1).ctl_ok(&["service", "publish", "api", "--network", &net, "-p", "8080:80", "-p", "5353:53/udp"]);
    let ns2 = c.ns(1).to_owned();

    // IPv6 client: from host 2's mesh IPv6 address.
    let lo6 = SocketAddr::new("::1".parse().unwrap(), 8080);
    wait_until(
        SETTLE,
        || format!("an IPv6 client through host 2: {:?}", service(c.host(1), "api")),
        || (ask(&ns2, lo6).as_deref() == Some(r1.as_str())).then_some(()),
    );
    let six: Vec<IpAddr> = http.client_addrs().into_iter().map(|a| a.ip()).collect();
    let subnet6: ctl::Ipv6Net = SUBNET6.parse().unwrap();
    assert!(
        six.iter().any(|ip| matches!(ip, IpAddr::V6(v6) if subnet6.contains(v6))),
        "the replica saw no mesh IPv6 address: {six:?}\n{}",
        http.log()
    );

    // UDP: the answer comes back to the client; the replica saw the mesh IPv4 address.
    let to = SocketAddr::new(c.addr(1), 5353);
    let bind = c.addr(1);
    let reply = wait_until(
        SETTLE,
        || "a UDP answer through host 2".into(),
        || udp_query(&ns2, bind, to, b"hello", Duration::from_secs(2)).ok().map(|(_, r)| r),
    );
    let (peer, rest) = reply.split_once(' ').expect("`A:P payload`");
    assert_eq!(rest, "hello");
    let peer: SocketAddr = peer.parse().expect("the sender as the replica saw it");
    assert!(matches!(peer.ip(), IpAddr::V4(v4) if in_subnet8(v4)), "not a mesh address: {peer}");
    assert!(!echo.peers().is_empty());
}

fn in_subnet8(ip: Ipv4Addr) -> bool {
    "10.236.8.0/24".parse::<ctl::Ipv4Net>().unwrap().contains(&ip)
}
