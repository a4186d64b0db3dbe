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
    let p = plan(&m, &s);
    let changes = |name: &str| p.objects.iter().find(|o| o.name == name).unwrap().changes.clone();
    assert_eq!(changes("web"), ["aliases on front", "disconnected from back", "unpublished 8080:80 on front"]);
    assert_eq!(
        changes("db"),
        ["dns settings", "reconnected to back (ipv4_address 10.2.0.3 → 10.2.0.99)", "connected to front (10.1.0.2)"]
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
    assert!(!plan(&p.next, &s).changes_anything(), "the new state matches the file");
    // A sandbox that loses the endpoint with its default route hands it on.
    let mut s2 = s.clone();
    s2.networks[1].internal = true;
    s2.sandboxes[1].networks.retain(|a| a.network == "front");
    let p2 = plan(&p.next, &s2);
    assert!(p2.new_default_routes.is_empty(), "db's front endpoint already had it");
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
