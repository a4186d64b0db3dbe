//! The resolver and the forwarder through their public API, with real DNS
//! messages built and read back by hickory-proto.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use dns::{Action, Asker, Counters, Directory, ForwardError, Forwarder, Outcome, Resolver, Source, Transport};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

const WEB: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);
const WORKER: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 3);
const PG: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 2);
const WEB_PORT: u32 = 0;
const PG_PORT: u32 = 3;
const UDP: Transport = Transport::Udp { path_limit: 1472 };

fn upstream(n: u8) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, n], 53))
}

/// Networks app (web, worker; alias api on both) and db (pg); web is on
/// app, pg on db and app is internal-only for nobody.
fn directory() -> Directory {
    let mut d = Directory::new();
    d.add_network(1, "app", "10.10.0.0/24".parse().unwrap());
    d.add_network(2, "db", "10.20.0.0/24".parse().unwrap());
    d.add_endpoint(1, "web", &["api".into()], WEB);
    d.add_endpoint(1, "worker", &["api".into()], WORKER);
    d.add_endpoint(2, "pg", &[], PG);
    let none: Arc<[SocketAddr]> = Arc::from(Vec::new());
    d.add_asker(
        WEB_PORT,
        Asker {
            address: Some(WEB),
            address6: None,
            network: 1,
            scope: vec![1],
            forwarding: true,
            upstreams: none.clone(),
        },
    );
    d.add_asker(
        PG_PORT,
        Asker { address: Some(PG), address6: None, network: 2, scope: vec![2], forwarding: false, upstreams: none },
    );
    d
}

fn query(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m.to_vec().unwrap()
}

fn answer(outcome: Outcome) -> Message {
    match outcome {
        Outcome::Answer(bytes) => Message::from_vec(&bytes).expect("answer parses"),
        other => panic!("expected an answer, got {other:?}"),
    }
}

fn addresses(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

struct Harness {
    directory: Directory,
    resolver: Resolver,
    counters: Counters,
}

impl Harness {
    fn new() -> Harness {
        Harness { directory: directory(), resolver: Resolver::new(vec![upstream(1)]), counters: Counters::default() }
    }

    fn ask(&mut self, port: u32, src: Ipv4Addr, bytes: &[u8]) -> Outcome {
        self.resolver.resolve(
            &self.directory,
            Source::Port { port, address: IpAddr::V4(src) },
            bytes,
            UDP,
            true,
            &mut self.counters,
        )
    }
}

#[test]
fn names_aliases_and_network_suffixes_answer_locally() {
    let mut h = Harness::new();
    let m = answer(h.ask(WEB_PORT, WEB, &query(7, "WORKER.", RecordType::A)));
    assert_eq!((m.metadata.id, m.metadata.response_code), (7, ResponseCode::NoError));
    assert!(m.metadata.authoritative && m.metadata.recursion_available && m.metadata.recursion_desired);
    assert_eq!(addresses(&m), [WORKER]);
    assert_eq!(m.answers[0].ttl, dns::TTL);
    assert_eq!(m.answers[0].name, Name::from_ascii("WORKER.").unwrap(), "the owner name echoes the question");
    assert_eq!(m.queries.len(), 1);
    let m = answer(h.ask(WEB_PORT, WEB, &query(8, "web.app.", RecordType::A)));
    assert_eq!(addresses(&m), [WEB]);
    assert_eq!(h.counters.answered_locally, 2);
    assert_eq!(h.counters.queries, 2);
}

#[test]
fn shared_alias_round_robin() {
    let mut h = Harness::new();
    let first = addresses(&answer(h.ask(WEB_PORT, WEB, &query(1, "api.", RecordType::A))));
    let second = addresses(&answer(h.ask(WEB_PORT, WEB, &query(2, "api.", RecordType::A))));
    assert_eq!(first, [WEB, WORKER]);
    assert_eq!(second, [WORKER, WEB]);
    // getaddrinfo asks A and AAAA together: only A answers move the rotation.
    let _ = h.ask(WEB_PORT, WEB, &query(3, "api.", RecordType::AAAA));
    let third = addresses(&answer(h.ask(WEB_PORT, WEB, &query(4, "api.", RecordType::A))));
    assert_eq!(third, [WEB, WORKER]);
}

#[test]
fn known_name_other_type_is_nodata_never_forwarded() {
    let mut h = Harness::new();
    for qtype in [RecordType::AAAA, RecordType::MX, RecordType::TXT] {
        let m = answer(h.ask(WEB_PORT, WEB, &query(3, "web.", qtype)));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
    }
    assert_eq!((h.counters.nodata, h.counters.forwarded), (3, 0));
}

#[test]
fn reverse_lookups() {
    let mut h = Harness::new();
    let m = answer(h.ask(WEB_PORT, WEB, &query(4, "3.0.10.10.in-addr.arpa.", RecordType::PTR)));
    match &m.answers[0].data {
        RData::PTR(p) => assert_eq!(p.0, Name::from_ascii("worker.app.").unwrap()),
        other => panic!("{other:?}"),
    }
    let m = answer(h.ask(WEB_PORT, WEB, &query(5, "99.0.10.10.in-addr.arpa.", RecordType::PTR)));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // Another network's subnet is not the asker's: forwarded like any name.
    assert!(matches!(h.ask(WEB_PORT, WEB, &query(6, "2.0.20.10.in-addr.arpa.", RecordType::PTR)), Outcome::Forward(_)));
}

#[test]
fn names_of_other_networks_are_forwarded_or_nxdomain_without_forwarding() {
    let mut h = Harness::new();
    match h.ask(WEB_PORT, WEB, &query(9, "pg.", RecordType::A)) {
        Outcome::Forward(upstreams) => assert_eq!(&upstreams[..], [upstream(1)]),
        other => panic!("{other:?}"),
    }
    // pg's sandbox is on an internal network only: no forwarding.
    let m = answer(h.ask(PG_PORT, PG, &query(10, "web.", RecordType::A)));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(!m.metadata.recursion_available);
    let m = answer(h.ask(PG_PORT, PG, &query(11, "example.com.", RecordType::A)));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!((h.counters.forwarded, h.counters.nxdomain), (1, 2));
}

#[test]
fn askers_own_upstreams_and_no_upstream_at_all() {
    let mut d = directory();
    let own: Arc<[SocketAddr]> = Arc::from(vec![upstream(9)]);
    d.add_asker(
        6,
        Asker { address: Some(WORKER), address6: None, network: 1, scope: vec![1], forwarding: true, upstreams: own },
    );
    let resolver = Resolver::new(Vec::new());
    let mut c = Counters::default();
    let q = query(1, "example.com.", RecordType::A);
    match resolver.resolve(&d, Source::Port { port: 6, address: IpAddr::V4(WORKER) }, &q, UDP, true, &mut c) {
        Outcome::Forward(u) => assert_eq!(&u[..], [upstream(9)]),
        other => panic!("{other:?}"),
    }
    let m =
        answer(resolver.resolve(&d, Source::Port { port: WEB_PORT, address: IpAddr::V4(WEB) }, &q, UDP, true, &mut c));
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(c.upstream_failures, 1);
    let m = answer(Resolver::new(vec![upstream(1)]).resolve(
        &d,
        Source::Port { port: 6, address: IpAddr::V4(WORKER) },
        &q,
        UDP,
        false,
        &mut c,
    ));
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert_eq!(c.refused_over_limit, 1);
}

#[test]
fn spoofed_and_unknown_sources_are_refused() {
    let mut h = Harness::new();
    // pg's port with web's address: nothing of web's scope.
    let m = answer(h.ask(PG_PORT, WEB, &query(1, "worker.", RecordType::A)));
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(m.answers.is_empty());
    let m = answer(h.ask(42, WEB, &query(2, "worker.", RecordType::A)));
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert_eq!(h.counters.refused, 2);
    // TCP clients are known by address on the network.
    let q = query(3, "worker.", RecordType::A);
    let tcp = |h: &mut Harness, net, src| {
        h.resolver.resolve(
            &h.directory,
            Source::Network { network: net, address: IpAddr::V4(src) },
            &q,
            Transport::Tcp,
            true,
            &mut h.counters,
        )
    };
    assert_eq!(addresses(&answer(tcp(&mut h, 1, WEB))), [WORKER]);
    assert_eq!(answer(tcp(&mut h, 2, WEB)).metadata.response_code, ResponseCode::Refused);
}

#[test]
fn malformed_messages() {
    let mut h = Harness::new();
    assert_eq!(h.ask(WEB_PORT, WEB, &[1, 2, 3]), Outcome::Drop, "no header: nothing to answer");
    // A header with a question count but no question: FORMERR with the ID.
    let m = answer(h.ask(WEB_PORT, WEB, &[0xab, 0xcd, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0]));
    assert_eq!((m.metadata.id, m.metadata.response_code), (0xabcd, ResponseCode::FormErr));
    // A compression pointer to itself.
    let mut looped = vec![0, 9, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1];
    assert_eq!(answer(h.ask(WEB_PORT, WEB, &looped)).metadata.response_code, ResponseCode::FormErr);
    // A label longer than the message.
    looped[12] = 63;
    assert_eq!(answer(h.ask(WEB_PORT, WEB, &looped)).metadata.response_code, ResponseCode::FormErr);
    // A response sent to the server.
    let mut response = query(5, "web.", RecordType::A);
    response[2] |= 0x80;
    assert_eq!(h.ask(WEB_PORT, WEB, &response), Outcome::Drop);
    // Two questions.
    let mut m = Message::new(6, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii("web.").unwrap(), RecordType::A));
    m.add_query(Query::query(Name::from_ascii("api.").unwrap(), RecordType::A));
    assert_eq!(answer(h.ask(WEB_PORT, WEB, &m.to_vec().unwrap())).metadata.response_code, ResponseCode::FormErr);
    // Not a QUERY.
    let mut notify = query(7, "web.", RecordType::A);
    notify[2] = (4 << 3) | 1;
    assert_eq!(answer(h.ask(WEB_PORT, WEB, &notify)).metadata.response_code, ResponseCode::NotImp);
    assert_eq!(h.counters.malformed, 6, "everything but NOTIFY");
}

#[test]
fn udp_answers_that_do_not_fit_are_truncated_and_edns_is_answered() {
    let mut d = Directory::new();
    d.add_network(1, "big", "10.30.0.0/16".parse().unwrap());
    for i in 0..80u8 {
        d.add_endpoint(1, &format!("r{i}"), &["many".into()], Ipv4Addr::new(10, 30, 1, i + 1));
    }
    let none: Arc<[SocketAddr]> = Arc::from(Vec::new());
    d.add_asker(
        0,
        Asker {
            address: Some(Ipv4Addr::new(10, 30, 1, 1)),
            address6: None,
            network: 1,
            scope: vec![1],
            forwarding: true,
            upstreams: none,
        },
    );
    let resolver = Resolver::new(Vec::new());
    let mut c = Counters::default();
    let src = Ipv4Addr::new(10, 30, 1, 1);
    let plain = query(1, "many.", RecordType::A);
    let m = answer(resolver.resolve(&d, Source::Port { port: 0, address: IpAddr::V4(src) }, &plain, UDP, true, &mut c));
    assert!(m.metadata.truncation && m.answers.is_empty(), "80 A records do not fit 512 bytes");
    assert_eq!(c.truncated, 1);
    let mut edns_query = Message::from_vec(&plain).unwrap();
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    edns_query.set_edns(edns);
    let m = answer(resolver.resolve(
        &d,
        Source::Port { port: 0, address: IpAddr::V4(src) },
        &edns_query.to_vec().unwrap(),
        UDP,
        true,
        &mut c,
    ));
    assert!(!m.metadata.truncation);
    assert_eq!(addresses(&m).len(), 80);
    assert_eq!(m.edns.as_ref().map(|e| e.max_payload()), Some(dns::EDNS_PAYLOAD));
    let m = answer(resolver.resolve(
        &d,
        Source::Network { network: 1, address: IpAddr::V4(src) },
        &plain,
        Transport::Tcp,
        true,
        &mut c,
    ));
    assert_eq!(addresses(&m).len(), 80, "TCP carries it all");
}

#[test]
fn non_internet_classes_are_not_ours() {
    let mut h = Harness::new();
    let mut m = Message::new(1, MessageType::Query, OpCode::Query);
    let mut q = Query::query(Name::from_ascii("web.").unwrap(), RecordType::TXT);
    q.set_query_class(DNSClass::CH);
    m.add_query(q);
    assert!(matches!(h.ask(WEB_PORT, WEB, &m.to_vec().unwrap()), Outcome::Forward(_)));
}

// ---- forwarding ----

fn sent(action: Action) -> (u16, SocketAddr, Vec<u8>) {
    match action {
        Action::Send { id, upstream, query, .. } => (id, upstream, query),
        other => panic!("expected a send, got {other:?}"),
    }
}

/// The upstream's answer to `query` (ID and question as sent) with `rcode`.
fn upstream_answer(query: &[u8], rcode: ResponseCode, address: Ipv4Addr) -> Vec<u8> {
    let q = Message::from_vec(query).unwrap();
    let mut m = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
    m.metadata.response_code = rcode;
    m.metadata.recursion_available = true;
    m.add_queries(q.queries.clone());
    if rcode == ResponseCode::NoError {
        m.add_answer(hickory_proto::rr::Record::from_rdata(
            q.queries[0].name().clone(),
            300,
            RData::A(hickory_proto::rr::rdata::A(address)),
        ));
    }
    m.to_vec().unwrap()
}

#[test]
fn forwarded_answers_are_relayed_with_the_client_id() {
    let mut f = Forwarder::new(16, 1500, 42);
    let q = query(0x1234, "example.com.", RecordType::A);
    let (id, to, sent_query) = sent(f.start(9, &q, &[upstream(1), upstream(2)], false, 0).unwrap());
    assert_eq!(to, upstream(1));
    assert_eq!(&sent_query[2..], &q[2..], "only the ID changes");
    let a = upstream_answer(&sent_query, ResponseCode::NoError, Ipv4Addr::new(192, 0, 2, 80));
    assert_eq!(f.on_answer(upstream(2), &a, 10), None, "not from the upstream asked");
    let mut other_question = a.clone();
    other_question[13] ^= 0x01;
    assert_eq!(f.on_answer(upstream(1), &other_question, 10), None, "another question");
    match f.on_answer(upstream(1), &a, 10) {
        Some(Action::Done { token: 9, answer, failed: false }) => {
            assert_eq!(&answer[..2], &0x1234u16.to_be_bytes());
            assert_eq!(&answer[2..], &a[2..], "relayed unchanged");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(f.in_flight(), 0);
    assert_eq!(f.on_answer(upstream(1), &a, 20), None, "late duplicate");
    let _ = id;
}

#[test]
fn failover_on_timeout_servfail_refused_and_unreachable_then_servfail() {
    let mut f = Forwarder::new(16, 1500, 7);
    let q = query(77, "example.com.", RecordType::A);
    let ups = [upstream(1), upstream(2), upstream(3), upstream(4)];
    let (_, to, first) = sent(f.start(1, &q, &ups, false, 0).unwrap());
    assert_eq!(to, upstream(1));
    assert_eq!(f.next_deadline(), Some(1500));
    let mut out = Vec::new();
    f.expire(1499, &mut out);
    assert!(out.is_empty());
    f.expire(1500, &mut out);
    let (_, to, _) = sent(out.pop().unwrap());
    assert_eq!(to, upstream(2));
    let refused = upstream_answer(&first, ResponseCode::Refused, Ipv4Addr::UNSPECIFIED);
    let (_, to, _) = sent(f.on_answer(upstream(2), &refused, 1600).unwrap());
    assert_eq!(to, upstream(3));
    match f.on_unreachable(upstream(3), 1700).pop() {
        Some(Action::Done { token: 1, answer, failed: true }) => {
            let m = Message::from_vec(&answer).unwrap();
            assert_eq!((m.metadata.id, m.metadata.response_code), (77, ResponseCode::ServFail));
            assert_eq!(m.queries.len(), 1);
        }
        other => panic!("the fourth upstream is never asked: {other:?}"),
    }
    assert_eq!(f.in_flight(), 0);
}

#[test]
fn tcp_failures_and_bounds() {
    let mut f = Forwarder::new(2, 1500, 1);
    let q = query(1, "example.com.", RecordType::A);
    let a = f.start(1, &q, &[upstream(1), upstream(1), upstream(2)], true, 0).unwrap();
    let (id, _, _) = sent(a.clone());
    assert!(matches!(a, Action::Send { tcp: true, .. }));
    let (_, to, _) = sent(f.on_failure(id, 5).unwrap());
    assert_eq!(to, upstream(2), "duplicates are asked once");
    assert!(f.on_unreachable(upstream(2), 6).is_empty(), "ICMP on the UDP socket says nothing of TCP queries");
    f.start(2, &q, &[upstream(1)], false, 0).unwrap();
    assert_eq!(f.start(3, &q, &[upstream(1)], false, 0), Err(ForwardError::Full(2)));
    assert_eq!(f.start(3, &[0; 5], &[upstream(1)], false, 0).unwrap_err(), ForwardError::Full(2));
    let mut g = Forwarder::new(2, 1500, 1);
    assert_eq!(g.start(1, &[0; 5], &[upstream(1)], false, 0), Err(ForwardError::NotAQuery));
    assert_eq!(g.start(1, &q, &[], false, 0), Err(ForwardError::NoUpstream));
}

#[test]
fn a_cancelled_query_is_done_without_an_answer() {
    let mut f = Forwarder::new(16, 1500, 5);
    let q = query(5, "example.com.", RecordType::A);
    let (id, _, sent_query) = sent(f.start(4, &q, &[upstream(1), upstream(2)], false, 0).unwrap());
    assert!(f.cancel(id));
    assert!(!f.cancel(id), "once");
    assert_eq!((f.in_flight(), f.next_deadline()), (0, None));
    let mut out = Vec::new();
    f.expire(10_000, &mut out);
    assert!(out.is_empty(), "no failover, no SERVFAIL: {out:?}");
    let a = upstream_answer(&sent_query, ResponseCode::NoError, Ipv4Addr::new(192, 0, 2, 80));
    assert_eq!(f.on_answer(upstream(1), &a, 20), None, "its answer is a stray");
}

#[test]
fn upstream_ids_are_unique_in_flight() {
    let mut f = Forwarder::new(4096, 1500, 99);
    let q = query(1, "example.com.", RecordType::A);
    let mut ids = std::collections::HashSet::new();
    for token in 0..4096 {
        let (id, _, _) = sent(f.start(token, &q, &[upstream(1)], false, 0).unwrap());
        assert!(ids.insert(id), "ID {id} reused while in flight");
    }
}

#[test]
fn relayed_answers_too_big_for_the_path_are_cut_to_the_question_with_tc() {
    let q = query(0x4242, "big.example.", RecordType::A);
    let mut big = Message::from_vec(&upstream_answer(&q, ResponseCode::NoError, Ipv4Addr::new(192, 0, 2, 1))).unwrap();
    for i in 0..100u8 {
        big.add_answer(hickory_proto::rr::Record::from_rdata(
            Name::from_ascii("big.example.").unwrap(),
            300,
            RData::A(hickory_proto::rr::rdata::A(Ipv4Addr::new(192, 0, 2, i))),
        ));
    }
    let bytes = big.to_vec().unwrap();
    assert_eq!(&dns::fit_udp(&bytes, bytes.len())[..], &bytes[..], "fits: unchanged");
    let cut = dns::fit_udp(&bytes, 512);
    let m = Message::from_vec(&cut).unwrap();
    assert!(m.metadata.truncation && m.answers.is_empty());
    assert_eq!((m.metadata.id, m.queries.len()), (0x4242, 1));
    assert!(m.metadata.recursion_available, "other flags kept");
}

#[test]
fn edns_versions_other_than_zero_get_badvers() {
    let mut h = Harness::new();
    let mut m = Message::from_vec(&query(1, "web.", RecordType::A)).unwrap();
    let mut edns = Edns::new();
    edns.set_version(1);
    m.set_edns(edns);
    let a = answer(h.ask(WEB_PORT, WEB, &m.to_vec().unwrap()));
    assert_eq!(u16::from(a.metadata.response_code), 16, "BADVERS (16, which hickory also names BADSIG)");
    assert!(a.answers.is_empty() && a.edns.is_some());
}

#[test]
fn answers_with_another_type_are_not_accepted() {
    let mut f = Forwarder::new(4, 1500, 3);
    // HTTPS (65) and type 97 differ only in the bit ASCII case uses.
    let q = query(5, "example.com.", RecordType::HTTPS);
    let (_, to, sent_query) = sent(f.start(1, &q, &[upstream(1)], false, 0).unwrap());
    let mut a = upstream_answer(&sent_query, ResponseCode::NoError, Ipv4Addr::new(192, 0, 2, 1));
    let qtype_at = 12 + "example.com.".len() + 1;
    assert_eq!(a[qtype_at + 1], 65);
    a[qtype_at + 1] = 97;
    assert_eq!(f.on_answer(to, &a, 1), None);
}

const WEB6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xa, 0, 0, 0, 0, 0, 2);
const NS6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xb, 0, 0, 0, 0, 0, 2);
const NS6_PORT: u32 = 9;

/// The test directory with app dual-stack (web has fd00:a::2; worker
/// stays IPv4-only) and an IPv6-only network v6 (ns6 at fd00:b::2, also
/// on app), with web asking over both families and ns6 over IPv6 alone.
fn dual_stack() -> Harness {
    let mut h = Harness::new();
    let d = &mut h.directory;
    d.add_network6(1, "app", "fd00:a::/64".parse().unwrap());
    d.add_endpoint(1, "web", &["api".into()], WEB6);
    d.add_network6(4, "v6", "fd00:b::/64".parse().unwrap());
    d.add_endpoint(4, "ns6", &[], NS6);
    let none: Arc<[SocketAddr]> = Arc::from(Vec::new());
    let web = Asker {
        address: Some(WEB),
        address6: Some(WEB6),
        network: 1,
        scope: vec![1],
        forwarding: true,
        upstreams: none.clone(),
    };
    d.add_asker(WEB_PORT, web);
    let ns6 =
        Asker { address: None, address6: Some(NS6), network: 4, scope: vec![4], forwarding: true, upstreams: none };
    d.add_asker(NS6_PORT, ns6);
    h
}

fn ask6(h: &mut Harness, port: u32, src: IpAddr, q: &[u8]) -> Outcome {
    h.resolver.resolve(&h.directory, Source::Port { port, address: src }, q, UDP, true, &mut h.counters)
}

fn addresses6(m: &Message) -> Vec<Ipv6Addr> {
    m.answers
        .iter()
        .filter_map(|r| match r.data {
            RData::AAAA(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

#[test]
fn aaaa_records_of_ipv6_endpoints_over_either_family() {
    let mut h = dual_stack();
    for src in [IpAddr::V4(WEB), IpAddr::V6(WEB6)] {
        let m = answer(ask6(&mut h, WEB_PORT, src, &query(1, "web.", RecordType::AAAA)));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        assert_eq!(addresses6(&m), [WEB6]);
        assert!(addresses(&m).is_empty(), "AAAA carries no A");
        let m = answer(ask6(&mut h, WEB_PORT, src, &query(2, "web.app.", RecordType::A)));
        assert_eq!(addresses(&m), [WEB], "A stays what it was");
    }
    let m = answer(ask6(&mut h, WEB_PORT, WEB6.into(), &query(3, "web.", RecordType::ANY)));
    assert_eq!((addresses(&m), addresses6(&m)), (vec![WEB], vec![WEB6]), "ANY: both");
    assert_eq!(h.counters.nodata, 0);
}

#[test]
fn a_name_of_one_family_is_nodata_for_the_other() {
    let mut h = dual_stack();
    let m = answer(ask6(&mut h, WEB_PORT, WEB6.into(), &query(1, "worker.", RecordType::AAAA)));
    assert_eq!((m.metadata.response_code, m.answers.len()), (ResponseCode::NoError, 0), "worker has no IPv6");
    let m = answer(ask6(&mut h, NS6_PORT, NS6.into(), &query(2, "ns6.", RecordType::A)));
    assert_eq!((m.metadata.response_code, m.answers.len()), (ResponseCode::NoError, 0), "ns6 has no IPv4");
    let m = answer(ask6(&mut h, NS6_PORT, NS6.into(), &query(3, "ns6.v6.", RecordType::AAAA)));
    assert_eq!(addresses6(&m), [NS6]);
    assert_eq!((h.counters.nodata, h.counters.forwarded), (2, 0));
    // Network-scoped: ns6's scope has no web; web's has no ns6.
    assert!(matches!(ask6(&mut h, NS6_PORT, NS6.into(), &query(4, "web.", RecordType::AAAA)), Outcome::Forward(_)));
    assert!(matches!(ask6(&mut h, WEB_PORT, WEB6.into(), &query(5, "ns6.", RecordType::AAAA)), Outcome::Forward(_)));
}

#[test]
fn ip6_arpa_pointers() {
    let mut h = dual_stack();
    let name = format!("{}.", dns::reverse_name(WEB6));
    let m = answer(ask6(&mut h, WEB_PORT, WEB6.into(), &query(1, &name, RecordType::PTR)));
    match &m.answers[..] {
        [record] => {
            assert_eq!(record.data, RData::PTR(hickory_proto::rr::rdata::PTR(Name::from_ascii("web.app.").unwrap())))
        }
        other => panic!("{other:?}"),
    }
    let unknown = format!("{}.", dns::reverse_name(Ipv6Addr::new(0xfd00, 0xa, 0, 0, 0, 0, 0, 0x99)));
    let m = answer(ask6(&mut h, WEB_PORT, WEB6.into(), &query(2, &unknown, RecordType::PTR)));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "the switch owns the subnet's zone");
    let outside = format!("{}.", dns::reverse_name(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)));
    assert!(matches!(ask6(&mut h, WEB_PORT, WEB6.into(), &query(3, &outside, RecordType::PTR)), Outcome::Forward(_)));
}

#[test]
fn outside_aaaa_is_forwarded_and_ipv6_sources_are_checked() {
    let mut h = dual_stack();
    match ask6(&mut h, NS6_PORT, NS6.into(), &query(1, "example.org.", RecordType::AAAA)) {
        Outcome::Forward(upstreams) => assert_eq!(&upstreams[..], [upstream(1)]),
        other => panic!("{other:?}"),
    }
    // ns6's port with web's IPv6 address, or an IPv4 address it does not have.
    for src in [IpAddr::V6(WEB6), IpAddr::V4(WEB), IpAddr::V4(Ipv4Addr::UNSPECIFIED)] {
        let m = answer(ask6(&mut h, NS6_PORT, src, &query(2, "ns6.", RecordType::AAAA)));
        assert_eq!(m.metadata.response_code, ResponseCode::Refused, "{src}");
    }
    // TCP clients by IPv6 address on their network.
    let q = query(3, "web.", RecordType::AAAA);
    let tcp = |h: &mut Harness, network, address: Ipv6Addr| {
        let source = Source::Network { network, address: address.into() };
        h.resolver.resolve(&h.directory, source, &q, Transport::Tcp, true, &mut h.counters)
    };
    assert_eq!(addresses6(&answer(tcp(&mut h, 1, WEB6))), [WEB6]);
    assert_eq!(answer(tcp(&mut h, 4, WEB6)).metadata.response_code, ResponseCode::Refused);
    assert_eq!(h.counters.refused, 4);
}
