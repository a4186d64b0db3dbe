//! Two `vswitchd` hosts in namespaces over a veth underlay, sharing one
//! insecure etcd (in a namespace of its own on the underlay): an overlay
//! created on host 1 appears on host 2 with the same id, VNI and subnet;
//! sandboxes connected on both without `--ip` get distinct addresses, ping
//! each other across the overlay and resolve each other's names; `node ls`
//! lists both hosts ready; `network rm` is refused while a node has
//! endpoints and, once they are gone, removes the network everywhere.
//! Needs root and `/usr/bin/etcd`. (The TLS, three-member and fault tests
//! are in e2e_cluster_faults.rs.)

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ctl::proto::{DnsRecord, EndpointInfo, NetworkInfo, ShowTree};
use vswitch::cluster::{ClusterHosts, NodeStatus};
use vswitch::{require_root_and_etcd, wait_for_ping, wait_until};

/// Long enough for a loaded machine; the wait ends as soon as it succeeds.
const SETTLE: Duration = Duration::from_secs(30);

fn ipv4(e: &EndpointInfo) -> Ipv4Addr {
    e.ipv4.unwrap_or_else(|| panic!("{e:?} has no IPv4 address")).addr()
}

#[test]
fn two_nodes_share_a_network_its_addresses_and_names() {
    if !require_root_and_etcd("two_nodes_share_a_network_its_addresses_and_names") {
        return;
    }
    let c = ClusterHosts::builder(2).tls(false).underlay([10, 233, 1]).start();
    let (d1, d2) = (c.host(0), c.host(1));
    let net = c.name("ov");

    // Created on host 1 (the store chooses the VNI), it appears on host 2.
    let created = d1.cluster_overlay_create(&net, "10.234.1.0/24", &["--attachable"]);
    c.wait_network(1, &net);
    let seen: Vec<NetworkInfo> = d2.ctl_json(&["network", "inspect", &net]);
    assert_eq!((&seen[0].id, &seen[0].ipam.config), (&created.id, &created.ipam.config), "{seen:?} vs {created:?}");
    let vni = |d: &vswitch::Daemon| {
        let show: ShowTree = d.ctl_json(&["show"]);
        assert!(show.cluster.as_ref().is_some_and(|s| s.connected), "show lacks the store: {show:?}");
        show.networks.iter().find(|n| n.name == net).and_then(|n| n.vni)
    };
    let (vni1, vni2) = (vni(d1), vni(d2));
    assert!(vni1.is_some_and(|v| v >= 4096), "{vni1:?}");
    assert_eq!(vni1, vni2, "one VNI cluster-wide");

    // One sandbox per host, no --ip: distinct addresses from the store.
    let (s1, s2) = (d1.name("a"), d2.name("b"));
    d1.sandbox_create(&s1);
    d2.sandbox_create(&s2);
    let e1 = d1.connect(&net, &s1, None);
    let e2 = d2.connect(&net, &s2, None);
    assert_ne!(ipv4(&e1), ipv4(&e2), "two nodes handed out the same address");
    for e in [&e1, &e2] {
        assert!(e.ipv4.is_some_and(|n| "10.234.1.0/24".parse::<ctl::Ipv4Net>().unwrap().contains(&n.addr())));
    }

    // They reach each other across the overlay with no peer add.
    let first = wait_for_ping(&s1, ipv4(&e2), SETTLE);
    assert!(first.is_some(), "{s1} (host 1) cannot ping {s2} (host 2)");
    assert!(wait_for_ping(&s2, ipv4(&e1), SETTLE).is_some(), "{s2} (host 2) cannot ping {s1} (host 1)");
    eprintln!("vni {vni1:?}; {} on host 1, {} on host 2; first ping after {first:?}", ipv4(&e1), ipv4(&e2));
    // The remote MAC is known from the store (not learned from a flood).
    let fdb: Vec<ctl::proto::FdbEntry> = d1.ctl_json(&["fdb", "show", &net]);
    let remote = fdb.iter().find(|f| f.mac == e2.mac).unwrap_or_else(|| panic!("{:?} not in {fdb:?}", e2.mac));
    assert_eq!(remote.remote.map(|r| r.ip()), Some(c.addr(1)), "{remote:?}");

    // Each host's embedded DNS has the other host's sandbox.
    for (d, remote, ip) in [(d1, &s2, ipv4(&e2)), (d2, &s1, ipv4(&e1))] {
        wait_until(
            SETTLE,
            || format!("{remote} in the DNS of the other host: {:?}", d.ctl(&["dns", "ls", &net])),
            || {
                let records: Vec<DnsRecord> = d.ctl_json(&["dns", "ls", &net]);
                records.iter().any(|r| &r.name == remote && r.value == IpAddr::V4(ip).to_string()).then_some(())
            },
        );
    }

    // node ls: both ready, this one marked, one endpoint each on the network.
    let names = [ClusterHosts::node_name(0), ClusterHosts::node_name(1)];
    wait_until(
        SETTLE,
        || format!("both nodes with one endpoint each: {:?}", d1.try_node_ls()),
        || {
            let l = d1.try_node_ls()?;
            let ok = l.store.connected
                && l.nodes.len() == 2
                && l.nodes.iter().all(|n| {
                    n.status == NodeStatus::Ready && n.endpoints == 1 && n.networks == [net.clone()] && n.vtep.is_some()
                })
                && l.nodes.iter().find(|n| n.is_self).map(|n| &n.name) == Some(&names[0]);
            ok.then_some(())
        },
    );
    let table = String::from_utf8_lossy(&d1.ctl(&["node", "ls"]).stdout).into_owned();
    assert!(table.contains("NAME") && table.contains(&format!("{} *", names[0])), "{table}");

    // network rm is refused while host 2 has an endpoint on it, anywhere.
    let e = d1.ctl_err(&["network", "rm", &net]);
    assert!(e.contains("in use") || e.contains("claim") || e.contains("endpoint"), "{e}");
    d1.ctl_ok(&["network", "disconnect", &net, &s1]);
    let e = d1.ctl_err(&["network", "rm", &net]);
    assert!(!e.is_empty(), "removed while host 2 still has an endpoint");
    d2.ctl_ok(&["network", "disconnect", &net, &s2]);
    // The claims are released at once; the removal goes through and host 2 follows.
    wait_until(
        SETTLE,
        || "network rm to succeed".into(),
        || d1.ctl(&["network", "rm", &net]).status.success().then_some(()),
    );
    wait_until(
        SETTLE,
        || format!("{net} to leave host 2"),
        || (!d2.ctl(&["network", "inspect", &net]).status.success()).then_some(()),
    );
}
