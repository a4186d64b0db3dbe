//! Fuzzes the embedded DNS server's query path on arbitrary bytes, as a
//! sandbox could send them to its gateway: the frame classifier, the
//! resolver and the forwarder's answer matching. Nothing may panic, and:
//!
//! - `classify` (the raw input as a frame, and the input as the payload of
//!   a UDP frame to the gateway's port 53, which the resolver is then asked
//!   through): a UDP payload range lies within the frame, and a wrapped
//!   input comes back as exactly its payload;
//! - `Resolver::resolve`, first from a known asker (web) over UDP, then from
//!   the asker, transport, path limit and forwarding room the selector byte
//!   picks (spoofed and unknown askers, TCP, no room included):
//!   - `counters.queries` goes up by exactly one per call;
//!   - an answer parses back as a response, with the query's ID when it has
//!     one (at least two bytes);
//!   - a UDP answer fits 512 bytes, or the query's EDNS payload size if
//!     larger, capped by the path limit;
//!   - an answer to a spoofed or unknown asker holds no records (REFUSED or
//!     FORMERR), and one to a known asker only records of its own networks;
//!   - a query is forwarded only for a known asker that may forward, with
//!     room, to its upstreams, when it is a well-formed query whose name is
//!     not in the asker's scope (or not class IN), and the forwarder takes it;
//! - `Forwarder::on_answer` with the input as an upstream's answer to a
//!   query in flight (as it is, and with the upstream ID put in): it
//!   finishes the query only for a response from the upstream asked, with
//!   that ID and the same question, relaying it with the client's ID; a
//!   SERVFAIL or REFUSED moves on to the next upstream, then SERVFAIL;
//! - `fit_udp` (the input, and each relayed answer, cut for a UDP path): the
//!   result fits, is the answer itself when that fits, and else its header
//!   and question with TC set and no records, which parses.
//!
//! The selector is the input's second byte (the low byte of the DNS ID,
//! which only the ID check looks at): bits 0-2 the second asker
//! ([`SECOND`]), bit 3 TCP, bits 4-5 the UDP path limit ([`PATH_LIMITS`]),
//! bit 6 no forwarding room, bit 7 the forwarder's answer from the wrong
//! upstream.
//!
//! The directory is the one the seeds in `fuzz/corpus/dns_query/` were
//! checked against (`dns/tests/fuzz_corpus.rs`): keep the two in step.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use dns::{Action, Advance, Asker, Counters, Directory, Forwarder, NetKey, Outcome, Resolver, Source, Transport, fit_udp};
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, RData};
use libfuzzer_sys::fuzz_target;
use switch::gateway::dns::{DNS_PORT, DnsFrame, UdpQuery, classify, udp_answer_frame};
use switch::wire::MacAddr;

const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 1);
/// The gateway's IPv6 address: raw inputs are classified as to a dual-stack gateway.
const GATEWAY6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xa, 0, 0, 0, 0, 0, 1);
const GATEWAY_MAC: MacAddr = MacAddr([0x02, 0x56, 0, 0, 0, 1]);
const WEB_MAC: MacAddr = MacAddr([0x02, 0x42, 0, 0, 0, 2]);
const WEB: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);
const WORKER: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 3);
const PG: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 2);
const CACHE: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 3);
const WEB_PORT: u32 = 1;
const WORKER_PORT: u32 = 2;
const PG_PORT: u32 = 3;
const DAEMON_UPSTREAM: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 53);
const OWN_UPSTREAM: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 53)), 53);
/// The first asker's path: a 1500-byte MTU less IPv4 and UDP headers.
const PATH_LIMIT: usize = 1472;
const CLASSIC_UDP_LIMIT: usize = 512;

/// The forwarder's query in flight: client ID 0xbeef, `example.com. A`, RD
/// (the seed `response_drop` answers it).
const IN_FLIGHT: [u8; 29] = [
    0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm',
    0, 0, 1, 0, 1,
];
const QUESTION: std::ops::Range<usize> = 12..29;
const TOKEN: u64 = 7;
const UPSTREAM_1: SocketAddr = DAEMON_UPSTREAM;
const UPSTREAM_2: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 53);
const FORWARDER_SEED: u64 = 0x5eed;

/// What the target knows of an asker, to check answers against.
struct Known {
    scope: &'static [NetKey],
    forwarding: bool,
    /// The upstreams its queries go to (its own, else the daemon's).
    upstreams: &'static [SocketAddr],
}

const WEB_ASKER: Known = Known { scope: &[1, 2], forwarding: true, upstreams: &[DAEMON_UPSTREAM] };
const WORKER_ASKER: Known = Known { scope: &[1], forwarding: true, upstreams: &[OWN_UPSTREAM] };
const PG_ASKER: Known = Known { scope: &[2], forwarding: false, upstreams: &[] };

/// The second call's asker, by the selector's bits 0-2.
const SECOND: [(Source, Option<&Known>); 8] = [
    (Source::Port { port: WEB_PORT, address: IpAddr::V4(WEB) }, Some(&WEB_ASKER)),
    (Source::Port { port: WORKER_PORT, address: IpAddr::V4(WORKER) }, Some(&WORKER_ASKER)),
    (Source::Port { port: PG_PORT, address: IpAddr::V4(PG) }, Some(&PG_ASKER)),
    // pg's port with web's address: spoofed.
    (Source::Port { port: PG_PORT, address: IpAddr::V4(WEB) }, None),
    (Source::Port { port: 99, address: IpAddr::V4(WEB) }, None),
    (Source::Network { network: 1, address: IpAddr::V4(WEB) }, Some(&WEB_ASKER)),
    // web's address is not on db.
    (Source::Network { network: 2, address: IpAddr::V4(WEB) }, None),
    (Source::Network { network: 2, address: IpAddr::V4(PG) }, Some(&PG_ASKER)),
];

/// The second call's UDP path limit, by the selector's bits 4-5 (MTUs 576,
/// 1260, 1500 and 9000).
const PATH_LIMITS: [usize; 4] = [548, 1232, PATH_LIMIT, 8972];

/// Networks app (web, worker; alias api on both, www on web) and db (pg
/// alias postgres, cache alias redis); askers web (both networks, the
/// daemon's upstreams), worker (app, its own upstream) and pg (db,
/// internal: no forwarding).
fn directory() -> Directory {
    let mut d = Directory::new();
    d.add_network(1, "app", "10.10.0.0/24".parse().expect("a subnet"));
    d.add_network(2, "db", "10.20.0.0/24".parse().expect("a subnet"));
    d.add_endpoint(1, "web", &["api".into(), "www".into()], WEB);
    d.add_endpoint(1, "worker", &["api".into()], WORKER);
    d.add_endpoint(2, "pg", &["postgres".into()], PG);
    d.add_endpoint(2, "cache", &["redis".into()], CACHE);
    let none: Arc<[SocketAddr]> = Arc::from(Vec::new());
    let own: Arc<[SocketAddr]> = Arc::from(vec![OWN_UPSTREAM]);
    d.add_asker(
        WEB_PORT,
        Asker { address: Some(WEB), address6: None, network: 1, scope: vec![1, 2], forwarding: true, upstreams: none.clone() },
    );
    d.add_asker(WORKER_PORT, Asker { address: Some(WORKER), address6: None, network: 1, scope: vec![1], forwarding: true, upstreams: own });
    d.add_asker(PG_PORT, Asker { address: Some(PG), address6: None, network: 2, scope: vec![2], forwarding: false, upstreams: none });
    d
}

/// Whether an A record for `address` may be answered to an asker of `scope`.
fn in_scope_address(scope: &[NetKey], address: Ipv4Addr) -> bool {
    scope.iter().any(|n| match n {
        1 => [WEB, WORKER].contains(&address),
        2 => [PG, CACHE].contains(&address),
        _ => false,
    })
}

/// Whether a PTR record to `target` may be answered to an asker of `scope`.
fn in_scope_target(scope: &[NetKey], target: &str) -> bool {
    scope.iter().any(|n| match n {
        1 => ["web.app.", "worker.app."].contains(&target),
        2 => ["pg.db.", "cache.db."].contains(&target),
        _ => false,
    })
}

fuzz_target!(|data: &[u8]| {
    let selector = data.get(1).copied().unwrap_or(0);
    // Parsed once here: a header may claim 65,535 questions, which hickory
    // allocates room for before failing (slow under ASan).
    let parsed = Message::from_vec(data).ok();
    let directory = directory();
    let resolver = Resolver::new(vec![DAEMON_UPSTREAM]);

    // The raw input as a frame to the gateway.
    if let DnsFrame::Udp(query) = classify(data, Some(GATEWAY), Some(GATEWAY6)) {
        assert!(query.payload.start <= query.payload.end && query.payload.end <= data.len(), "{query:?}");
    }

    // The input as a UDP query from web, through the classifier as the
    // datapath sees it (when it fits the path), then the resolver.
    let mut frame = Vec::new();
    let query: &[u8] = if data.len() <= PATH_LIMIT {
        // The gateway's answer builder, turned around: web (at "gateway")
        // sends to the gateway's port 53.
        let to_gateway = UdpQuery { mac: GATEWAY_MAC, address: GATEWAY.into(), port: DNS_PORT, payload: 0..0 };
        assert!(udp_answer_frame(WEB_MAC, WEB.into(), &to_gateway, data, &mut frame));
        match classify(&frame, Some(GATEWAY), Some(GATEWAY6)) {
            DnsFrame::Udp(q) => {
                assert_eq!((q.mac, q.address, q.port), (WEB_MAC, IpAddr::V4(WEB), DNS_PORT));
                assert_eq!(q.payload, 42..42 + data.len());
                &frame[q.payload]
            }
            other => panic!("a UDP datagram to port 53 classified as {other:?}"),
        }
    } else {
        data
    };
    let web = Ask {
        source: Source::Port { port: WEB_PORT, address: IpAddr::V4(WEB) },
        known: Some(&WEB_ASKER),
        transport: Transport::Udp { path_limit: PATH_LIMIT },
        room: true,
    };
    check_resolve(&directory, &resolver, &web, query, parsed.as_ref());

    // The same bytes from the asker, over the transport, the selector picks.
    let (source, known) = SECOND[usize::from(selector & 0x07)];
    let transport = if selector & 0x08 != 0 {
        Transport::Tcp
    } else {
        Transport::Udp { path_limit: PATH_LIMITS[usize::from((selector >> 4) & 0x03)] }
    };
    let second = Ask { source, known, transport, room: selector & 0x40 == 0 };
    check_resolve(&directory, &resolver, &second, data, parsed.as_ref());

    // The bytes as an upstream's answer relayed to a UDP client.
    check_fit_udp(data, PATH_LIMITS[usize::from((selector >> 4) & 0x03)]);

    // The bytes as an upstream's answer to a query in flight: as they are
    // (the ID rarely matches), and with the upstream ID put in.
    let (mut forwarder, id) = in_flight();
    let result = forwarder.on_answer(UPSTREAM_1, data, 1);
    check_on_answer(&mut forwarder, id, UPSTREAM_1, data, result);
    if data.len() >= 2 {
        let (mut forwarder, id) = in_flight();
        let mut answer = data.to_vec();
        answer[..2].copy_from_slice(&id.to_be_bytes());
        let from = if selector & 0x80 != 0 { UPSTREAM_2 } else { UPSTREAM_1 };
        let result = forwarder.on_answer(from, &answer, 1);
        check_on_answer(&mut forwarder, id, from, &answer, result);
    }
});

/// Who asks the resolver, and how.
struct Ask<'a> {
    source: Source,
    /// What the target knows of the asker; `None`: spoofed or unknown.
    known: Option<&'a Known>,
    transport: Transport,
    /// Whether another query may be forwarded.
    room: bool,
}

/// Asks `resolver` `query` (`parsed`: as hickory reads it) as `ask` says
/// and checks the outcome.
fn check_resolve(directory: &Directory, resolver: &Resolver, ask: &Ask, query: &[u8], parsed: Option<&Message>) {
    let Ask { source, known, transport, room } = *ask;
    let mut counters = Counters::default();
    let outcome = resolver.resolve(directory, source, query, transport, room, &mut counters);
    assert_eq!(counters.queries, 1, "one query counted once");
    match outcome {
        Outcome::Answer(bytes) => {
            let answer = Message::from_vec(&bytes).unwrap_or_else(|e| panic!("the answer does not parse: {e}"));
            assert_eq!(answer.metadata.message_type, MessageType::Response);
            if let [hi, lo, ..] = *query {
                assert_eq!(answer.metadata.id, u16::from_be_bytes([hi, lo]), "the answer has the query's ID");
            }
            if let Transport::Udp { path_limit } = transport {
                let client =
                    parsed.and_then(|m| m.edns.as_ref()).map_or(CLASSIC_UDP_LIMIT, |e| usize::from(e.max_payload()));
                let limit = client.max(CLASSIC_UDP_LIMIT).min(path_limit);
                assert!(bytes.len() <= limit, "a UDP answer of {} bytes, over the limit {limit}", bytes.len());
            }
            assert!(answer.authorities.is_empty() && answer.additionals.is_empty(), "{answer:?}");
            let Some(known) = known else {
                assert!(answer.answers.is_empty(), "records for a spoofed or unknown asker: {answer:?}");
                let rcode = answer.metadata.response_code;
                assert!(matches!(rcode, ResponseCode::Refused | ResponseCode::FormErr), "{rcode:?}");
                assert_eq!((counters.answered_locally, counters.forwarded), (0, 0));
                return;
            };
            if answer.answers.is_empty() {
                return;
            }
            assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
            assert!(!answer.metadata.truncation, "records in a truncated answer");
            let request = parsed.expect("records answer a well-formed query");
            assert_eq!(request.metadata.op_code, OpCode::Query);
            let [question] = &request.queries[..] else { panic!("records answer one question") };
            assert_eq!(question.query_class(), DNSClass::IN);
            for record in &answer.answers {
                assert_eq!(&record.name, question.name(), "records are owned by the name asked");
                match &record.data {
                    RData::A(a) => assert!(in_scope_address(known.scope, a.0), "{a:?} outside {:?}", known.scope),
                    RData::PTR(p) => {
                        let target = p.0.to_ascii();
                        assert!(in_scope_target(known.scope, &target), "{target} outside {:?}", known.scope);
                    }
                    other => panic!("a record the switch does not own: {other:?}"),
                }
            }
        }
        Outcome::Forward(upstreams) => {
            let known = known.expect("a spoofed or unknown asker's query forwarded");
            assert!(known.forwarding, "forwarded for an asker without forwarding");
            assert!(room, "forwarded without room");
            assert_eq!(&upstreams[..], known.upstreams);
            assert_eq!(counters.forwarded, 1);
            let request = parsed.expect("a query that does not parse forwarded");
            assert_eq!(request.metadata.message_type, MessageType::Query);
            assert_eq!(request.metadata.op_code, OpCode::Query);
            let [question] = &request.queries[..] else { panic!("a query without one question forwarded") };
            if question.query_class() == DNSClass::IN {
                // A lookup that does not advance the rotation changes nothing.
                let found = directory.lookup(known.scope, &question.name().to_ascii(), Advance::None);
                assert_eq!(found, None, "a name of the asker's scope forwarded");
            }
            // The forwarder takes what the resolver forwards.
            let tcp = transport == Transport::Tcp;
            let mut forwarder = Forwarder::new(1, 1_500, FORWARDER_SEED);
            match forwarder.start(1, query, &upstreams, tcp, 0) {
                Ok(Action::Send { id, upstream, tcp: sent_tcp, query: sent }) => {
                    assert_eq!((upstream, sent_tcp), (upstreams[0], tcp));
                    assert_eq!(sent[..2], id.to_be_bytes());
                    assert_eq!(sent[2..], query[2..], "only the ID changes");
                }
                other => panic!("the forwarder refuses a forwarded query: {other:?}"),
            }
        }
        Outcome::Drop => {
            assert_eq!(counters.malformed, 1, "a drop is counted as malformed");
            assert!(
                parsed.is_none_or(|m| m.metadata.message_type == MessageType::Response),
                "a well-formed query dropped"
            );
        }
    }
}

/// A forwarder with [`IN_FLIGHT`] sent to upstream 1 (then 2), and its
/// upstream ID.
fn in_flight() -> (Forwarder, u16) {
    let mut forwarder = Forwarder::new(4, 1_500, FORWARDER_SEED);
    match forwarder.start(TOKEN, &IN_FLIGHT, &[UPSTREAM_1, UPSTREAM_2], false, 0) {
        Ok(Action::Send { id, upstream: UPSTREAM_1, .. }) => (forwarder, id),
        other => panic!("the query in flight does not start: {other:?}"),
    }
}

/// Whether `answer` is a response with ID `id` to the question in flight.
fn answers_in_flight(answer: &[u8], id: u16) -> bool {
    answer.len() >= 12
        && answer[2] & 0x80 != 0
        && answer[..2] == id.to_be_bytes()
        && answer[4..6] == [0, 1]
        && answer.get(QUESTION).is_some_and(|q| q.eq_ignore_ascii_case(&IN_FLIGHT[QUESTION]))
}

/// Checks what [`Forwarder::on_answer`] made of `answer` from `from`.
fn check_on_answer(forwarder: &mut Forwarder, id: u16, from: SocketAddr, answer: &[u8], result: Option<Action>) {
    let Some(action) = result else { return };
    assert_eq!(from, UPSTREAM_1, "an answer from an upstream not asked taken: {action:?}");
    assert!(answers_in_flight(answer, id), "an answer to something else taken: {action:?}");
    let rcode = answer[3] & 0x0f;
    match action {
        Action::Done { token, answer: relayed, failed } => {
            assert_eq!((token, failed), (TOKEN, false));
            assert!(rcode != 2 && rcode != 5, "SERVFAIL or REFUSED relayed");
            assert_eq!(relayed[..2], IN_FLIGHT[..2], "relayed with the client's ID");
            assert_eq!(relayed[2..], answer[2..], "relayed unchanged");
            check_fit_udp(&relayed, PATH_LIMITS[0]);
            assert_eq!(forwarder.in_flight(), 0);
        }
        Action::Send { id: again, upstream, tcp, query } => {
            assert!(rcode == 2 || rcode == 5, "failed over on rcode {rcode}");
            assert_eq!((again, upstream, tcp), (id, UPSTREAM_2, false));
            assert_eq!(query[..2], id.to_be_bytes());
            assert_eq!(query[2..], IN_FLIGHT[2..]);
            // The first upstream's word no longer counts; the second's
            // failure too leaves SERVFAIL, from the client's own query.
            assert_eq!(forwarder.on_answer(UPSTREAM_1, answer, 2), None);
            match forwarder.on_answer(UPSTREAM_2, answer, 2) {
                Some(Action::Done { token: TOKEN, answer: servfail, failed: true }) => {
                    let m = Message::from_vec(&servfail).expect("our SERVFAIL parses");
                    assert_eq!((m.metadata.id, m.metadata.response_code), (0xbeef, ResponseCode::ServFail));
                    assert_eq!(m.queries.len(), 1);
                }
                other => panic!("the last upstream failing gives {other:?}"),
            }
            assert_eq!(forwarder.in_flight(), 0);
        }
    }
}

/// Checks [`fit_udp`] on `answer` for a UDP path of `limit` bytes (at least
/// 512: a header and one question always fit).
fn check_fit_udp(answer: &[u8], limit: usize) {
    let fitted = fit_udp(answer, limit);
    assert!(fitted.len() <= limit, "cut to {} bytes for a path of {limit}", fitted.len());
    if answer.len() <= limit {
        assert_eq!(&fitted[..], answer, "an answer that fits is changed");
        return;
    }
    assert!(fitted.len() >= 12, "cut inside the header");
    assert_eq!(fitted[..2], answer[..2], "the ID changed");
    assert_eq!((fitted[2] | 0x02, fitted[3]), (answer[2] | 0x02, answer[3]), "flags other than TC changed");
    assert!(fitted[2] & 0x02 != 0, "cut without TC");
    assert_eq!(fitted[6..12], [0; 6], "records counted in a cut answer");
    assert_eq!(fitted[12..], answer[12..fitted.len()], "the question is not the answer's");
    let m = Message::from_vec(&fitted).unwrap_or_else(|e| panic!("a cut answer does not parse: {e}"));
    assert!(m.metadata.truncation && m.queries.len() <= 1);
    assert!(m.answers.is_empty() && m.authorities.is_empty() && m.additionals.is_empty() && m.edns.is_none());
}
