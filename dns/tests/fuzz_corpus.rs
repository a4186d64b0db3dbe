//! The committed fuzz seed corpus (`fuzz/corpus/dns_query/`) holds the
//! messages its file names claim: asked by the fuzz target's first asker
//! (`web`, over UDP), each gives the outcome at the end of its name (`_local`
//! answer with records, `_nodata`, `_nxdomain`, `_forward`, `_formerr`,
//! `_notimp`, `_drop`), so the fuzzer starts from every branch of the
//! resolver.
//!
//! The low byte of each seed's ID is its index: the fuzz target reads that
//! byte to pick its second asker, transport and limits, so the seeds start
//! from all of them.
//!
//! Regenerate it with
//! `VSWITCH_REGENERATE_SEEDS=1 cargo test -p dns --test fuzz_corpus -- --ignored`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use dns::{Action, Asker, Counters, Directory, Forwarder, Outcome, Resolver, Source, Transport};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};

#[path = "../../fuzz/harness/corpus.rs"]
mod corpus;

// ---- the fuzz target's fixed world: keep in step with fuzz/fuzz_targets/dns_query.rs ----

const WEB: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);
const WORKER: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 3);
const PG: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 2);
const CACHE: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 3);
const WEB_PORT: u32 = 1;
const DAEMON_UPSTREAM: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 53);
const OWN_UPSTREAM: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(198, 51, 100, 53)), 53);
/// The forwarder's query in flight: client ID 0xbeef, `example.com. A`, RD.
const IN_FLIGHT: [u8; 29] = [
    0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm',
    0, 0, 1, 0, 1,
];
const UPSTREAM_1: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 53);
const UPSTREAM_2: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 53);
const FORWARDER_SEED: u64 = 0x5eed;

/// Networks app (web, worker; alias api on both, www on web) and db (pg
/// alias postgres, cache alias redis); askers web (both networks, the
/// daemon's upstreams), worker (app, its own upstream) and pg (db,
/// internal: no forwarding).
fn directory() -> Directory {
    let mut d = Directory::new();
    d.add_network(1, "app", "10.10.0.0/24".parse().unwrap());
    d.add_network(2, "db", "10.20.0.0/24".parse().unwrap());
    d.add_endpoint(1, "web", &["api".into(), "www".into()], WEB);
    d.add_endpoint(1, "worker", &["api".into()], WORKER);
    d.add_endpoint(2, "pg", &["postgres".into()], PG);
    d.add_endpoint(2, "cache", &["redis".into()], CACHE);
    let none: Arc<[SocketAddr]> = Arc::from(Vec::new());
    let own: Arc<[SocketAddr]> = Arc::from(vec![OWN_UPSTREAM]);
    d.add_asker(
        WEB_PORT,
        Asker {
            address: Some(WEB),
            address6: None,
            network: 1,
            scope: vec![1, 2],
            forwarding: true,
            upstreams: none.clone(),
        },
    );
    d.add_asker(
        2,
        Asker { address: Some(WORKER), address6: None, network: 1, scope: vec![1], forwarding: true, upstreams: own },
    );
    d.add_asker(
        3,
        Asker { address: Some(PG), address6: None, network: 2, scope: vec![2], forwarding: false, upstreams: none },
    );
    d
}

// ---- the seeds ----

fn corpus() -> corpus::Corpus {
    corpus::Corpus::new(env!("CARGO_MANIFEST_DIR"), "dns_query")
}

fn seed(name: &str) -> Vec<u8> {
    corpus().read(name)
}

/// What a seed must give, asked by web over UDP.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// NOERROR with these records (A addresses or a PTR target), in order.
    Local(&'static [&'static str]),
    NoData,
    NxDomain,
    Forward,
    FormErr,
    NotImp,
    Drop,
}

impl Expect {
    /// The file name's suffix that claims this outcome.
    fn suffix(self) -> &'static str {
        match self {
            Expect::Local(_) => "_local",
            Expect::NoData => "_nodata",
            Expect::NxDomain => "_nxdomain",
            Expect::Forward => "_forward",
            Expect::FormErr => "_formerr",
            Expect::NotImp => "_notimp",
            Expect::Drop => "_drop",
        }
    }
}

/// Every seed, in index order (the low byte of its ID).
const SEEDS: [(&str, Expect); 17] = [
    ("a_web_local", Expect::Local(&["10.10.0.2"])),
    ("aaaa_nodata", Expect::NoData),
    ("ptr_worker_local", Expect::Local(&["worker.app."])),
    ("ptr_unassigned_nxdomain", Expect::NxDomain),
    ("any_api_local", Expect::Local(&["10.10.0.2", "10.10.0.3"])),
    ("txt_forward", Expect::Forward),
    ("a_edns_forward", Expect::Forward),
    ("a_edns4096_redis_local", Expect::Local(&["10.20.0.3"])),
    ("a_0x20_mixed_case_local", Expect::Local(&["10.10.0.2"])),
    ("a_name_network_local", Expect::Local(&["10.20.0.2"])),
    ("loop_formerr", Expect::FormErr),
    ("truncated_header_drop", Expect::Drop),
    ("label_overrun_formerr", Expect::FormErr),
    ("two_questions_formerr", Expect::FormErr),
    ("notify_notimp", Expect::NotImp),
    ("response_drop", Expect::Drop),
    // 85 questions in 525 bytes: the FORMERR answer must still fit 512.
    ("many_questions_formerr", Expect::FormErr),
];

fn id(index: usize) -> u16 {
    0x4400 | index as u16
}

fn query(index: usize, name: &str, qtype: RecordType) -> Message {
    let mut m = Message::new(id(index), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m
}

fn with_edns(mut m: Message, payload: u16) -> Message {
    let mut edns = Edns::new();
    edns.set_max_payload(payload);
    m.set_edns(edns);
    m
}

fn encode(m: &Message) -> Vec<u8> {
    m.to_vec().unwrap()
}

/// The seed called `name`, built.
fn build(index: usize, name: &str) -> Vec<u8> {
    let [hi, lo] = id(index).to_be_bytes();
    match name {
        "a_web_local" => encode(&query(index, "web.", RecordType::A)),
        "aaaa_nodata" => encode(&query(index, "web.", RecordType::AAAA)),
        "ptr_worker_local" => encode(&query(index, "3.0.10.10.in-addr.arpa.", RecordType::PTR)),
        "ptr_unassigned_nxdomain" => encode(&query(index, "99.0.10.10.in-addr.arpa.", RecordType::PTR)),
        "any_api_local" => encode(&query(index, "api.", RecordType::ANY)),
        "txt_forward" => encode(&query(index, "example.com.", RecordType::TXT)),
        "a_edns_forward" => encode(&with_edns(query(index, "example.org.", RecordType::A), 1232)),
        "a_edns4096_redis_local" => encode(&with_edns(query(index, "redis.", RecordType::A), 4096)),
        "a_0x20_mixed_case_local" => encode(&query(index, "wEb.", RecordType::A)),
        "a_name_network_local" => encode(&query(index, "pG.Db.", RecordType::A)),
        // The question's name is a compression pointer to itself.
        "loop_formerr" => vec![hi, lo, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1],
        "truncated_header_drop" => encode(&query(index, "web.", RecordType::A))[..7].to_vec(),
        // A 63-byte label with 6 bytes left in the message.
        "label_overrun_formerr" => vec![hi, lo, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 63, b'w', b'e', b'b', 0, 0, 1],
        "two_questions_formerr" => {
            let mut m = query(index, "web.", RecordType::A);
            m.add_query(Query::query(Name::from_ascii("api.").unwrap(), RecordType::A));
            encode(&m)
        }
        "notify_notimp" => {
            let mut m = query(index, "app.", RecordType::SOA);
            m.metadata.op_code = OpCode::Notify;
            m.metadata.recursion_desired = false;
            encode(&m)
        }
        // An upstream's answer to the fuzz target's query in flight
        // (`example.com. A`): a response sent to the server is dropped, and
        // with the upstream ID put in, the forwarder relays it.
        "response_drop" => {
            let mut m = query(index, "example.com.", RecordType::A);
            m.metadata.message_type = MessageType::Response;
            m.metadata.recursion_available = true;
            let address = RData::A(A(Ipv4Addr::new(192, 0, 2, 80)));
            m.add_answer(Record::from_rdata(Name::from_ascii("example.com.").unwrap(), 300, address));
            encode(&m)
        }
        "many_questions_formerr" => {
            let mut bytes = vec![hi, lo, 0x01, 0x00, 0x00, 85, 0, 0, 0, 0, 0, 0, 3, b'w', b'e', b'b', 0, 0, 1, 0, 1];
            for _ in 0..84 {
                bytes.extend_from_slice(&[0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01]);
            }
            bytes
        }
        other => panic!("no recipe for seed {other}"),
    }
}

fn records(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .map(|r| match &r.data {
            RData::A(a) => a.0.to_string(),
            RData::PTR(p) => p.0.to_ascii(),
            other => panic!("unexpected record {other:?}"),
        })
        .collect()
}

#[test]
fn seeds_resolve_as_named() {
    let directory = directory();
    let resolver = Resolver::new(vec![DAEMON_UPSTREAM]);
    for (index, (name, expect)) in SEEDS.into_iter().enumerate() {
        assert!(name.ends_with(expect.suffix()), "{name} does not claim {expect:?}");
        let bytes = seed(name);
        if bytes.len() >= 2 {
            assert_eq!(bytes[..2], id(index).to_be_bytes(), "{name}: the ID's low byte is the seed's index");
        }
        let mut counters = Counters::default();
        let source = Source::Port { port: WEB_PORT, address: IpAddr::V4(WEB) };
        let outcome =
            resolver.resolve(&directory, source, &bytes, Transport::Udp { path_limit: 1472 }, true, &mut counters);
        assert_eq!(counters.queries, 1, "{name}");
        if let Outcome::Answer(answer) = &outcome {
            let limit = Message::from_vec(&bytes).ok().and_then(|m| m.edns.map(|e| usize::from(e.max_payload())));
            assert!(answer.len() <= limit.unwrap_or(512).max(512), "{name}: a {}-byte UDP answer", answer.len());
        }
        let answer = match (&outcome, expect) {
            (Outcome::Drop, Expect::Drop) => continue,
            (Outcome::Forward(upstreams), Expect::Forward) => {
                assert_eq!(upstreams[..], [DAEMON_UPSTREAM], "{name}");
                continue;
            }
            (Outcome::Answer(bytes), _) => Message::from_vec(bytes).unwrap_or_else(|e| panic!("{name}: {e}")),
            _ => panic!("{name}: expected {expect:?}, got {outcome:?}"),
        };
        assert_eq!(answer.metadata.message_type, MessageType::Response, "{name}");
        assert_eq!(answer.metadata.id, id(index), "{name}");
        let (rcode, want): (ResponseCode, &[&str]) = match expect {
            Expect::Local(want) => (ResponseCode::NoError, want),
            Expect::NoData => (ResponseCode::NoError, &[]),
            Expect::NxDomain => (ResponseCode::NXDomain, &[]),
            Expect::FormErr => (ResponseCode::FormErr, &[]),
            Expect::NotImp => (ResponseCode::NotImp, &[]),
            Expect::Forward | Expect::Drop => panic!("{name}: expected {expect:?}, got {outcome:?}"),
        };
        assert_eq!(answer.metadata.response_code, rcode, "{name}");
        assert_eq!(records(&answer), want, "{name}");
        let request = Message::from_vec(&bytes).ok();
        let edns = request.as_ref().is_some_and(|m| m.edns.is_some());
        assert_eq!(answer.edns.is_some(), edns, "{name}: EDNS answered with EDNS");
    }
}

#[test]
fn every_seed_is_checked() {
    corpus().assert_names(SEEDS.iter().map(|(name, _)| *name));
}

#[test]
fn response_seed_answers_the_fuzz_targets_query_in_flight() {
    let mut forwarder = Forwarder::new(4, 1_500, FORWARDER_SEED);
    let Ok(Action::Send { id, .. }) = forwarder.start(7, &IN_FLIGHT, &[UPSTREAM_1, UPSTREAM_2], false, 0) else {
        panic!("the query in flight starts");
    };
    let mut answer = seed("response_drop");
    answer[..2].copy_from_slice(&id.to_be_bytes());
    match forwarder.on_answer(UPSTREAM_1, &answer, 1) {
        Some(Action::Done { token: 7, answer: relayed, failed: false }) => {
            assert_eq!(relayed[..2], [0xbe, 0xef]);
            assert_eq!(relayed[2..], answer[2..]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
#[ignore = "writes the seed corpus; run with VSWITCH_REGENERATE_SEEDS=1"]
fn regenerate_seeds() {
    corpus()
        .regenerate(|| SEEDS.into_iter().enumerate().map(|(index, (name, _))| (name, build(index, name))).collect());
}
