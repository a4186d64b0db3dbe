//! Tests of stack planning and export: what is created, changed in place,
//! recreated or refused, that nothing is touched on refusal, and that an
//! export planned on a fresh model reproduces the model.

use std::net::Ipv4Addr;

use ctl::proto::Driver;
use ctl::stack::{Stack, StackAttachment, StackNetwork, StackSandbox, StackService, StackStatus};
use ctl::{PortMapping, parse_publish};

use crate::model::{Connect, CreateNetwork, CreateSandbox, Model, StackDefaults, StackPlan, StackRefusal};

const DEFAULTS: StackDefaults = StackDefaults { overlay_mtu: 1450, encrypted_overlay_mtu: 1418, has_secret: false };

fn net(name: &str, subnet: &str) -> StackNetwork {
    StackNetwork { name: name.into(), subnet: Some(subnet.parse().unwrap()), ..StackNetwork::default() }
}

fn attach(network: &str) -> StackAttachment {
    StackAttachment { network: network.into(), ..StackAttachment::default() }
}

fn sandbox(name: &str, networks: Vec<StackAttachment>) -> StackSandbox {
    StackSandbox { name: name.into(), networks, ..StackSandbox::default() }
}

fn ports(spec: &str) -> Vec<PortMapping> {
    parse_publish(spec).unwrap()
}

/// front (10.1.0.0/24) and internal back; web on both with a fixed
/// address, an alias and a port; db on back.
fn stack() -> Stack {
    let web = StackSandbox {
        ports: ports("8080:80"),
        ..sandbox(
            "web",
            vec![
                StackAttachment {
                    ipv4_address: Some(Ipv4Addr::new(10, 1, 0, 10)),
                    aliases: vec!["api".into()],
                    ..attach("front")
                },
                attach("back"),
            ],
        )
    };
    Stack {
        networks: vec![net("front", "10.1.0.0/24"), StackNetwork { internal: true, ..net("back", "10.2.0.0/24") }],
        sandboxes: vec![web, sandbox("db", vec![attach("back")])],
        services: vec![],
    }
}

fn plan(m: &Model, s: &Stack) -> StackPlan {
    m.plan_stack(s, &DEFAULTS).unwrap_or_else(|r| panic!("refused: {:?}", r.issues))
}

fn refuse(m: &Model, s: &Stack) -> StackRefusal {
    let before = m.clone();
    let r = m.plan_stack(s, &DEFAULTS).expect_err("should be refused");
    assert_eq!(*m, before, "planning changed the model");
    r
}

fn statuses(p: &StackPlan) -> Vec<(String, StackStatus)> {
    p.objects.iter().map(|o| (format!("{} {}", o.kind, o.name), o.status)).collect()
}

#[test]
fn a_fresh_model_gets_everything_and_a_second_plan_changes_nothing() {
    let m = Model::new();
    let p = plan(&m, &stack());
    use StackStatus::*;
    assert_eq!(
        statuses(&p),
        [
            ("network front".into(), Created),
            ("network back".into(), Created),
            ("sandbox web".into(), Created),
            ("sandbox db".into(), Created)
        ]
    );
    assert!(p.changes_anything());
    assert_eq!((p.networks.len(), p.sandboxes.len(), p.endpoints.len()), (2, 2, 3));
    assert!(p.removed.is_empty() && p.ports.is_empty());
    // web's port goes to the endpoint with its default route (front: back is internal).
    let web_front = p.next.endpoint_for("front", "web").unwrap();
    assert_eq!(web_front.ipv4, Some(Ipv4Addr::new(10, 1, 0, 10)));
    assert_eq!((web_front.ifname_in_sandbox.as_str(), web_front.is_default_gateway_network), ("eth0", true));
    assert_eq!(web_front.publish, ports("8080:80"));
    assert_eq!(web_front.aliases, ["api"]);
    // The endpoints to plumb carry their ports.
    assert!(p.endpoints.iter().any(|e| e.id == web_front.id && e.publish == ports("8080:80")));

    let again = plan(&p.next, &stack());
    assert!(!again.changes_anything(), "{:?}", again.objects);
    assert!(again.objects.iter().all(|o| o.status == Unchanged && o.changes.is_empty()));
    assert_eq!(again.next, p.next, "an unchanged plan changes the model");
}

#[test]
fn an_overlap_in_the_last_network_refuses_the_whole_stack() {
    let mut s = stack();
    s.networks.push(net("last", "10.1.0.0/16"));
    let r = refuse(&Model::new(), &s);
    assert_eq!(r.issues.len(), 1);
    assert_eq!(r.issues[0].key, "networks.last.subnet");
    assert_eq!(r.issues[0].message, "subnet 10.1.0.0/16 overlaps network front (10.1.0.0/24)");
    assert!(matches!(r.cause.as_deref(), Some(crate::model::ModelError::SubnetOverlap { .. })));
}

/// A bad `dns_opt` is refused at that key, for a new sandbox and for one
/// whose options change in place.
#[test]
fn a_bad_dns_opt_is_refused_at_its_key() {
    for existing in [false, true] {
        let m = if existing { plan(&Model::new(), &stack()).next } else { Model::new() };
        let mut s = stack();
        s.sandboxes[0].dns_options = vec!["ndots:many".into()];
        let r = refuse(&m, &s);
        let key = format!("sandboxes.{}.dns_opt", s.sandboxes[0].name);
        assert_eq!(r.issues[0].key, key, "existing: {existing}");
        assert!(r.issues[0].message.contains("invalid dns option"), "{}", r.issues[0].message);
        // The same for extra_hosts.
        let mut s = stack();
        s.sandboxes[0].extra_hosts = vec!["db:nowhere".into()];
        let r = refuse(&m, &s);
        assert_eq!(r.issues[0].key, format!("sandboxes.{}.extra_hosts", s.sandboxes[0].name), "existing: {existing}");
        assert!(r.issues[0].message.contains("invalid extra host"), "{}", r.issues[0].message);
    }
}

#[test]
fn errors_name_the_key_they_are_about() {
    let m = plan(&Model::new(), &stack()).next;
    let cases: Vec<(Stack, &str, &str)> = vec![
        {
            let mut s = stack();
            s.networks[0].subnet = Some("10.9.0.0/24".parse().unwrap());
            (s, "networks.front.subnet", "network front exists with subnet 10.1.0.0/24, the file says 10.9.0.0/24")
        },
        {
            let mut s = stack();
            s.networks[1].internal = false;
            (s, "networks.back.internal", "exists with internal true, the file says false")
        },
        {
            let mut s = stack();
            s.networks[0].options.insert("egress".into(), "false".into());
            (s, "networks.front.options.egress", "exists with options.egress unset, the file says \"false\"")
        },
        {
            let mut s = stack();
            s.networks[0].labels.insert("tier".into(), "web".into());
            (s, "networks.front.labels.tier", "exists with labels.tier unset, the file says \"web\"")
        },
        {
            let mut s = stack();
            s.sandboxes[1].networks[0].ipv4_address = Some(Ipv4Addr::new(10, 2, 0, 1));
            (s, "sandboxes.db.networks.back.ipv4_address", "address 10.2.0.1 is the gateway")
        },
        {
            let mut s = stack();
            s.sandboxes[1].networks[0].aliases = vec!["bad name".into()];
            (s, "sandboxes.db.networks.back.aliases", "alias")
        },
        {
            let mut s = stack();
            s.sandboxes[1].ports = ports("8080:80");
            (s, "sandboxes.db.ports", "network back is --internal")
        },
        {
            let mut s = stack();
            s.sandboxes[1].netns = Some("/proc/1/ns/net".into());
            (s, "sandboxes.db.netns", "namespace does not change in place")
        },
        {
            let mut s = stack();
            s.networks.push(StackNetwork { name: "gone".into(), external: true, ..StackNetwork::default() });
            (s, "networks.gone.external", "network gone not found")
        },
        {
            let mut s = stack();
            s.networks.push(StackNetwork {
                driver: Driver::Overlay,
                options: [("encrypted".to_owned(), String::new())].into(),
                ..net("sec", "10.5.0.0/24")
            });
            (s, "networks.sec.options.encrypted", "needs a cluster secret")
        },
        {
            let mut s = stack();
            s.sandboxes[0].networks.push(attach("nowhere"));
            (s, "sandboxes.web.networks.nowhere", "not declared")
        },
    ];
    for (s, key, message) in cases {
        let r = refuse(&m, &s);
        assert_eq!(r.issues[0].key, key, "{:?}", r.issues);
        assert!(r.issues[0].message.contains(message), "{:?} lacks {message:?}", r.issues);
    }
}

#[test]
fn in_place_changes_and_recreations() {
    let m = plan(&Model::new(), &stack()).next;
    let old_web_front = m.endpoint_for("front", "web").unwrap().clone();
    let old_db = m.endpoint_for("back", "db").unwrap().clone();
    let mut s = stack();
    // web: a second alias, its port moves to db (front), it leaves back.
    s.sandboxes[0].networks[0].aliases.push("www".into());
    s.sandboxes[0].networks.pop();
    s.sandboxes[0].ports.clear();
    // db: a new address on back (recreated), joins front with web's old port.
    s.sandboxes[1].networks[0].ipv4_address = Some(Ipv4Addr::new(10, 2, 0, 99));
    s.sandboxes[1].networks.push(StackAttachment { ports: ports("8080:80"), ..attach("front") });
    s.sandboxes[1].dns_search = vec!["example.com".into()];
    s.sandboxes[0].dns_options = vec!["ndots:2".into()];
    s.sandboxes[1].extra_hosts = vec!["cache=10.2.0.50".into()];
    let p = plan(&m, &s);
    let changes = |name: &str| p.objects.iter().find(|o| o.name == name).unwrap().changes.clone();
    assert_eq!(
        changes("web"),
        ["dns settings", "aliases on front", "disconnected from back", "unpublished 8080:80 on front"]
    );
    assert_eq!(
        changes("db"),
        [
            "dns settings",
            "extra hosts",
            "reconnected to back (ipv4_address 10.2.0.3 → 10.2.0.99)",
            "connected to front (10.1.0.2)"
        ]
    );
    let removed: Vec<&str> = p.removed.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(removed.len(), 2);
    assert!(removed.contains(&old_db.id.as_str()));
    let created: Vec<(&str, Option<Ipv4Addr>)> = p.endpoints.iter().map(|e| (e.sandbox.as_str(), e.ipv4)).collect();
    assert_eq!(created, [("db", Some(Ipv4Addr::new(10, 2, 0, 99))), ("db", Some(Ipv4Addr::new(10, 1, 0, 2)))]);
    // The port left web (kept endpoint) and arrives with db's new endpoint.
    assert_eq!(p.ports.len(), 1);
    assert_eq!(
        (p.ports[0].endpoint_id.as_str(), p.ports[0].removed.clone()),
        (old_web_front.id.as_str(), ports("8080:80"))
    );
    assert_eq!(p.next.endpoint_for("front", "db").unwrap().publish, ports("8080:80"));
    assert_eq!(p.next.endpoint_for("front", "web").unwrap().aliases, ["api", "www"]);
    assert_eq!(p.next.sandbox("db").unwrap().dns_search, ["example.com"]);
    assert_eq!(p.next.sandbox("web").unwrap().dns_options, ["ndots:2"]);
    assert_eq!(p.next.sandbox("db").unwrap().extra_hosts, ["cache:10.2.0.50"], "kept as NAME:IP");
    assert!(!plan(&p.next, &s).changes_anything(), "the new state matches the file (as given)");
    // A sandbox that loses the endpoint with its default route hands it on.
    let mut s2 = s.clone();
    s2.networks[1].internal = true;
    s2.sandboxes[1].networks.retain(|a| a.network == "front");
    let p2 = plan(&p.next, &s2);
    assert!(p2.new_default_routes.is_empty(), "db's front endpoint already had it");
}

#[test]
fn gw_priority_picks_the_default_route_and_a_change_recreates_the_endpoint() {
    let mut s = stack();
    s.networks[1].internal = false;
    s.sandboxes[0].networks[1].gw_priority = 3;
    let p = plan(&Model::new(), &s);
    let default_of = |m: &Model| {
        m.endpoints_in_sandbox("web")
            .into_iter()
            .filter(|e| e.is_default_gateway_network)
            .map(|e| e.network_id.clone())
            .collect::<Vec<_>>()
    };
    let back = p.next.network("back").unwrap().id.clone();
    assert_eq!(default_of(&p.next), std::slice::from_ref(&back), "the later network of higher priority");
    assert_eq!(p.next.endpoint_for("back", "web").unwrap().gw_priority, 3);
    assert!(!plan(&p.next, &s).changes_anything(), "the state matches the file");
    let exported = p.next.export_stack();
    let web = exported.sandboxes.iter().find(|x| x.name == "web").unwrap();
    assert_eq!(web.networks.iter().find(|a| a.network == "back").map(|a| a.gw_priority), Some(3), "exported");

    s.sandboxes[0].networks[1].gw_priority = 0;
    let p2 = plan(&p.next, &s);
    let changes = p2.objects.iter().find(|o| o.name == "web").unwrap().changes.clone();
    assert!(changes.iter().any(|c| c.contains("gw_priority 3 → 0")), "{changes:?}");
    let front = p2.next.network("front").unwrap().id.clone();
    assert_eq!(default_of(&p2.next), [front], "back of equal priority now: front keeps it");
    p2.next.check_invariants().unwrap();
}

/// Compose's `interface_name`: the endpoint is named so, an export says
/// so, the same file changes nothing, and another name recreates it.
#[test]
fn interface_name_names_the_endpoint_and_a_change_recreates_it() {
    let mut s = stack();
    s.sandboxes[0].networks[1].interface_name = Some("lan0".into());
    let p = plan(&Model::new(), &s);
    assert_eq!(p.next.endpoint_for("back", "web").unwrap().ifname_in_sandbox, "lan0");
    assert!(!plan(&p.next, &s).changes_anything(), "the state matches the file");
    let exported = p.next.export_stack();
    let web = exported.sandboxes.iter().find(|x| x.name == "web").unwrap();
    let names: Vec<_> = web.networks.iter().map(|a| a.interface_name.as_deref()).collect();
    assert_eq!(names, [None, Some("lan0")], "exported: only the name asked for");

    s.sandboxes[0].networks[1].interface_name = Some("lan1".into());
    let p2 = plan(&p.next, &s);
    let changes = p2.objects.iter().find(|o| o.name == "web").unwrap().changes.clone();
    assert!(changes.iter().any(|c| c.contains("interface_name lan0 → lan1")), "{changes:?}");
    assert_eq!(p2.next.endpoint_for("back", "web").unwrap().ifname_in_sandbox, "lan1");
    // Unset: any name, so the one it has stays.
    s.sandboxes[0].networks[1].interface_name = None;
    assert!(!plan(&p2.next, &s).changes_anything(), "an unset name changes nothing");

    // A later attachment's name is left to it: the earlier, automatic one
    // does not take `eth0` first.
    let mut s = stack();
    s.sandboxes[0].networks[1].interface_name = Some("eth0".into());
    let p = plan(&Model::new(), &s);
    let names = |m: &Model| ["front", "back"].map(|n| m.endpoint_for(n, "web").unwrap().ifname_in_sandbox.clone());
    assert_eq!(names(&p.next), ["eth1", "eth0"]);
    let again = plan(&Model::new(), &p.next.export_stack());
    assert_eq!(names(&again.next), ["eth1", "eth0"], "an export applies on a fresh host");
}

#[test]
fn a_service_is_created_then_recreated_when_its_ports_differ() {
    let mut s = stack();
    s.sandboxes[1].networks.push(StackAttachment { service: Some("lb".into()), ..attach("front") });
    s.services.push(StackService { name: "lb".into(), network: "front".into(), ports: ports("9090:90") });
    let p = plan(&Model::new(), &s);
    assert_eq!(p.objects.last().map(|o| o.status), Some(StackStatus::Created));
    assert_eq!(p.services.len(), 1);
    assert!(p.services[0].before.is_none());
    let replicas = p.next.service_replicas(p.next.service("lb").unwrap());
    assert_eq!(replicas.len(), 1);
    s.services[0].ports = ports("9091:90");
    let p2 = plan(&p.next, &s);
    assert_eq!(p2.objects.last().map(|o| o.status), Some(StackStatus::Changed));
    assert_eq!(p2.services[0].before.as_ref().map(|b| b.publish.clone()), Some(ports("9090:90")));
    assert_eq!(p2.next.service("lb").unwrap().publish, ports("9091:90"));
}

#[test]
fn an_export_planned_on_a_fresh_model_reproduces_the_model() {
    let mut m = plan(&Model::new(), &stack()).next;
    // Things made by hand: an overlay with options, an adopted namespace, a
    // fixed MAC, a service, a sandbox with no network.
    let req = CreateNetwork {
        attachable: true,
        mtu: Some(1450),
        options: [("mss-clamp".to_owned(), String::new())].into(),
        ..CreateNetwork::new("ov", Driver::Overlay)
    };
    m.create_network(req).unwrap();
    let adopted = CreateSandbox { netns_path: Some("/proc/1/ns/net".into()), ..CreateSandbox::new("adopted") };
    m.create_sandbox(adopted).unwrap();
    let mac = "02:00:00:00:00:99".parse().unwrap();
    m.connect(Connect { mac: Some(mac), service: Some("lb".into()), ..Connect::new("ov", "adopted") }).unwrap();
    m.publish_service("lb", Some("ov"), &ports("127.0.0.1:9999:99")).unwrap();
    m.create_sandbox(CreateSandbox::new("idle")).unwrap();
    let exported = m.export_stack();
    assert!(ctl::stack::validate(&exported).is_empty());
    let ov = exported.networks.iter().find(|n| n.name == "ov").unwrap();
    assert_eq!((ov.mtu, ov.vni, ov.gateway), (Some(1450), Some(4096), None), "defaults left out, overlay's kept");

    let fresh = plan(&Model::new(), &exported).next;
    assert_eq!(fresh.export_stack(), exported);
    for e in m.endpoints() {
        let network = &m.network_by_id(&e.network_id).unwrap().name;
        let twin = fresh.endpoint_for(network, &e.sandbox).unwrap();
        assert_eq!((twin.ipv4, twin.mac, &twin.aliases, &twin.publish), (e.ipv4, e.mac, &e.aliases, &e.publish));
        assert_eq!(twin.ifname_in_sandbox, e.ifname_in_sandbox);
    }
    assert!(!plan(&m, &exported).changes_anything(), "the export matches the model it came from");
}

/// Parses an address or prefix literal.
fn p<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().unwrap()
}

/// front: dual-stack (10.1.0.0/24, fd00:1::/64); v6: IPv6-only with an
/// automatic ULA; web on both with fixed IPv6 addresses on front, db on
/// front with automatic ones.
fn dual_stack() -> Stack {
    let front = StackNetwork { enable_ipv6: true, subnet6: Some(p("fd00:1::/64")), ..net("front", "10.1.0.0/24") };
    let v6 = StackNetwork { name: "v6".into(), enable_ipv4: false, enable_ipv6: true, ..StackNetwork::default() };
    let web = sandbox(
        "web",
        vec![
            StackAttachment {
                ipv4_address: Some(p("10.1.0.10")),
                ipv6_address: Some(p("fd00:1::10")),
                ..attach("front")
            },
            attach("v6"),
        ],
    );
    Stack { networks: vec![front, v6], sandboxes: vec![web, sandbox("db", vec![attach("front")])], services: vec![] }
}

#[test]
fn a_dual_stack_file_gets_its_ipv6_addresses_and_a_second_plan_changes_nothing() {
    let p0 = plan(&Model::new(), &dual_stack());
    let m = &p0.next;
    let front = m.network("front").unwrap();
    assert_eq!((front.enable_ipv4, front.enable_ipv6), (true, true));
    assert_eq!((front.subnet6, front.gateway6), (Some(p("fd00:1::/64")), Some(p("fd00:1::1"))));
    let v6 = m.network("v6").unwrap();
    assert_eq!((v6.enable_ipv4, v6.subnet, v6.gateway), (false, None, None));
    let ula = v6.subnet6.expect("an automatic IPv6 subnet");
    assert_eq!((ula.prefix_len(), ula.network().octets()[0]), (64, 0xfd), "a ULA /64");

    let web_front = m.endpoint_for("front", "web").unwrap();
    assert_eq!((web_front.ipv4, web_front.ipv6), (Some(p("10.1.0.10")), Some(p("fd00:1::10"))));
    let web_v6 = m.endpoint_for("v6", "web").unwrap();
    let second = std::net::Ipv6Addr::from(u128::from(ula.network()) + 2);
    assert_eq!((web_v6.ipv4, web_v6.ipv6), (None, Some(second)), "::2, after the gateway ::1");
    let db = m.endpoint_for("front", "db").unwrap();
    assert_eq!((db.ipv4, db.ipv6), (Some(p("10.1.0.2")), Some(p("fd00:1::2"))));

    // The plan says what the created objects get, IPv6 included.
    let details = |name: &str| p0.objects.iter().find(|o| o.name == name).unwrap().details.clone();
    assert_eq!(
        details("front"),
        ["subnet 10.1.0.0/24, gateway 10.1.0.1", "IPv6 subnet fd00:1::/64, gateway fd00:1::1"]
    );
    assert_eq!(details("v6"), [format!("IPv6 subnet {ula}, gateway {}", v6.gateway6.unwrap())]);
    assert_eq!(
        details("web"),
        ["eth0 on front: 10.1.0.10, fd00:1::10".to_owned(), format!("eth1 on v6: {}", web_v6.ipv6.unwrap())]
    );

    let again = plan(m, &dual_stack());
    assert!(!again.changes_anything(), "{:?}", again.objects);
    assert!(again.objects.iter().all(|o| o.details.is_empty() && o.changes.is_empty()));
    assert_eq!(again.next, *m, "an unchanged plan changes the model");
    // The automatic subnet, written down, matches too.
    let mut pinned = dual_stack();
    pinned.networks[1].subnet6 = Some(ula);
    assert!(!plan(m, &pinned).changes_anything());
}

#[test]
fn ipv6_refusals_name_their_key_and_change_nothing() {
    use crate::model::ModelError as M;
    let fresh = Model::new();
    let m = plan(&fresh, &dual_stack()).next;
    let cases: Vec<(&Model, Stack, &str, &str)> = vec![
        {
            // Another endpoint has it (web, already on front).
            let mut s = dual_stack();
            s.sandboxes[1].networks[0].ipv6_address = Some(p("fd00:1::10"));
            (&m, s, "sandboxes.db.networks.front.ipv6_address", "address fd00:1::10 is already in use")
        },
        {
            // Two sandboxes of one file want it.
            let mut s = dual_stack();
            s.sandboxes[1].networks[0].ipv6_address = Some(p("fd00:1::10"));
            (&fresh, s, "sandboxes.db.networks.front.ipv6_address", "address fd00:1::10 is already in use")
        },
        {
            let mut s = dual_stack();
            s.sandboxes[1].networks[0].ipv6_address = Some(p("fd00:9::5"));
            (&fresh, s, "sandboxes.db.networks.front.ipv6_address", "is not inside subnet fd00:1::/64")
        },
        {
            let mut s = dual_stack();
            s.sandboxes[1].networks[0].ipv6_address = Some(p("fd00:1::1"));
            (&fresh, s, "sandboxes.db.networks.front.ipv6_address", "address fd00:1::1 is the gateway")
        },
        {
            // bridge has no IPv6.
            let mut s = dual_stack();
            s.sandboxes[1].networks.push(StackAttachment { ipv6_address: Some(p("fd00:1::7")), ..attach("bridge") });
            (&fresh, s, "sandboxes.db.networks.bridge.ipv6_address", "network bridge has no IPv6")
        },
        {
            let mut s = dual_stack();
            s.networks[0].gateway6 = Some(p("fd00:2::1"));
            (&fresh, s, "networks.front.gateway6", "gateway fd00:2::1 is not inside subnet fd00:1::/64")
        },
        {
            let mut s = dual_stack();
            s.networks[0].ip_range6 = Some(p("fd00:1::101/120"));
            (&fresh, s, "networks.front.ip_range6", "has host bits set")
        },
        {
            let mut s = dual_stack();
            s.networks[0].subnet6 = Some(p("fe80::/64"));
            (&fresh, s, "networks.front.subnet6", "link-local")
        },
        {
            let mut s = dual_stack();
            s.networks[0].enable_ipv6 = false;
            s.networks[0].subnet6 = None;
            s.sandboxes[0].networks[0].ipv6_address = None;
            (&m, s, "networks.front.enable_ipv6", "network front exists with enable_ipv6 true, the file says false")
        },
        {
            let mut s = dual_stack();
            s.networks[0].subnet6 = Some(p("fd00:7::/64"));
            (&m, s, "networks.front.subnet6", "exists with subnet6 fd00:1::/64, the file says fd00:7::/64")
        },
        {
            let mut s = dual_stack();
            s.networks[1].enable_ipv4 = true;
            (&m, s, "networks.v6.enable_ipv4", "exists with enable_ipv4 false, the file says true")
        },
    ];
    for (model, s, key, message) in cases {
        let r = refuse(model, &s);
        assert_eq!(r.issues[0].key, key, "{:?}", r.issues);
        assert!(r.issues[0].message.contains(message), "{:?} lacks {message:?}", r.issues);
    }

    // An IPv6 subnet overlapping an earlier network's, in the last network.
    let mut s = dual_stack();
    s.networks.push(StackNetwork { enable_ipv6: true, subnet6: Some(p("fd00:1::/48")), ..net("last", "10.9.0.0/24") });
    let r = refuse(&fresh, &s);
    assert_eq!(r.issues.len(), 1);
    assert_eq!(r.issues[0].key, "networks.last.subnet6");
    assert_eq!(r.issues[0].message, "subnet fd00:1::/48 overlaps network front (fd00:1::/64)");
    assert!(matches!(r.cause.as_deref(), Some(M::SubnetOverlap { .. })));
}

#[test]
fn an_endpoint_whose_ipv6_address_differs_is_recreated() {
    let m = plan(&Model::new(), &dual_stack()).next;
    let old = m.endpoint_for("front", "db").unwrap().clone();
    let mut s = dual_stack();
    s.sandboxes[1].networks[0].ipv6_address = Some(p("fd00:1::99"));
    let p1 = plan(&m, &s);
    let db = p1.objects.iter().find(|o| o.name == "db").unwrap();
    assert_eq!(db.changes, ["reconnected to front (ipv6_address fd00:1::2 → fd00:1::99)"]);
    assert_eq!(p1.removed.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), [old.id.as_str()]);
    let new = p1.next.endpoint_for("front", "db").unwrap();
    assert_eq!((new.ipv4, new.ipv6), (old.ipv4, Some(p("fd00:1::99"))), "the IPv4 address is taken again");
    assert!(!plan(&p1.next, &s).changes_anything());
}

#[test]
fn an_ipv6_export_planned_on_a_fresh_model_reproduces_the_addresses() {
    let mut m = plan(&Model::new(), &dual_stack()).next;
    // Made by hand: a range and a gateway of its own, a fixed address, and
    // on the IPv6-only network two static addresses that derive the same MAC.
    let req = CreateNetwork {
        enable_ipv6: true,
        subnet6: Some(p("fd00:5::/64")),
        gateway6: Some(p("fd00:5::fe")),
        ip_range6: Some(p("fd00:5::100/120")),
        ..CreateNetwork::new("ranged", Driver::Bridge)
    };
    m.create_network(req).unwrap();
    m.connect(Connect { ipv6: Some(p("fd00:5::7")), ..Connect::new("ranged", "db") }).unwrap();
    m.connect(Connect::new("ranged", "web")).unwrap();
    m.create_sandbox(CreateSandbox::new("twin")).unwrap();
    let v6 = m.network("v6").unwrap().subnet6.unwrap();
    let same_tail = std::net::Ipv6Addr::from(u128::from(v6.network()) | 0x1_0000_0000_0002);
    m.connect(Connect { ipv6: Some(same_tail), ..Connect::new("v6", "twin") }).unwrap();
    let exported = m.export_stack();
    assert!(ctl::stack::validate(&exported).is_empty());
    let ranged = exported.networks.iter().find(|n| n.name == "ranged").unwrap();
    assert_eq!(
        (ranged.enable_ipv6, ranged.subnet6, ranged.gateway6, ranged.ip_range6),
        (true, Some(p("fd00:5::/64")), Some(p("fd00:5::fe")), Some(p("fd00:5::100/120")))
    );
    let front = exported.networks.iter().find(|n| n.name == "front").unwrap();
    assert_eq!(front.gateway6, None, "the default gateway (::1) is left out");
    let v6_out = exported.networks.iter().find(|n| n.name == "v6").unwrap();
    assert_eq!((v6_out.enable_ipv4, v6_out.subnet6), (false, Some(v6)), "the random ULA is written down");
    let macs: Vec<bool> = exported
        .sandboxes
        .iter()
        .flat_map(|s| &s.networks)
        .filter(|a| a.network == "v6")
        .map(|a| a.mac_address.is_some())
        .collect();
    assert_eq!(macs, [true, false], "twin's MAC (derived ones clashed: random) is written, web's derived one is not");

    let fresh = plan(&Model::new(), &exported).next;
    assert_eq!(fresh.export_stack(), exported);
    for e in m.endpoints() {
        let network = &m.network_by_id(&e.network_id).unwrap().name;
        let twin = fresh.endpoint_for(network, &e.sandbox).unwrap();
        assert_eq!(
            (twin.ipv4, twin.ipv6, twin.prefix_len6, twin.mac, &twin.ifname_in_sandbox),
            (e.ipv4, e.ipv6, e.prefix_len6, e.mac, &e.ifname_in_sandbox)
        );
    }
    for n in m.networks() {
        let twin = fresh.network(&n.name).unwrap();
        assert_eq!(
            (twin.enable_ipv4, twin.enable_ipv6, twin.subnet6, twin.gateway6, twin.ip_range6),
            (n.enable_ipv4, n.enable_ipv6, n.subnet6, n.gateway6, n.ip_range6)
        );
    }
    assert!(!plan(&m, &exported).changes_anything(), "the export matches the model it came from");
}

#[test]
fn a_macvlan_network_records_its_parent_as_its_uplink() {
    let m = Model::new();
    let mut lan = net("lan", "192.168.1.0/24");
    lan.driver = Driver::Macvlan;
    lan.options.insert("parent".into(), "enp3s0".into());
    let p = plan(&m, &Stack { networks: vec![lan.clone()], ..Stack::default() });
    assert_eq!(p.uplinks.len(), 1);
    let uplink = &p.uplinks[0];
    assert_eq!((uplink.interface.as_str(), uplink.port_type), ("enp3s0", ctl::proto::PortType::Raw));
    assert_eq!(p.next.uplink("enp3s0").unwrap(), uplink);
    assert_eq!(uplink.network_id, p.networks[0].id);
    // Applied again: unchanged, nothing to attach.
    let again = plan(&p.next, &Stack { networks: vec![lan.clone()], ..Stack::default() });
    assert!(!again.changes_anything() && again.uplinks.is_empty());
    // An interface that already serves a network is refused at the parent's key.
    let mut other = net("other", "192.168.2.0/24");
    other.driver = Driver::Macvlan;
    other.options.insert("parent".into(), "enp3s0".into());
    let r = refuse(&p.next, &Stack { networks: vec![other], ..Stack::default() });
    assert_eq!(r.issues[0].key, "networks.other.options.parent", "{:?}", r.issues);
}

#[test]
fn a_network_keeps_labels_the_file_does_not_give() {
    let mut labelled = stack();
    labelled.networks[0].labels.insert("tier".into(), "web".into());
    let m = plan(&Model::new(), &labelled).next;
    assert_eq!(m.network("front").unwrap().labels.get("tier").map(String::as_str), Some("web"), "created with them");
    let again = plan(&m, &stack());
    assert!(!again.changes_anything(), "the user's labels are kept: {:?}", again.objects);
    assert_eq!(again.next, m);
}

/// Mappings as the daemon keeps them (a request's
/// [`PortMapping::host_ip_named`] cleared).
fn published(spec: &str) -> Vec<PortMapping> {
    ports(spec).into_iter().map(|m| PortMapping { host_ip_named: false, ..m }).collect()
}

/// On a network with Docker's `host_binding_ipv4`, a file's ports without a
/// host address are published on it, one naming `0.0.0.0` on every
/// address, and planning the same file again, or its export, changes
/// nothing (the stored mapping is the bound one; the export names
/// `0.0.0.0`).
#[test]
fn a_host_binding_network_keeps_a_files_ports_as_they_are_published() {
    let mut s = stack();
    s.networks[0].options.insert(crate::model::HOST_BINDING_OPTION.into(), "127.0.0.1".into());
    s.services.push(StackService { name: "lb".into(), network: "front".into(), ports: ports("9090:90") });
    s.sandboxes[0].ports.extend(ports("0.0.0.0:8081:81"));
    let p = plan(&Model::new(), &s);
    let web = p.next.endpoint_for("front", "web").unwrap();
    assert_eq!(web.publish, [published("0.0.0.0:8081:81"), published("127.0.0.1:8080:80")].concat());
    assert_eq!(p.next.service("lb").unwrap().publish, published("127.0.0.1:9090:90"));
    assert!(!plan(&p.next, &s).changes_anything(), "the bound ports match the file");
    let exported = p.next.export_stack();
    let web = exported.sandboxes.iter().find(|s| s.name == "web").unwrap();
    let specs: Vec<String> =
        web.networks.iter().flat_map(|a| &a.ports).chain(&web.ports).map(ctl::stack::port_spec).collect();
    assert_eq!(specs, ["0.0.0.0:8081:81", "127.0.0.1:8080:80"], "0.0.0.0 named in the export");
    assert!(!plan(&p.next, &exported).changes_anything(), "the export is what is published");
    assert_eq!(plan(&Model::new(), &exported).next.export_stack(), exported);
    // The same port twice once bound.
    s.sandboxes[0].ports.extend(ports("127.0.0.1:8080:80"));
    let r = refuse(&Model::new(), &s);
    assert_eq!(r.issues[0].key, "sandboxes.web.ports");
    assert!(r.issues[0].message.contains("given twice"), "{}", r.issues[0].message);
}

#[test]
fn a_configuration_network_is_neither_attached_nor_taken_by_a_stack() {
    let mut m = Model::new();
    let cfg = CreateNetwork {
        config_only: true,
        subnet: Some("10.60.0.0/24".parse().unwrap()),
        ..CreateNetwork::new("cfg", Driver::Bridge)
    };
    m.create_config_network(cfg).unwrap();
    for external in [true, false] {
        let mut s = stack();
        s.networks.push(StackNetwork { name: "cfg".into(), external, ..StackNetwork::default() });
        let r = refuse(&m, &s);
        let key = if external { "networks.cfg.external" } else { "networks.cfg" };
        assert_eq!(r.issues[0].key, key, "{:?}", r.issues);
        assert!(r.issues[0].message.contains("configuration-only"), "{}", r.issues[0].message);
    }
}
