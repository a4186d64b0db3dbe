//! Dual-stack and IPv6-only networks: IPv6 subnet choice, IPAM, `--ip6`,
//! validation and persistence.

use std::net::Ipv6Addr;

use ctl::Ipv6Net;

use super::*;

/// Parses an IPv6 prefix literal.
fn net6(s: &str) -> Ipv6Net {
    s.parse().unwrap()
}

/// Shorthand for an IPv6 literal.
fn ip6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// A dual-stack bridge network request.
fn dual(name: &str, subnet: &str, subnet6: &str) -> CreateNetwork {
    CreateNetwork { enable_ipv6: true, subnet6: Some(net6(subnet6)), ..bridge(name, subnet) }
}

/// An IPv6-only bridge network request.
fn only6(name: &str, subnet6: Option<&str>) -> CreateNetwork {
    CreateNetwork {
        enable_ipv4: false,
        enable_ipv6: true,
        subnet6: subnet6.map(net6),
        ..CreateNetwork::new(name, Driver::Bridge)
    }
}

/// A model holding sandboxes s1..=s5.
fn with_sandboxes() -> Model {
    let mut m = Model::new();
    for s in ["s1", "s2", "s3", "s4", "s5"] {
        m.create_sandbox(CreateSandbox::new(s)).unwrap();
    }
    m
}

#[test]
fn dual_stack_endpoints_get_both_families_sequentially() {
    let mut m = with_sandboxes();
    let n = m.create_network(dual("d", "10.1.0.0/24", "fd00:1::/64")).unwrap();
    assert_eq!((n.enable_ipv4, n.enable_ipv6), (true, true));
    assert_eq!((n.subnet6, n.gateway6, n.ip_range6), (Some(net6("fd00:1::/64")), Some(ip6("fd00:1::1")), None));
    assert_eq!((n.subnet, n.gateway), (Some(net("10.1.0.0/24")), Some(ip("10.1.0.1"))));
    let got: Vec<_> = ["s1", "s2", "s3"].iter().map(|s| m.connect(Connect::new("d", *s)).unwrap()).collect();
    let v6: Vec<_> = got.iter().map(|e| e.ipv6).collect();
    assert_eq!(v6, ["fd00:1::2", "fd00:1::3", "fd00:1::4"].map(|a| Some(ip6(a))), "::1 is the gateway");
    assert_eq!(got[0].ipv4, Some(ip("10.1.0.2")));
    assert_eq!((got[0].prefix_len, got[0].prefix_len6), (24, 64));
    assert_eq!(got[0].mac.to_string(), "02:42:0a:01:00:02", "dual-stack MACs still follow the IPv4 address");
    assert_eq!(got[0].ipv6_net().unwrap().to_string(), "fd00:1::2/64");
    // A released address is reused, the lowest first.
    let d = m.disconnect("d", "s2").unwrap();
    assert_eq!(d.endpoint.ipv6, Some(ip6("fd00:1::3")));
    assert_eq!(m.connect(Connect::new("d", "s4")).unwrap().ipv6, Some(ip6("fd00:1::3")));
    m.check_invariants().unwrap();
}

#[test]
fn ipv6_without_a_subnet_gets_a_ula_from_the_network_id() {
    let mut m = with_sandboxes();
    let n = m.create_network(CreateNetwork { enable_ipv6: true, ..CreateNetwork::new("u", Driver::Bridge) }).unwrap();
    let ula = n.subnet6.unwrap();
    let want = format!("fd{}:{}:{}::/64", &n.id[0..2], &n.id[2..6], &n.id[6..10]);
    // Same value, whatever zeros the text form drops.
    assert_eq!(ula, net6(&want), "40 bits of the id {}", n.id);
    assert_eq!(n.gateway6, Some(Ipv6Addr::from(u128::from(ula.network()) + 1)));
    assert_eq!(n.subnet, Some(net("172.18.0.0/16")), "IPv4 still comes from the default pools");
    let e = m.connect(Connect::new("u", "s1")).unwrap();
    assert_eq!(e.ipv6, Some(Ipv6Addr::from(u128::from(ula.network()) + 2)));
    // Every network gets its own.
    let n2 = m.create_network(CreateNetwork { enable_ipv6: true, ..CreateNetwork::new("u2", Driver::Bridge) }).unwrap();
    assert_ne!(n2.subnet6, n.subnet6);
    m.check_invariants().unwrap();
}

#[test]
fn ipv6_only_networks_have_no_ipv4_at_all() {
    let mut m = with_sandboxes();
    let n = m.create_network(only6("six", Some("fd00:6::/64"))).unwrap();
    assert_eq!((n.enable_ipv4, n.subnet, n.gateway, n.ip_range), (false, None, None, None));
    let e = m.connect(Connect::new("six", "s1")).unwrap();
    assert_eq!((e.ipv4, e.prefix_len, e.ipv6), (None, 0, Some(ip6("fd00:6::2"))));
    assert_eq!(e.mac.to_string(), "02:42:00:00:00:02", "02:42 and the IPv6 address's last four bytes");
    assert!(e.is_default_gateway_network);
    assert_eq!(e.addresses(), "fd00:6::2");
    // --ip has nothing to come from.
    let before = snapshot(&m);
    let r = m.connect(Connect { ipv4: Some(ip("10.0.0.5")), ..Connect::new("six", "s2") });
    assert_refused(&m, &before, r, &["network six is IPv6-only", "--ip"]);
    // The other way round: --ip6 on a network without IPv6.
    m.create_network(bridge("four", "10.4.0.0/24")).unwrap();
    let before = snapshot(&m);
    let r = m.connect(Connect { ipv6: Some(ip6("fd00:6::9")), ..Connect::new("four", "s2") });
    assert_refused(&m, &before, r, &["network four has no IPv6", "--ip6"]);
    // Two static addresses with the same last four bytes: the second gets another MAC.
    let a = m.connect(Connect { ipv6: Some(ip6("fd00:6::1:0:7")), ..Connect::new("six", "s3") }).unwrap();
    let b = m.connect(Connect { ipv6: Some(ip6("fd00:6::2:0:7")), ..Connect::new("six", "s4") }).unwrap();
    assert_eq!(a.mac.to_string(), "02:42:00:00:00:07");
    assert_ne!(a.mac, b.mac);
    assert!(!b.mac.is_group() && !b.mac.is_zero());
    // Removing the network with endpoints names their IPv6 addresses.
    let before = snapshot(&m);
    let r = m.remove_network("six");
    assert_refused(&m, &before, r, &["s1/eth0 fd00:6::2"]);
    m.check_invariants().unwrap();
}

#[test]
fn static_ipv6_addresses_are_checked_and_not_taken_twice() {
    let mut m = with_sandboxes();
    m.create_network(dual("d", "10.1.0.0/24", "fd00:1::/64")).unwrap();
    let e = m.connect(Connect { ipv6: Some(ip6("fd00:1::99")), ..Connect::new("d", "s1") }).unwrap();
    assert_eq!((e.ipv6, e.ipv4), (Some(ip6("fd00:1::99")), Some(ip("10.1.0.2"))));
    let before = snapshot(&m);
    let r = m.connect(Connect { ipv6: Some(ip6("fd00:1::99")), ..Connect::new("d", "s2") });
    assert!(matches!(r, Err(ModelError::AddressInUse { .. })), "{r:?}");
    assert_refused(&m, &before, r, &["address fd00:1::99 is already in use on network d by sandbox s1"]);
    for (bad, why) in [
        ("fd00:2::5", "is not inside subnet fd00:1::/64 of network d"),
        ("fd00:1::1", "is the gateway of network d"),
        ("fd00:1::", "is the subnet-router anycast address of network d"),
    ] {
        let r = m.connect(Connect { ipv6: Some(ip6(bad)), ..Connect::new("d", "s2") });
        assert_refused(&m, &before, r, &[why]);
    }
    // Automatic addresses step over a static one.
    m.connect(Connect { ipv6: Some(ip6("fd00:1::2")), ..Connect::new("d", "s2") }).unwrap();
    assert_eq!(m.connect(Connect::new("d", "s3")).unwrap().ipv6, Some(ip6("fd00:1::3")));
    m.check_invariants().unwrap();
}

#[test]
fn ipv6_ip_range_bounds_automatic_addresses() {
    let mut m = with_sandboxes();
    let req = CreateNetwork {
        enable_ipv4: false,
        gateway6: Some(ip6("fd00:9::fe")),
        ip_range6: Some(net6("fd00:9::10/127")),
        ..only6("r", Some("fd00:9::/64"))
    };
    let n = m.create_network(req).unwrap();
    assert_eq!((n.gateway6, n.ip_range6), (Some(ip6("fd00:9::fe")), Some(net6("fd00:9::10/127"))));
    let got: Vec<_> = ["s1", "s2"].iter().map(|s| m.connect(Connect::new("r", *s)).unwrap().ipv6).collect();
    assert_eq!(got, ["fd00:9::10", "fd00:9::11"].map(|a| Some(ip6(a))));
    let before = snapshot(&m);
    let r = m.connect(Connect::new("r", "s3"));
    assert_refused(&m, &before, r, &["no free address left in ip range fd00:9::10/127 of network r"]);
    // A static address may lie outside the range.
    let e = m.connect(Connect { ipv6: Some(ip6("fd00:9::1")), ..Connect::new("r", "s3") }).unwrap();
    assert_eq!(e.ipv6, Some(ip6("fd00:9::1")));
    // Without a range, a custom gateway leaves ::1 to the endpoints.
    m.create_network(CreateNetwork { gateway6: Some(ip6("fd00:a::fe")), ..only6("g", Some("fd00:a::/64")) }).unwrap();
    assert_eq!(m.connect(Connect::new("g", "s4")).unwrap().ipv6, Some(ip6("fd00:a::1")));
    m.check_invariants().unwrap();
}

#[test]
fn refused_ipv6_network_requests_change_nothing() {
    let mut m = Model::new();
    m.create_network(dual("d", "10.1.0.0/24", "fd00:1::/64")).unwrap();
    let before = snapshot(&m);
    let cases: Vec<(CreateNetwork, &[&str])> = vec![
        (
            CreateNetwork { enable_ipv4: false, ..CreateNetwork::new("x", Driver::Bridge) },
            &["--ipv4=false requires --ipv6"],
        ),
        (only6("x", None).with_subnet("10.9.0.0/24"), &["an IPv4 --subnet cannot be used with --ipv4=false"]),
        (
            CreateNetwork { gateway: Some(ip("10.9.0.1")), ..only6("x", Some("fd00:7::/64")) },
            &["IPv4 --gateway cannot be used with --ipv4=false"],
        ),
        (
            CreateNetwork { subnet6: Some(net6("fd00:7::/64")), ..CreateNetwork::new("x", Driver::Bridge) },
            &["an IPv6 --subnet requires --ipv6"],
        ),
        (
            CreateNetwork { gateway6: Some(ip6("fd00:7::1")), ..CreateNetwork::new("x", Driver::Bridge) },
            &["an IPv6 --gateway requires --ipv6"],
        ),
        (
            CreateNetwork { gateway6: Some(ip6("fd00:7::1")), ..only6("x", None) },
            &["IPv6 --gateway requires an IPv6 --subnet"],
        ),
        (
            CreateNetwork { ip_range6: Some(net6("fd00:7::/120")), ..only6("x", None) },
            &["IPv6 --ip-range requires an IPv6 --subnet"],
        ),
        (only6("x", Some("fd00:7::1/64")), &["host bits are set", "did you mean fd00:7::/64"]),
        (only6("x", Some("fd00:7::/127")), &["fd00:7::/127 is too small", "at most 126"]),
        (only6("x", Some("fe80::/64")), &["reserved range fe80::/10 (link-local)"]),
        (only6("x", Some("ff02::/64")), &["reserved range ff00::/8 (multicast)"]),
        (only6("x", Some("::/96")), &["reserved range ::/8"]),
        (only6("x", Some("fd00:1::/48")), &["subnet fd00:1::/48 overlaps network d (fd00:1::/64)"]),
        (only6("x", Some("fd00:1::/64")), &["overlaps network d"]),
        (
            CreateNetwork { gateway6: Some(ip6("fd00:8::1")), ..only6("x", Some("fd00:7::/64")) },
            &["gateway fd00:8::1 is not inside subnet fd00:7::/64"],
        ),
        (
            CreateNetwork { gateway6: Some(ip6("fd00:7::")), ..only6("x", Some("fd00:7::/64")) },
            &["gateway fd00:7:: is the subnet-router anycast address of subnet fd00:7::/64"],
        ),
        (
            CreateNetwork { ip_range6: Some(net6("fd00:8::/120")), ..only6("x", Some("fd00:7::/64")) },
            &["ip range fd00:8::/120 is not inside subnet fd00:7::/64"],
        ),
        (
            CreateNetwork { ip_range6: Some(net6("fd00:7::5/120")), ..only6("x", Some("fd00:7::/64")) },
            &["ip range fd00:7::5/120 has host bits set", "fd00:7::/120"],
        ),
        (
            CreateNetwork { ip_range6: Some(net6("fd00:7::/127")), ..only6("x", Some("fd00:7::/64")) },
            &["ip range fd00:7::/127 holds no address to give out"],
        ),
    ];
    for (req, needles) in cases {
        let r = m.create_network(req.clone());
        assert_refused(&m, &before, r, needles);
    }
    assert_eq!(snapshot(&m), before);
}

/// Builder shorthand for the table above.
trait WithSubnet {
    fn with_subnet(self, subnet: &str) -> Self;
}

impl WithSubnet for CreateNetwork {
    fn with_subnet(self, subnet: &str) -> Self {
        CreateNetwork { subnet: Some(net(subnet)), ..self }
    }
}

#[test]
fn allocation_looks_at_few_candidates_in_a_huge_subnet() {
    let subnet = net6("fd00:1::/48");
    let gateway = ip6("fd00:1::1");
    let used = (2u128..1000).map(|i| Ipv6Addr::from(u128::from(subnet.network()) + i));
    let next = super::super::endpoints::lowest_free_host6_in(subnet, subnet, gateway, used);
    assert_eq!(next, Some(ip6("fd00:1::3e8")));
    // A range that holds only the subnet-router anycast address and the gateway is empty.
    let tiny = net6("fd00:1::/127");
    assert_eq!(super::super::endpoints::lowest_free_host6_in(tiny, subnet, gateway, std::iter::empty()), None);
}

#[test]
fn invariants_refuse_inconsistent_ipv6_state() {
    let mut m = with_sandboxes();
    m.create_network(dual("d", "10.1.0.0/24", "fd00:1::/64")).unwrap();
    m.create_network(only6("six", Some("fd00:6::/64"))).unwrap();
    m.connect(Connect::new("d", "s1")).unwrap();
    m.connect(Connect::new("d", "s2")).unwrap();
    m.connect(Connect::new("six", "s1")).unwrap();
    let good = serde_json::to_string_pretty(&m).unwrap();
    assert!(serde_json::from_str::<Model>(&good).is_ok());
    for (from, to, why) in [
        ("\"fd00:1::3\"", "\"fd00:1::2\"", "duplicate"),
        ("\"fd00:1::3\"", "\"fd00:1::1\"", "IPv6 address outside subnet or reserved"),
        ("\"fd00:1::3\"", "\"fd00:2::3\"", "IPv6 address outside subnet or reserved"),
        ("\"subnet6\": \"fd00:6::/64\"", "\"subnet6\": \"fd00::/16\"", "overlap"),
        ("\"enable_ipv4\": false", "\"enable_ipv4\": true", "lacks a subnet or gateway"),
    ] {
        assert!(good.contains(from), "{from} not in {good}");
        let bad = good.replacen(from, to, 1);
        let e = serde_json::from_str::<Model>(&bad).unwrap_err().to_string();
        assert!(e.contains(why), "{from} -> {to}: {e}");
    }
    // Networks are keyed by random ids, so their order in the text varies:
    // edit the dual-stack one by name rather than the first match.
    let mut doc: serde_json::Value = serde_json::from_str(&good).unwrap();
    let dual = doc["networks"]
        .as_array_mut()
        .expect("networks are a list in the state file")
        .iter_mut()
        .find(|n| n["name"] == "d")
        .expect("network d in the state");
    dual["enable_ipv6"] = serde_json::Value::Bool(false);
    let e = serde_json::from_value::<Model>(doc).unwrap_err().to_string();
    assert!(e.contains("IPv6 subnet without IPv6"), "enable_ipv6 false on d: {e}");
}
