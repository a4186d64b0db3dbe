//! The `ctl_proto` fuzz target's checks, shared with its seed check
//! (`ctl/tests/fuzz_corpus.rs`, which includes this file by path): the ctl
//! protocol's decoders on arbitrary bytes, as a hostile client (or a broken
//! daemon) could send them. Nothing may panic, and:
//!
//! - a request line that parses re-encodes (`encode_request`) to a line
//!   that parses to the same envelope; `decode_request` fails exactly when
//!   `parse_request` does, with the same `id` and the wire kind of the
//!   reason, and that error encodes (`encode_err`) to a response line that
//!   decodes to the same `id`, kind and message;
//! - a response line that decodes re-encodes (`encode_ok`/`encode_err`) to
//!   one that decodes to the same response;
//! - the payload type the selector byte picks ([`PAYLOADS`]), read from the
//!   text, serializes to JSON that reads back to the same value;
//! - the text as a `-p` spec, a CIDR, a MAC address and a driver name: what
//!   parses prints as text that parses to the same value.
//!
//! Input: one selector byte, then the text (a request or response line).

use std::str::FromStr;

use ctl::proto::{
    self, Ack, ConfigInfo, DnsRecord, DnsStats, Driver, EndpointInfo, ErrorKind, FdbEntry, FlushResult, KeyEpoch,
    MetricsText, NatFlow, NatStats, NetworkInfo, NetworkSummary, PeerInfo, PortStats, SandboxInfo, ServiceInfo,
    ShowTree, VersionInfo,
};
use ctl::{MacAddr, PortMapping, parse_ipv4_net, parse_publish};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// What the checks found, for the seed check to assert on.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[allow(dead_code)] // read by the seed check only
pub(crate) struct Outcome {
    /// The request's verb when the line parsed as a request.
    pub(crate) verb: Option<&'static str>,
    /// The wire error kind when it did not.
    pub(crate) request_error: Option<ErrorKind>,
    /// Whether the line decoded as a response (`Some(true)`: an `ok` one).
    pub(crate) response_ok: Option<bool>,
    /// The payload type tried, and whether the text read as one.
    pub(crate) payload: (&'static str, bool),
    /// How many `-p` mappings the text names, when it is a spec.
    pub(crate) publish: Option<usize>,
}

/// Reads `text` as `T`; if it reads, checks the serde round trip.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(text: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<T>(text) else {
        return false;
    };
    let json = serde_json::to_vec(&value).expect("a payload serializes");
    let again: T = serde_json::from_slice(&json).expect("a serialized payload reads back");
    assert_eq!(again, value, "payload round trip through {}", String::from_utf8_lossy(&json));
    true
}

/// The payload types the selector byte picks from (the replies' `ok` values).
pub(crate) const PAYLOADS: [&str; 22] = [
    "Ack",
    "NetworkInfo",
    "[NetworkSummary]",
    "EndpointInfo",
    "SandboxInfo",
    "[SandboxInfo]",
    "[DnsRecord]",
    "MetricsText",
    "DnsStats",
    "ShowTree",
    "[FdbEntry]",
    "[PeerInfo]",
    "ConfigInfo",
    "FlushResult",
    "[PortStats]",
    "VersionInfo",
    "KeyEpoch",
    "NatStats",
    "[NatFlow]",
    "ServiceInfo",
    "[ServiceInfo]",
    "PortMapping",
];

fn payload(selector: u8, text: &[u8]) -> (&'static str, bool) {
    let index = usize::from(selector) % PAYLOADS.len();
    let read = match index {
        0 => round_trip::<Ack>(text),
        1 => round_trip::<NetworkInfo>(text),
        2 => round_trip::<Vec<NetworkSummary>>(text),
        3 => round_trip::<EndpointInfo>(text),
        4 => round_trip::<SandboxInfo>(text),
        5 => round_trip::<Vec<SandboxInfo>>(text),
        6 => round_trip::<Vec<DnsRecord>>(text),
        7 => round_trip::<MetricsText>(text),
        8 => round_trip::<DnsStats>(text),
        9 => round_trip::<ShowTree>(text),
        10 => round_trip::<Vec<FdbEntry>>(text),
        11 => round_trip::<Vec<PeerInfo>>(text),
        12 => round_trip::<ConfigInfo>(text),
        13 => round_trip::<FlushResult>(text),
        14 => round_trip::<Vec<PortStats>>(text),
        15 => round_trip::<VersionInfo>(text),
        16 => round_trip::<KeyEpoch>(text),
        17 => round_trip::<NatStats>(text),
        18 => round_trip::<Vec<NatFlow>>(text),
        19 => round_trip::<ServiceInfo>(text),
        20 => round_trip::<Vec<ServiceInfo>>(text),
        _ => round_trip::<PortMapping>(text),
    };
    (PAYLOADS[index], read)
}

/// Runs every check on `data` (selector byte, then text); a violated
/// property panics.
pub(crate) fn run(data: &[u8]) -> Outcome {
    let Some((&selector, line)) = data.split_first() else {
        return Outcome::default();
    };
    let mut out = Outcome::default();

    // Requests, as the daemon reads them.
    let parsed = proto::parse_request(line);
    let decoded = proto::decode_request(line);
    match (&parsed, &decoded) {
        (Ok(env), Ok(same)) => {
            assert_eq!(env, same, "decode_request and parse_request disagree");
            assert_eq!(env.v, proto::PROTOCOL_VERSION);
            let encoded = proto::encode_request(env.id, &env.req).expect("a parsed request encodes");
            assert_eq!(encoded.last(), Some(&b'\n'));
            assert_eq!(encoded.iter().filter(|&&b| b == b'\n').count(), 1, "an encoded request is one line");
            let again = proto::parse_request(&encoded).expect("an encoded request parses");
            assert_eq!(&again, env, "request round trip through {}", String::from_utf8_lossy(&encoded));
            assert!(proto::Request::VERBS.contains(&env.req.verb()));
            out.verb = Some(env.req.verb());
        }
        (Err((id, e)), Err((same_id, err))) => {
            assert_eq!(id, same_id, "decode_request and parse_request disagree on the id");
            assert_eq!(err.kind, e.kind(), "the wire kind of {e:?}");
            let reply = proto::encode_err(*id, err.kind, err.message.clone());
            let back = proto::decode_response(&reply).expect("an error reply decodes");
            assert_eq!((back.id, back.result), (*id, Err(err.clone())), "error reply round trip");
            out.request_error = Some(err.kind);
        }
        _ => panic!("decode_request and parse_request disagree: {parsed:?} vs {decoded:?}"),
    }

    // Responses, as the client reads them.
    if let Ok(resp) = proto::decode_response(line) {
        assert_eq!(resp.v, proto::PROTOCOL_VERSION);
        let encoded = match &resp.result {
            Ok(value) => proto::encode_ok(resp.id.unwrap_or(0), value),
            Err(e) => proto::encode_err(resp.id, e.kind, e.message.clone()),
        };
        assert_eq!(encoded.iter().filter(|&&b| b == b'\n').count(), 1, "an encoded response is one line");
        let back = proto::decode_response(&encoded).expect("an encoded response decodes");
        assert_eq!(back.result, resp.result, "response round trip through {}", String::from_utf8_lossy(&encoded));
        if resp.result.is_err() || resp.id.is_some() {
            assert_eq!(back.id, resp.id);
        }
        out.response_ok = Some(resp.result.is_ok());
    }

    out.payload = payload(selector, line);

    // The text forms the CLI reads and the protocol carries.
    if let Ok(text) = std::str::from_utf8(line) {
        if let Ok(mappings) = parse_publish(text) {
            assert!(!mappings.is_empty(), "a spec names at least one port");
            for m in &mappings {
                // The text form always names the address; the mapping is the same.
                let back =
                    PortMapping::from_str(&m.to_string()).map(|b| PortMapping { host_ip_named: m.host_ip_named, ..b });
                assert_eq!(back, Ok(*m), "{text:?}");
                assert!(m.container_port != 0, "{text:?} gave container port 0");
            }
            out.publish = Some(mappings.len());
        }
        if let Ok(net) = parse_ipv4_net(text) {
            assert_eq!(parse_ipv4_net(&net.to_string()), Ok(net), "{text:?}");
        }
        if let Ok(mac) = MacAddr::from_str(text) {
            assert_eq!(MacAddr::from_str(&mac.to_string()), Ok(mac), "{text:?}");
        }
        if let Ok(driver) = Driver::from_str(text) {
            assert_eq!(Driver::from_str(driver.as_str()), Ok(driver), "{text:?}");
        }
    }
    out
}
