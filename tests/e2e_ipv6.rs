//! Dual-stack and IPv6-only networks of a real `vswitchd`: endpoints get
//! their IPv6 address (automatic or `--ip6`) on `ethN`, usable at once, with
//! the on-link prefix route and an IPv6 default route via the network's IPv6
//! gateway; sandboxes ping each other over IPv6 and IPv4 and carry TCP over
//! IPv6; `network inspect` is Docker-shaped with both IPAM configs; a
//! refused `--ip6` changes nothing; and all of it survives `kill -9`. Needs
//! root.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use ctl::proto::{EndpointInfo, SandboxInfo};
use serde_json::Value;
use vswitch::{
    Daemon, ipv4_addrs, ipv6_addrs, link_info, link_names, netns_exec_ok, ping, require_root, tcp_transfer,
    wait_for_ping,
};

/// `network connect NET SANDBOX [ARGS…]`.
fn connect(d: &Daemon, net: &str, sandbox: &str, args: &[&str]) -> EndpointInfo {
    let mut all = vec!["network", "connect", net, sandbox];
    all.extend_from_slice(args);
    d.ctl_json(&all)
}

/// The endpoint's IPv6 address without its prefix length.
fn v6(e: &EndpointInfo) -> Ipv6Addr {
    e.ipv6.unwrap_or_else(|| panic!("{} has no IPv6 address: {e:?}", e.sandbox)).addr()
}

/// `ip -j -6 route show` inside `ns`.
fn routes6(ns: &str) -> Vec<Value> {
    let out = netns_exec_ok(ns, "ip", &["-j", "-6", "route", "show"]);
    serde_json::from_str::<Value>(&out).unwrap().as_array().cloned().unwrap_or_default()
}

/// Asserts that `ns` has the on-link route to `prefix` out of `ifname` and,
/// when `gateway` is set, exactly one static IPv6 default route out of
/// `ifname`, via it; with no `gateway`, none. (Default routes a router
/// advertisement installs, `proto ra`, are not the plumbing's and are left
/// out.)
#[track_caller]
fn assert_routes6(ns: &str, ifname: &str, prefix: &str, gateway: Option<&str>) {
    let routes = routes6(ns);
    let on_link: Vec<&Value> = routes.iter().filter(|r| r["dst"] == prefix).collect();
    assert_eq!(on_link.len(), 1, "{ns}: on-link route to {prefix}: {routes:?}");
    assert_eq!(on_link[0]["dev"], ifname, "{routes:?}");
    assert!(on_link[0].get("gateway").is_none(), "{routes:?}");
    let defaults: Vec<&Value> =
        routes.iter().filter(|r| r["dst"] == "default" && r["dev"] == ifname && r["protocol"] != "ra").collect();
    match gateway {
        Some(gw) => {
            assert_eq!(defaults.len(), 1, "{ns}: IPv6 default route out of {ifname}: {routes:?}");
            assert_eq!(defaults[0]["gateway"].as_str(), Some(gw), "{routes:?}");
        }
        None => assert!(defaults.is_empty(), "{ns}: no IPv6 default route out of {ifname} expected: {routes:?}"),
    }
}

/// Asserts that `ifname` in `ns` holds exactly `want` as its global IPv6
/// address, flagged `nodad` and not tentative (usable at once).
#[track_caller]
fn assert_v6_address(ns: &str, ifname: &str, want: &str) {
    assert_eq!(ipv6_addrs(ns, ifname), [want], "{ns}/{ifname}");
    let info = link_info(ns, ifname).unwrap();
    let a = info["addr_info"].as_array().unwrap().iter().find(|a| a["scope"] == "global" && a["family"] == "inet6");
    let a = a.unwrap_or_else(|| panic!("{info}"));
    assert_eq!(a["nodad"], true, "{info}");
    assert!(a.get("tentative").is_none() && a.get("dadfailed").is_none(), "{info}");
}

#[test]
fn dual_stack_sandboxes_talk_over_ipv6_and_ipv4() {
    if !require_root("dual_stack_sandboxes_talk_over_ipv6_and_ipv4") {
        return;
    }
    let d = Daemon::start();
    let net = d.name("n");
    let (a, b, c) = (d.name("a"), d.name("b"), d.name("c"));
    let created: Value =
        d.ctl_json(&["network", "create", &net, "--ipv6", "--subnet", "10.207.0.0/24", "--subnet", "fd00:207::/64"]);
    assert_eq!((&created["EnableIPv4"], &created["EnableIPv6"]), (&Value::Bool(true), &Value::Bool(true)));
    for s in [&a, &b, &c] {
        d.sandbox_create(s);
    }
    let ea = connect(&d, &net, &a, &[]);
    let eb = connect(&d, &net, &b, &["--ip6", "fd00:207::77"]);
    assert_eq!(ea.ipv6.map(|n| n.to_string()).as_deref(), Some("fd00:207::2/64"), "::1 is the gateway");
    assert_eq!(eb.ipv6.map(|n| n.to_string()).as_deref(), Some("fd00:207::77/64"), "--ip6 honoured");
    assert_eq!(eb.ipv4.map(|n| n.to_string()).as_deref(), Some("10.207.0.3/24"));

    // Inside the sandboxes: both families on eth0, the v6 address usable at
    // once, the on-link prefix route and both default routes.
    assert_v6_address(&a, &ea.ifname, "fd00:207::2/64");
    assert_v6_address(&b, &eb.ifname, "fd00:207::77/64");
    assert_eq!(ipv4_addrs(&a, &ea.ifname), ["10.207.0.2/24"]);
    assert_routes6(&a, &ea.ifname, "fd00:207::/64", Some("fd00:207::1"));
    let v4_default = netns_exec_ok(&a, "ip", &["-4", "route", "show", "default"]);
    assert!(v4_default.contains("via 10.207.0.1 dev eth0"), "{v4_default}");

    // IPv6 and IPv4 both ways, TCP over IPv6.
    assert!(ping(&a, v6(&eb), 3), "a cannot ping b over IPv6");
    assert!(ping(&b, v6(&ea), 3), "b cannot ping a over IPv6");
    assert!(ping(&a, eb.ipv4.unwrap().addr(), 2), "a cannot ping b over IPv4");
    let r = tcp_transfer(&b, v6(&eb), &a, 4 << 20).expect("TCP over IPv6");
    assert!(r.intact, "TCP over IPv6 corrupted: {r:?}");
    let r = tcp_transfer(&a, v6(&ea), &b, 1 << 20).expect("TCP over IPv6, the other way");
    assert!(r.intact, "{r:?}");

    // Docker's inspect: both families, both IPAM configs, the endpoints' IPv6Address.
    let inspect: Value = d.ctl_json(&["network", "inspect", &net]);
    let n = &inspect[0];
    assert_eq!((&n["EnableIPv4"], &n["EnableIPv6"]), (&Value::Bool(true), &Value::Bool(true)), "{n}");
    let config = n["IPAM"]["Config"].as_array().unwrap();
    assert_eq!(config.len(), 2, "{n}");
    assert_eq!(
        (config[0]["Subnet"].as_str(), config[0]["Gateway"].as_str()),
        (Some("10.207.0.0/24"), Some("10.207.0.1"))
    );
    assert_eq!(
        (config[1]["Subnet"].as_str(), config[1]["Gateway"].as_str()),
        (Some("fd00:207::/64"), Some("fd00:207::1"))
    );
    assert_eq!(n["Containers"][&eb.endpoint_id]["IPv6Address"], "fd00:207::77/64", "{n}");
    assert_eq!(n["Containers"][&eb.endpoint_id]["IPv4Address"], "10.207.0.3/24", "{n}");
    let ls: Value = d.ctl_json(&["network", "ls"]);
    let row = ls.as_array().unwrap().iter().find(|r| r["name"] == net.as_str()).unwrap();
    assert_eq!((&row["enable_ipv6"], row["subnet6"].as_str()), (&Value::Bool(true), Some("fd00:207::/64")), "{row}");
    let sb: Vec<SandboxInfo> = d.ctl_json(&["sandbox", "inspect", &b]);
    assert_eq!(sb[0].endpoints[0].ipv6, eb.ipv6, "{sb:?}");
    let show = d.ctl_ok(&["show"]);
    assert!(show.contains("subnet6: fd00:207::/64") && show.contains("ip6: fd00:207::77/64"), "{show}");
    let pretty = d.ctl_ok(&["sandbox", "inspect", "--pretty", &b]);
    assert!(pretty.contains("ip6: fd00:207::77/64"), "{pretty}");

    // A duplicate --ip6, an address outside the subnet, an IPv6 subnet
    // without --ipv6, two of one family: refused, nothing changed.
    let before: (Value, Value, Value) =
        (d.ctl_json(&["network", "ls"]), d.ctl_json(&["network", "inspect", &net]), d.ctl_json(&["sandbox", "ls"]));
    let state_before = std::fs::read(d.state_dir().join("state.json")).unwrap();
    let links_c = link_names(&c);
    let other = d.name("o");
    for (args, words) in [
        (vec!["network", "connect", &net, &c, "--ip6", "fd00:207::77"], vec!["fd00:207::77", "in use", b.as_str()]),
        (vec!["network", "connect", &net, &c, "--ip6", "fd00:999::1"], vec!["not inside", "fd00:207::/64"]),
        (vec!["network", "connect", &net, &c, "--ip6", "fd00:207::1"], vec!["gateway"]),
        (vec!["network", "create", &other, "--subnet", "fd00:208::/64"], vec!["requires --ipv6"]),
        (vec!["network", "create", &other, "--ipv6", "--subnet", "fd00:207:0:0:1::/80"], vec!["overlaps", &net]),
        (
            vec!["network", "create", &other, "--ipv6", "--subnet", "fd00:1::/64", "--subnet", "fd00:2::/64"],
            vec!["--subnet is given twice for IPv6"],
        ),
        (vec!["network", "create", &other, "--ipv4=false"], vec!["requires --ipv6"]),
    ] {
        let err = d.ctl_err(&args);
        for w in words {
            assert!(err.contains(w), "{args:?}: {err:?} lacks {w:?}");
        }
    }
    let after: (Value, Value, Value) =
        (d.ctl_json(&["network", "ls"]), d.ctl_json(&["network", "inspect", &net]), d.ctl_json(&["sandbox", "ls"]));
    assert_eq!(after, before, "a refused request changed the daemon's answers");
    assert_eq!(std::fs::read(d.state_dir().join("state.json")).unwrap(), state_before, "state file changed");
    assert_eq!(link_names(&c), links_c, "a refused connect left an interface in {c}");

    // Disconnecting takes the address and its routes with the interface.
    d.ctl_ok(&["network", "disconnect", &net, &b]);
    assert!(!link_names(&b).contains(&eb.ifname), "{:?}", link_names(&b));
    assert!(routes6(&b).iter().all(|r| r["dev"] != "eth0"), "{:?}", routes6(&b));
    assert!(!ping(&a, v6(&eb), 1), "b's IPv6 address still answers after disconnect");
    // And the address is free again.
    let ec = connect(&d, &net, &c, &["--ip6", "fd00:207::77"]);
    assert!(ping(&a, v6(&ec), 2), "the reused address is unreachable");
}

#[test]
fn ipv6_only_network_works_sandbox_to_sandbox() {
    if !require_root("ipv6_only_network_works_sandbox_to_sandbox") {
        return;
    }
    let d = Daemon::start();
    let (net, internal) = (d.name("six"), d.name("i6"));
    let (a, b, c) = (d.name("a"), d.name("b"), d.name("c"));
    // No subnet at all: a unique local /64 derived from the network's id.
    let info: Value = d.ctl_json(&["network", "create", &net, "--ipv6", "--ipv4=false"]);
    assert_eq!((&info["EnableIPv4"], &info["EnableIPv6"]), (&Value::Bool(false), &Value::Bool(true)), "{info}");
    let config = info["IPAM"]["Config"].as_array().unwrap();
    assert_eq!(config.len(), 1, "{info}");
    let subnet: ctl::Ipv6Net = config[0]["Subnet"].as_str().unwrap().parse().unwrap();
    let id = info["Id"].as_str().unwrap();
    let want: ctl::Ipv6Net = format!("fd{}:{}:{}::/64", &id[0..2], &id[2..6], &id[6..10]).parse().unwrap();
    assert_eq!(subnet, want, "ULA from the id {id}");
    let gateway = Ipv6Addr::from(u128::from(subnet.network()) + 1);
    assert_eq!(config[0]["Gateway"].as_str(), Some(gateway.to_string().as_str()));

    for s in [&a, &b, &c] {
        d.sandbox_create(s);
    }
    let ea = connect(&d, &net, &a, &[]);
    let eb = connect(&d, &net, &b, &[]);
    assert_eq!((ea.ipv4, eb.ipv4), (None, None));
    assert_eq!(v6(&ea), Ipv6Addr::from(u128::from(subnet.network()) + 2));
    assert_eq!(v6(&eb), Ipv6Addr::from(u128::from(subnet.network()) + 3));
    assert!(ipv4_addrs(&a, &ea.ifname).is_empty(), "an IPv6-only endpoint got IPv4");
    assert_v6_address(&a, &ea.ifname, &ea.ipv6.unwrap().to_string());
    assert_routes6(&a, &ea.ifname, &subnet.to_string(), Some(&gateway.to_string()));
    let v4_routes = netns_exec_ok(&a, "ip", &["-4", "route", "show"]);
    assert!(v4_routes.trim().is_empty(), "IPv4 routes in an IPv6-only sandbox: {v4_routes}");
    // The sandbox's resolver is the IPv6 gateway.
    let resolv = std::fs::read_to_string(format!("/etc/netns/{a}/resolv.conf")).unwrap();
    assert!(resolv.lines().any(|l| l == format!("nameserver {gateway}")), "{resolv}");
    let sb: Vec<SandboxInfo> = d.ctl_json(&["sandbox", "inspect", &a]);
    assert_eq!(sb[0].resolver.as_ref().unwrap().nameservers, [IpAddr::V6(gateway)]);

    assert!(ping(&a, v6(&eb), 3), "a cannot ping b on the IPv6-only network");
    let r = tcp_transfer(&a, v6(&ea), &b, 2 << 20).expect("TCP on the IPv6-only network");
    assert!(r.intact, "{r:?}");
    let err = d.ctl_err(&["network", "connect", &net, &c, "--ip", "10.1.2.3"]);
    assert!(err.contains("IPv6-only"), "{err}");
    assert!(!link_names(&c).iter().any(|l| l.starts_with("eth")), "{:?}", link_names(&c));

    // --internal: the on-link route, no default route.
    d.ctl_json::<Value>(&[
        "network",
        "create",
        &internal,
        "--ipv6",
        "--ipv4=false",
        "--internal",
        "--subnet",
        "fd00:209::/64",
    ]);
    let ec = connect(&d, &internal, &c, &[]);
    assert_v6_address(&c, &ec.ifname, "fd00:209::2/64");
    assert_routes6(&c, &ec.ifname, "fd00:209::/64", None);
}

#[test]
fn ipv6_endpoints_survive_kill_9() {
    if !require_root("ipv6_endpoints_survive_kill_9") {
        return;
    }
    let mut d = Daemon::start();
    let (net, six) = (d.name("n"), d.name("six"));
    let (a, b) = (d.name("a"), d.name("b"));
    d.ctl_json::<Value>(&[
        "network",
        "create",
        &net,
        "--ipv6",
        "--subnet",
        "10.208.0.0/24",
        "--subnet",
        "fd00:20a::/64",
    ]);
    d.ctl_json::<Value>(&["network", "create", &six, "--ipv6", "--ipv4=false", "--subnet", "fd00:20b::/64"]);
    d.sandbox_create(&a);
    d.sandbox_create(&b);
    let ea = connect(&d, &net, &a, &[]);
    let eb = connect(&d, &net, &b, &["--ip6", "fd00:20a::99"]);
    let ea6 = connect(&d, &six, &a, &[]);
    let eb6 = connect(&d, &six, &b, &["--ip6", "fd00:20b::42"]);
    assert!(ping(&a, v6(&eb), 2) && ping(&a, v6(&eb6), 2), "no IPv6 connectivity before the crash");
    let before: (Value, Value, Value, Value) = (
        d.ctl_json(&["network", "ls"]),
        d.ctl_json(&["network", "inspect", &net]),
        d.ctl_json(&["network", "inspect", &six]),
        d.ctl_json(&["sandbox", "ls"]),
    );

    d.kill9();
    // While the daemon is down, b's interface on the IPv6-only network goes
    // away (as after a reboot): the restart must plumb it again, IPv6 and all.
    netns_exec_ok(&b, "ip", &["link", "delete", &eb6.ifname]);
    d.restart();
    assert!(wait_for_ping(&a, v6(&eb), Duration::from_secs(30)).is_some(), "no IPv6 between a and b after restart");
    assert!(wait_for_ping(&a, v6(&eb6), Duration::from_secs(30)).is_some(), "the re-plumbed endpoint is unreachable");
    let after: (Value, Value, Value, Value) = (
        d.ctl_json(&["network", "ls"]),
        d.ctl_json(&["network", "inspect", &net]),
        d.ctl_json(&["network", "inspect", &six]),
        d.ctl_json(&["sandbox", "ls"]),
    );
    assert_eq!(after, before, "state changed across kill -9");
    for (s, e) in [(&a, &ea), (&b, &eb), (&a, &ea6), (&b, &eb6)] {
        assert_v6_address(s, &e.ifname, &e.ipv6.unwrap().to_string());
    }
    // The default routes belong to each sandbox's first network, the dual-stack one.
    assert_routes6(&b, &eb.ifname, "fd00:20a::/64", Some("fd00:20a::1"));
    assert_routes6(&b, &eb6.ifname, "fd00:20b::/64", None);
    let r = tcp_transfer(&b, v6(&eb6), &a, 1 << 20).expect("TCP over IPv6 after restart");
    assert!(r.intact, "{r:?}");
    assert!(ping(&b, ea.ipv4.unwrap().addr(), 1), "IPv4 after restart");
}

/// A sandbox that takes the gateway's IPv6 address by hand runs duplicate
/// address detection, and the gateway defends its address: the kernel marks
/// it `dadfailed` and never uses it, while a free address (the positive
/// control) passes.
#[test]
fn a_sandbox_taking_the_gateways_ipv6_address_fails_duplicate_address_detection() {
    if !require_root("a_sandbox_taking_the_gateways_ipv6_address_fails_duplicate_address_detection") {
        return;
    }
    let d = Daemon::start();
    let net = d.name("n");
    let a = d.name("a");
    d.ctl_json::<Value>(&[
        "network",
        "create",
        &net,
        "--ipv6",
        "--subnet",
        "10.207.15.0/24",
        "--subnet",
        "fd00:20f::/64",
    ]);
    d.sandbox_create(&a);
    let ea = connect(&d, &net, &a, &[]);
    // Without nodad: the kernel probes each address before using it.
    netns_exec_ok(&a, "ip", &["-6", "addr", "add", "fd00:20f::99/64", "dev", &ea.ifname]);
    netns_exec_ok(&a, "ip", &["-6", "addr", "add", "fd00:20f::1/64", "dev", &ea.ifname]);
    let flags_of = |address: &str| -> Option<Vec<String>> {
        let out = netns_exec_ok(&a, "ip", &["-j", "-6", "addr", "show", "dev", &ea.ifname]);
        let links: Value = serde_json::from_str(&out).unwrap();
        let info = links[0]["addr_info"].as_array()?.iter().find(|i| i["local"] == address)?.clone();
        let set = |flag: &str| info.get(flag).and_then(Value::as_bool) == Some(true);
        Some(["tentative", "dadfailed"].into_iter().filter(|f| set(f)).map(str::to_owned).collect())
    };
    let settled = vswitch::wait_for(Duration::from_secs(10), || {
        let (free, taken) = (flags_of("fd00:20f::99")?, flags_of("fd00:20f::1")?);
        (free.is_empty() && taken.iter().any(|f| f == "dadfailed")).then_some((free, taken))
    });
    assert!(
        settled.is_some(),
        "the gateway's address did not fail DAD while a free one passed: free {:?}, gateway's {:?}",
        flags_of("fd00:20f::99"),
        flags_of("fd00:20f::1")
    );
    // With the failed address given up, the sandbox reaches the real gateway.
    netns_exec_ok(&a, "ip", &["-6", "addr", "del", "fd00:20f::1/64", "dev", &ea.ifname]);
    assert!(ping(&a, "fd00:20f::1".parse::<Ipv6Addr>().unwrap(), 2), "the gateway is unreachable after the probe");
}
