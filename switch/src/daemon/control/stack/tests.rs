//! `stack_apply` through a real control plane and datapath thread, without
//! root (networks and services only: no namespaces): applied once, then
//! unchanged; a failing step rolls back the datapath and the state file.

use std::net::TcpListener;

use ctl::proto::{ErrorKind, Request};
use ctl::stack::{SourceMap, Stack, StackNetwork, StackReport, StackService, StackStatus};

use crate::daemon::control::scratch::Scratch;

/// Stack requests against the scratch control plane.
trait ApplyStack {
    fn apply(&mut self, stack: &Stack, dry_run: bool) -> Result<StackReport, ctl::proto::CtlError>;
}

impl ApplyStack for Scratch {
    fn apply(&mut self, stack: &Stack, dry_run: bool) -> Result<StackReport, ctl::proto::CtlError> {
        let source = SourceMap {
            file: "stack.yaml".into(),
            keys: [(
                "services.lb.ports".to_owned(),
                ctl::stack::SourceKey { path: "services.lb.ports".into(), line: 9 },
            )]
            .into(),
        };
        let req = Request::StackApply { stack: stack.clone(), dry_run, source: Some(source) };
        let reply = self.c().handle(req)?;
        Ok(serde_json::from_value(reply).unwrap())
    }
}

fn stack(port: u16) -> Stack {
    let net = |name: &str, subnet: &str| StackNetwork {
        name: name.into(),
        subnet: Some(subnet.parse().unwrap()),
        ..StackNetwork::default()
    };
    Stack {
        networks: vec![net("front", "10.1.0.0/24"), net("back", "10.2.0.0/24")],
        sandboxes: vec![],
        services: vec![StackService {
            name: "lb".into(),
            network: "front".into(),
            ports: ctl::parse_publish(&format!("127.0.0.1:{port}:80")).unwrap(),
        }],
    }
}

#[test]
fn applied_once_then_unchanged_and_a_dry_run_changes_nothing() {
    let mut s = Scratch::new("once");
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let before = s.state();
    let plan = s.apply(&stack(port), true).unwrap();
    assert!(plan.dry_run && plan.changed);
    assert!(plan.objects.iter().all(|o| o.status == StackStatus::Created), "{plan:?}");
    assert_eq!(s.state(), before, "a dry run saved state");

    let report = s.apply(&stack(port), false).unwrap();
    assert!(report.changed && !report.dry_run);
    let saved = s.state();
    assert_ne!(saved, before);
    // The service listens: the port is taken now.
    assert!(TcpListener::bind(("127.0.0.1", port)).is_err(), "the service's port is not open");

    let again = s.apply(&stack(port), false).unwrap();
    assert!(!again.changed, "{again:?}");
    assert!(again.objects.iter().all(|o| o.status == StackStatus::Unchanged));
    assert_eq!(s.state(), saved, "an unchanged apply saved state");

    let exported: Stack = serde_json::from_value(s.c().handle(Request::StackExport).unwrap()).unwrap();
    assert_eq!(exported.networks.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["back", "front"]);
    // The file's services, in the file's text (a spec names its address).
    let text = |services: &[StackService]| -> Vec<(String, String, Vec<String>)> {
        let spec = |s: &StackService| s.ports.iter().map(ctl::stack::port_spec).collect();
        services.iter().map(|s| (s.name.clone(), s.network.clone(), spec(s))).collect()
    };
    assert_eq!(text(&exported.services), text(&stack(port).services));
}

#[test]
fn a_failing_step_rolls_back_the_datapath_and_saves_nothing() {
    let mut s = Scratch::new("rollback");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let before = s.state();
    let e = s.apply(&stack(port), false).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict, "{}", e.message);
    assert_eq!(
        e.message,
        format!(
            "stack.yaml:9: services.lb.ports: host port 127.0.0.1:{port}/tcp is already in use\nnothing was applied"
        )
    );
    assert_eq!(s.state(), before, "the state file changed");
    assert!(!s.apply(&stack(port), true).unwrap().objects.is_empty());
    // The networks the failed apply added to the datapath are gone again:
    // the same stack applies once the port is free.
    drop(taken);
    let report = s.apply(&stack(port), false).unwrap();
    assert!(report.objects.iter().all(|o| o.status == StackStatus::Created), "{report:?}");
}

/// A dual-stack network with a fixed IPv6 subnet and an IPv6-only one
/// with an automatic ULA.
fn ipv6_stack() -> Stack {
    let dual = StackNetwork {
        name: "dual".into(),
        subnet: Some("10.7.0.0/24".parse().unwrap()),
        enable_ipv6: true,
        subnet6: Some("fd00:7::/64".parse().unwrap()),
        ip_range6: Some("fd00:7::100/120".parse().unwrap()),
        ..StackNetwork::default()
    };
    let six = StackNetwork { name: "six".into(), enable_ipv4: false, enable_ipv6: true, ..StackNetwork::default() };
    Stack { networks: vec![dual, six], sandboxes: vec![], services: vec![] }
}

#[test]
fn ipv6_networks_are_planned_applied_inspected_and_exported() {
    let mut s = Scratch::new("ipv6-stack");
    let plan = s.apply(&ipv6_stack(), true).unwrap();
    let dual = &plan.objects[0];
    assert_eq!(
        dual.details,
        [
            "subnet 10.7.0.0/24, gateway 10.7.0.1",
            "IPv6 subnet fd00:7::/64, gateway fd00:7::1, ip_range fd00:7::100/120"
        ],
        "the dry run shows the IPv6 side"
    );
    assert!(plan.objects[1].details[0].starts_with("IPv6 subnet fd"), "{:?}", plan.objects[1]);

    s.apply(&ipv6_stack(), false).unwrap();
    let info = s.c().handle(Request::NetworkInspect { name: "dual".into() }).unwrap();
    assert_eq!((&info["EnableIPv4"], &info["EnableIPv6"]), (&serde_json::json!(true), &serde_json::json!(true)));
    assert_eq!(info["IPAM"]["Config"][1]["Subnet"], "fd00:7::/64");
    let six = s.c().handle(Request::NetworkInspect { name: "six".into() }).unwrap();
    assert_eq!(six["EnableIPv4"], serde_json::json!(false));
    let saved = s.state();
    assert!(!s.apply(&ipv6_stack(), false).unwrap().changed, "a re-apply changed something");
    assert_eq!(s.state(), saved);

    let exported: Stack = serde_json::from_value(s.c().handle(Request::StackExport).unwrap()).unwrap();
    let ula = six["IPAM"]["Config"][0]["Subnet"].as_str().unwrap().parse().unwrap();
    assert_eq!(exported.networks[1].subnet6, Some(ula), "the automatic subnet is written down");
    assert_eq!((exported.networks[1].enable_ipv4, exported.networks[1].enable_ipv6), (false, true));
    assert_eq!(exported.networks[0], ipv6_stack().networks[0]);

    // An IPv6 subnet overlapping, in the last network: nothing is applied.
    let mut bad = ipv6_stack();
    bad.networks[0].name = "dual2".into();
    bad.networks[0].subnet = Some("10.9.0.0/24".parse().unwrap());
    bad.networks[1].name = "six2".into();
    bad.networks.push(StackNetwork {
        name: "last".into(),
        enable_ipv6: true,
        subnet6: Some("fd00:7::/48".parse().unwrap()),
        ..StackNetwork::default()
    });
    bad.networks[0].subnet6 = Some("fd00:8::/64".parse().unwrap());
    bad.networks[0].ip_range6 = None;
    let e = s.apply(&bad, false).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict, "{}", e.message);
    assert_eq!(e.message, "networks.last.subnet6: subnet fd00:7::/48 overlaps network dual (fd00:7::/64)");
    assert_eq!(s.state(), saved, "a refused stack saved state");
    assert!(s.c().handle(Request::NetworkInspect { name: "dual2".into() }).is_err(), "dual2 was created");
}
