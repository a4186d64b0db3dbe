//! The gateway's IPv6 side on a real `vswitchd`: sandboxes ping the IPv6
//! gateway and its link-local address; a capture inside a sandbox, decoded
//! by tshark, shows the gateway's neighbour advertisement (router flag) and
//! its router advertisement (prefix with L=1 A=0, MTU, router lifetime, 0 on
//! an `--internal` network); a sandbox that accepts router advertisements
//! gets its default route from them while a statically configured one keeps
//! working; `dig AAAA` of another sandbox at the IPv6 and at the IPv4
//! gateway, ip6.arpa pointers, DNS over TCP on IPv6, an IPv6-only sandbox
//! resolving through its IPv6 gateway, and AAAA of an outside name forwarded
//! upstream. The daemon runs in its own namespace with dnsmasq upstreams
//! (the DNS lab), so nothing leaves the machine. Needs root, dig, dnsmasq and
//! tshark.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ctl::proto::EndpointInfo;
use vswitch::dns::{DnsLab, Dnsmasq, NXDOMAIN_FOR_UNKNOWN, dig, require_dns_tools};
use vswitch::underlay::{UNDERLAY_IF, ip};
use vswitch::{
    Capture, Daemon, inject_frame, netns_exec, netns_exec_ok, ping, require_root, require_tshark, tshark_fields,
    wait_for, write_pcap,
};

/// The AAAA record an upstream holds for an outside name (a documentation
/// address; nothing is sent to it).
const OUTSIDE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x66);

/// Root, the DNS tools and tshark, or skip.
fn prerequisites(test: &str) -> bool {
    require_root(test) && require_dns_tools(test) && require_tshark(test)
}

/// `network connect NET SANDBOX`.
fn connect(d: &Daemon, net: &str, sandbox: &str) -> EndpointInfo {
    d.ctl_json(&["network", "connect", net, sandbox])
}

/// The endpoint's IPv6 address.
fn v6(e: &EndpointInfo) -> Ipv6Addr {
    e.ipv6.unwrap_or_else(|| panic!("{} has no IPv6 address: {e:?}", e.sandbox)).addr()
}

/// The gateway's link-local address: EUI-64 of its MAC, which is derived
/// from its IPv4 address on a dual-stack network (`02:76:a:b:c:d`).
fn gateway_link_local(gateway4: Ipv4Addr) -> Ipv6Addr {
    let [a, b, c, d] = gateway4.octets();
    let mac = [0x02, 0x76, a, b, c, d];
    // The universal/local bit flipped, ff:fe in the middle.
    Ipv6Addr::from([0xfe, 0x80, 0, 0, 0, 0, 0, 0, mac[0] ^ 0x02, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]])
}

/// A router solicitation from `mac` and the unspecified address (so with
/// no link-layer option, RFC 4861 §4.1), to all-routers, checksummed.
fn router_solicit(mac: [u8; 6]) -> Vec<u8> {
    router_solicit_from(mac, None)
}

/// A router solicitation from `source` with a source link-layer address
/// option (as Linux sends them), or from `::` without one.
fn router_solicit_from(mac: [u8; 6], source: Option<Ipv6Addr>) -> Vec<u8> {
    let all_routers = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
    let mut icmp = vec![133u8, 0, 0, 0, 0, 0, 0, 0];
    if source.is_some() {
        icmp.extend_from_slice(&[1, 1]);
        icmp.extend_from_slice(&mac);
    }
    let source = source.unwrap_or(Ipv6Addr::UNSPECIFIED);
    // The checksum over the pseudo-header (source, destination, length,
    // next header 58) and the message.
    let mut sum: u32 = 0;
    for pair in source.octets().chunks(2).chain(all_routers.octets().chunks(2)).chain(icmp.chunks(2)) {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    sum += icmp.len() as u32 + 58;
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let checksum = !(sum as u16);
    let mut frame = vec![0x33, 0x33, 0, 0, 0, 2];
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    frame.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    frame.extend_from_slice(&[58, 255]);
    frame.extend_from_slice(&source.octets());
    frame.extend_from_slice(&all_routers.octets());
    frame.extend_from_slice(&icmp[..2]);
    frame.extend_from_slice(&checksum.to_be_bytes());
    frame.extend_from_slice(&icmp[4..]);
    frame
}

/// tshark's rows of `fields` for the frames `capture` saw that match
/// `filter`.
fn decoded(capture: &Capture, name: &str, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let dir = std::env::temp_dir().join(format!("vswitch-e2e-ipv6gw-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("capture.pcap");
    write_pcap(&pcap, &capture.frames()).unwrap();
    let rows = tshark_fields(&pcap, &[], filter, fields);
    let _ = std::fs::remove_dir_all(&dir);
    rows
}

/// Waits (up to `timeout`) for a router advertisement to `to` in
/// `capture` (all nodes, or one solicitor).
fn wait_for_advert(capture: &Capture, to: Ipv6Addr, timeout: Duration) -> bool {
    capture.wait_for(timeout, |frames| {
        frames.iter().any(|f| {
            !f.outgoing
                && f.ethertype() == 0x86dd
                && f.bytes.len() > 54
                && f.bytes[20] == 58
                && f.bytes[54] == 134
                && f.bytes[38..54] == to.octets()
        })
    })
}

/// tshark prints booleans as `1`/`True` depending on its version.
fn set(flag: &str) -> bool {
    matches!(flag, "1" | "True" | "true")
}

/// `ip -6 route show default` inside `ns`.
fn default_routes6(ns: &str) -> String {
    netns_exec_ok(ns, "ip", &["-6", "route", "show", "default"])
}

#[test]
fn ndp_router_advertisements_echo_and_default_routes() {
    if !prerequisites("ndp_router_advertisements_echo_and_default_routes") {
        return;
    }
    let lab = DnsLab::start([10, 219, 1], |up1, _, _, _| vec!["--dns".to_owned(), up1.to_string()]);
    let d = &lab.daemon;
    let net = d.name("gw6");
    d.ctl_ok(&["network", "create", &net, "--ipv6", "--subnet", "10.218.0.0/24", "--subnet", "fd00:218::/64"]);
    let (gw4, gw6) = (Ipv4Addr::new(10, 218, 0, 1), "fd00:218::1".parse::<Ipv6Addr>().unwrap());
    let gw_ll = gateway_link_local(gw4);
    let (a, b) = (d.name("a"), d.name("b"));
    d.sandbox_create(&a);
    d.sandbox_create(&b);
    let (ea, eb) = (connect(d, &net, &a), connect(d, &net, &b));

    // Ping the gateway's address and its link-local one, capturing what the
    // gateway sends a.
    let capture = Capture::start(&a, &ea.ifname).unwrap();
    assert!(ping(&a, gw6, 2), "a cannot ping the IPv6 gateway {gw6}");
    let scoped = format!("{gw_ll}%{}", ea.ifname);
    let out = netns_exec(&a, "ping", &["-6", "-c", "2", "-W", "2", &scoped]);
    assert!(out.status.success(), "a cannot ping the gateway's link-local {scoped}: {out:?}");
    assert!(ping(&a, v6(&eb), 2), "a cannot ping b over IPv6");

    // The neighbour advertisement for the gateway: router, solicited, override.
    let nas = decoded(
        &capture,
        "na",
        &format!("icmpv6.type == 136 && ipv6.src == {gw6}"),
        &[
            "icmpv6.nd.na.target_address",
            "icmpv6.nd.na.flag.r",
            "icmpv6.nd.na.flag.s",
            "icmpv6.nd.na.flag.o",
            "icmpv6.opt.linkaddr",
        ],
    );
    assert!(!nas.is_empty(), "no neighbour advertisement from {gw6} in the capture");
    let na = &nas[0];
    assert_eq!(na[0], gw6.to_string());
    assert!(set(&na[1]) && set(&na[2]) && set(&na[3]), "R, S and O set: {na:?}");
    let [m0, m1, m2, m3] = gw4.octets();
    assert_eq!(na[4], format!("02:76:{m0:02x}:{m1:02x}:{m2:02x}:{m3:02x}"), "the gateway's MAC: {na:?}");

    // A router solicitation brings a router advertisement within 3.5 s.
    inject_frame(&a, &ea.ifname, &router_solicit(ea.mac.0)).unwrap();
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    assert!(
        wait_for_advert(&capture, all_nodes, Duration::from_secs(10)),
        "no router advertisement after a solicitation"
    );
    let ras = decoded(
        &capture,
        "ra",
        "icmpv6.type == 134 && ipv6.dst == ff02::1",
        &[
            "ipv6.src",
            "ipv6.dst",
            "ipv6.hlim",
            "icmpv6.nd.ra.router_lifetime",
            "icmpv6.nd.ra.flag.m",
            "icmpv6.nd.ra.flag.o",
            "icmpv6.opt.prefix",
            "icmpv6.opt.prefix.length",
            "icmpv6.opt.prefix.flag.l",
            "icmpv6.opt.prefix.flag.a",
            "icmpv6.opt.mtu",
        ],
    );
    let ra = ras.last().expect("the advertisement decodes");
    assert_eq!((ra[0].as_str(), ra[1].as_str(), ra[2].as_str()), (gw_ll.to_string().as_str(), "ff02::1", "255"));
    assert_eq!(ra[3], "1800", "router lifetime: {ra:?}");
    assert!(!set(&ra[4]) && !set(&ra[5]), "no DHCPv6: {ra:?}");
    assert_eq!((ra[6].as_str(), ra[7].as_str()), ("fd00:218::", "64"), "{ra:?}");
    assert!(set(&ra[8]) && !set(&ra[9]), "L=1, A=0: {ra:?}");
    assert_eq!(ra[10], "1500", "{ra:?}");
    // A solicitation that names its sender is answered at once, unicast
    // (RFC 7772), even right after the multicast one.
    let solicitor = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0xabcd);
    inject_frame(&a, &ea.ifname, &router_solicit_from(ea.mac.0, Some(solicitor))).unwrap();
    assert!(
        wait_for_advert(&capture, solicitor, Duration::from_secs(10)),
        "no unicast router advertisement to {solicitor}"
    );
    let _ = capture.stop();

    // a keeps its static default route (and may have learned the RA one).
    let a_routes = default_routes6(&a);
    assert!(a_routes.contains(&format!("via {gw6} dev {}", ea.ifname)), "a's static route: {a_routes}");
    assert!(ping(&a, gw6, 1));

    // b drops its static default route and learns one from an advertisement.
    netns_exec_ok(&b, "sysctl", &["-qw", &format!("net.ipv6.conf.{}.accept_ra=1", eb.ifname)]);
    netns_exec_ok(&b, "ip", &["-6", "route", "del", "default", "via", &gw6.to_string()]);
    let want = format!("via {gw_ll} dev {} proto ra", eb.ifname);
    let learned = wait_for(Duration::from_secs(20), || {
        // Solicit again each round: one answer per 3 s at most.
        let _ = inject_frame(&b, &eb.ifname, &router_solicit(eb.mac.0));
        let routes = default_routes6(&b);
        routes.contains(&want).then_some(routes)
    });
    let routes = learned.unwrap_or_else(|| panic!("b has no default route from the RA: {}", default_routes6(&b)));
    assert!(!routes.contains(&format!("via {gw6}")), "the static route is gone: {routes}");
    let route = netns_exec_ok(&b, "ip", &["-6", "route", "get", "2001:db8::1"]);
    assert!(route.contains(&format!("via {gw_ll} dev {}", eb.ifname)), "routed through the RA's router: {route}");
    let scoped = format!("{gw_ll}%{}", eb.ifname);
    assert!(netns_exec(&b, "ping", &["-6", "-c", "1", "-W", "2", &scoped]).status.success(), "the next hop answers");
    assert!(ping(&b, v6(&ea), 1), "on-link traffic still flows");

    // An --internal network advertises its prefix with router lifetime 0.
    let internal = d.name("in6");
    d.ctl_ok(&[
        "network",
        "create",
        &internal,
        "--internal",
        "--ipv6",
        "--subnet",
        "10.218.1.0/24",
        "--subnet",
        "fd00:219::/64",
    ]);
    let c = d.name("c");
    d.sandbox_create(&c);
    let ec = connect(d, &internal, &c);
    let capture = Capture::start(&c, &ec.ifname).unwrap();
    inject_frame(&c, &ec.ifname, &router_solicit(ec.mac.0)).unwrap();
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    assert!(
        wait_for_advert(&capture, all_nodes, Duration::from_secs(10)),
        "no router advertisement on the internal network"
    );
    let ras = decoded(
        &capture,
        "ra-internal",
        "icmpv6.type == 134 && ipv6.dst == ff02::1",
        &["icmpv6.nd.ra.router_lifetime", "icmpv6.opt.prefix", "icmpv6.opt.prefix.flag.l"],
    );
    let ra = ras.last().expect("the advertisement decodes");
    assert_eq!((ra[0].as_str(), ra[1].as_str()), ("0", "fd00:219::"), "not a default router: {ra:?}");
    assert!(set(&ra[2]));
    let _ = capture.stop();
    assert!(!default_routes6(&c).contains("default"), "no default route on an internal network");
}

#[test]
fn aaaa_and_ip6_arpa_at_both_gateways_and_from_an_ipv6_only_sandbox() {
    if !prerequisites("aaaa_and_ip6_arpa_at_both_gateways_and_from_an_ipv6_only_sandbox") {
        return;
    }
    let lab = DnsLab::start([10, 219, 2], |up1, _, _, _| vec!["--dns".to_owned(), up1.to_string()]);
    let d = &lab.daemon;
    let dual = d.name("dual");
    d.ctl_ok(&["network", "create", &dual, "--ipv6", "--subnet", "10.218.2.0/24", "--subnet", "fd00:21a::/64"]);
    let (gw4, gw6) = ("10.218.2.1", "fd00:21a::1");
    let (a, b) = (d.name("a"), d.name("b"));
    d.sandbox_create(&a);
    d.sandbox_create(&b);
    let (_, eb) = (connect(d, &dual, &a), connect(d, &dual, &b));
    let b6 = v6(&eb);

    // AAAA of b, asked at the IPv6 gateway over UDP and TCP, and at the IPv4 one.
    for args in [
        vec![&format!("@{gw6}")[..], "AAAA"],
        vec![&format!("@{gw6}")[..], "+tcp", "AAAA"],
        vec![&format!("@{gw4}")[..], "AAAA"],
    ] {
        let mut args = args.clone();
        args.push(&b);
        let r = dig(&a, &args);
        assert!(r.is("NOERROR"), "{r}");
        assert_eq!(r.data_of("AAAA"), [b6.to_string()], "{r}");
        assert!(r.has_flag("aa"), "answered by the switch: {r}");
    }
    // The A record is still there, and the pointer of b's IPv6 address.
    let r = dig(&a, &[&format!("@{gw6}"), "A", &b]);
    assert_eq!(r.data_of("A"), [eb.ipv4.unwrap().addr().to_string()], "{r}");
    let r = dig(&a, &[&format!("@{gw6}"), "-x", &b6.to_string()]);
    assert_eq!(r.data_of("PTR"), [format!("{b}.{dual}.")], "{r}");

    // An IPv6-only network: its sandboxes ask their IPv6 gateway.
    let six = d.name("six");
    d.ctl_ok(&["network", "create", &six, "--ipv6", "--ipv4=false", "--subnet", "fd00:21b::/64"]);
    // c's own upstream has an AAAA record of an outside name.
    let up6_addr = Ipv4Addr::new(10, 219, 2, 5);
    ip(&["-n", &lab.upstream_host.ns, "addr", "add", &format!("{up6_addr}/24"), "dev", UNDERLAY_IF]);
    let up6 = Dnsmasq::start(
        &lab.upstream_host.ns,
        up6_addr,
        &[format!("--host-record=six.up.test,{OUTSIDE6}"), NXDOMAIN_FOR_UNKNOWN[0].to_owned()],
    );
    let (c, e) = (d.name("c"), d.name("e"));
    d.sandbox_create_dns(&c, &[up6_addr], &[]);
    d.sandbox_create(&e);
    let (ec, ee) = (connect(d, &six, &c), connect(d, &six, &e));
    assert!(ec.ipv4.is_none());
    let resolv = vswitch::dns::resolv_conf_inside(&c);
    assert!(resolv.lines().any(|l| l == "nameserver fd00:21b::1"), "{resolv}");
    assert!(ping(&c, "fd00:21b::1".parse::<Ipv6Addr>().unwrap(), 1), "c cannot ping its IPv6-only gateway");
    let r = dig(&c, &["AAAA", &e]);
    assert!(r.is("NOERROR"), "{r}");
    assert_eq!(r.data_of("AAAA"), [v6(&ee).to_string()], "{r}");
    let r = dig(&c, &["A", &e]);
    assert!(r.is("NOERROR") && r.answers.is_empty(), "an IPv6-only name has no A records: {r}");
    let r = dig(&c, &["-x", &v6(&ee).to_string()]);
    assert_eq!(r.data_of("PTR"), [format!("{e}.{six}.")], "{r}");
    // The libc resolver, through resolv.conf.
    let hosts = netns_exec_ok(&c, "getent", &["ahosts", &e]);
    assert!(hosts.lines().any(|l| l.starts_with(&v6(&ee).to_string())), "getent ahosts {e}: {hosts}");
    // Names are network-scoped: b lives on another network.
    let r = dig(&c, &["AAAA", &b]);
    assert!(r.data_of("AAAA").is_empty(), "{r}");

    // AAAA of an outside name goes upstream, like A, and its answer comes
    // back over IPv6.
    let r = dig(&c, &["AAAA", "six.up.test"]);
    assert!(r.is("NOERROR"), "the upstream's answer: {r}");
    assert_eq!(r.data_of("AAAA"), [OUTSIDE6.to_string()], "{r}");
    let queries = up6.queries_for("six.up.test");
    assert!(queries.iter().any(|q| q.contains("query[AAAA]")), "not forwarded: {}", up6.log());
}
