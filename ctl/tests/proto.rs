//! Protocol codec tests: round trips, every error class, the documented examples.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use ctl::proto::{
    self, Ack, ConfigInfo, Driver, EndpointInfo, EndpointResource, ErrorKind, FdbEntry, FlushResult, Ipam, IpamConfig,
    MAX_REQUEST_BYTES, NetworkInfo, NetworkSummary, PortStats, ProtocolError, Request, SandboxInfo, ShowTree,
    VersionInfo,
};
use serde_json::{Value, json};

fn one_of_each() -> Vec<Request> {
    vec![
        Request::SandboxCreate {
            name: "web".into(),
            dns: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), "2001:db8::1".parse().unwrap()],
            dns_search: vec!["example.com".into()],
            netns: Some("/proc/1/ns/net".into()),
        },
        Request::SandboxLs,
        Request::SandboxRm { name: "web".into() },
        Request::NetworkCreate {
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
        },
        Request::NetworkLs,
        Request::NetworkInspect { name: "blue".into() },
        Request::NetworkRm { name: "blue".into() },
        Request::NetworkConnect {
            network: "blue".into(),
            sandbox: "web".into(),
            ip: Some(Ipv4Addr::new(10, 10, 0, 5)),
            aliases: vec!["www".into(), "api".into()],
            mac: Some("02:42:0a:0a:00:05".parse().unwrap()),
        },
        Request::NetworkDisconnect { network: "blue".into(), sandbox: "web".into() },
        Request::Show,
        Request::FdbShow { network: Some("blue".into()) },
        Request::FdbAdd { network: "blue".into(), mac: "02:00:00:00:00:09".parse().unwrap(), port: "p1".into() },
        Request::FdbFlush { network: None },
        Request::Stats { port: Some("p1".into()) },
        Request::ConfigShow,
        Request::ConfigSet { key: "aging-time".into(), value: "300".into() },
        Request::PeerAdd { addr: "192.0.2.1:4789".parse().unwrap(), networks: vec!["ov".into()] },
        Request::PeerLs,
        Request::NetworkKeyRotate { network: "sec".into() },
        Request::PeerRm { addr: "[2001:db8::1]:4789".parse().unwrap() },
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
    assert_eq!(
        env.req,
        Request::NetworkCreate {
            name: "x".into(),
            driver: Driver::Bridge,
            subnet: None,
            gateway: None,
            ip_range: None,
            internal: false,
            mtu: None,
            attachable: false,
            vni: None,
            options: BTreeMap::new(),
        }
    );
    let env = proto::parse_request(b"{\"v\":1,\"id\":4,\"req\":{\"verb\":\"fdb_show\"}}\r\n").unwrap();
    assert_eq!(env.req, Request::FdbShow { network: None });
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
        r#"{"verb":"network_create","name":"n","driver":"macvlan"}"#,
        r#"{"verb":"network_create","name":"n","mtu":-5}"#,
        r#"{"verb":"network_connect","network":"n","sandbox":"s","ip":"300.1.1.1"}"#,
        r#"{"verb":"sandbox_create","name":"s","dns":["nope"]}"#,
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
        enable_ipv6: false,
        ipam: Ipam {
            driver: "default".into(),
            options: BTreeMap::new(),
            config: vec![IpamConfig {
                subnet: "10.10.0.0/24".parse().unwrap(),
                gateway: Some(Ipv4Addr::new(10, 10, 0, 1)),
                ip_range: Some("10.10.0.64/26".parse().unwrap()),
            }],
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
                ipv6_address: String::new(),
            },
        )]),
        options: BTreeMap::new(),
        labels: BTreeMap::new(),
    };
    let v = serde_json::to_value(&info).unwrap();
    let keys: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = [
        "Name",
        "Id",
        "Created",
        "Scope",
        "Driver",
        "EnableIPv6",
        "IPAM",
        "Internal",
        "Attachable",
        "Containers",
        "Options",
        "Labels",
    ]
    .into();
    assert_eq!(keys, want);
    assert_eq!(
        v["IPAM"],
        json!({
            "Driver": "default",
            "Options": {},
            "Config": [{"Subnet": "10.10.0.0/24", "IPRange": "10.10.0.64/26", "Gateway": "10.10.0.1"}]
        })
    );
    assert_eq!(
        v["Containers"]["ep1"],
        json!({"Name":"web","EndpointID":"ep1","MacAddress":"02:42:0a:0a:00:05","IPv4Address":"10.10.0.5/24","IPv6Address":""})
    );
    assert_eq!(serde_json::from_value::<NetworkInfo>(v).unwrap(), info);
}

/// Checks that an `ok` payload has the documented type for `verb`.
fn check_payload(verb: &str, ok: Value) {
    let r = match verb {
        "sandbox_create" => serde_json::from_value::<SandboxInfo>(ok).map(drop),
        "sandbox_ls" => serde_json::from_value::<Vec<SandboxInfo>>(ok).map(drop),
        "network_create" | "network_inspect" => serde_json::from_value::<NetworkInfo>(ok).map(drop),
        "network_ls" => serde_json::from_value::<Vec<NetworkSummary>>(ok).map(drop),
        "network_connect" => serde_json::from_value::<EndpointInfo>(ok).map(drop),
        "show" => serde_json::from_value::<ShowTree>(ok).map(drop),
        "fdb_show" => serde_json::from_value::<Vec<FdbEntry>>(ok).map(drop),
        "fdb_flush" => serde_json::from_value::<FlushResult>(ok).map(drop),
        "config_show" => serde_json::from_value::<ConfigInfo>(ok).map(drop),
        "stats" => serde_json::from_value::<Vec<PortStats>>(ok).map(drop),
        "version" => serde_json::from_value::<VersionInfo>(ok).map(drop),
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
    for pair in lines.chunks(2) {
        let [c, s] = pair else { panic!("unpaired example line {pair:?}") };
        let (c, s) =
            (c.strip_prefix("C: ").expect("client line first"), s.strip_prefix("S: ").expect("then server line"));
        let resp = proto::decode_response(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"));
        match proto::decode_request(c.as_bytes()) {
            Ok(env) => {
                assert_eq!(resp.id, Some(env.id), "{s}");
                // Re-encoding is lossless.
                assert_eq!(proto::parse_request(&proto::encode_request(env.id, &env.req).unwrap()).unwrap(), env);
                if let Ok(ok) = resp.result {
                    check_payload(env.req.verb(), ok);
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
