//! The gateway port: the network's own address, answered by the switch.

use std::net::Ipv4Addr;

use etherparse::icmpv4::DestUnreachableHeader;
use etherparse::{IcmpEchoHeader, Icmpv4Type};

use super::super::handle::Command;
use super::super::testing::frames::{arp_request, gw_mac, icmp, ip, mac, parse_udp, ping, udp};
use super::super::testing::{Harness, gateway_network};
use crate::counters::DropReason;
use crate::daemon::dns_forward::Done;

#[test]
fn the_gateway_answers_arp_and_ping() {
    let mut h = Harness::new();
    let net = h.network(gateway_network(0));
    let (a, b) = (h.endpoint(net), h.endpoint(net));
    let gw = h.gateway(net);

    let request = arp_request(mac(2), ip(2), ip(1));
    h.inject(a, &request);
    h.run_until_idle();
    assert_eq!(h.sent_frames(b), vec![request], "an ARP request is flooded like any broadcast");
    let replies = h.sent_frames(a);
    assert_eq!(replies.len(), 1);
    let mut expected = Vec::new();
    expected.extend_from_slice(&mac(2).0);
    expected.extend_from_slice(&gw_mac().0);
    expected.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2]);
    expected.extend_from_slice(&gw_mac().0);
    expected.extend_from_slice(&ip(1).octets());
    expected.extend_from_slice(&mac(2).0);
    expected.extend_from_slice(&ip(2).octets());
    assert_eq!(replies[0][..42], expected[..], "an ARP reply from the gateway's MAC for its address");
    assert_eq!(h.lookup(net, gw_mac()), Some(gw), "the gateway is learned on its port");

    h.inject(a, &ping((mac(2), ip(2)), (gw_mac(), ip(1)), 7, 1, b"harness"));
    h.run_until_idle();
    let replies = h.sent_frames(a);
    assert_eq!(replies.len(), 1);
    let reply = icmp(&replies[0]).expect("an ICMP message");
    assert_eq!((reply.src_mac, reply.dst_mac, reply.src, reply.dst), (gw_mac(), mac(2), ip(1), ip(2)));
    assert_eq!(reply.kind, Icmpv4Type::EchoReply(IcmpEchoHeader { id: 7, seq: 1 }));
    assert_eq!(reply.payload, b"harness");
    assert!(h.sent(b).is_empty(), "the echo is unicast to the asker");
}

#[test]
fn traffic_routed_out_of_a_network_without_egress_is_answered_unreachable_within_the_budget() {
    let mut h = Harness::new();
    let net = h.network(gateway_network(0));
    let a = h.endpoint(net);
    let outside = Ipv4Addr::new(192, 0, 2, 99);
    for seq in 0..60 {
        h.inject(a, &ping((mac(2), ip(2)), (gw_mac(), outside), 9, seq, b"out"));
    }
    h.run_until_idle();
    assert_eq!(h.drops(a, DropReason::NoRoute), 60);
    let answers = h.sent_frames(a);
    assert_eq!(answers.len(), 50, "a burst of 50 ICMP errors, as Linux allows");
    let first = icmp(&answers[0]).expect("an ICMP message");
    assert_eq!((first.src, first.dst), (ip(1), ip(2)));
    assert_eq!(first.kind, Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Network));

    // The budget refills at one per millisecond of virtual time.
    h.advance(std::time::Duration::from_millis(5));
    for seq in 0..10 {
        h.inject(a, &ping((mac(2), ip(2)), (gw_mac(), outside), 9, 100 + seq, b"out"));
    }
    h.run_until_idle();
    assert_eq!(h.sent_frames(a).len(), 5);
}

/// A DNS query for `name` (type A, recursion desired) with ID `id`.
fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut query = id.to_be_bytes().to_vec();
    query.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    query
}

#[test]
fn the_gateway_answers_names_it_owns_and_forwards_the_others() {
    let mut h = Harness::new();
    let net = h.network(gateway_network(0));
    let a = h.endpoint(net);
    let upstream = std::net::SocketAddr::from(([192, 0, 2, 53], 53));
    let mut directory = dns::Directory::new();
    directory.add_network(net.0, "app", "10.0.0.0/24".parse::<ctl::Ipv4Net>().expect("a subnet"));
    directory.add_endpoint(net.0, "web", &[], ip(2));
    let asker = dns::Asker {
        address: Some(ip(2)),
        address6: None,
        network: net.0,
        scope: vec![net.0],
        forwarding: true,
        upstreams: std::sync::Arc::from([upstream]),
    };
    directory.add_asker(a.0, asker);
    h.call(|reply| Command::SetDns { directory: Box::new(directory), reply });

    // A name the switch owns: answered at once, from the gateway's port 53.
    let query = dns_query(0x1234, "web");
    h.inject(a, &udp((mac(2), ip(2), 40_000), (gw_mac(), ip(1), 53), &query));
    h.run_until_idle();
    let answers = h.sent_frames(a);
    assert_eq!(answers.len(), 1);
    let answer = parse_udp(&answers[0]).expect("a UDP/IPv4 frame");
    assert_eq!((answer.src, answer.dst), ((gw_mac(), ip(1), 53), (mac(2), ip(2), 40_000)));
    let message = &answer.payload;
    assert_eq!(message[..2], [0x12, 0x34], "the query's ID");
    assert_eq!((message[2] & 0x80, message[3] & 0x0f, &message[6..8]), (0x80, 0, &[0, 1][..]), "one answer");
    assert_eq!(message[message.len() - 4..], ip(2).octets(), "web is 10.0.0.2");
    assert!(h.dns_jobs().is_empty());

    // Another name goes to the sandbox's upstream through the forwarding
    // thread (here, the test), and its answer back to the asker.
    let query = dns_query(0x5678, "example.org");
    h.inject(a, &udp((mac(2), ip(2), 40_001), (gw_mac(), ip(1), 53), &query));
    h.run_until_idle();
    assert!(h.sent(a).is_empty(), "nothing until the upstream answers");
    let jobs = h.dns_jobs();
    assert_eq!(jobs.len(), 1);
    assert_eq!((&jobs[0].query, &jobs[0].upstreams[..], jobs[0].tcp), (&query, &[upstream][..], false));
    let mut from_upstream = query.clone();
    from_upstream[2] |= 0x80;
    h.answer_dns(Done { token: jobs[0].token, answer: from_upstream.clone(), failed: false });
    h.step();
    let answers = h.sent_frames(a);
    assert_eq!(answers.len(), 1);
    let answer = parse_udp(&answers[0]).expect("a UDP/IPv4 frame");
    assert_eq!((answer.src, answer.dst), ((gw_mac(), ip(1), 53), (mac(2), ip(2), 40_001)));
    assert_eq!(answer.payload, from_upstream);
    let counters = h.snapshot().dns;
    assert_eq!(counters.len(), 1);
    assert_eq!((counters[0].1.queries, counters[0].1.answered_locally), (2, 1));
}

/// An ARP request for the gateway from outside its subnet is answered
/// when the sender's address is the asking sandbox's own on another of its
/// networks (Linux's weak host model asks that way), and ignored from
/// anyone else, as the gateway's stack ignores it.
#[test]
fn the_gateway_answers_off_subnet_arp_from_a_sandboxs_other_address_only() {
    let mut h = Harness::new();
    let net = h.network(gateway_network(0));
    let (a, b) = (h.endpoint(net), h.endpoint(net));
    let elsewhere = Ipv4Addr::new(10, 9, 0, 2);
    let mut directory = dns::Directory::new();
    for (port, n) in [(a, 2), (b, 3)] {
        let asker = dns::Asker {
            address: Some(ip(n)),
            address6: None,
            network: net.0,
            scope: vec![net.0],
            forwarding: false,
            upstreams: std::sync::Arc::from([]),
        };
        directory.add_asker(port.0, asker);
    }
    directory.set_sandbox_addresses(a.0, std::sync::Arc::from([ip(2).into(), elsewhere.into()]));
    h.call(|reply| Command::SetDns { directory: Box::new(directory), reply });

    h.inject(b, &arp_request(mac(3), elsewhere, ip(1)));
    h.run_until_idle();
    assert!(h.sent_frames(b).is_empty(), "not b's address: no answer");
    h.sent(a);
    h.inject(a, &arp_request(mac(2), elsewhere, ip(1)));
    h.run_until_idle();
    let replies = h.sent_frames(a);
    assert_eq!(replies.len(), 1, "a's own address on its other network");
    assert_eq!(replies[0][..6], mac(2).0);
    assert_eq!(replies[0][28..32], ip(1).octets(), "the gateway's address");
    assert_eq!(replies[0][38..42], elsewhere.octets(), "to the address that asked");
}
