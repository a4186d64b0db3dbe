//! Sandbox, connect/disconnect, IPAM, FDB and config rules.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use super::*;

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

#[test]
fn sandbox_rules() {
    let mut m = Model::new();
    let s = m.create_sandbox(CreateSandbox::new("web")).unwrap();
    assert_eq!(s.netns_path, PathBuf::from("/run/netns/web"));
    assert!(s.owns_netns);
    let attached = CreateSandbox {
        netns_path: Some("/proc/1234/ns/net".into()),
        dns: vec!["10.0.0.53".parse().unwrap()],
        dns_search: vec!["corp.example.com".into()],
        dns_options: vec!["ndots:3".into(), "edns0".into()],
        extra_hosts: vec!["cache=10.0.0.7".into(), "cache6:[fd00::7]".into()],
        ..CreateSandbox::new("db")
    };
    let d = m.create_sandbox(attached).unwrap();
    assert!(!d.owns_netns);
    assert_eq!(d.netns_path, PathBuf::from("/proc/1234/ns/net"));
    assert_eq!(m.sandbox("db").unwrap().dns_search, ["corp.example.com"]);
    assert_eq!(m.sandbox("db").unwrap().dns_options, ["ndots:3", "edns0"]);
    assert_eq!(m.sandbox("db").unwrap().extra_hosts, ["cache:10.0.0.7", "cache6:fd00::7"], "kept as NAME:IP");
    let before = snapshot(&m);
    let r = m.create_sandbox(CreateSandbox::new("web"));
    assert_refused(&m, &before, r, &["sandbox web already exists"]);
    let r = m.create_sandbox(CreateSandbox::new("a/b"));
    assert_refused(&m, &before, r, &["invalid sandbox name \"a/b\""]);
    let r = m.create_sandbox(CreateSandbox { netns_path: Some("ns/x".into()), ..CreateSandbox::new("x") });
    assert_refused(&m, &before, r, &["netns path ns/x must be absolute"]);
    let r = m.create_sandbox(CreateSandbox { netns_path: Some("/run/netns/web".into()), ..CreateSandbox::new("x") });
    assert_refused(&m, &before, r, &["netns path /run/netns/web is already used by sandbox web"]);
    let r = m.create_sandbox(CreateSandbox { dns_search: vec!["bad domain".into()], ..CreateSandbox::new("x") });
    assert_refused(&m, &before, r, &["invalid dns search domain \"bad domain\""]);
    let injected = CreateSandbox { dns_options: vec!["rotate\nnameserver 6.6.6.6".into()], ..CreateSandbox::new("x") };
    let r = m.create_sandbox(injected);
    assert_refused(&m, &before, r, &["invalid dns option", "ndots:2"]);
    let r = m.create_sandbox(CreateSandbox { extra_hosts: vec!["db:host-gateway".into()], ..CreateSandbox::new("x") });
    assert_refused(&m, &before, r, &["invalid extra host \"db:host-gateway\"", "host-gateway is not supported"]);
    let r = m.remove_sandbox("nope");
    assert_refused(&m, &before, r, &["sandbox nope not found"]);
}

#[test]
fn connect_fills_endpoint_fields() {
    let mut m = populated();
    let a = m.network("a").unwrap().clone();
    let e = m.connect(Connect { aliases: vec!["web.local".into()], ..Connect::new("a", "s1") }).unwrap();
    assert_eq!(e.network_id, a.id);
    assert_eq!(e.sandbox, "s1");
    assert_eq!(e.ifname_in_sandbox, "eth0");
    assert_eq!(e.ipv4, Some(ip("10.1.0.2")));
    assert_eq!(e.prefix_len, 24);
    assert_eq!(e.mac, mac("02:42:0a:01:00:02"));
    assert_eq!(e.aliases, ["web.local"]);
    assert!(e.is_default_gateway_network);
    assert_eq!(e.port_index, 0);
    assert_eq!(e.id.len(), 64);
    assert_eq!(e.host_tap_name, format!("vsw{}", &e.id[..8]));
    assert!(e.host_tap_name.len() <= 15);
    assert_eq!(m.endpoint(&e.id), Some(&e));
    assert_eq!(m.endpoint_by_tap(&e.host_tap_name), Some(&e));
    assert_eq!(m.endpoint_by_port_index(0), Some(&e));
    assert_eq!(m.endpoint_for("a", "s1").unwrap(), &e);
    let e2 = m
        .connect(Connect {
            mac: Some(mac("02:00:00:00:00:01")),
            ipv4: Some(ip("10.1.0.200")),
            ..Connect::new(&a.id, "s2")
        })
        .unwrap();
    assert_eq!((e2.ipv4, e2.mac, e2.port_index), (Some(ip("10.1.0.200")), mac("02:00:00:00:00:01"), 1));
    let on_a: Vec<_> = m.endpoints_on_network(&a.id).iter().map(|e| e.sandbox.clone()).collect();
    assert_eq!(on_a, ["s1", "s2"]);
    m.check_invariants().unwrap();
}

#[test]
fn connect_refusals_name_the_culprit() {
    let mut m = populated();
    m.create_network(CreateNetwork { subnet: Some(net("10.3.0.0/24")), ..CreateNetwork::new("ov", Driver::Overlay) })
        .unwrap();
    m.connect(Connect::new("a", "s1")).unwrap();
    m.connect(Connect { mac: Some(mac("02:00:00:00:00:09")), ..Connect::new("b", "s1") }).unwrap();
    let before = snapshot(&m);
    let cases: Vec<(Connect, Vec<&str>)> = vec![
        (Connect::new("host", "s2"), vec!["network host", "host's own network stack"]),
        (Connect::new("none", "s2"), vec!["network none", "only loopback"]),
        (Connect::new("zzz", "s2"), vec!["network zzz not found"]),
        (Connect::new("a", "ghost"), vec!["sandbox ghost not found"]),
        (Connect::new("ov", "s2"), vec!["network ov is not attachable: create it with --attachable"]),
        (Connect::new("a", "s1"), vec!["sandbox s1 is already connected to network a"]),
        (
            Connect { ipv4: Some(ip("10.9.0.5")), ..Connect::new("a", "s2") },
            vec!["10.9.0.5 is not inside subnet 10.1.0.0/24 of network a"],
        ),
        (
            Connect { ipv4: Some(ip("10.1.0.1")), ..Connect::new("a", "s2") },
            vec!["10.1.0.1 is the gateway of network a"],
        ),
        (
            Connect { ipv4: Some(ip("10.1.0.0")), ..Connect::new("a", "s2") },
            vec!["10.1.0.0 is the network address of network a"],
        ),
        (
            Connect { ipv4: Some(ip("10.1.0.255")), ..Connect::new("a", "s2") },
            vec!["10.1.0.255 is the broadcast address of network a"],
        ),
        (
            Connect { ipv4: Some(ip("10.1.0.2")), ..Connect::new("a", "s2") },
            vec!["10.1.0.2 is already in use on network a by sandbox s1"],
        ),
        (
            Connect { mac: Some(mac("00:00:00:00:00:00")), ..Connect::new("a", "s2") },
            vec!["00:00:00:00:00:00", "all-zero"],
        ),
        (
            Connect { mac: Some(mac("01:00:5e:00:00:01")), ..Connect::new("a", "s2") },
            vec!["01:00:5e:00:00:01", "multicast"],
        ),
        (Connect { mac: Some(mac("ff:ff:ff:ff:ff:ff")), ..Connect::new("a", "s2") }, vec!["multicast"]),
        (
            Connect { mac: Some(mac("02:00:00:00:00:09")), ..Connect::new("b", "s2") },
            vec!["MAC address 02:00:00:00:00:09 is already in use on network b by sandbox s1"],
        ),
        (
            Connect { mac: Some(mac("02:42:0a:01:00:02")), ..Connect::new("a", "s2") },
            vec!["02:42:0a:01:00:02 is already in use on network a by sandbox s1"],
        ),
        (
            Connect { aliases: vec!["ok".into(), "not ok".into()], ..Connect::new("a", "s2") },
            vec!["invalid alias \"not ok\""],
        ),
    ];
    for (req, needles) in cases {
        let r = m.connect(req);
        assert_refused(&m, &before, r, &needles);
    }
    let r = m.disconnect("b", "s2");
    assert_refused(&m, &before, r, &["sandbox s2 is not connected to network b"]);
    let r = m.disconnect("a", "ghost");
    assert_refused(&m, &before, r, &["sandbox ghost not found"]);
}

#[test]
fn same_mac_allowed_on_different_networks_and_overlay_attach_rules() {
    let mut m = populated();
    let x = mac("02:00:00:00:00:42");
    m.connect(Connect { mac: Some(x), ..Connect::new("a", "s1") }).unwrap();
    m.connect(Connect { mac: Some(x), ..Connect::new("b", "s2") }).unwrap();
    m.create_network(CreateNetwork { subnet: Some(net("10.3.0.0/24")), ..CreateNetwork::new("ov", Driver::Overlay) })
        .unwrap();
    m.create_network(CreateNetwork {
        attachable: true,
        subnet: Some(net("10.4.0.0/24")),
        ..CreateNetwork::new("ova", Driver::Overlay)
    })
    .unwrap();
    m.connect(Connect { exempt_from_attachable: true, ..Connect::new("ov", "s1") }).unwrap();
    m.connect(Connect::new("ova", "s1")).unwrap();
    m.check_invariants().unwrap();
}

#[test]
fn ipam_lowest_free_and_release() {
    let mut m = Model::new();
    m.create_network(bridge("n", "10.7.0.0/24")).unwrap();
    for s in ["s1", "s2", "s3", "s4"] {
        m.create_sandbox(CreateSandbox::new(s)).unwrap();
    }
    let got: Vec<_> = ["s1", "s2", "s3"].iter().map(|s| m.connect(Connect::new("n", *s)).unwrap().ipv4).collect();
    assert_eq!(got, [ip("10.7.0.2"), ip("10.7.0.3"), ip("10.7.0.4")].map(Some));
    let d = m.disconnect("n", "s2").unwrap();
    assert_eq!(d.endpoint.ipv4, Some(ip("10.7.0.3")));
    assert_eq!(m.connect(Connect::new("n", "s4")).unwrap().ipv4, Some(ip("10.7.0.3")), "released address is reused");
    // The released address of s2 is free for an explicit request too.
    m.disconnect("n", "s4").unwrap();
    assert_eq!(
        m.connect(Connect { ipv4: Some(ip("10.7.0.3")), ..Connect::new("n", "s2") }).unwrap().ipv4,
        Some(ip("10.7.0.3"))
    );
}

#[test]
fn ipam_skips_a_gateway_in_the_middle_and_exhausts() {
    let mut m = Model::new();
    m.create_network(CreateNetwork {
        subnet: Some(net("10.8.0.0/29")),
        gateway: Some(ip("10.8.0.2")),
        ..CreateNetwork::new("n", Driver::Bridge)
    })
    .unwrap();
    let mut got = Vec::new();
    for i in 0..5 {
        let s = format!("s{i}");
        m.create_sandbox(CreateSandbox::new(&s)).unwrap();
        got.push(m.connect(Connect::new("n", &s)).unwrap().ipv4);
    }
    assert_eq!(got, ["10.8.0.1", "10.8.0.3", "10.8.0.4", "10.8.0.5", "10.8.0.6"].map(|a| Some(ip(a))));
    m.create_sandbox(CreateSandbox::new("late")).unwrap();
    let before = snapshot(&m);
    let r = m.connect(Connect::new("n", "late"));
    assert_refused(&m, &before, r, &["no free address left in subnet 10.8.0.0/29 of network n"]);
}

#[test]
fn ipam_allocates_from_the_ip_range_and_exhausts_it() {
    let mut m = Model::new();
    m.create_network(CreateNetwork {
        subnet: Some(net("10.9.0.0/24")),
        gateway: Some(ip("10.9.0.9")),
        ip_range: Some(net("10.9.0.8/30")),
        attachable: true,
        ..CreateNetwork::new("n", Driver::Overlay)
    })
    .unwrap();
    for s in ["s1", "s2", "s3", "s4", "s5"] {
        m.create_sandbox(CreateSandbox::new(s)).unwrap();
    }
    // 10.9.0.8..=11 minus the gateway; the range's own network and broadcast
    // addresses are host addresses of the subnet, so they are used.
    let got: Vec<_> = ["s1", "s2", "s3"].iter().map(|s| m.connect(Connect::new("n", *s)).unwrap().ipv4).collect();
    assert_eq!(got, ["10.9.0.8", "10.9.0.10", "10.9.0.11"].map(|a| Some(ip(a))));
    let before = snapshot(&m);
    let r = m.connect(Connect::new("n", "s4"));
    assert_refused(&m, &before, r, &["no free address left in ip range 10.9.0.8/30 of network n"]);
    // An explicit address may lie anywhere in the subnet, outside the range.
    let e = m.connect(Connect { ipv4: Some(ip("10.9.0.200")), ..Connect::new("n", "s4") }).unwrap();
    assert_eq!(e.ipv4, Some(ip("10.9.0.200")));
    // A range at the start of the subnet skips the subnet's network address.
    m.create_network(CreateNetwork {
        subnet: Some(net("10.10.0.0/24")),
        ip_range: Some(net("10.10.0.0/30")),
        ..CreateNetwork::new("low", Driver::Bridge)
    })
    .unwrap();
    assert_eq!(m.connect(Connect::new("low", "s5")).unwrap().ipv4, Some(ip("10.10.0.2")), "not .0, not the gateway .1");
}

#[test]
fn ifname_slots_are_reused() {
    let mut m = populated();
    m.create_network(bridge("c", "10.3.0.0/24")).unwrap();
    m.create_network(bridge("d", "10.4.0.0/24")).unwrap();
    let names: Vec<_> =
        ["a", "b", "c"].iter().map(|n| m.connect(Connect::new(*n, "s1")).unwrap().ifname_in_sandbox).collect();
    assert_eq!(names, ["eth0", "eth1", "eth2"]);
    assert_eq!(m.connect(Connect::new("a", "s2")).unwrap().ifname_in_sandbox, "eth0", "slots are per sandbox");
    m.disconnect("b", "s1").unwrap();
    assert_eq!(m.connect(Connect::new("d", "s1")).unwrap().ifname_in_sandbox, "eth1");
    let order: Vec<_> = m.endpoints_in_sandbox("s1").iter().map(|e| e.ifname_in_sandbox.clone()).collect();
    assert_eq!(order, ["eth0", "eth1", "eth2"]);
}

/// Docker's `container_iface_prefix`: a network's interfaces are named
/// by its prefix, numbered per prefix, never as another endpoint of the
/// sandbox is named; the model stays consistent (and so loads again).
#[test]
fn a_networks_iface_prefix_names_its_interfaces() {
    let mut m = populated();
    let with_prefix = |name: &str, subnet: &str, prefix: &str| {
        let mut req = bridge(name, subnet);
        req.options.insert("com.docker.network.container_iface_prefix".into(), prefix.into());
        req
    };
    m.create_network(with_prefix("data", "10.3.0.0/24", "data")).unwrap();
    m.create_network(with_prefix("data2", "10.4.0.0/24", "data")).unwrap();
    let names: Vec<_> =
        ["data", "a", "data2"].iter().map(|n| m.connect(Connect::new(*n, "s1")).unwrap().ifname_in_sandbox).collect();
    assert_eq!(names, ["data0", "eth0", "data1"]);
    m.disconnect("data", "s1").unwrap();
    assert_eq!(m.connect(Connect::new("data", "s1")).unwrap().ifname_in_sandbox, "data0", "numbers are reused");
    let order: Vec<_> = m.endpoints_in_sandbox("s1").iter().map(|e| e.ifname_in_sandbox.clone()).collect();
    assert_eq!(order, ["data0", "eth0", "data1"], "by number, then name");
    m.check_invariants().unwrap();

    // `eth1` + 0 is `eth` + 10: the eleventh eth interface takes 11.
    m.create_network(with_prefix("one", "10.5.0.0/24", "eth1")).unwrap();
    assert_eq!(m.connect(Connect::new("one", "s2")).unwrap().ifname_in_sandbox, "eth10");
    let mut last = String::new();
    for i in 0..11 {
        let name = format!("n{i}");
        m.create_network(bridge(&name, &format!("10.6.{i}.0/24"))).unwrap();
        last = m.connect(Connect::new(&name, "s2")).unwrap().ifname_in_sandbox;
    }
    assert_eq!(last, "eth11");
    m.check_invariants().unwrap();
}

/// A network an older daemon kept the option on (and named `eth…`) goes on
/// naming `eth…` and says the option has no effect; a cluster record's
/// prefix is checked again; a name past Linux's 15 characters is refused.
#[test]
fn iface_prefixes_of_older_state_and_other_nodes() {
    let option = "com.docker.network.container_iface_prefix";
    let mut m = populated();
    let mut req = bridge("old", "10.3.0.0/24");
    req.options.insert(option.into(), "vs".into());
    let id = m.create_network(req).unwrap().id;
    m.networks.get_mut(&id).unwrap().iface_prefix = None;
    assert_eq!(m.connect(Connect::new("old", "s1")).unwrap().ifname_in_sandbox, "eth0");
    assert_eq!(m.network("old").unwrap().ignored_options(), [option]);
    let saved = serde_json::to_string(&m).unwrap();
    let back: Model = serde_json::from_str(&saved).unwrap();
    back.check_invariants().unwrap();

    let mut record = back.network("old").unwrap().clone();
    record.id = "f".repeat(64);
    record.name = "elsewhere".into();
    record.subnet = Some(net("10.4.0.0/24"));
    record.gateway = Some(ip("10.4.0.1"));
    record.options.insert(option.into(), "a/b".into());
    let refused = Model::new().adopt_network(record.clone()).unwrap_err().to_string();
    assert!(refused.contains(option) && refused.contains("only letters"), "{refused}");
    record.options.insert(option.into(), "wan".into());
    let adopted = Model::new().adopt_network(record).unwrap();
    assert_eq!(adopted.iface_prefix(), "wan");

    // A prefix no check let through (a hand-edited state) stops at 15.
    let mut m = populated();
    let long = m.create_network(bridge("long", "10.5.0.0/24")).unwrap().id;
    m.networks.get_mut(&long).unwrap().iface_prefix = Some("abcdefghijklmno".into());
    let r = m.connect(Connect::new("long", "s1"));
    assert!(r.unwrap_err().to_string().contains("longer than Linux's 15 characters"));
    assert!(m.check_invariants().unwrap_err().contains("prefix"), "the state checks the prefix");
}

/// Docker's `com.docker.network.endpoint.ifname`: an endpoint named as
/// asked, listed after the numbered ones, kept by the state and by an
/// export; a name in use, the loopback or one Linux refuses is refused.
#[test]
fn an_interface_named_as_asked() {
    let mut m = populated();
    let named = |network: &str, name: &str| Connect { ifname: Some(name.into()), ..Connect::new(network, "s1") };
    let lan = m.connect(named("a", "lan0")).unwrap();
    assert_eq!(lan.ifname_in_sandbox, "lan0");
    assert_eq!(m.connect(Connect::new("b", "s1")).unwrap().ifname_in_sandbox, "eth0", "numbers are not taken");
    let order: Vec<_> = m.endpoints_in_sandbox("s1").iter().map(|e| e.ifname_in_sandbox.clone()).collect();
    assert_eq!(order, ["eth0", "lan0"]);
    let back: Model = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
    back.check_invariants().unwrap();
    let exported = m.export_stack();
    let s1 = exported.sandboxes.iter().find(|s| s.name == "s1").unwrap();
    let names: Vec<_> = s1.networks.iter().map(|a| (a.network.as_str(), a.interface_name.as_deref())).collect();
    assert_eq!(names, [("b", None), ("a", Some("lan0"))], "only the name asked for is exported");

    m.create_network(bridge("c", "10.3.0.0/24")).unwrap();
    let before = snapshot(&m);
    for (name, needle) in [
        ("lan0", "already used in sandbox s1"),
        ("eth0", "already used"),
        ("lo", "loopback"),
        ("a/b", "only letters"),
        ("sixteen-chars-xx", "1 to 15"),
        ("", "1 to 15"),
    ] {
        let r = m.connect(named("c", name));
        assert_refused(&m, &before, r, &[needle]);
    }
}

/// A prefix that cannot start an interface name is refused, changing nothing.
#[test]
fn a_bad_iface_prefix_is_refused() {
    let mut m = populated();
    let before = snapshot(&m);
    for (prefix, why) in
        [("", "1 to 12"), ("a/b", "only letters"), ("a b", "only letters"), ("thirteenchars", "1 to 12")]
    {
        let mut req = bridge("x", "10.3.0.0/24");
        req.options.insert("com.docker.network.container_iface_prefix".into(), prefix.into());
        let r = m.create_network(req);
        assert_refused(&m, &before, r, &["container_iface_prefix", why]);
    }
}

#[test]
fn port_indexes_are_dense_and_reused() {
    let mut m = populated();
    let p: Vec<_> = [("a", "s1"), ("a", "s2"), ("b", "s1")]
        .iter()
        .map(|(n, s)| m.connect(Connect::new(*n, *s)).unwrap().port_index)
        .collect();
    assert_eq!(p, [0, 1, 2]);
    m.disconnect("a", "s2").unwrap();
    assert_eq!(m.connect(Connect::new("b", "s2")).unwrap().port_index, 1);
}

#[test]
fn default_gateway_selection_and_promotion() {
    let mut m = populated();
    m.create_network(CreateNetwork {
        internal: true,
        subnet: Some(net("10.3.0.0/24")),
        ..CreateNetwork::new("int", Driver::Bridge)
    })
    .unwrap();
    let i = m.connect(Connect::new("int", "s1")).unwrap();
    assert!(!i.is_default_gateway_network, "internal networks never carry the default route");
    let a = m.connect(Connect::new("a", "s1")).unwrap();
    assert!(a.is_default_gateway_network, "first non-internal network");
    let b = m.connect(Connect::new("b", "s1")).unwrap();
    assert!(!b.is_default_gateway_network);
    let d = m.disconnect("a", "s1").unwrap();
    assert!(d.endpoint.is_default_gateway_network);
    let promoted = d.new_default_gateway.expect("b takes over");
    assert_eq!(promoted.id, b.id);
    assert!(m.endpoint(&b.id).unwrap().is_default_gateway_network);
    let d = m.disconnect("b", "s1").unwrap();
    assert_eq!(d.new_default_gateway, None, "only the internal network is left");
    let d = m.disconnect("int", "s1").unwrap();
    assert_eq!(d.new_default_gateway, None);
    m.check_invariants().unwrap();
}

#[test]
fn the_highest_gateway_priority_carries_the_default_route() {
    let mut m = populated();
    m.create_network(CreateNetwork { subnet: Some(net("10.3.0.0/24")), ..CreateNetwork::new("c", Driver::Bridge) })
        .unwrap();
    let flagged = |m: &Model| {
        m.endpoints_in_sandbox("s1")
            .into_iter()
            .filter(|e| e.is_default_gateway_network)
            .map(|e| e.id.clone())
            .collect::<Vec<_>>()
    };
    let a = m.connect(Connect::new("a", "s1")).unwrap();
    assert!(a.is_default_gateway_network);
    let b = m.connect(Connect { gw_priority: 5, ..Connect::new("b", "s1") }).unwrap();
    assert!(b.is_default_gateway_network, "a higher priority takes the default route");
    assert_eq!(flagged(&m), std::slice::from_ref(&b.id), "and only it has it");
    let c = m.connect(Connect { gw_priority: 5, ..Connect::new("c", "s1") }).unwrap();
    assert!(!c.is_default_gateway_network, "a tie stays with the earlier");
    assert_eq!(m.default_route_endpoint("s1", false).map(|(e, _)| e.id.clone()), Some(b.id.clone()));
    m.check_invariants().unwrap();
    // Its heir is the highest priority left, not the first interface.
    let d = m.disconnect("b", "s1").unwrap();
    assert_eq!(d.new_default_gateway.map(|e| e.id), Some(c.id.clone()));
    assert_eq!(flagged(&m), std::slice::from_ref(&c.id));
    assert_eq!(m.default_route_endpoint("s1", false).map(|(e, _)| e.id.clone()), Some(c.id.clone()));
    assert_eq!(m.default_route_endpoint("s1", true), None, "no network with IPv6");
    // A negative priority never takes it.
    m.disconnect("c", "s1").unwrap();
    let b = m.connect(Connect { gw_priority: -1, ..Connect::new("b", "s1") }).unwrap();
    assert!(!b.is_default_gateway_network);
    assert_eq!(flagged(&m), std::slice::from_ref(&a.id));
    m.check_invariants().unwrap();
}

#[test]
fn a_sandboxs_own_addresses_are_its_default_routes_else_its_first_then_the_others() {
    let mut m = populated();
    assert!(m.own_addresses("s1").is_empty(), "no endpoint, no address");
    m.create_network(CreateNetwork {
        internal: true,
        subnet: Some(net("10.3.0.0/24")),
        enable_ipv6: true,
        subnet6: Some("fd00:3::/64".parse().unwrap()),
        ..CreateNetwork::new("int", Driver::Bridge)
    })
    .unwrap();
    let i = m.connect(Connect::new("int", "s1")).unwrap();
    let ips = |e: &Endpoint| [IpAddr::from(e.ipv4.unwrap()), IpAddr::from(e.ipv6.unwrap())];
    assert_eq!(m.own_addresses("s1"), ips(&i), "no default route: the first endpoint's");
    let a = m.connect(Connect::new("a", "s1")).unwrap();
    let own = m.own_addresses("s1");
    assert_eq!(
        own,
        [IpAddr::from(a.ipv4.unwrap()), ips(&i)[1], ips(&i)[0]],
        "IPv4 of the default route, then the rest"
    );
}

#[test]
fn remove_sandbox_returns_endpoints_and_frees_them() {
    let mut m = populated();
    let e1 = m.connect(Connect::new("a", "s1")).unwrap();
    let e2 = m.connect(Connect::new("b", "s1")).unwrap();
    m.connect(Connect::new("a", "s2")).unwrap();
    let f = m.add_static_fdb("a", mac("02:00:00:00:00:77"), &e1.host_tap_name).unwrap();
    let r = m.remove_sandbox("s1").unwrap();
    assert_eq!(r.sandbox.name, "s1");
    assert_eq!(r.endpoints, [e1.clone(), e2]);
    assert_eq!(r.removed_fdb, [f]);
    assert!(m.sandbox("s1").is_err());
    assert_eq!(m.endpoints().count(), 1);
    assert_eq!(m.static_fdb().count(), 0);
    m.create_sandbox(CreateSandbox::new("s3")).unwrap();
    assert_eq!(m.connect(Connect::new("a", "s3")).unwrap().ipv4, e1.ipv4, "address released");
    m.remove_network("b").unwrap();
    m.check_invariants().unwrap();
}

#[test]
fn static_fdb_rules() {
    let mut m = populated();
    let ea = m.connect(Connect::new("a", "s1")).unwrap();
    let eb = m.connect(Connect::new("b", "s2")).unwrap();
    let x = mac("02:00:00:00:00:01");
    let f = m.add_static_fdb("a", x, &ea.host_tap_name).unwrap();
    assert_eq!(
        (f.network_id.as_str(), f.mac, f.port_name.as_str()),
        (ea.network_id.as_str(), x, ea.host_tap_name.as_str())
    );
    m.add_static_fdb("b", x, &eb.host_tap_name).unwrap();
    let before = snapshot(&m);
    let r = m.add_static_fdb("a", x, &ea.host_tap_name);
    assert_refused(
        &m,
        &before,
        r,
        &["static FDB entry for 02:00:00:00:00:01 on network a already exists", &ea.host_tap_name],
    );
    let r = m.add_static_fdb("a", mac("02:00:00:00:00:02"), &eb.host_tap_name);
    assert_refused(&m, &before, r, &[&format!("port {} is not an endpoint of network a", eb.host_tap_name)]);
    let r = m.add_static_fdb("a", mac("02:00:00:00:00:02"), "vswdeadbeef");
    assert_refused(&m, &before, r, &["port vswdeadbeef"]);
    let r = m.add_static_fdb("a", mac("01:00:00:00:00:02"), &ea.host_tap_name);
    assert_refused(&m, &before, r, &["01:00:00:00:00:02", "unicast"]);
    let r = m.add_static_fdb("a", mac("00:00:00:00:00:00"), &ea.host_tap_name);
    assert_refused(&m, &before, r, &["all-zero"]);
    let r = m.add_static_fdb("nope", x, &ea.host_tap_name);
    assert_refused(&m, &before, r, &["network nope not found"]);
    let r = m.remove_static_fdb("a", mac("02:00:00:00:00:03"));
    assert_refused(&m, &before, r, &["no static FDB entry for 02:00:00:00:00:03 on network a"]);
    assert_eq!(m.static_fdb_on(&ea.network_id).count(), 1);
    assert_eq!(m.remove_static_fdb("a", x).unwrap(), f);
    assert_eq!(m.static_fdb().count(), 1);
    let d = m.disconnect("b", "s2").unwrap();
    assert_eq!(d.removed_fdb.len(), 1, "entries pointing at a removed port go with it");
    assert_eq!(m.static_fdb().count(), 0);
}

#[test]
fn config_rules() {
    let mut m = Model::new();
    assert_eq!(m.config().aging_time_secs, 300);
    m.set_config("aging-time", "600").unwrap();
    assert_eq!(m.config().aging_time_secs, 600);
    m.set_config("aging-time", "10").unwrap();
    m.set_config("aging-time", "1000000").unwrap();
    let before = snapshot(&m);
    for bad in ["9", "1000001", "0"] {
        let r = m.set_config("aging-time", bad);
        assert_refused(&m, &before, r, &[&format!("invalid value \"{bad}\" for aging-time"), "10..=1000000"]);
    }
    for bad in ["abc", "-5", "1.5", ""] {
        let r = m.set_config("aging-time", bad);
        assert_refused(&m, &before, r, &["aging-time", "whole number"]);
    }
    let r = m.set_config("stp", "on");
    assert_refused(&m, &before, r, &["unknown config key \"stp\"", "aging-time"]);
}

#[test]
fn aux_addresses_are_never_given_out_nor_taken_explicitly() {
    let mut m = Model::new();
    let aux = |pairs: &[(&str, &str)]| -> BTreeMap<String, IpAddr> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), v.parse().unwrap())).collect()
    };
    let lan = |pairs: &[(&str, &str)]| CreateNetwork {
        subnet: Some(net("10.9.0.0/24")),
        enable_ipv6: true,
        subnet6: Some("fd00:9::/64".parse().unwrap()),
        aux_addresses: aux(pairs),
        ..CreateNetwork::new("lan", Driver::Bridge)
    };
    // Refusals name the address and why, and create nothing.
    for (pairs, needle) in [
        (&[("r", "10.9.1.2")][..], "not inside subnet 10.9.0.0/24"),
        (&[("r", "10.9.0.1")], "the gateway"),
        (&[("r", "10.9.0.0")], "the network address"),
        (&[("r", "10.9.0.255")], "the broadcast address"),
        (&[("r", "fd00:9::")], "subnet-router anycast"),
        (&[("a", "10.9.0.5"), ("b", "10.9.0.5")], "the same address as --aux-address a"),
        (&[("", "10.9.0.5")], "the name is empty"),
    ] {
        let before = snapshot(&m);
        let r = m.create_network(lan(pairs));
        assert_refused(&m, &before, r, &["--aux-address", needle]);
    }
    let before = snapshot(&m);
    let r = m.create_network(CreateNetwork {
        aux_addresses: aux(&[("r", "10.9.0.5")]),
        ..CreateNetwork::new("x", Driver::Bridge)
    });
    assert_refused(&m, &before, r, &["give the network's IPv4 --subnet"]);

    let n = m.create_network(lan(&[("router", "10.9.0.2"), ("printer", "10.9.0.3"), ("v6", "fd00:9::2")])).unwrap();
    assert_eq!(n.aux_addresses4().collect::<Vec<_>>(), [ip("10.9.0.3"), ip("10.9.0.2")], "by name");
    for s in ["s1", "s2", "s3"] {
        m.create_sandbox(CreateSandbox::new(s)).unwrap();
    }
    let e = m.connect(Connect::new("lan", "s1")).unwrap();
    assert_eq!(e.ipv4, Some(ip("10.9.0.4")), "past the gateway and both auxiliary addresses");
    assert_eq!(e.ipv6, Some("fd00:9::3".parse().unwrap()), "past the IPv6 one too");
    for taken in ["10.9.0.2", "fd00:9::2"] {
        let before = snapshot(&m);
        let ip: IpAddr = taken.parse().unwrap();
        let req = match ip {
            IpAddr::V4(v4) => Connect { ipv4: Some(v4), ..Connect::new("lan", "s2") },
            IpAddr::V6(v6) => Connect { ipv6: Some(v6), ..Connect::new("lan", "s2") },
        };
        let r = m.connect(req);
        assert_refused(&m, &before, r, &[taken, "reserved as auxiliary address", "--aux-address"]);
    }
    // Kept in the state, as every network field.
    let saved = serde_json::to_string(&m).unwrap();
    let back: Model = serde_json::from_str(&saved).unwrap();
    assert_eq!(back.network("lan").unwrap().aux_addresses, n.aux_addresses);
    // A state (or cluster record) that reserves an endpoint's address, or an
    // address outside the subnet, is refused.
    let mut bad = back.clone();
    bad.networks.get_mut(&n.id).unwrap().aux_addresses.insert("clash".into(), "10.9.0.4".parse().unwrap());
    assert!(bad.check_invariants().unwrap_err().contains("auxiliary"));
    let mut outside = n.clone();
    outside.aux_addresses.insert("far".into(), "10.10.0.9".parse().unwrap());
    let r = Model::new().adopt_network(outside);
    assert!(r.unwrap_err().to_string().contains("far=10.10.0.9: it is not inside subnet 10.9.0.0/24"));

    // A family the network lacks is named as such.
    let v6_only = CreateNetwork {
        enable_ipv4: false,
        enable_ipv6: true,
        subnet6: Some("fd00:8::/64".parse().unwrap()),
        aux_addresses: aux(&[("r", "10.9.0.5")]),
        ..CreateNetwork::new("other", Driver::Bridge)
    };
    let v4_only = CreateNetwork {
        subnet: Some(net("10.8.0.0/24")),
        aux_addresses: aux(&[("r", "fd00:8::5")]),
        ..CreateNetwork::new("other", Driver::Bridge)
    };
    for (req, needle) in [(v6_only, "no IPv4 (--ipv4=false)"), (v4_only, "no IPv6 (add --ipv6)")] {
        let before = snapshot(&m);
        let r = m.create_network(req);
        assert_refused(&m, &before, r, &[needle]);
    }
}
