//! The committed seed corpus of the `ctl_proto` fuzz target
//! (`fuzz/corpus/ctl_proto/`) runs through the target's own checks
//! (`fuzz/harness/ctl_proto.rs`) and decodes as its file names claim, so the
//! fuzzer starts from requests of the common verbs, every class of refused
//! request, replies of both kinds, reply payloads and `-p` specs.
//!
//! Regenerate the seeds with
//! `VSWITCH_REGENERATE_SEEDS=1 cargo test -p ctl --test fuzz_corpus -- --ignored`.

#[path = "../../fuzz/harness/corpus.rs"]
mod corpus;
#[path = "../../fuzz/harness/ctl_proto.rs"]
mod harness;

use ctl::proto::{ErrorKind, FdbEntry, FdbKind};
use harness::PAYLOADS;

fn corpus() -> corpus::Corpus {
    corpus::Corpus::new(env!("CARGO_MANIFEST_DIR"), "ctl_proto")
}

/// A seed: the selector byte of payload type `payload`, then `text`.
fn seed(payload: &str, text: &str) -> Vec<u8> {
    let selector = PAYLOADS.iter().position(|&p| p == payload).expect("a payload type of the harness") as u8;
    let mut out = vec![selector];
    out.extend_from_slice(text.as_bytes());
    out
}

/// The seeds, by name.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let fdb = vec![FdbEntry {
        network: "app".into(),
        port: "vsw9a8b7c6d".into(),
        mac: "02:42:0a:0a:00:05".parse().unwrap(),
        age_secs: 12,
        kind: FdbKind::Learned,
        remote: Some("192.0.2.11:4789".parse().unwrap()),
    }];
    vec![
        (
            "network_create",
            seed(
                "NetworkInfo",
                r#"{"v":1,"id":7,"req":{"verb":"network_create","name":"app","driver":"overlay","subnet":"10.10.0.0/24","ip_range":"10.10.0.64/26","vni":4242,"attachable":true,"options":{"encrypted":"","mss-clamp":""}}}"#,
            ),
        ),
        (
            "network_connect_publish",
            seed(
                "EndpointInfo",
                r#"{"v":1,"id":8,"req":{"verb":"network_connect","network":"app","sandbox":"web","ip":"10.10.0.5","mac":"02:42:0a:0a:00:05","aliases":["api"],"publish":[{"host_ip":"127.0.0.1","host_port":8080,"container_port":80,"proto":"tcp"}],"service":"api"}}"#,
            ),
        ),
        (
            "sandbox_create_adopt",
            seed(
                "SandboxInfo",
                r#"{"v":1,"id":9,"req":{"verb":"sandbox_create","name":"c1","dns":["10.0.0.53","2001:db8::1"],"dns_search":["example.com"],"netns":"/proc/1234/ns/net"}}"#,
            ),
        ),
        (
            "peer_add",
            seed(
                "[PeerInfo]",
                r#"{"v":1,"id":10,"req":{"verb":"peer_add","addr":"192.0.2.11:4789","networks":["ov"]}}"#,
            ),
        ),
        ("unknown_verb", seed("Ack", r#"{"v":1,"id":11,"req":{"verb":"network_explode","name":"app"}}"#)),
        ("unsupported_version", seed("Ack", r#"{"v":2,"id":12,"req":{"verb":"ping"}}"#)),
        (
            "invalid_subnet",
            seed("Ack", r#"{"v":1,"id":13,"req":{"verb":"network_create","name":"x","subnet":"10.0.0.0/33"}}"#),
        ),
        (
            "error_reply",
            seed(
                "Ack",
                r#"{"v":1,"id":2,"err":{"kind":"in_use","message":"network app has active endpoints (web): disconnect them first"}}"#,
            ),
        ),
        ("fdb_payload", seed("[FdbEntry]", &serde_json::to_string(&fdb).unwrap())),
        ("publish_range_udp", seed("PortMapping", "127.0.0.1:5353-5354:53-54/udp")),
    ]
}

#[test]
fn the_corpus_holds_exactly_the_seeds() {
    corpus().assert_holds_exactly(&seeds());
}

#[test]
fn seeds_decode_as_named() {
    let run = |name: &str| harness::run(&corpus().read(name));
    for (name, verb) in [
        ("network_create", "network_create"),
        ("network_connect_publish", "network_connect"),
        ("sandbox_create_adopt", "sandbox_create"),
        ("peer_add", "peer_add"),
    ] {
        let o = run(name);
        assert_eq!((o.verb, o.request_error, o.response_ok), (Some(verb), None, None), "{name}: {o:?}");
    }
    for (name, kind) in [
        ("unknown_verb", ErrorKind::UnknownVerb),
        ("unsupported_version", ErrorKind::UnsupportedVersion),
        ("invalid_subnet", ErrorKind::InvalidArgument),
        ("fdb_payload", ErrorKind::BadRequest),
    ] {
        let o = run(name);
        assert_eq!((o.verb, o.request_error), (None, Some(kind)), "{name}: {o:?}");
    }
    let o = run("error_reply");
    assert_eq!((o.request_error, o.response_ok), (Some(ErrorKind::BadRequest), Some(false)), "{o:?}");
    let o = run("fdb_payload");
    assert_eq!(o.payload, ("[FdbEntry]", true), "{o:?}");
    let o = run("publish_range_udp");
    assert_eq!((o.publish, o.payload), (Some(2), ("PortMapping", false)), "a range is two mappings: {o:?}");
    // The empty input and a lone selector byte are handled too.
    assert_eq!(harness::run(&[]).verb, None);
    assert_eq!(harness::run(&[0]).request_error, Some(ErrorKind::BadRequest));
}

#[test]
#[ignore = "writes the seed corpus; run with VSWITCH_REGENERATE_SEEDS=1"]
fn regenerate_seeds() {
    corpus().regenerate(seeds);
}
