//! Protocol codec tests: round trips, every error class, the documented examples.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use ctl::proto::{
    self, Ack, CaptureInfo, CaptureSummary, CapturedFrame, ConfigInfo, ConfigReference, CreateNetwork, DnsRecord,
    DnsStats, Driver, EndpointInfo, EndpointResource, ErrorKind, FdbEntry, FlushResult, Ipam, IpamConfig,
    MAX_REQUEST_BYTES, NatFlow, NatStats, NetworkInfo, NetworkSummary, PortStats, ProtocolError, Request, ResolverInfo,
    SandboxInfo, ServiceInfo, ServiceReplica, ShowTree, VersionInfo,
};
use serde_json::{Value, json};

fn one_of_each() -> Vec<Request> {
    vec![
        Request::SandboxCreate {
            name: "web".into(),
            dns: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), "2001:db8::1".parse().unwrap()],
            dns_search: vec!["example.com".into()],
            dns_options: vec!["ndots:2".into(), "rotate".into()],
            extra_hosts: vec!["db:10.0.0.5".into()],
            netns: Some("/proc/1/ns/net".into()),
        },
        Request::SandboxLs,
        Request::SandboxInspect { name: "web".into() },
        Request::SandboxRm { name: "web".into() },
        Request::NetworkCreate(CreateNetwork {
            name: "blue".into(),
            driver: Driver::Overlay,
            subnet: Some("10.10.0.0/24".parse().unwrap()),
            gateway: Some(Ipv4Addr::new(10, 10, 0, 254)),
            ip_range: Some("10.10.0.128/25".parse().unwrap()),
            internal: true,
            mtu: Some(1400),
            attachable: true,
            vni: Some(4242),
            options: BTreeMap::from([("a".into(), "1".into()), ("flag".into(), String::new())]),
            ..CreateNetwork::default()
        }),
        Request::NetworkCreate(CreateNetwork {
            name: "six".into(),
            enable_ipv4: false,
            enable_ipv6: true,
            subnet6: Some("fd00:1::/64".parse().unwrap()),
            gateway6: Some("fd00:1::fe".parse().unwrap()),
            ip_range6: Some("fd00:1::100/120".parse().unwrap()),
            aux_addresses: BTreeMap::from([("router".into(), "fd00:1::1".parse().unwrap())]),
            ..CreateNetwork::default()
        }),
        Request::NetworkLs,
        Request::NetworkInspect { name: "blue".into() },
        Request::NetworkRm { name: "blue".into() },
        Request::NetworkPrune,
        Request::NetworkConnect {
            network: "blue".into(),
            sandbox: "web".into(),
            ip: Some(Ipv4Addr::new(10, 10, 0, 5)),
            ip6: Some("fd00:1::5".parse().unwrap()),
            aliases: vec!["www".into(), "api".into()],
            mac: Some("02:42:0a:0a:00:05".parse().unwrap()),
            publish: ctl::parse_publish("127.0.0.1:8080-8081:80-81/udp").unwrap(),
            service: Some("api".into()),
            port_type: ctl::proto::PortType::Afxdp,
            gw_priority: 0,
            ifname: None,
        },
        Request::SandboxPublish {
            sandbox: "web".into(),
            network: Some("blue".into()),
            publish: vec![ctl::PortMapping::tcp(8443, 443)],
        },
        Request::SandboxUnpublish { sandbox: "web".into(), network: None, publish: vec![ctl::PortMapping::tcp(1, 2)] },
        Request::NatLs { network: Some("blue".into()) },
        Request::NatLs { network: None },
        Request::ServicePublish {
            name: "api".into(),
            network: Some("blue".into()),
            publish: vec![ctl::PortMapping::tcp(8080, 80)],
            mode: None,
        },
        Request::ServicePublish {
            name: "api".into(),
            network: None,
            publish: vec![ctl::PortMapping::tcp(8081, 80)],
            mode: Some(proto::ServiceMode::Ingress),
        },
        Request::ServicePublish {
            name: "api".into(),
            network: None,
            publish: vec![ctl::PortMapping::tcp(8082, 80)],
            mode: Some(proto::ServiceMode::Host),
        },
        Request::ServiceLs,
        Request::ServiceInspect { name: "api".into() },
        Request::ServiceRm { name: "api".into() },
        Request::NetworkDisconnect { network: "blue".into(), sandbox: "web".into() },
        Request::Show,
        Request::FdbShow { network: Some("blue".into()) },
        Request::FdbAdd { network: "blue".into(), mac: "02:00:00:00:00:09".parse().unwrap(), port: "p1".into() },
        Request::FdbFlush { network: None },
        Request::Stats { port: Some("p1".into()) },
        Request::Events { follow: false },
        Request::Events { follow: true },
        Request::DnsLs { network: Some("app".into()) },
        Request::DnsLs { network: None },
        Request::Metrics,
        Request::ConfigShow,
        Request::ConfigSet { key: "aging-time".into(), value: "300".into() },
        Request::PeerAdd { addr: "192.0.2.1:4789".parse().unwrap(), networks: vec!["ov".into()] },
        Request::PeerLs,
        Request::NetworkKeyRotate { network: "sec".into() },
        Request::PeerRm { addr: "[2001:db8::1]:4789".parse().unwrap() },
        Request::Capture {
            target: "vsw0a0b0c0d".into(),
            outer: false,
            count: Some(10),
            snaplen: Some(96),
            filter: Some("icmp or arp".into()),
        },
        Request::PortImpair {
            port: "app:web".into(),
            impair: Some(ctl::Impairment {
                delay_us: 10_000,
                jitter_us: 2_000,
                loss_ppm: 10_000,
                duplicate_ppm: 1_000,
                reorder_ppm: 5_000,
                rate_bps: Some(100_000_000),
                limit: Some(500),
            }),
        },
        Request::PortImpair { port: "vsp1".into(), impair: None },
        Request::PortAdd {
            network: "lan".into(),
            interface: "enp3s0".into(),
            port_type: Some(ctl::proto::PortType::Afxdp),
            force: true,
        },
        Request::PortRm { interface: "enp3s0".into() },
        Request::StackApply {
            stack: ctl::stack::Stack {
                networks: vec![ctl::stack::StackNetwork {
                    name: "front".into(),
                    subnet: Some("10.1.0.0/24".parse().unwrap()),
                    ..Default::default()
                }],
                sandboxes: vec![ctl::stack::StackSandbox {
                    name: "web".into(),
                    networks: vec![ctl::stack::StackAttachment { network: "front".into(), ..Default::default() }],
                    ..Default::default()
                }],
                services: vec![],
            },
            dry_run: true,
            source: Some(ctl::stack::SourceMap::new("stack.yaml")),
        },
        Request::StackExport,
        Request::NodeLs,
        Request::NodeRm { name: "host3".into() },
        Request::Version,
        Request::Ping,
    ]
}

fn err_of(line: &[u8]) -> (Option<u64>, ProtocolError) {
    proto::parse_request(line).expect_err("line should be rejected")
}

#[test]
fn every_request_round_trips_and_verbs_are_complete() {
    let reqs = one_of_each();
    let mut seen = BTreeSet::new();
    for (i, req) in reqs.iter().enumerate() {
        let id = 1000 + i as u64;
        let line = proto::encode_request(id, req).unwrap();
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1, "one line per request");
        let value: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(value["v"], 1);
        assert_eq!(value["req"]["verb"], req.verb());
        let env = proto::parse_request(&line).unwrap();
        assert_eq!(env.id, id);
        assert_eq!(&env.req, req);
        seen.insert(req.verb());
    }
    let all: BTreeSet<&str> = Request::VERBS.iter().copied().collect();
    assert_eq!(seen, all, "one_of_each() must cover exactly Request::VERBS");
    assert_eq!(all.len(), Request::VERBS.len(), "VERBS has duplicates");
}

#[test]
fn optional_fields_may_be_omitted_and_unknown_fields_are_ignored() {
    let env =
        proto::parse_request(br#"{"v":1,"id":3,"req":{"verb":"network_create","name":"x","future":1},"extra":true}"#)
            .unwrap();
    assert_eq!(env.req, Request::NetworkCreate(CreateNetwork { name: "x".into(), ..CreateNetwork::default() }));
    let env = proto::parse_request(b"{\"v\":1,\"id\":4,\"req\":{\"verb\":\"fdb_show\"}}\r\n").unwrap();
    assert_eq!(env.req, Request::FdbShow { network: None });
    let env = proto::parse_request(br#"{"v":1,"id":5,"req":{"verb":"dns_ls"}}"#).unwrap();
    assert_eq!(env.req, Request::DnsLs { network: None });
}

#[test]
fn malformed_json_is_bad_request_without_id() {
    for line in [&b"not json"[..], b"{\"v\":1,", b"", b"\xff\xfe", b"{\"v\":1,\"id\":1,\"req\":{}} trailing"] {
        let (id, e) = err_of(line);
        assert_eq!(id, None);
        assert!(matches!(e, ProtocolError::MalformedJson(_)), "{e:?}");
        assert_eq!(e.kind(), ErrorKind::BadRequest);
    }
}

#[test]
fn broken_envelopes_are_bad_request() {
    let cases: &[(&str, Option<u64>)] = &[
        ("[1,2,3]", None),
        ("42", None),
        (r#"{"v":1,"req":{"verb":"ping"}}"#, None),
        (r#"{"v":1,"id":-1,"req":{"verb":"ping"}}"#, None),
        (r#"{"v":1,"id":"7","req":{"verb":"ping"}}"#, None),
        (r#"{"id":7,"req":{"verb":"ping"}}"#, Some(7)),
        (r#"{"v":1,"id":7}"#, Some(7)),
        (r#"{"v":1,"id":7,"req":"ping"}"#, Some(7)),
        (r#"{"v":1,"id":7,"req":{}}"#, Some(7)),
        (r#"{"v":1,"id":7,"req":{"verb":5}}"#, Some(7)),
    ];
    for (line, want_id) in cases {
        let (id, e) = err_of(line.as_bytes());
        assert_eq!(id, *want_id, "{line}");
        assert!(matches!(e, ProtocolError::BadEnvelope(_)), "{line}: {e:?}");
        assert_eq!(e.kind(), ErrorKind::BadRequest);
    }
}

#[test]
fn wrong_version_is_unsupported_version_with_id() {
    for v in ["2", "0", "\"1\"", "1.5", "null"] {
        let line = format!(r#"{{"v":{v},"id":9,"req":{{"verb":"ping"}}}}"#);
        let (id, e) = err_of(line.as_bytes());
        assert_eq!(id, Some(9));
        assert_eq!(e.kind(), ErrorKind::UnsupportedVersion, "v={v}: {e:?}");
    }
}

#[test]
fn unknown_verb_is_distinguished() {
    let (id, e) = err_of(br#"{"v":1,"id":5,"req":{"verb":"frobnicate","name":"x"}}"#);
    assert_eq!(id, Some(5));
    assert_eq!(e, ProtocolError::UnknownVerb("frobnicate".into()));
    assert_eq!(e.kind(), ErrorKind::UnknownVerb);
    // Case matters: verbs are snake_case.
    assert_eq!(err_of(br#"{"v":1,"id":5,"req":{"verb":"NetworkLs"}}"#).1.kind(), ErrorKind::UnknownVerb);
}

#[test]
fn bad_fields_of_a_known_verb_are_invalid_argument() {
    let cases = [
        r#"{"verb":"network_rm"}"#,
        r#"{"verb":"network_rm","name":7}"#,
        r#"{"verb":"fdb_add","network":"n","mac":"zz:zz","port":"p"}"#,
        r#"{"verb":"network_create","name":"n","subnet":"10.0.0.0"}"#,
        r#"{"verb":"network_create","name":"n","driver":"ipvlan"}"#,
        r#"{"verb":"network_create","name":"n","mtu":-5}"#,
        r#"{"verb":"network_connect","network":"n","sandbox":"s","ip":"300.1.1.1"}"#,
        r#"{"verb":"sandbox_create","name":"s","dns":["nope"]}"#,
        r#"{"verb":"sandbox_inspect"}"#,
        r#"{"verb":"sandbox_inspect","name":["web"]}"#,
        r#"{"verb":"dns_ls","network":5}"#,
    ];
    for req in cases {
        let line = format!(r#"{{"v":1,"id":11,"req":{req}}}"#);
        let (id, e) = err_of(line.as_bytes());
        assert_eq!(id, Some(11), "{req}");
        assert!(matches!(e, ProtocolError::InvalidArguments { .. }), "{req}: {e:?}");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    }
}

#[test]
fn oversized_line_is_too_large() {
    let mut line = br#"{"v":1,"id":1,"req":{"verb":"network_rm","name":""#.to_vec();
    line.resize(MAX_REQUEST_BYTES + 1, b'a');
    let (id, e) = err_of(&line);
    assert_eq!(id, None);
    assert_eq!(e.kind(), ErrorKind::TooLarge);
    // Exactly at the limit is read (and here fails only because it is cut-off JSON).
    line.truncate(MAX_REQUEST_BYTES);
    assert_eq!(err_of(&line).1.kind(), ErrorKind::BadRequest);
    // The newline does not count.
    let mut ok = br#"{"v":1,"id":1,"req":{"verb":"network_rm","name":""#.to_vec();
    let fill = MAX_REQUEST_BYTES - ok.len() - 3;
    ok.extend(std::iter::repeat_n(b'a', fill));
    ok.extend(b"\"}}\n");
    assert_eq!(ok.len(), MAX_REQUEST_BYTES + 1);
    assert!(proto::parse_request(&ok).is_ok());
}

#[test]
fn decode_request_maps_to_wire_errors() {
    let (id, e) = proto::decode_request(br#"{"v":1,"id":5,"req":{"verb":"nope"}}"#).unwrap_err();
    assert_eq!(id, Some(5));
    assert_eq!(e.kind, ErrorKind::UnknownVerb);
    assert_eq!(e.message, "unknown verb \"nope\"");
}

#[test]
fn garbage_never_panics() {
    // Mutate valid lines with a deterministic generator; every outcome must be Ok or Err.
    let seeds: Vec<Vec<u8>> = one_of_each().iter().map(|r| proto::encode_request(1, r).unwrap()).collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..20_000 {
        let mut line = seeds[i % seeds.len()].clone();
        for _ in 0..(next() % 4 + 1) {
            let pos = (next() as usize) % line.len();
            match next() % 3 {
                0 => line[pos] = next() as u8,
                1 => {
                    line.remove(pos);
                }
                _ => line.insert(pos, b"{}[]\":,0-"[(next() % 9) as usize]),
            }
            if line.is_empty() {
                break;
            }
        }
        let _ = proto::parse_request(&line);
        let _ = proto::decode_response(&line);
    }
    let deep = "[".repeat(100_000);
    assert_eq!(err_of(deep.as_bytes()).1.kind(), ErrorKind::BadRequest);
}

#[test]
fn responses_round_trip() {
    let line = proto::encode_ok(7, &FlushResult { flushed: 3 });
    assert_eq!(line, b"{\"v\":1,\"id\":7,\"ok\":{\"flushed\":3}}\n");
    let r = proto::decode_response(&line).unwrap();
    assert_eq!(r.id, Some(7));
    assert_eq!(r.into_payload::<FlushResult>().unwrap().unwrap(), FlushResult { flushed: 3 });

    let line = proto::encode_ok(8, &Ack {});
    assert_eq!(line, b"{\"v\":1,\"id\":8,\"ok\":{}}\n");

    let line = proto::encode_err(None, ErrorKind::TooLarge, "too big");
    assert_eq!(line, b"{\"v\":1,\"id\":null,\"err\":{\"kind\":\"too_large\",\"message\":\"too big\"}}\n");
    let r = proto::decode_response(&line).unwrap();
    assert_eq!(r.id, None);
    let e = r.result.unwrap_err();
    assert_eq!((e.kind, e.message.as_str()), (ErrorKind::TooLarge, "too big"));

    // `ok: null` is a payload; a missing ok/err, or both, is not a response.
    assert_eq!(proto::decode_response(br#"{"v":1,"id":1,"ok":null}"#).unwrap().result, Ok(Value::Null));
    for bad in [
        r#"{"v":1,"id":1}"#,
        r#"{"v":1,"id":1,"ok":{},"err":{"kind":"internal","message":"x"}}"#,
        r#"{"v":1,"id":1,"err":{"kind":"internal"}}"#,
        r#"{"v":2,"id":1,"ok":{}}"#,
        "nope",
    ] {
        assert!(proto::decode_response(bad.as_bytes()).is_err(), "{bad}");
    }
    // Kinds from a newer daemon are tolerated.
    let r = proto::decode_response(br#"{"v":1,"id":1,"err":{"kind":"brand_new","message":"m"}}"#).unwrap();
    assert_eq!(r.result.unwrap_err().kind, ErrorKind::Unknown);
}

#[test]
fn every_error_kind_serializes_as_its_name() {
    use ErrorKind::*;
    for k in [
        BadRequest,
        UnsupportedVersion,
        UnknownVerb,
        NotFound,
        Conflict,
        InvalidArgument,
        InUse,
        PermissionDenied,
        NotSupported,
        Internal,
        TooLarge,
        Timeout,
    ] {
        assert_eq!(serde_json::to_value(k).unwrap(), json!(k.as_str()));
        assert_eq!(serde_json::from_value::<ErrorKind>(json!(k.as_str())).unwrap(), k);
    }
}

#[test]
fn network_info_uses_docker_keys() {
    let info = NetworkInfo {
        name: "blue".into(),
        id: "3f1c0a9e5b7d".into(),
        created: "2025-01-01T00:00:00Z".into(),
        scope: "local".into(),
        driver: Driver::Bridge,
        enable_ipv4: true,
        enable_ipv6: true,
        ipam: Ipam {
            driver: "default".into(),
            options: BTreeMap::new(),
            config: vec![
                IpamConfig {
                    subnet: "10.10.0.0/24".parse().unwrap(),
                    gateway: Some(Ipv4Addr::new(10, 10, 0, 1).into()),
                    ip_range: Some("10.10.0.64/26".parse().unwrap()),
                    auxiliary_addresses: BTreeMap::from([("router".into(), Ipv4Addr::new(10, 10, 0, 254).into())]),
                },
                IpamConfig {
                    subnet: "fd00:1::/64".parse().unwrap(),
                    gateway: Some("fd00:1::1".parse().unwrap()),
                    ip_range: None,
                    auxiliary_addresses: BTreeMap::new(),
                },
            ],
        },
        internal: false,
        attachable: true,
        containers: BTreeMap::from([(
            "ep1".into(),
            EndpointResource {
                name: "web".into(),
                endpoint_id: "ep1".into(),
                mac_address: "02:42:0a:0a:00:05".into(),
                ipv4_address: "10.10.0.5/24".into(),
                ipv6_address: "fd00:1::5/64".into(),
            },
        )]),
        options: BTreeMap::new(),
        labels: BTreeMap::new(),
        config_from: ConfigReference { network: "lan-config".into() },
        config_only: false,
    };
    let v = serde_json::to_value(&info).unwrap();
    let keys: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = [
        "Name",
        "Id",
        "Created",
        "Scope",
        "Driver",
        "EnableIPv4",
        "EnableIPv6",
        "IPAM",
        "Internal",
        "Attachable",
        "Containers",
        "Options",
        "Labels",
        "ConfigFrom",
        "ConfigOnly",
    ]
    .into();
    assert_eq!(keys, want);
    assert_eq!((&v["ConfigFrom"], &v["ConfigOnly"]), (&json!({"Network": "lan-config"}), &json!(false)));
    assert_eq!(
        v["IPAM"],
        json!({
            "Driver": "default",
            "Options": {},
            "Config": [
                {"Subnet": "10.10.0.0/24", "IPRange": "10.10.0.64/26", "Gateway": "10.10.0.1",
                 "AuxiliaryAddresses": {"router": "10.10.0.254"}},
                {"Subnet": "fd00:1::/64", "Gateway": "fd00:1::1"}
            ]
        })
    );
    assert_eq!(
        v["Containers"]["ep1"],
        json!({"Name":"web","EndpointID":"ep1","MacAddress":"02:42:0a:0a:00:05","IPv4Address":"10.10.0.5/24","IPv6Address":"fd00:1::5/64"})
    );
    assert_eq!(serde_json::from_value::<NetworkInfo>(v.clone()).unwrap(), info);
    // Replies of daemons that predate EnableIPv4 read as IPv4 networks.
    let mut old = v;
    old.as_object_mut().unwrap().remove("EnableIPv4");
    // ... and of those that predate ConfigFrom and ConfigOnly as made from nothing.
    old.as_object_mut().unwrap().remove("ConfigFrom");
    old.as_object_mut().unwrap().remove("ConfigOnly");
    let old = serde_json::from_value::<NetworkInfo>(old).unwrap();
    assert!(old.enable_ipv4 && !old.config_only && old.config_from.network.is_empty());
}

/// Checks a documented stream: its opening reply, then its `S:` lines up to
/// the `end` line, each of the documented type.
fn check_stream<'a>(req: &Request, id: u64, ok: Value, lines: &mut impl Iterator<Item = &'a str>) {
    let capture = matches!(req, Request::Capture { .. });
    match req {
        Request::Events { .. } => decodes::<proto::EventsFollow>(ok, "an events follow reply"),
        Request::Capture { .. } => decodes::<CaptureInfo>(ok, "a capture reply"),
        _ => panic!("no documented types for the stream of {}", req.verb()),
    }
    for line in lines.by_ref() {
        let line = line.strip_prefix("S: ").unwrap_or_else(|| panic!("a stream goes on with daemon lines: {line}"));
        let (got, item) = proto::decode_stream_line(line.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(got, Some(id), "{line}");
        match (capture, item) {
            (false, proto::StreamLine::Item(v)) => decodes::<proto::Event>(v, "an event item"),
            (true, proto::StreamLine::Item(v)) => decodes::<CapturedFrame>(v, "a captured frame"),
            (false, proto::StreamLine::End(v)) => return decodes::<proto::EventsSummary>(v, "an events summary"),
            (true, proto::StreamLine::End(v)) => return decodes::<CaptureSummary>(v, "a capture summary"),
            (_, proto::StreamLine::Err(_)) => return,
        }
    }
    panic!("the documented stream has no end line");
}

/// Asserts that `value` is a `T` (`what`).
fn decodes<T: serde::de::DeserializeOwned>(value: Value, what: &str) {
    if let Err(e) = serde_json::from_value::<T>(value) {
        panic!("not {what}: {e}");
    }
}

/// Checks that an `ok` payload has the documented type for `verb`.
fn check_payload(verb: &str, ok: Value) {
    let r = match verb {
        "sandbox_create" => serde_json::from_value::<SandboxInfo>(ok).map(drop),
        "sandbox_ls" => serde_json::from_value::<Vec<SandboxInfo>>(ok).map(drop),
        "sandbox_inspect" => serde_json::from_value::<SandboxInfo>(ok).map(|s| {
            assert!(s.resolver.is_some(), "sandbox_inspect's reply must carry the resolver");
        }),
        "dns_ls" => serde_json::from_value::<Vec<DnsRecord>>(ok).map(drop),
        "network_create" | "network_inspect" => serde_json::from_value::<NetworkInfo>(ok).map(drop),
        "network_ls" => serde_json::from_value::<Vec<NetworkSummary>>(ok).map(drop),
        "network_connect" => serde_json::from_value::<EndpointInfo>(ok).map(drop),
        "show" => serde_json::from_value::<ShowTree>(ok).map(drop),
        "fdb_show" => serde_json::from_value::<Vec<FdbEntry>>(ok).map(drop),
        "fdb_flush" => serde_json::from_value::<FlushResult>(ok).map(drop),
        "config_show" => serde_json::from_value::<ConfigInfo>(ok).map(drop),
        "stats" => serde_json::from_value::<Vec<PortStats>>(ok).map(drop),
        "version" => serde_json::from_value::<VersionInfo>(ok).map(drop),
        "sandbox_publish" | "sandbox_unpublish" => serde_json::from_value::<SandboxInfo>(ok).map(drop),
        "service_publish" | "service_inspect" => serde_json::from_value::<ServiceInfo>(ok).map(drop),
        "service_ls" => serde_json::from_value::<Vec<ServiceInfo>>(ok).map(drop),
        "nat_ls" => serde_json::from_value::<Vec<NatFlow>>(ok).map(drop),
        "port_impair" => serde_json::from_value::<ctl::proto::PortImpairInfo>(ok).map(drop),
        "events" => serde_json::from_value::<Vec<proto::Event>>(ok).map(|events| assert!(!events.is_empty())),
        "stack_apply" => serde_json::from_value::<ctl::stack::StackReport>(ok).map(drop),
        "stack_export" => serde_json::from_value::<ctl::stack::Stack>(ok).map(drop),
        _ => serde_json::from_value::<Ack>(ok).map(drop),
    };
    r.unwrap_or_else(|e| panic!("payload of {verb}: {e}"));
}

#[test]
fn documented_examples_hold() {
    let doc = include_str!("../src/proto/PROTOCOL.md");
    let lines: Vec<&str> = doc.lines().filter(|l| l.starts_with("C: ") || l.starts_with("S: ")).collect();
    assert!(lines.len() >= 20, "examples missing from PROTOCOL.md");
    let mut pairs = 0;
    let mut lines = lines.into_iter();
    while let Some(c) = lines.next() {
        let s = lines.next().unwrap_or_else(|| panic!("unpaired example line {c}"));
        let (c, s) =
            (c.strip_prefix("C: ").expect("client line first"), s.strip_prefix("S: ").expect("then server line"));
        let resp = proto::decode_response(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"));
        match proto::decode_request(c.as_bytes()) {
            Ok(env) => {
                assert_eq!(resp.id, Some(env.id), "{s}");
                // Re-encoding is lossless.
                assert_eq!(proto::parse_request(&proto::encode_request(env.id, &env.req).unwrap()).unwrap(), env);
                match resp.result {
                    // A stream's item lines and its end line follow its reply.
                    Ok(ok) if env.req.is_stream() => check_stream(&env.req, env.id, ok, &mut lines),
                    Ok(ok) => check_payload(env.req.verb(), ok),
                    Err(_) => {}
                }
            }
            Err((id, e)) => {
                // The documented error reply is exactly what the codec produces.
                let want = proto::encode_err(id, e.kind, e.message);
                assert_eq!(std::str::from_utf8(&want).unwrap().trim_end(), s);
            }
        }
        pairs += 1;
    }
    assert!(pairs >= 10);
}

fn web_endpoint() -> EndpointInfo {
    EndpointInfo {
        network: "app".into(),
        sandbox: "web".into(),
        endpoint_id: "e1".into(),
        port: "vsp1".into(),
        ifname: "eth0".into(),
        mac: "02:42:0a:0a:00:02".parse().unwrap(),
        ipv4: Some("10.10.0.2/24".parse().unwrap()),
        ipv6: None,
        aliases: vec!["api".into()],
        publish: vec![ctl::PortMapping::tcp(8080, 80)],
        service: None,
        gw_priority: 0,
        default_gateway: true,
    }
}

#[test]
fn sandbox_resolver_is_optional_on_the_wire() {
    let mut sb = SandboxInfo {
        name: "web".into(),
        netns: "/run/netns/web".into(),
        dns: vec!["192.0.2.53".parse().unwrap()],
        dns_search: vec![],
        dns_options: vec![],
        extra_hosts: vec![],
        endpoints: vec![web_endpoint()],
        resolver: None,
        listens_ipv6: false,
    };
    // sandbox_ls / sandbox_create replies: no `resolver` key at all.
    let v = serde_json::to_value(&sb).unwrap();
    assert!(v.as_object().unwrap().get("resolver").is_none(), "{v}");
    assert_eq!(serde_json::from_value::<SandboxInfo>(v).unwrap(), sb);
    // JSON from a daemon that predates the field still parses.
    let old = json!({"name": "web", "netns": "/run/netns/web", "dns": [], "dns_search": [], "endpoints": []});
    assert_eq!(serde_json::from_value::<SandboxInfo>(old).unwrap().resolver, None);

    sb.resolver = Some(ResolverInfo {
        resolv_conf: Some("/etc/netns/web/resolv.conf".into()),
        nameservers: vec!["10.10.0.1".parse().unwrap()],
        search: vec![],
        options: vec!["ndots:0".into()],
        upstreams: vec!["192.0.2.53:53".parse().unwrap()],
        forwarding: true,
    });
    let v = serde_json::to_value(&sb).unwrap();
    assert_eq!(
        v["resolver"],
        json!({"resolv_conf": "/etc/netns/web/resolv.conf", "nameservers": ["10.10.0.1"], "search": [],
               "options": ["ndots:0"], "upstreams": ["192.0.2.53:53"], "forwarding": true})
    );
    assert_eq!(serde_json::from_value::<SandboxInfo>(v).unwrap(), sb);
    // No resolv.conf written (`null`), and the list fields may be omitted.
    let sparse: ResolverInfo =
        serde_json::from_value(json!({"resolv_conf": null, "nameservers": [], "forwarding": false})).unwrap();
    assert_eq!(
        sparse,
        ResolverInfo {
            resolv_conf: None,
            nameservers: vec![],
            search: vec![],
            options: vec![],
            upstreams: vec![],
            forwarding: false
        }
    );
}

#[test]
fn dns_records_use_the_type_key() {
    let recs = vec![
        DnsRecord {
            network: "app".into(),
            name: "web.app".into(),
            record_type: "A".into(),
            value: "10.10.0.2".into(),
            sandbox: "web".into(),
            ttl: 60,
        },
        DnsRecord {
            network: "app".into(),
            name: "2.0.10.10.in-addr.arpa".into(),
            record_type: "PTR".into(),
            value: "web.app".into(),
            sandbox: "web".into(),
            ttl: 60,
        },
    ];
    let line = proto::encode_ok(3, &recs);
    let v: Value = serde_json::from_slice(&line).unwrap();
    assert_eq!(
        v["ok"],
        json!([
            {"network": "app", "name": "web.app", "type": "A", "value": "10.10.0.2", "sandbox": "web", "ttl": 60},
            {"network": "app", "name": "2.0.10.10.in-addr.arpa", "type": "PTR", "value": "web.app", "sandbox": "web",
             "ttl": 60}
        ])
    );
    let back: Vec<DnsRecord> = proto::decode_response(&line).unwrap().into_payload().unwrap().unwrap();
    assert_eq!(back, recs);
}

#[test]
fn port_stats_dns_is_optional_on_the_wire() {
    let mut st = PortStats {
        port: "gw:app".into(),
        network: "app".into(),
        rx_packets: 1,
        rx_bytes: 2,
        tx_packets: 3,
        tx_bytes: 4,
        floods: 5,
        drops: BTreeMap::new(),
        dns: None,
        nat: None,
        impair: None,
        tap_queue_dropped: None,
        worker: None,
        gro: None,
    };
    let v = serde_json::to_value(&st).unwrap();
    assert!(v.as_object().unwrap().get("dns").is_none(), "a port without DNS has no `dns` key: {v}");
    assert!(v.get("tap_queue_dropped").is_none(), "a port without a TAP queue has no such key: {v}");
    assert_eq!(serde_json::from_value::<PortStats>(v).unwrap(), st);
    // A row from a daemon that predates the field.
    let old = json!({"port": "vsp1", "network": "app", "rx_packets": 0, "rx_bytes": 0, "tx_packets": 0,
                     "tx_bytes": 0, "floods": 0, "drops": {"runt": 1}});
    let old: PortStats = serde_json::from_value(old).unwrap();
    assert_eq!((old.dns, old.total_drops()), (None, 1));
    assert_eq!(old.tap_queue_dropped, None);
    // The kernel's TAP queue drops are their own field, not a drop reason:
    // the frames never reached the switch.
    let tap = PortStats { tap_queue_dropped: Some(77), ..st.clone() };
    let v = serde_json::to_value(&tap).unwrap();
    assert_eq!(v["tap_queue_dropped"], 77);
    assert_eq!((tap.total_drops(), serde_json::from_value::<PortStats>(v).unwrap()), (0, tap));

    st.dns = Some(DnsStats {
        queries: 11,
        answered_locally: 10,
        nxdomain: 9,
        nodata: 8,
        forwarded: 7,
        upstream_failures: 6,
        malformed: 5,
        refused: 4,
        refused_over_limit: 3,
        truncated: 2,
        tcp_closed_idle: 1,
    });
    let v = serde_json::to_value(&st).unwrap();
    assert_eq!(
        v["dns"],
        json!({"queries": 11, "answered_locally": 10, "nxdomain": 9, "nodata": 8, "forwarded": 7,
               "upstream_failures": 6, "malformed": 5, "refused": 4, "refused_over_limit": 3, "truncated": 2,
               "tcp_closed_idle": 1})
    );
    assert_eq!(serde_json::from_value::<PortStats>(v).unwrap(), st);
}

#[test]
fn port_stats_nat_is_optional_on_the_wire() {
    let old = json!({"port": "gw:app", "network": "app", "rx_packets": 0, "rx_bytes": 0, "tx_packets": 0,
                     "tx_bytes": 0, "floods": 0, "drops": {}});
    let mut st: PortStats = serde_json::from_value(old.clone()).unwrap();
    assert_eq!(st.nat, None);
    assert_eq!(serde_json::to_value(&st).unwrap(), old, "no `nat` key when absent");
    st.nat = Some(NatStats { flows_opened: 5, flows_refused: 4, flows_timed_out: 3, table_full: 2, active: 1 });
    let v = serde_json::to_value(&st).unwrap();
    assert_eq!(
        v["nat"],
        json!({"flows_opened": 5, "flows_refused": 4, "flows_timed_out": 3, "table_full": 2, "active": 1})
    );
    assert_eq!(serde_json::from_value::<PortStats>(v).unwrap(), st);
}

#[test]
fn connect_without_publish_sends_no_new_keys() {
    let req = Request::NetworkConnect {
        network: "app".into(),
        sandbox: "web".into(),
        ip: None,
        ip6: None,
        aliases: vec![],
        mac: None,
        publish: vec![],
        service: None,
        port_type: ctl::proto::PortType::Tap,
        gw_priority: 0,
        ifname: None,
    };
    let line = proto::encode_request(1, &req).unwrap();
    let v: Value = serde_json::from_slice(&line).unwrap();
    let keys: BTreeSet<&str> = v["req"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["verb", "network", "sandbox", "ip", "aliases", "mac"]));
    let with = json!({"verb": "network_connect", "network": "app", "sandbox": "web",
                      "publish": [{"host_ip": "0.0.0.0", "host_port": 8080, "container_port": 80, "proto": "tcp"},
                                  {"host_port": 53, "container_port": 53, "proto": "udp"}],
                      "service": "dns"});
    let env = proto::parse_request(json!({"v": 1, "id": 2, "req": with}).to_string().as_bytes()).unwrap();
    let Request::NetworkConnect { publish, service, .. } = env.req else { panic!("{:?}", env.req) };
    let shown: Vec<String> = publish.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["0.0.0.0:8080:80/tcp", "0.0.0.0:53:53/udp"]);
    assert_eq!(service.as_deref(), Some("dns"));
    let bad = json!({"v": 1, "id": 3, "req": {"verb": "sandbox_publish", "sandbox": "web",
                     "publish": [{"host_port": 70000, "container_port": 80}]}});
    let (id, e) = proto::parse_request(bad.to_string().as_bytes()).unwrap_err();
    assert_eq!((id, e.kind()), (Some(3), ErrorKind::InvalidArgument));
}

#[test]
fn nat_flows_and_services_round_trip() {
    let flow = NatFlow {
        proto: "tcp".into(),
        direction: "inbound".into(),
        network: "app".into(),
        sandbox: Some("web".into()),
        sandbox_addr: "10.10.0.2:80".parse().unwrap(),
        remote_addr: "192.0.2.9:40000".parse().unwrap(),
        outer_local: Some("0.0.0.0:8080".parse().unwrap()),
        outer_remote: "192.0.2.9:40000".parse().unwrap(),
        bytes_from_sandbox: 10,
        bytes_to_sandbox: 20,
        age_ms: 1500,
        state: "established".into(),
    };
    let v = serde_json::to_value(vec![&flow]).unwrap();
    assert_eq!(
        v,
        json!([{"proto": "tcp", "direction": "inbound", "network": "app", "sandbox": "web",
                "sandbox_addr": "10.10.0.2:80", "remote_addr": "192.0.2.9:40000", "outer_local": "0.0.0.0:8080",
                "outer_remote": "192.0.2.9:40000", "bytes_from_sandbox": 10, "bytes_to_sandbox": 20,
                "age_ms": 1500, "state": "established"}])
    );
    assert_eq!(serde_json::from_value::<Vec<NatFlow>>(v).unwrap(), vec![flow]);

    let svc = ServiceInfo {
        name: "api".into(),
        network: "app".into(),
        created: "2026-12-01T00:00:00Z".into(),
        publish: vec![ctl::PortMapping::tcp(8080, 80)],
        mode: proto::ServiceMode::Ingress,
        replicas: vec![
            ServiceReplica {
                sandbox: "web".into(),
                endpoint_id: "e1".into(),
                address: Ipv4Addr::new(10, 10, 0, 2),
                node: None,
            },
            ServiceReplica {
                sandbox: "web2".into(),
                endpoint_id: "e2".into(),
                address: Ipv4Addr::new(10, 10, 0, 3),
                node: Some("n2".into()),
            },
        ],
    };
    let line = proto::encode_ok(9, &svc);
    let back: ServiceInfo = proto::decode_response(&line).unwrap().into_payload().unwrap().unwrap();
    assert_eq!(back, svc);
    let v: Value = serde_json::from_slice(&line).unwrap();
    assert_eq!(v["ok"]["replicas"][0], json!({"sandbox": "web", "endpoint_id": "e1", "address": "10.10.0.2"}));
    assert_eq!(v["ok"]["replicas"][1]["node"], "n2");
    assert_eq!(v["ok"]["mode"], "ingress");
    assert_eq!(v["ok"]["publish"][0]["host_port"], 8080);

    // An endpoint from a daemon that predates publishing.
    let old = json!({"network": "app", "sandbox": "web", "endpoint_id": "e1", "port": "vsp1", "ifname": "eth0",
                     "mac": "02:42:0a:0a:00:02", "ipv4": "10.10.0.2/24", "aliases": []});
    let e: EndpointInfo = serde_json::from_value(old).unwrap();
    assert!(e.publish.is_empty() && e.service.is_none());
}

#[test]
fn events_round_trip_with_kind_and_fields_side_by_side() {
    use ctl::proto::{Event, EventKind, LostScope, PortChange};
    let mac: ctl::MacAddr = "02:42:0a:0a:00:02".parse().unwrap();
    let n = || "app".to_owned();
    let kinds = vec![
        EventKind::MacLearned { network: n(), mac, port: "vsa".into() },
        EventKind::MacMoved { network: n(), mac, from: "vsa".into(), to: "vsb".into() },
        EventKind::MacFlapping {
            network: n(),
            mac,
            ports: ["vsa".into(), "vsb".into()],
            moves: 5,
            suppressed: 4,
            interval_ms: 1000,
        },
        EventKind::MacAged { network: n(), mac, port: "vsa".into() },
        EventKind::TableFull { network: n(), refused: 10, limit: 8192 },
        EventKind::LearnLimit { network: n(), port: "vsa".into(), refused: 3 },
        EventKind::EventsSuppressed { network: n(), learned: 1, moved: 2, aged: 3 },
        EventKind::DropBurst {
            network: None,
            port: "vtep".into(),
            reason: "auth_failed".into(),
            drops: 120,
            interval_ms: 1000,
        },
        EventKind::PortUp {
            network: n(),
            port: "vsa".into(),
            sandbox: Some("web".into()),
            reason: PortChange::Connected,
        },
        EventKind::PortDown {
            network: n(),
            port: "vx:192.0.2.1:4789".into(),
            sandbox: None,
            reason: PortChange::PeerRemoved,
        },
        EventKind::PeerLearned {
            network: n(),
            peer: "192.0.2.1:4789".parse().unwrap(),
            port: "vx:192.0.2.1:4789".into(),
        },
        EventKind::PeerSilent {
            network: n(),
            peer: "192.0.2.1:4789".parse().unwrap(),
            port: "vx:192.0.2.1:4789".into(),
        },
        EventKind::KeyRotated { network: n(), epoch: 2, automatic: false },
        EventKind::EndpointGone {
            network: n(),
            sandbox: "c1".into(),
            port: "vsc".into(),
            address: Ipv4Addr::new(10, 0, 0, 2).into(),
        },
        EventKind::SandboxGone { sandbox: "c1".into(), netns: "/proc/42/ns/net".into() },
        EventKind::EventsLost { lost: 7, scope: LostScope::Stream },
    ];
    for (i, kind) in kinds.into_iter().enumerate() {
        let event = Event { seq: i as u64 + 1, time: "2026-11-30T10:13:53.123Z".into(), kind };
        let value = serde_json::to_value(&event).unwrap();
        assert_eq!(value["kind"], event.kind.name(), "{value}");
        assert_eq!(value["seq"], i as u64 + 1);
        assert_eq!(value["network"].as_str(), event.kind.network(), "{value}");
        assert_eq!(serde_json::from_value::<Event>(value).unwrap(), event);
    }
    // The documented example.
    let line = r#"{"seq":12,"time":"2026-11-30T10:13:53.123Z","kind":"mac_moved","network":"app","mac":"02:42:0a:0a:00:02","from":"vs1a2b3c4d","to":"vs5e6f7a8b"}"#;
    let event: Event = serde_json::from_str(line).unwrap();
    assert!(matches!(event.kind, EventKind::MacMoved { ref from, .. } if from == "vs1a2b3c4d"));
    assert_eq!(serde_json::to_string(&event).unwrap(), line);
}
