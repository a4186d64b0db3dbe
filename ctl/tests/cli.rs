//! The `vswitchctl` binary against a fake daemon: the request each command line sends,
//! and the table / JSON output it prints.

mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Output};

use common::{FakeDaemon, Reply, TempDir};
use ctl::proto::{CreateNetwork, Driver, ErrorKind, Request};
use serde_json::{Value, json};

fn vswitchctl(socket: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vswitchctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("VSWITCH_CTL_SOCKET")
        .output()
        .expect("run vswitchctl")
}

/// Runs the CLI against a fake daemon; returns (stdout, requests received). Asserts success.
fn run_ok(args: &[&str], replies: Vec<Reply>) -> (String, Vec<Request>) {
    let d = FakeDaemon::start(replies);
    let out = vswitchctl(&d.socket, args);
    let reqs = d.finish();
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    (String::from_utf8(out.stdout).unwrap(), reqs)
}

fn network_info(name: &str, id: &str) -> Value {
    json!({
        "Name": name, "Id": id, "Created": "2025-01-01T00:00:00Z", "Scope": "local", "Driver": "bridge",
        "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": {}, "Config": [{"Subnet": "10.10.0.0/24", "Gateway": "10.10.0.1"}]},
        "Internal": false, "Attachable": false, "Containers": {}, "Options": {}, "Labels": {}
    })
}

#[test]
fn network_create_sends_every_flag() {
    let args = [
        "network",
        "create",
        "blue",
        "-d",
        "overlay",
        "--subnet",
        "10.10.0.0/24",
        "--gateway",
        "10.10.0.254",
        "--ip-range",
        "10.10.0.128/25",
        "--internal",
        "--mtu",
        "1400",
        "--attachable",
        "--vni",
        "42",
        "-o",
        "a=1",
        "--opt",
        "flag",
        "-o",
        "b=x=y",
    ];
    let id = "3f1c0a9e5b7d00000000000000000000";
    let (out, reqs) = run_ok(&args, vec![Reply::Ok(network_info("blue", id))]);
    assert_eq!(out, format!("{id}\n"));
    assert_eq!(
        reqs,
        vec![Request::NetworkCreate(CreateNetwork {
            name: "blue".into(),
            driver: Driver::Overlay,
            subnet: Some("10.10.0.0/24".parse().unwrap()),
            gateway: Some(Ipv4Addr::new(10, 10, 0, 254)),
            ip_range: Some("10.10.0.128/25".parse().unwrap()),
            internal: true,
            mtu: Some(1400),
            attachable: true,
            vni: Some(42),
            options: BTreeMap::from([
                ("a".into(), "1".into()),
                ("b".into(), "x=y".into()),
                ("flag".into(), String::new()),
            ]),
            ..CreateNetwork::default()
        })]
    );
    // Defaults.
    let (_, reqs) = run_ok(&["network", "create", "red"], vec![Reply::Ok(network_info("red", "r"))]);
    assert!(matches!(
        &reqs[..],
        [Request::NetworkCreate(CreateNetwork { driver: Driver::Bridge, subnet: None, internal: false, .. })]
    ));
}

#[test]
fn network_create_sends_config_only_and_config_from() {
    let (_, reqs) = run_ok(
        &["network", "create", "cfg", "--config-only", "--subnet", "10.30.0.0/24", "-o", "parent=eth1"],
        vec![Reply::Ok(network_info("cfg", "c"))],
    );
    assert_eq!(
        reqs,
        vec![Request::NetworkCreate(CreateNetwork {
            name: "cfg".into(),
            subnet: Some("10.30.0.0/24".parse().unwrap()),
            options: BTreeMap::from([("parent".into(), "eth1".into())]),
            config_only: true,
            ..CreateNetwork::default()
        })]
    );
    let (_, reqs) = run_ok(
        &["network", "create", "lan", "-d", "macvlan", "--config-from", "cfg", "--internal"],
        vec![Reply::Ok(network_info("lan", "l"))],
    );
    assert_eq!(
        reqs,
        vec![Request::NetworkCreate(CreateNetwork {
            name: "lan".into(),
            driver: Driver::Macvlan,
            internal: true,
            config_from: Some("cfg".into()),
            ..CreateNetwork::default()
        })]
    );
    // Docker's operator fields are the made network's, not the configuration's.
    let d = FakeDaemon::start(vec![]);
    for extra in ["--internal", "--attachable", "--config-from=x"] {
        let out = vswitchctl(&d.socket, &["network", "create", "cfg", "--config-only", extra]);
        assert!(!out.status.success(), "--config-only {extra} was accepted");
        assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"), "{out:?}");
    }
    assert!(d.finish().is_empty(), "nothing reached the daemon");
}

#[test]
fn network_create_takes_only_the_default_ipam_driver() {
    let (_, reqs) =
        run_ok(&["network", "create", "red", "--ipam-driver", "default"], vec![Reply::Ok(network_info("red", "r"))]);
    assert_eq!(reqs, vec![Request::NetworkCreate(CreateNetwork::new("red", Driver::Bridge))]);
    let d = FakeDaemon::start(vec![]);
    let out = vswitchctl(&d.socket, &["network", "create", "red", "--ipam-driver", "infoblox"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only the default IPAM driver exists"), "{out:?}");
    assert!(d.finish().is_empty(), "nothing reached the daemon");
}

#[test]
fn network_create_takes_one_subnet_gateway_and_range_per_family() {
    let args = [
        "network",
        "create",
        "dual",
        "--ipv6",
        "--subnet",
        "fd00:1::/64",
        "--subnet",
        "10.20.0.0/24",
        "--gateway",
        "fd00:1::fe",
        "--ip-range",
        "fd00:1::100/120",
    ];
    let (_, reqs) = run_ok(&args, vec![Reply::Ok(network_info("dual", "d"))]);
    assert_eq!(
        reqs,
        vec![Request::NetworkCreate(CreateNetwork {
            name: "dual".into(),
            subnet: Some("10.20.0.0/24".parse().unwrap()),
            enable_ipv6: true,
            subnet6: Some("fd00:1::/64".parse().unwrap()),
            gateway6: Some("fd00:1::fe".parse().unwrap()),
            ip_range6: Some("fd00:1::100/120".parse().unwrap()),
            ..CreateNetwork::default()
        })]
    );
    // IPv6-only, and the ULA default (no subnet at all).
    let (_, reqs) =
        run_ok(&["network", "create", "six", "--ipv6", "--ipv4=false"], vec![Reply::Ok(network_info("six", "s"))]);
    assert!(matches!(
        &reqs[..],
        [Request::NetworkCreate(CreateNetwork {
            enable_ipv4: false,
            enable_ipv6: true,
            subnet: None,
            subnet6: None,
            ..
        })]
    ));
    // Two of one family never reach the daemon.
    for (option, a, b) in [
        ("--subnet", "fd00:1::/64", "fd00:2::/64"),
        ("--gateway", "10.0.0.1", "10.0.0.2"),
        ("--ip-range", "fd00::/120", "fd00::100/120"),
    ] {
        let d = FakeDaemon::start(vec![]);
        let out = vswitchctl(&d.socket, &["network", "create", "x", "--ipv6", option, a, option, b]);
        assert!(d.finish().is_empty(), "{option}");
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("{option} is given twice")) && err.contains("one per address family"), "{err}");
    }
    // Connect with a static IPv6 address.
    let ep = json!({"network": "six", "sandbox": "web", "endpoint_id": "e1", "port": "vsp1", "ifname": "eth0",
                    "mac": "02:42:00:00:00:05", "ipv4": null, "ipv6": "fd00:1::5/64", "aliases": []});
    let (_, reqs) = run_ok(&["network", "connect", "six", "web", "--ip6", "fd00:1::5"], vec![Reply::Ok(ep)]);
    assert!(
        matches!(&reqs[..], [Request::NetworkConnect { ip: None, ip6: Some(a), .. }] if a.to_string() == "fd00:1::5")
    );
}

#[test]
fn network_ls_prints_a_docker_style_table_or_json() {
    let payload = json!([
        {"name": "blue", "id": "3f1c0a9e5b7d4e2a", "driver": "bridge", "scope": "local", "subnet": "10.10.0.0/24", "endpoints": 0},
        {"name": "overlay-net", "id": "aa", "driver": "overlay", "scope": "global", "subnet": null, "dangling": true}
    ]);
    let (out, reqs) = run_ok(&["network", "ls"], vec![Reply::Ok(payload.clone())]);
    assert_eq!(reqs, vec![Request::NetworkLs]);
    assert_eq!(
        out,
        "NETWORK ID     NAME          DRIVER    SCOPE\n\
         3f1c0a9e5b7d   blue          bridge    local\n\
         aa             overlay-net   overlay   global\n"
    );
    let (out, _) = run_ok(&["network", "ls", "--json"], vec![Reply::Ok(payload.clone())]);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), payload);
    // Filters and -q apply to the daemon's rows here.
    let (out, _) = run_ok(&["network", "ls", "--json", "-f", "driver=overlay"], vec![Reply::Ok(payload.clone())]);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), json!([payload[1]]));
    let (out, _) = run_ok(&["network", "ls", "-q", "-f", "name=blu"], vec![Reply::Ok(payload.clone())]);
    assert_eq!(out, "3f1c0a9e5b7d\n");
    let (out, _) =
        run_ok(&["network", "ls", "-q", "--no-trunc", "-f", "dangling=true"], vec![Reply::Ok(payload.clone())]);
    assert_eq!(out, "aa\n", "as the daemon marks them (blue has no endpoint, but is not marked)");
    let (out, _) = run_ok(&["network", "ls", "-q", "--no-trunc", "-f", "dangling=false"], vec![Reply::Ok(payload)]);
    assert_eq!(out, "3f1c0a9e5b7d4e2a\n");
}

#[test]
fn network_prune_reports_what_the_daemon_removed() {
    let pruned = json!({"networks_deleted": ["idle", "old"]});
    let (out, reqs) = run_ok(&["network", "prune", "--force"], vec![Reply::Ok(pruned)]);
    assert_eq!(reqs, vec![Request::NetworkPrune]);
    assert_eq!(out, "Deleted Networks:\nidle\nold\n");
    let (out, _) = run_ok(&["network", "prune", "-f"], vec![Reply::Ok(json!({"networks_deleted": []}))]);
    assert_eq!(out, "", "nothing removed, nothing printed");
}

#[test]
fn network_inspect_is_always_a_json_array() {
    let (out, reqs) = run_ok(
        &["network", "inspect", "blue", "red"],
        vec![Reply::Ok(network_info("blue", "b1")), Reply::Ok(network_info("red", "r1"))],
    );
    assert_eq!(
        reqs,
        vec![Request::NetworkInspect { name: "blue".into() }, Request::NetworkInspect { name: "red".into() }]
    );
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!([network_info("blue", "b1"), network_info("red", "r1")])
    );
}

#[test]
fn network_connect_disconnect_and_rm() {
    let ep = json!({"network": "blue", "sandbox": "web", "endpoint_id": "e1", "port": "vsp1", "ifname": "eth0",
                    "mac": "02:42:0a:0a:00:05", "ipv4": "10.10.0.5/24", "aliases": ["www"]});
    let (out, reqs) = run_ok(
        &[
            "network",
            "connect",
            "blue",
            "web",
            "--ip",
            "10.10.0.5",
            "--alias",
            "www",
            "--alias",
            "api",
            "--mac",
            "02-42-0A-0A-00-05",
            "--driver-opt",
            "com.docker.network.endpoint.ifname=lan0",
        ],
        vec![Reply::Ok(ep.clone())],
    );
    assert_eq!(out, "");
    assert_eq!(
        reqs,
        vec![Request::NetworkConnect {
            network: "blue".into(),
            sandbox: "web".into(),
            ip: Some(Ipv4Addr::new(10, 10, 0, 5)),
            ip6: None,
            aliases: vec!["www".into(), "api".into()],
            mac: Some("02:42:0a:0a:00:05".parse().unwrap()),
            publish: vec![],
            service: None,
            port_type: ctl::proto::PortType::Tap,
            gw_priority: 0,
            ifname: Some("lan0".into()),
        }]
    );
    let (_, reqs) = run_ok(&["network", "connect", "blue", "web", "--ifname", "lan1"], vec![Reply::Ok(ep.clone())]);
    assert!(matches!(&reqs[..], [Request::NetworkConnect { ifname: Some(n), .. }] if n == "lan1"), "{reqs:?}");
    let (out, reqs) = run_ok(&["network", "disconnect", "blue", "web"], vec![Reply::Ok(json!({}))]);
    assert_eq!(out, "");
    assert_eq!(reqs, vec![Request::NetworkDisconnect { network: "blue".into(), sandbox: "web".into() }]);
    let (out, reqs) = run_ok(&["network", "rm", "blue", "red"], vec![Reply::Ok(json!({})), Reply::Ok(json!({}))]);
    assert_eq!(out, "blue\nred\n");
    assert_eq!(reqs, vec![Request::NetworkRm { name: "blue".into() }, Request::NetworkRm { name: "red".into() }]);
}

#[test]
fn sandbox_verbs() {
    let sb = json!({"name": "web", "netns": "/run/netns/web", "dns": ["10.10.0.1"], "dns_search": ["corp"],
                    "endpoints": [{"network": "blue", "sandbox": "web", "endpoint_id": "e1", "port": "vsp1",
                                   "ifname": "eth0", "mac": "02:42:0a:0a:00:05", "ipv4": "10.10.0.5/24", "aliases": []}]});
    let (out, reqs) = run_ok(
        &[
            "sandbox",
            "create",
            "web",
            "--dns",
            "10.10.0.1",
            "--dns",
            "2001:db8::53",
            "--dns-search",
            "corp",
            "--dns-option",
            "ndots:2",
            "--dns-opt",
            "rotate",
            "--add-host",
            "db:10.10.0.5",
            "--add-host",
            "db6=2001:db8::5",
            "--netns",
            "/proc/1/ns/net",
        ],
        vec![Reply::Ok(sb.clone())],
    );
    assert_eq!(out, "web\n");
    assert_eq!(
        reqs,
        vec![Request::SandboxCreate {
            name: "web".into(),
            dns: vec!["10.10.0.1".parse().unwrap(), "2001:db8::53".parse().unwrap()],
            dns_search: vec!["corp".into()],
            dns_options: vec!["ndots:2".into(), "rotate".into()],
            extra_hosts: vec!["db:10.10.0.5".into(), "db6=2001:db8::5".into()],
            netns: Some("/proc/1/ns/net".into()),
        }]
    );
    let empty = json!({"name": "db", "netns": "/run/netns/db", "dns": [], "dns_search": [], "endpoints": []});
    let (out, reqs) = run_ok(&["sandbox", "ls"], vec![Reply::Ok(json!([sb, empty]))]);
    assert_eq!(reqs, vec![Request::SandboxLs]);
    assert_eq!(
        out,
        "NAME   NETNS            ENDPOINTS           DNS\n\
         web    /run/netns/web   blue:10.10.0.5/24   10.10.0.1\n\
         db     /run/netns/db    -                   -\n"
    );
    let (out, reqs) = run_ok(&["sandbox", "rm", "web"], vec![Reply::Ok(json!({}))]);
    assert_eq!(out, "web\n");
    assert_eq!(reqs, vec![Request::SandboxRm { name: "web".into() }]);
}

/// A `sandbox_inspect` reply: `web` on `app` at 10.10.0.2 with alias `api`.
fn web_inspected() -> Value {
    json!({"name": "web", "netns": "/run/netns/web", "dns": ["192.0.2.53"], "dns_search": [],
           "endpoints": [{"network": "app", "sandbox": "web", "endpoint_id": "e1", "port": "vsp1", "ifname": "eth0",
                          "mac": "02:42:0a:0a:00:02", "ipv4": "10.10.0.2/24", "aliases": ["api"]}],
           "resolver": {"resolv_conf": "/etc/netns/web/resolv.conf", "nameservers": ["10.10.0.1"], "search": [],
                        "options": ["ndots:0"], "upstreams": ["192.0.2.53:53"], "forwarding": true}})
}

#[test]
fn sandbox_inspect_is_a_json_array_like_network_inspect() {
    let db = json!({"name": "db", "netns": "/proc/7/ns/net", "dns": [], "dns_search": [], "endpoints": [],
                    "resolver": {"resolv_conf": null, "nameservers": [], "search": [], "options": [],
                                 "upstreams": [], "forwarding": false}});
    let (out, reqs) =
        run_ok(&["sandbox", "inspect", "web", "db"], vec![Reply::Ok(web_inspected()), Reply::Ok(db.clone())]);
    assert_eq!(
        reqs,
        vec![Request::SandboxInspect { name: "web".into() }, Request::SandboxInspect { name: "db".into() }]
    );
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), json!([web_inspected(), db]));
    // `--json` changes nothing: inspect is JSON already.
    let (json_out, _) = run_ok(&["sandbox", "inspect", "web", "--json"], vec![Reply::Ok(web_inspected())]);
    assert_eq!(serde_json::from_str::<Value>(&json_out).unwrap(), json!([web_inspected()]));
}

#[test]
fn sandbox_inspect_pretty_prints_a_block_per_sandbox() {
    let db = json!({"name": "db", "netns": "/proc/7/ns/net", "dns": [], "dns_search": [], "endpoints": [],
                    "resolver": {"resolv_conf": null, "nameservers": [], "search": ["corp", "example.com"],
                                 "options": [], "upstreams": [], "forwarding": false}});
    // A daemon that does not report a resolver gets no Resolver part.
    let old = json!({"name": "old", "netns": "/run/netns/old", "dns": [], "dns_search": [], "endpoints": []});
    let (out, reqs) = run_ok(
        &["sandbox", "inspect", "--pretty", "web", "db", "old"],
        vec![Reply::Ok(web_inspected()), Reply::Ok(db), Reply::Ok(old)],
    );
    assert_eq!(reqs.len(), 3);
    assert_eq!(
        out,
        "Sandbox web
    netns: /run/netns/web
    Endpoint eth0
        network: app
        ip: 10.10.0.2/24
        mac: 02:42:0a:0a:00:02
        port: vsp1
        aliases: api
    Resolver
        resolv.conf: /etc/netns/web/resolv.conf
        nameservers: 10.10.0.1
        search: -
        options: ndots:0
        upstreams: 192.0.2.53:53
        forwarding: yes
Sandbox db
    netns: /proc/7/ns/net
    endpoints: none
    Resolver
        resolv.conf: -
        nameservers: -
        search: corp, example.com
        options: -
        upstreams: -
        forwarding: no
Sandbox old
    netns: /run/netns/old
    endpoints: none
"
    );
}

#[test]
fn sandbox_inspect_stops_at_the_first_error() {
    let d = FakeDaemon::start(vec![Reply::Err(ErrorKind::NotFound, "sandbox nope not found")]);
    let out = vswitchctl(&d.socket, &["sandbox", "inspect", "nope", "web"]);
    assert_eq!(d.finish(), vec![Request::SandboxInspect { name: "nope".into() }]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "Error: sandbox nope not found\n");
    assert!(out.stdout.is_empty());
}

#[test]
fn dns_ls_prints_the_records() {
    let records = json!([
        {"network": "app", "name": "web", "type": "A", "value": "10.10.0.2", "sandbox": "web", "ttl": 60},
        {"network": "app", "name": "web.app", "type": "A", "value": "10.10.0.2", "sandbox": "web", "ttl": 60},
        {"network": "app", "name": "api", "type": "A", "value": "10.10.0.2", "sandbox": "web", "ttl": 60},
        {"network": "app", "name": "2.0.10.10.in-addr.arpa", "type": "PTR", "value": "web.app", "sandbox": "web",
         "ttl": 60}
    ]);
    let (out, reqs) = run_ok(&["dns", "ls", "app"], vec![Reply::Ok(records.clone())]);
    assert_eq!(reqs, vec![Request::DnsLs { network: Some("app".into()) }]);
    assert_eq!(
        out,
        "NETWORK   NAME                     TYPE   VALUE       SANDBOX   TTL\n\
         app       web                      A      10.10.0.2   web       60\n\
         app       web.app                  A      10.10.0.2   web       60\n\
         app       api                      A      10.10.0.2   web       60\n\
         app       2.0.10.10.in-addr.arpa   PTR    web.app     web       60\n"
    );
    let (out, reqs) = run_ok(&["dns", "list", "--json"], vec![Reply::Ok(records.clone())]);
    assert_eq!(reqs, vec![Request::DnsLs { network: None }]);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), records);
    let (out, _) = run_ok(&["dns", "ls"], vec![Reply::Ok(json!([]))]);
    assert_eq!(out, "NETWORK   NAME   TYPE   VALUE   SANDBOX   TTL\n");
}

#[test]
fn show_prints_a_tree() {
    let tree = json!({"version": "0.1.0", "networks": [
        {"name": "blue", "id": "3f1c0a9e5b7d4e2a", "driver": "bridge", "subnet": "10.10.0.0/24", "gateway": "10.10.0.1",
         "mtu": null, "vni": null, "ports": [
            {"name": "vsp1", "kind": "tap", "sandbox": "web", "ifname": "eth0", "mac": "02:42:0a:0a:00:05",
             "ip": "10.10.0.5/24", "remote": null},
            {"name": "vx42", "kind": "tunnel", "sandbox": null, "ifname": null, "mac": null, "ip": null,
             "remote": "192.0.2.7:4789"}]}]});
    let (out, reqs) = run_ok(&["show"], vec![Reply::Ok(tree)]);
    assert_eq!(reqs, vec![Request::Show]);
    assert_eq!(
        out,
        "vswitchd 0.1.0
    Network blue (bridge, id 3f1c0a9e5b7d)
        subnet: 10.10.0.0/24
        gateway: 10.10.0.1
        Port vsp1
            type: tap
            sandbox: web
            interface: eth0
            mac: 02:42:0a:0a:00:05
            ip: 10.10.0.5/24
        Port vx42
            type: tunnel
            remote: 192.0.2.7:4789
"
    );
}

#[test]
fn fdb_verbs() {
    let entries = json!([
        {"network": "blue", "port": "vsp1", "mac": "02:42:0a:0a:00:05", "age_secs": 3, "kind": "learned"},
        {"network": "blue", "port": "vsp22", "mac": "02:00:00:00:00:09", "age_secs": 120, "kind": "static"}
    ]);
    let (out, reqs) = run_ok(&["fdb", "show", "blue"], vec![Reply::Ok(entries)]);
    assert_eq!(reqs, vec![Request::FdbShow { network: Some("blue".into()) }]);
    assert_eq!(
        out,
        "PORT    NETWORK   MAC                 AGE   TYPE\n\
         vsp1    blue      02:42:0a:0a:00:05   3     learned\n\
         vsp22   blue      02:00:00:00:00:09   120   static\n"
    );
    let (_, reqs) = run_ok(&["fdb", "show"], vec![Reply::Ok(json!([]))]);
    assert_eq!(reqs, vec![Request::FdbShow { network: None }]);
    let (out, reqs) = run_ok(&["fdb", "add", "blue", "02:00:00:00:00:09", "vsp22"], vec![Reply::Ok(json!({}))]);
    assert_eq!(out, "");
    assert_eq!(
        reqs,
        vec![Request::FdbAdd {
            network: "blue".into(),
            mac: "02:00:00:00:00:09".parse().unwrap(),
            port: "vsp22".into()
        }]
    );
    let (out, reqs) = run_ok(&["fdb", "flush"], vec![Reply::Ok(json!({"flushed": 7}))]);
    assert_eq!(out, "flushed 7 entries\n");
    assert_eq!(reqs, vec![Request::FdbFlush { network: None }]);
}

#[test]
fn stats_table_shows_drop_reasons() {
    let stats = json!([
        {"port": "vsp1", "network": "blue", "rx_packets": 10, "rx_bytes": 1500, "tx_packets": 8, "tx_bytes": 1200,
         "floods": 2, "drops": {"queue_full": 2, "runt": 1, "vlan": 0}},
        {"port": "vsp2", "network": "blue", "rx_packets": 0, "rx_bytes": 0, "tx_packets": 0, "tx_bytes": 0,
         "floods": 0, "drops": {}}
    ]);
    let (out, reqs) = run_ok(&["stats", "vsp1"], vec![Reply::Ok(stats.clone())]);
    assert_eq!(reqs, vec![Request::Stats { port: Some("vsp1".into()) }]);
    assert_eq!(
        out,
        "PORT   NETWORK   RX-PACKETS   RX-BYTES   TX-PACKETS   TX-BYTES   FLOODS   DROPS\n\
         vsp1   blue      10           1500       8            1200       2        3 (queue_full=2, runt=1)\n\
         vsp2   blue      0            0          0            0          0        0\n"
    );
    let (out, _) = run_ok(&["--json", "stats"], vec![Reply::Ok(stats.clone())]);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), stats);
}

#[test]
fn stats_adds_a_dns_table_for_gateway_ports() {
    let dns = json!({"queries": 120, "answered_locally": 100, "nxdomain": 4, "nodata": 2, "forwarded": 18,
                     "upstream_failures": 1, "malformed": 1, "refused": 1, "refused_over_limit": 0, "truncated": 3,
                     "tcp_closed_idle": 5});
    let stats = json!([
        {"port": "gw:app", "network": "app", "rx_packets": 130, "rx_bytes": 9100, "tx_packets": 125, "tx_bytes": 14000,
         "floods": 1, "drops": {}, "dns": dns},
        {"port": "vsp1", "network": "app", "rx_packets": 10, "rx_bytes": 1500, "tx_packets": 8, "tx_bytes": 1200,
         "floods": 2, "drops": {}},
        {"port": "gw:db", "network": "db", "rx_packets": 0, "rx_bytes": 0, "tx_packets": 0, "tx_bytes": 0,
         "floods": 0, "drops": {}, "dns": {"queries": 0, "answered_locally": 0, "nxdomain": 0, "nodata": 0,
         "forwarded": 0, "upstream_failures": 0, "malformed": 0, "refused": 0, "refused_over_limit": 0,
         "truncated": 0, "tcp_closed_idle": 0}}
    ]);
    let (out, reqs) = run_ok(&["stats"], vec![Reply::Ok(stats.clone())]);
    assert_eq!(reqs, vec![Request::Stats { port: None }]);
    assert_eq!(
        out,
        "PORT     NETWORK   RX-PACKETS   RX-BYTES   TX-PACKETS   TX-BYTES   FLOODS   DROPS\n\
         gw:app   app       130          9100       125          14000      1        0\n\
         vsp1     app       10           1500       8            1200       2        0\n\
         gw:db    db        0            0          0            0          0        0\n\
         \n\
         DNS\n\
         PORT     QUERIES   LOCAL   NXDOMAIN   NODATA   FORWARDED   UPSTREAM-FAIL   MALFORMED   REFUSED   \
         OVER-LIMIT   TRUNCATED   TCP-CLOSED\n\
         gw:app   120       100     4          2        18          1               1           1         \
         0            3           5\n\
         gw:db    0         0       0          0        0           0               0           0         \
         0            0           0\n"
    );
    let (out, _) = run_ok(&["stats", "--json"], vec![Reply::Ok(stats.clone())]);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), stats);
}

#[test]
fn config_set_version_and_ping() {
    let (out, reqs) = run_ok(&["config", "set", "aging-time", "300"], vec![Reply::Ok(json!({}))]);
    assert_eq!(out, "");
    assert_eq!(reqs, vec![Request::ConfigSet { key: "aging-time".into(), value: "300".into() }]);
    let (out, reqs) = run_ok(&["config", "show"], vec![Reply::Ok(json!({"aging_time": 300}))]);
    assert_eq!(reqs, vec![Request::ConfigShow]);
    assert_eq!(out, "aging-time 300\n");
    let (out, reqs) = run_ok(&["version"], vec![Reply::Ok(json!({"version": "0.1.0", "protocol": 1}))]);
    assert_eq!(reqs, vec![Request::Version]);
    assert_eq!(out, format!("vswitchctl {}\nvswitchd 0.1.0 (protocol 1)\n", env!("CARGO_PKG_VERSION")));
    let (out, reqs) = run_ok(&["ping"], vec![Reply::Ok(json!({}))]);
    assert_eq!(reqs, vec![Request::Ping]);
    assert!(out.ends_with("is alive\n"), "{out}");
}

#[test]
fn daemon_error_goes_to_stderr_with_exit_1() {
    let d = FakeDaemon::start(vec![Reply::Err(ErrorKind::InUse, "network blue has 1 endpoint(s)")]);
    let out = vswitchctl(&d.socket, &["network", "rm", "blue"]);
    d.finish();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "Error: network blue has 1 endpoint(s)\n");
    assert!(out.stdout.is_empty());
}

#[test]
fn rm_of_several_names_goes_on_past_a_refusal() {
    let d =
        FakeDaemon::start(vec![Reply::Err(ErrorKind::InUse, "network blue has 1 endpoint(s)"), Reply::Ok(json!({}))]);
    let out = vswitchctl(&d.socket, &["network", "rm", "blue", "red"]);
    let reqs = d.finish();
    assert_eq!(reqs, vec![Request::NetworkRm { name: "blue".into() }, Request::NetworkRm { name: "red".into() }]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "red\n");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error: network blue has 1 endpoint(s)\nError: 1 of the names given could not be removed\n"
    );
}

#[test]
fn no_daemon_gives_a_clear_message() {
    let dir = TempDir::new();
    let path = dir.path().join("nobody.sock");
    let out = vswitchctl(&path, &["network", "ls"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("Error: cannot connect to vswitchd at {}: is it running? (", path.display())),
        "{err}"
    );
}

#[test]
fn socket_comes_from_the_environment() {
    let d = FakeDaemon::start(vec![Reply::Ok(json!([]))]);
    let out = Command::new(env!("CARGO_BIN_EXE_vswitchctl"))
        .args(["network", "ls"])
        .env("VSWITCH_CTL_SOCKET", &d.socket)
        .output()
        .unwrap();
    assert_eq!(d.finish(), vec![Request::NetworkLs]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "NETWORK ID   NAME   DRIVER   SCOPE\n");
}

#[test]
fn bad_arguments_are_rejected_before_connecting() {
    let dir = TempDir::new();
    let sock = dir.path().join("unused.sock");
    let cases: &[(&[&str], &str)] = &[
        (&["network", "create", "x", "--subnet", "10.0.0/24"], "invalid CIDR"),
        (&["network", "create", "x", "--subnet", "10.0.0.9/24"], "did you mean 10.0.0.0/24"),
        (&["network", "create", "x", "--gateway", "10.0.0.300"], "--gateway"),
        (&["network", "create", "x", "-d", "ipvlan"], "ipvlan"),
        (&["network", "create", "x", "--vni", "16777216"], "--vni"),
        (&["network", "create", "x", "-o", "=v"], "non-empty KEY"),
        (&["network", "connect", "n", "s", "--mac", "02:42:ac"], "invalid MAC address"),
        (&["fdb", "add", "n", "ff:ff:ff:ff:ff:ff", "p"], "unicast"),
        (&["sandbox", "create", "s", "--dns", "dns.example"], "--dns"),
        (&["sandbox", "inspect"], "<NAMES>"),
        (&["sandbox", "inspect", "s", "--pretty", "--json"], "'--pretty' cannot be used with '--json'"),
        (&["--json", "sandbox", "inspect", "--pretty", "s"], "'--pretty' cannot be used with '--json'"),
        (&["dns", "ls", "a", "b"], "unexpected argument"),
        (&["network", "connect", "n", "s", "-p", "0-1:80-81"], "starts at 0"),
        (&["network", "connect", "n", "s", "-p", "8080:80-81"], "differ in length"),
        (&["sandbox", "publish", "s"], "--publish <SPEC>"),
        (&["sandbox", "publish", "s", "-p", "[::1:80:80"], "invalid host IP"),
        (&["service", "publish", "api", "-p", "8080:80/sctp"], "invalid protocol"),
        (&["network", "connect", "n", "s", "--driver-opt", "com.docker.network.endpoint.macaddress=x"], "only"),
        (
            &["network", "connect", "n", "s", "--ifname", "a", "--driver-opt", "com.docker.network.endpoint.ifname=b"],
            "named twice",
        ),
    ];
    for (args, needle) in cases {
        let out = vswitchctl(&sock, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("cannot connect"), "{args:?} tried to connect: {err}");
    }
}

#[test]
fn sandbox_create_help_says_dns_servers_are_upstreams() {
    let dir = TempDir::new();
    let out = vswitchctl(&dir.path().join("none.sock"), &["sandbox", "create", "--help"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let help = String::from_utf8(out.stdout).unwrap();
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for needle in ["Upstream DNS server", "forwards the names it does not own", "only while the sandbox is on no such"]
    {
        assert!(help.contains(needle), "help lacks {needle:?}: {help}");
    }
}

#[test]
fn completions_work_without_a_daemon() {
    let dir = TempDir::new();
    let out = vswitchctl(&dir.path().join("none.sock"), &["completions", "bash"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let script = String::from_utf8(out.stdout).unwrap();
    for word in [
        "vswitchctl",
        "sandbox",
        "network",
        "inspect",
        "disconnect",
        "fdb",
        "flush",
        "stats",
        "config",
        "dns",
        "--pretty",
        "--socket",
        "--json",
    ] {
        assert!(script.contains(word), "completion script lacks {word}");
    }
    for shell in ["zsh", "fish"] {
        let out = vswitchctl(&dir.path().join("none.sock"), &["completions", shell]);
        assert!(out.status.success() && out.stdout.len() > 100, "{shell}");
    }
}

/// `vswitchctl completions SHELL | head -1`: the reader goes away after one
/// line; the writer must exit quietly, not panic.
#[test]
fn completions_into_a_closed_pipe_exit_quietly() {
    use std::io::Read;
    for shell in ["bash", "zsh", "fish"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vswitchctl"))
            .args(["completions", shell])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn vswitchctl");
        let mut first = [0u8; 1];
        child.stdout.take().expect("stdout").read_exact(&mut first).expect("a first byte");
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{shell}: {stderr}");
        assert!(out.status.code() == Some(0), "{shell}: exit {:?}, stderr {stderr}", out.status);
    }
}

#[test]
fn stats_prometheus_prints_the_daemons_text_as_is() {
    let text = "# HELP vswitch_x_total X.\n# TYPE vswitch_x_total counter\nvswitch_x_total{port=\"p\"} 3\n";
    let (out, reqs) = run_ok(&["stats", "--prometheus"], vec![Reply::Ok(json!({"text": text}))]);
    assert_eq!(reqs, vec![Request::Metrics]);
    assert_eq!(out, text);
}

fn web_with_ports() -> Value {
    let ep = |net: &str, publish: Value| {
        json!({"network": net, "sandbox": "web", "endpoint_id": "e1", "port": "vsp1", "ifname": "eth0",
               "mac": "02:42:0a:0a:00:05", "ipv4": "10.10.0.5/24", "aliases": [], "publish": publish})
    };
    json!({"name": "web", "netns": "/run/netns/web", "dns": [], "dns_search": [], "endpoints": [
        ep("blue", json!([
            {"host_ip": "0.0.0.0", "host_port": 8080, "container_port": 80, "proto": "tcp"},
            {"host_ip": "0.0.0.0", "host_port": 10443, "container_port": 443, "proto": "tcp"}
        ])),
        ep("red", json!([
            {"host_ip": "127.0.0.1", "host_port": 5353, "container_port": 53, "proto": "udp"},
            {"host_ip": "127.0.0.1", "host_port": 8081, "container_port": 80, "proto": "tcp"}
        ])),
    ]})
}

#[test]
fn port_prints_what_docker_port_prints() {
    let (out, reqs) = run_ok(&["port", "web"], vec![Reply::Ok(web_with_ports())]);
    assert_eq!(reqs, vec![Request::SandboxInspect { name: "web".into() }]);
    assert_eq!(
        out,
        "53/udp -> 127.0.0.1:5353\n80/tcp -> 0.0.0.0:8080\n80/tcp -> 127.0.0.1:8081\n443/tcp -> 0.0.0.0:10443\n"
    );
    let (out, _) = run_ok(&["port", "web", "80"], vec![Reply::Ok(web_with_ports())]);
    assert_eq!(out, "0.0.0.0:8080\n127.0.0.1:8081\n");
    let (out, _) = run_ok(&["port", "web", "53/udp"], vec![Reply::Ok(web_with_ports())]);
    assert_eq!(out, "127.0.0.1:5353\n");
    let (out, _) = run_ok(&["port", "web", "53/udp", "--json"], vec![Reply::Ok(web_with_ports())]);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!([{"host_ip": "127.0.0.1", "host_port": 5353, "container_port": 53, "proto": "udp"}])
    );
    // Nothing published: nothing printed, as docker.
    let bare = json!({"name": "db", "netns": "/run/netns/db", "dns": [], "dns_search": [], "endpoints": []});
    let (out, _) = run_ok(&["port", "db"], vec![Reply::Ok(bare)]);
    assert_eq!(out, "");

    let d = FakeDaemon::start(vec![Reply::Ok(web_with_ports())]);
    let out = vswitchctl(&d.socket, &["port", "web", "81"]);
    d.finish();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "Error: No public port '81/tcp' published for web\n");
    assert!(out.stdout.is_empty());
}

#[test]
fn port_impair_sends_the_settings_or_a_clear() {
    let info = json!({"port": "vsp1", "network": "blue", "sandbox": "web",
                      "impair": {"delay_us": 10000, "jitter_us": 2000, "loss_ppm": 10000, "rate_bps": 100000000}});
    let args = ["port", "impair", "web", "--delay", "10ms", "--jitter", "2ms", "--loss", "1%", "--rate", "100mbit"];
    let (out, reqs) = run_ok(&args, vec![Reply::Ok(info.clone())]);
    assert_eq!(out, "", "a change prints nothing, like connect");
    let want = ctl::Impairment {
        delay_us: 10_000,
        jitter_us: 2_000,
        loss_ppm: 10_000,
        rate_bps: Some(100_000_000),
        ..ctl::Impairment::default()
    };
    assert_eq!(reqs, vec![Request::PortImpair { port: "web".into(), impair: Some(want) }]);
    let (out, _) = run_ok(&["--json", "port", "impair", "web", "--delay", "10ms"], vec![Reply::Ok(info)]);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["impair"]["delay_us"], 10000);
    let cleared = json!({"port": "vsp1", "network": "blue", "sandbox": "web"});
    let (_, reqs) = run_ok(&["port", "impair", "blue:web", "--clear"], vec![Reply::Ok(cleared)]);
    assert_eq!(reqs, vec![Request::PortImpair { port: "blue:web".into(), impair: None }]);

    // Bad values never reach the daemon.
    let d = FakeDaemon::start(vec![]);
    let out = vswitchctl(&d.socket, &["port", "impair", "web", "--loss", "150%"]);
    assert!(d.finish().is_empty());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a percentage"), "{out:?}");
    // A refusal from the daemon is an error.
    let d = FakeDaemon::start(vec![Reply::Err(ErrorKind::InvalidArgument, "reorder needs a delay")]);
    let out = vswitchctl(&d.socket, &["port", "impair", "web", "--reorder", "1%"]);
    d.finish();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("reorder needs a delay"));
}

#[test]
fn publish_verbs_send_expanded_mappings() {
    let sb = json!({"name": "web", "netns": "/run/netns/web", "dns": [], "dns_search": [], "endpoints": []});
    let ep = json!({"network": "blue", "sandbox": "web", "endpoint_id": "e1", "port": "vsp1", "ifname": "eth0",
                    "mac": "02:42:0a:0a:00:05", "ipv4": "10.10.0.5/24", "aliases": []});
    let (out, reqs) = run_ok(
        &[
            "network",
            "connect",
            "blue",
            "web",
            "-p",
            "8080-8081:80-81",
            "--publish",
            "127.0.0.1:53:53/udp",
            "--service",
            "api",
        ],
        vec![Reply::Ok(ep)],
    );
    assert_eq!(out, "");
    let Request::NetworkConnect { publish, service, .. } = &reqs[0] else { panic!("{reqs:?}") };
    let shown: Vec<String> = publish.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["0.0.0.0:8080:80/tcp", "0.0.0.0:8081:81/tcp", "127.0.0.1:53:53/udp"]);
    assert_eq!(service.as_deref(), Some("api"));

    let (out, reqs) =
        run_ok(&["sandbox", "publish", "web", "--network", "blue", "-p", "9000:90"], vec![Reply::Ok(sb.clone())]);
    assert_eq!(out, "");
    assert_eq!(
        reqs,
        vec![Request::SandboxPublish {
            sandbox: "web".into(),
            network: Some("blue".into()),
            publish: vec![ctl::PortMapping::tcp(9000, 90)],
        }]
    );
    let (_, reqs) = run_ok(&["sandbox", "unpublish", "web", "-p", "9000:90"], vec![Reply::Ok(sb)]);
    assert_eq!(
        reqs,
        vec![Request::SandboxUnpublish {
            sandbox: "web".into(),
            network: None,
            publish: vec![ctl::PortMapping::tcp(9000, 90)],
        }]
    );
}

#[test]
fn service_verbs() {
    let svc = json!({"name": "api", "network": "blue", "created": "2026-12-01T00:00:00Z",
                     "publish": [{"host_ip": "0.0.0.0", "host_port": 8080, "container_port": 80, "proto": "tcp"},
                                 {"host_ip": "127.0.0.1", "host_port": 5353, "container_port": 53, "proto": "udp"}],
                     "replicas": [{"sandbox": "web1", "endpoint_id": "e1", "address": "10.10.0.2"},
                                  {"sandbox": "web2", "endpoint_id": "e2", "address": "10.10.0.3"}]});
    let (out, reqs) =
        run_ok(&["service", "publish", "api", "--network", "blue", "-p", "8080:80"], vec![Reply::Ok(svc.clone())]);
    assert_eq!(out, "");
    assert_eq!(
        reqs,
        vec![Request::ServicePublish {
            name: "api".into(),
            network: Some("blue".into()),
            publish: vec![ctl::PortMapping::tcp(8080, 80)],
            mode: None,
        }]
    );
    let (_, reqs) =
        run_ok(&["service", "publish", "api", "-p", "8080:80", "--mode", "host"], vec![Reply::Ok(svc.clone())]);
    assert_eq!(
        reqs,
        vec![Request::ServicePublish {
            name: "api".into(),
            network: None,
            publish: vec![ctl::PortMapping::tcp(8080, 80)],
            mode: Some(ctl::proto::ServiceMode::Host),
        }]
    );
    let (out, reqs) = run_ok(&["service", "ls"], vec![Reply::Ok(json!([svc.clone()]))]);
    assert_eq!(reqs, vec![Request::ServiceLs]);
    assert_eq!(
        out,
        "NAME   NETWORK   REPLICAS   PORTS\n\
         api    blue      2          *:8080->80/tcp, 127.0.0.1:5353->53/udp\n"
    );
    let (out, reqs) = run_ok(&["service", "inspect", "api"], vec![Reply::Ok(svc.clone())]);
    assert_eq!(reqs, vec![Request::ServiceInspect { name: "api".into() }]);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), json!([svc]));
    let (out, reqs) = run_ok(&["service", "rm", "api"], vec![Reply::Ok(json!({}))]);
    assert_eq!(out, "api\n");
    assert_eq!(reqs, vec![Request::ServiceRm { name: "api".into() }]);
}

#[test]
fn nat_ls_prints_the_flows() {
    let flows = json!([
        {"proto": "tcp", "direction": "inbound", "network": "blue", "sandbox": "web",
         "sandbox_addr": "10.10.0.5:80", "remote_addr": "192.0.2.9:40000", "outer_local": "0.0.0.0:8080",
         "outer_remote": "192.0.2.9:40000", "bytes_from_sandbox": 1200, "bytes_to_sandbox": 300,
         "age_ms": 12345, "state": "established"},
        {"proto": "udp", "direction": "egress", "network": "blue", "sandbox": null,
         "sandbox_addr": "10.10.0.9:5000", "remote_addr": "198.51.100.1:53", "outer_local": null,
         "outer_remote": "198.51.100.1:53", "bytes_from_sandbox": 40, "bytes_to_sandbox": 0,
         "age_ms": 20, "state": "active"}
    ]);
    let (out, reqs) = run_ok(&["nat", "ls", "blue"], vec![Reply::Ok(flows.clone())]);
    assert_eq!(reqs, vec![Request::NatLs { network: Some("blue".into()) }]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "PROTO",
            "DIRECTION",
            "NETWORK",
            "SANDBOX",
            "INNER",
            "REMOTE",
            "OUTER-LOCAL",
            "OUTER-REMOTE",
            "FROM-SANDBOX",
            "TO-SANDBOX",
            "AGE",
            "STATE"
        ]
    );
    let first: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        first,
        [
            "tcp",
            "inbound",
            "blue",
            "web",
            "10.10.0.5:80",
            "192.0.2.9:40000",
            "0.0.0.0:8080",
            "192.0.2.9:40000",
            "1200",
            "300",
            "12.3s",
            "established"
        ]
    );
    let second: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(second[3], "-");
    assert_eq!(second[6], "-");
    assert_eq!(second[10], "20ms");
    let (out, reqs) = run_ok(&["nat", "ls", "--json"], vec![Reply::Ok(flows.clone())]);
    assert_eq!(reqs, vec![Request::NatLs { network: None }]);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), flows);
}

#[test]
fn stats_adds_a_nat_table_for_gateway_ports() {
    let stats = json!([
        {"port": "gw:app", "network": "app", "rx_packets": 1, "rx_bytes": 2, "tx_packets": 3, "tx_bytes": 4,
         "floods": 0, "drops": {},
         "nat": {"flows_opened": 10, "flows_refused": 2, "flows_timed_out": 1, "table_full": 0, "active": 7}}
    ]);
    let (out, _) = run_ok(&["stats"], vec![Reply::Ok(stats)]);
    assert!(
        out.ends_with(
            "\nNAT\n\
             PORT     OPENED   REFUSED   TIMED-OUT   TABLE-FULL   ACTIVE\n\
             gw:app   10       2         1           0            7\n"
        ),
        "{out}"
    );
}

/// Two events as the daemon sends them.
fn two_events() -> Value {
    json!([
        {"seq": 7, "time": "2026-11-30T10:13:53.123Z", "kind": "port_up", "network": "app", "port": "vsa1",
         "sandbox": "web", "reason": "connected"},
        {"seq": 8, "time": "2026-11-30T10:13:54.001Z", "kind": "mac_flapping", "network": "app",
         "mac": "02:42:0a:0a:00:02", "ports": ["vsa1", "vsb2"], "moves": 6, "suppressed": 5, "interval_ms": 1000}
    ])
}

#[test]
fn events_prints_one_line_per_event_or_one_json_object_per_line() {
    let (out, reqs) = run_ok(&["events"], vec![Reply::Ok(two_events())]);
    assert_eq!(reqs, vec![Request::Events { follow: false }]);
    assert_eq!(
        out,
        "2026-11-30T10:13:53.123Z  port_up           app          vsa1 up (sandbox web): connected\n\
         2026-11-30T10:13:54.001Z  mac_flapping      app          02:42:0a:0a:00:02 flapping between vsa1 and vsb2: \
         6 moves in 1.0s (5 not shown one by one), now on vsb2\n"
    );
    let (out, _) = run_ok(&["events", "--json"], vec![Reply::Ok(two_events())]);
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(Value::Array(lines), two_events());
    // A kind this client does not know is printed as it came.
    let newer = json!([{"seq": 1, "time": "t", "kind": "from_the_future", "x": 1}]);
    let (out, _) = run_ok(&["events"], vec![Reply::Ok(newer)]);
    assert_eq!(out, "{\"kind\":\"from_the_future\",\"seq\":1,\"time\":\"t\",\"x\":1}\n");
}

#[test]
fn events_follow_prints_the_stream_and_its_summary() {
    let events = two_events();
    let lines = format!(
        "{{\"v\":1,\"id\":1,\"ok\":{{\"next_seq\":7}}}}\n{{\"v\":1,\"id\":1,\"item\":{}}}\n\
         {{\"v\":1,\"id\":1,\"item\":{}}}\n{{\"v\":1,\"id\":1,\"end\":{{\"delivered\":2,\"lost\":3}}}}",
        events[0], events[1]
    );
    let d = FakeDaemon::start(vec![Reply::Raw(Box::leak(lines.clone().into_boxed_str()))]);
    let out = vswitchctl(&d.socket, &["events", "--follow", "--json"]);
    let reqs = d.finish();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(reqs, vec![Request::Events { follow: true }]);
    let printed: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(Value::Array(printed), events);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr, "following events from #7 (Ctrl-C to stop)\n{\"delivered\":2,\"lost\":3}\n");

    let d = FakeDaemon::start(vec![Reply::Raw(Box::leak(lines.into_boxed_str()))]);
    let out = vswitchctl(&d.socket, &["events", "-f"]);
    d.finish();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(stdout.starts_with("2026-11-30T10:13:53.123Z  port_up "), "{stdout}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr,
        "following events from #7 (Ctrl-C to stop)\n2 events shown, 3 lost: this client read too slowly\n"
    );
}

#[test]
fn port_add_rm_and_afxdp_connect_send_what_was_asked() {
    let (out, reqs) = run_ok(&["port", "add", "lan", "enp3s0"], vec![Reply::Ok(json!({}))]);
    assert_eq!(out, "");
    let raw = Request::PortAdd {
        network: "lan".into(),
        interface: "enp3s0".into(),
        port_type: Some(ctl::proto::PortType::Raw),
        force: false,
    };
    assert_eq!(reqs, vec![raw]);
    let args = ["port", "add", "lan", "enp3s0", "--port-type", "afxdp", "--force"];
    let (_, reqs) = run_ok(&args, vec![Reply::Ok(json!({}))]);
    let afxdp = Request::PortAdd {
        network: "lan".into(),
        interface: "enp3s0".into(),
        port_type: Some(ctl::proto::PortType::Afxdp),
        force: true,
    };
    assert_eq!(reqs, vec![afxdp]);
    let (out, reqs) = run_ok(&["port", "rm", "enp3s0"], vec![Reply::Ok(json!({}))]);
    assert_eq!(out, "enp3s0\n", "rm prints the name removed");
    assert_eq!(reqs, vec![Request::PortRm { interface: "enp3s0".into() }]);
    // A TAP is no uplink, and an endpoint is no raw socket: refused before the daemon.
    for bad in [
        &["port", "add", "lan", "x", "--port-type", "tap"][..],
        &["network", "connect", "a", "b", "--port-type", "raw"],
    ] {
        let d = FakeDaemon::start(vec![]);
        let out = vswitchctl(&d.socket, bad);
        assert!(d.finish().is_empty(), "{bad:?}");
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
    let ep = json!({"network": "a", "sandbox": "b", "endpoint_id": "e", "port": "vsw1", "ifname": "eth0",
                    "mac": "02:42:0a:0a:00:05", "ipv4": "10.10.0.5/24", "aliases": []});
    let (_, reqs) = run_ok(&["network", "connect", "a", "b", "--port-type", "afxdp"], vec![Reply::Ok(ep)]);
    assert!(matches!(&reqs[..], [Request::NetworkConnect { port_type: ctl::proto::PortType::Afxdp, .. }]), "{reqs:?}");
}

/// `--timeout SECS` gives up on a daemon that does not answer, saying the
/// request may still be applied; without it the CLI waits for a late
/// answer (a request queued behind others), as ovs-vsctl does.
#[test]
fn timeout_gives_up_and_says_so_and_the_default_waits() {
    let d = FakeDaemon::start(vec![Reply::Silent]);
    let out = vswitchctl(&d.socket, &["--timeout", "1", "fdb", "flush"]);
    d.finish();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("did not answer within 1 s") && err.contains("may still be applied"), "{err}");

    let late = Reply::Late(std::time::Duration::from_millis(1500), json!({"flushed": 2}));
    let (out, reqs) = run_ok(&["fdb", "flush"], vec![late]);
    assert_eq!(reqs, [Request::FdbFlush { network: None }]);
    assert!(out.contains('2'), "{out}");
}
