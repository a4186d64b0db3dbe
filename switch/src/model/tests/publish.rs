//! Published ports, services and the egress option.

use ctl::{PortMapping, parse_publish};

use super::*;

fn p(spec: &str) -> Vec<PortMapping> {
    parse_publish(spec).unwrap()
}

#[test]
fn egress_follows_internal_and_the_option() {
    let mut m = Model::new();
    let on = m.create_network(bridge("on", "10.1.0.0/24")).unwrap();
    assert!(on.egress());
    let internal = m.create_network(CreateNetwork { internal: true, ..bridge("int", "10.2.0.0/24") }).unwrap();
    assert!(!internal.egress());
    let mut off = bridge("off", "10.3.0.0/24");
    off.options.insert(EGRESS_OPTION.into(), "false".into());
    assert!(!m.create_network(off).unwrap().egress());
    let mut explicit = bridge("explicit", "10.4.0.0/24");
    explicit.options.insert(EGRESS_OPTION.into(), "true".into());
    assert!(m.create_network(explicit).unwrap().egress());
    let ov = CreateNetwork { attachable: true, ..CreateNetwork::new("ov", Driver::Overlay) };
    assert!(m.create_network(ov).unwrap().egress(), "overlays have egress too");
    assert!(!m.network("host").unwrap().egress() && !m.network("none").unwrap().egress());
    assert!(m.network("bridge").unwrap().egress());

    let before = snapshot(&m);
    for (value, internal, needle) in
        [("no", false, "must be true or false"), ("", false, "must be true or false"), ("true", true, "--internal")]
    {
        let mut req = CreateNetwork { internal, ..bridge("bad", "10.9.0.0/24") };
        req.options.insert(EGRESS_OPTION.into(), value.into());
        let r = m.create_network(req);
        assert_refused(&m, &before, r, &["egress", needle]);
    }
}

#[test]
fn connect_stores_mappings_and_service() {
    let mut m = populated();
    let e = m
        .connect(Connect { publish: p("8080-8082:80-82"), service: Some("api".into()), ..Connect::new("a", "s1") })
        .unwrap();
    assert_eq!(e.publish, p("8080-8082:80-82"));
    assert_eq!(e.service.as_deref(), Some("api"));
    let f = m.connect(Connect::new("a", "s2")).unwrap();
    assert!(f.serial > e.serial, "serials grow with creation");
    let before = snapshot(&m);
    let r = m.connect(Connect { service: Some("bad name".into()), ..Connect::new("b", "s1") });
    assert_refused(&m, &before, r, &["invalid service name"]);
}

#[test]
fn a_host_port_is_published_once_across_the_daemon() {
    let mut m = populated();
    m.connect(Connect { publish: p("8080-8089:80-89"), ..Connect::new("a", "s1") }).unwrap();
    let before = snapshot(&m);
    // Overlapping range, on another network and sandbox: the port and its owner are named.
    let r = m.connect(Connect { publish: p("8085-8095:85-95"), ..Connect::new("b", "s2") });
    assert_refused(&m, &before, r, &["host port 8085/tcp is already published by sandbox s1 (network a)"]);
    // A specific address conflicts with 0.0.0.0, and the other way round.
    let r = m.connect(Connect { publish: p("10.0.0.1:8080:80"), ..Connect::new("b", "s2") });
    assert_refused(&m, &before, r, &["host port 10.0.0.1:8080/tcp", "sandbox s1"]);
    let r = m.publish("s1", None, &p("127.0.0.1:9000:90"));
    assert!(r.is_ok());
    let before = snapshot(&m);
    let r = m.connect(Connect { publish: p("9000:90"), ..Connect::new("b", "s2") });
    assert_refused(&m, &before, r, &["host port 9000/tcp is already published by sandbox s1"]);
    // Twice in one request.
    let r = m.publish("s1", None, &[p("7000:70")[0], p("7000:71")[0]]);
    assert_refused(&m, &before, r, &["host port 7000/tcp is given twice"]);
    // Another address, or another protocol, is fine.
    m.publish("s1", None, &p("127.0.0.2:9000:90")).unwrap();
    m.publish("s1", None, &p("8080:80/udp")).unwrap();
    // Services take part in the same rule.
    let before = snapshot(&m);
    let r = m.publish_service("api", Some("a"), &p("8089:80"));
    assert_refused(&m, &before, r, &["8089/tcp", "sandbox s1"]);
    m.publish_service("api", Some("a"), &p("6000:80")).unwrap();
    let before = snapshot(&m);
    let r = m.publish("s1", None, &p("6000:60"));
    assert_refused(&m, &before, r, &["host port 6000/tcp is already published by service api"]);
    // Ports freed by a disconnect can be published again.
    m.disconnect("a", "s1").unwrap();
    m.connect(Connect { publish: p("8080:80"), ..Connect::new("b", "s2") }).unwrap();
    m.check_invariants().unwrap();
}

#[test]
fn publish_picks_the_endpoint_and_unpublish_removes_exact_mappings() {
    let mut m = populated();
    let before = snapshot(&m);
    let r = m.publish("s1", None, &p("1:1"));
    assert_refused(&m, &before, r, &["sandbox s1 is not connected to any network"]);
    let r = m.publish("nope", None, &p("1:1"));
    assert_refused(&m, &before, r, &["nope"]);
    let ea = m.connect(Connect::new("a", "s1")).unwrap();
    assert_eq!(m.publish("s1", None, &p("1000:10")).unwrap().id, ea.id, "the only endpoint");
    let eb = m.connect(Connect::new("b", "s1")).unwrap();
    assert_eq!(m.publish("s1", None, &p("1001:11")).unwrap().id, ea.id, "the default route's endpoint");
    assert_eq!(m.publish("s1", Some("b"), &p("1002:12")).unwrap().id, eb.id);
    let before = snapshot(&m);
    let r = m.publish("s1", None, &[]);
    assert_refused(&m, &before, r, &["no ports given"]);

    // Unpublish finds the endpoint; a mapping must match exactly.
    let r = m.unpublish("s1", None, &p("1000:11"));
    assert_refused(&m, &before, r, &["port 0.0.0.0:1000:11/tcp is not published by sandbox s1"]);
    let r = m.unpublish("s1", Some("a"), &p("1002:12"));
    assert_refused(&m, &before, r, &["not published"]);
    let r = m.unpublish("s1", None, &[p("1000:10")[0], p("9:9")[0]]);
    assert_refused(&m, &before, r, &["0.0.0.0:9:9/tcp"]);
    let changed = m.unpublish("s1", None, &[p("1000:10")[0], p("1002:12")[0]]).unwrap();
    let ids: Vec<&str> = changed.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, [ea.id.as_str(), eb.id.as_str()]);
    assert_eq!(changed[0].publish, p("1000:10").into_iter().chain(p("1001:11")).collect::<Vec<_>>(), "as before");
    assert_eq!(m.endpoint(&ea.id).unwrap().publish, p("1001:11"));
    assert!(m.endpoint(&eb.id).unwrap().publish.is_empty());

    // A random host port is chosen by the daemon before the model sees it:
    // the model refuses port 0, and unpublishing `-p 11` (port 0) closes the
    // first mapping of that address, container port and protocol.
    let before = snapshot(&m);
    let r = m.publish("s1", None, &p("11"));
    assert_refused(&m, &before, r, &["0.0.0.0:0:11/tcp"]);
    m.publish("s1", None, &p("1003:11")).unwrap();
    let before = snapshot(&m);
    for other in ["12", "127.0.0.1::11", "11/udp"] {
        let r = m.unpublish("s1", None, &p(other));
        assert_refused(&m, &before, r, &["not published"]);
    }
    let r = m.unpublish("s1", None, &[p("11")[0], p("11")[0], p("11")[0]]);
    assert_refused(&m, &before, r, &["not published"]);
    // `-p 11` and `-p 1001:11` together: the exact one is 1001, the random one the other.
    let mut both = m.clone();
    both.unpublish("s1", None, &[p("11")[0], p("1001:11")[0]]).unwrap();
    assert!(both.endpoint(&ea.id).unwrap().publish.is_empty());
    let changed = m.unpublish("s1", None, &[p("11")[0], p("0:11")[0]]).unwrap();
    assert_eq!(changed[0].publish, p("1001:11").into_iter().chain(p("1003:11")).collect::<Vec<_>>());
    assert!(m.endpoint(&ea.id).unwrap().publish.is_empty(), "both mappings of 11/tcp closed");
}

#[test]
fn services_and_their_replicas() {
    let mut m = populated();
    m.create_sandbox(CreateSandbox::new("s3")).unwrap();
    let r1 = m.connect(Connect { service: Some("api".into()), ..Connect::new("a", "s2") }).unwrap();
    let r2 = m.connect(Connect { service: Some("api".into()), ..Connect::new("a", "s1") }).unwrap();
    m.connect(Connect { service: Some("api".into()), ..Connect::new("b", "s3") }).unwrap();
    let before = snapshot(&m);
    // Replicas on two networks: the network must be named.
    let r = m.publish_service("api", None, &p("8080:80"));
    assert_refused(&m, &before, r, &["service api does not exist yet", "--network"]);
    let r = m.publish_service("api", Some("nope"), &p("8080:80"));
    assert_refused(&m, &before, r, &["network nope not found"]);
    let r = m.publish_service("api", Some("host"), &p("8080:80"));
    assert!(r.is_err());
    let svc = m.publish_service("api", Some("a"), &p("8080:80")).unwrap();
    assert_eq!(svc.network_id, m.network("a").unwrap().id);
    let replicas: Vec<&str> = m.service_replicas(&svc).iter().map(|e| e.id.as_str()).collect();
    assert_eq!(replicas, [r1.id.as_str(), r2.id.as_str()], "in creation order, only on the service's network");
    assert_eq!(m.service_of(&r1).map(|s| s.name.as_str()), Some("api"));
    // More ports later, on the same network only.
    let svc = m.publish_service("api", None, &p("8443:443")).unwrap();
    assert_eq!(svc.publish, [p("8080:80")[0], p("8443:443")[0]]);
    let before = snapshot(&m);
    let r = m.publish_service("api", Some("b"), &p("9000:90"));
    assert_refused(&m, &before, r, &["service api is published on network a, not b"]);
    // The network cannot go while the service is published on it.
    for s in ["s1", "s2"] {
        m.disconnect("a", s).unwrap();
    }
    let before = snapshot(&m);
    let r = m.remove_network("a");
    assert_refused(&m, &before, r, &["network a has published services (api)"]);
    assert!(m.service_replicas(m.service("api").unwrap()).is_empty());
    let removed = m.remove_service("api").unwrap();
    assert_eq!(removed.publish.len(), 2);
    assert!(matches!(m.remove_service("api"), Err(ModelError::NoSuchService(_))));
    m.remove_network("a").unwrap();
    // A new service whose replicas are all on one network finds it.
    let svc = m.publish_service("api", None, &p("8080:80")).unwrap();
    assert_eq!(svc.network_id, m.network("b").unwrap().id);
}

#[test]
fn mappings_and_services_persist_and_old_files_load() {
    let mut m = populated();
    m.connect(Connect {
        publish: p("127.0.0.1:8080-8081:80-81/udp"),
        service: Some("api".into()),
        ..Connect::new("a", "s1")
    })
    .unwrap();
    m.publish_service("api", Some("a"), &p("9090:80")).unwrap();
    let text = serde_json::to_string_pretty(&m).unwrap();
    let back: Model = serde_json::from_str(&text).unwrap();
    assert_eq!(back, m);
    assert!(text.contains("\"services\"") && text.contains("\"container_port\": 81"), "{text}");

    // A file written before publishing existed (no publish/service/serial/services keys) loads
    // with nothing published and saves without the new keys.
    let old = include_str!("state_v1.json");
    let loaded: Model = serde_json::from_str(old).unwrap();
    assert!(loaded.endpoints().all(|e| e.publish.is_empty() && e.service.is_none() && e.serial == 0));
    assert_eq!(loaded.services().count(), 0);
    assert_eq!(serde_json::to_string_pretty(&loaded).unwrap(), old);

    // A hand-edited file publishing one host port twice is refused.
    let mut twice = m.clone();
    twice.connect(Connect::new("a", "s2")).unwrap();
    let text = serde_json::to_string_pretty(&twice).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
    for e in value["endpoints"].as_array_mut().unwrap() {
        e["publish"] =
            serde_json::json!([{"host_ip": "0.0.0.0", "host_port": 9090, "container_port": 1, "proto": "tcp"}]);
    }
    let e = serde_json::from_value::<Model>(value).unwrap_err().to_string();
    assert!(e.contains("host port 9090/tcp is published twice"), "{e}");
}

#[test]
fn nothing_is_published_on_an_internal_network() {
    let mut m = populated();
    m.create_network(CreateNetwork { internal: true, ..bridge("int", "10.5.0.0/24") }).unwrap();
    let before = snapshot(&m);
    let r = m.connect(Connect { publish: p("8080:80"), ..Connect::new("int", "s1") });
    assert_refused(&m, &before, r, &["network int is --internal"]);
    let r = m.publish_service("api", Some("int"), &p("8080:80"));
    assert_refused(&m, &before, r, &["network int is --internal"]);
    m.connect(Connect { service: Some("api".into()), ..Connect::new("int", "s1") }).unwrap();
    let before = snapshot(&m);
    let r = m.publish("s1", None, &p("8080:80"));
    assert_refused(&m, &before, r, &["network int is --internal"]);
    let r = m.publish_service("api", None, &p("8080:80"));
    assert_refused(&m, &before, r, &["network int is --internal"]);
}
