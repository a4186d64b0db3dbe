//! Answering one query: bytes and who asked in, an answer (bytes), "forward
//! this to these upstreams", or a drop out. No sockets, no clock.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::counters::Counters;
use crate::directory::{Advance, Directory, Found, NetKey, PortKey};

/// Time to live of the switch's own records, in seconds. Short, because
/// addresses are handed out again as soon as an endpoint goes (IPAM takes
/// the lowest free address), and a stub cache inside a container
/// (systemd-resolved, nscd, a JVM) must not keep a replaced container's
/// address for long; answering locally costs microseconds, so a short TTL
/// costs nothing. Docker uses 600 s.
pub const TTL: u32 = 60;

/// The UDP payload size the switch advertises in EDNS answers (the DNS Flag
/// Day 2020 value: fits any path without fragmentation).
pub const EDNS_PAYLOAD: u16 = 1232;

/// The classic DNS limit for UDP answers to clients without EDNS.
const CLASSIC_UDP_LIMIT: usize = 512;

/// Who sent a query, as the datapath knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A UDP query that arrived on endpoint port `port` from `address`,
    /// which must be the endpoint's own (of the family it asked over).
    Port {
        /// The ingress port.
        port: PortKey,
        /// The source address (IPv4 or IPv6).
        address: IpAddr,
    },
    /// A TCP client on `network` at `address` (the datapath lets only
    /// frames with their port's own address reach the DNS port).
    Network {
        /// The network whose gateway was asked.
        network: NetKey,
        /// The client's address (IPv4 or IPv6).
        address: IpAddr,
    },
}

/// How the answer travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP; answers larger than the client accepts (512 bytes, or its EDNS
    /// size) and than `path_limit` (the network's MTU less IP and UDP
    /// headers) are sent truncated (TC) so the client retries over TCP.
    Udp {
        /// Largest datagram payload the path carries.
        path_limit: usize,
    },
    /// TCP: any size up to 65,535 bytes.
    Tcp,
}

/// What to do with a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Send these bytes back to the client.
    Answer(Vec<u8>),
    /// Not the switch's name: forward the query, unchanged, to these
    /// upstreams in order (failing over on timeout, SERVFAIL or REFUSED).
    Forward(Arc<[SocketAddr]>),
    /// Send nothing (counted): not a DNS query at all.
    Drop,
}

/// The embedded DNS server's policy: the daemon's upstreams and the rules;
/// the records live in the [`Directory`].
#[derive(Debug, Clone)]
pub struct Resolver {
    upstreams: Arc<[SocketAddr]>,
}

impl Resolver {
    /// A resolver forwarding to `upstreams` (the daemon's) for askers
    /// without their own.
    pub fn new(upstreams: Vec<SocketAddr>) -> Resolver {
        Resolver { upstreams: upstreams.into() }
    }

    /// The daemon's upstreams.
    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// Decides what to do with `query`, sent by `source`. `forward_room` says whether another query may be
    /// forwarded now (the daemon bounds queries in flight); without room a
    /// query that would be forwarded is refused. Every outcome is counted
    /// in `counters`.
    pub fn resolve(
        &self,
        directory: &Directory,
        source: Source,
        query: &[u8],
        transport: Transport,
        forward_room: bool,
        counters: &mut Counters,
    ) -> Outcome {
        counters.queries += 1;
        let message = match Message::from_vec(query) {
            Ok(m) if m.metadata.message_type == MessageType::Query => m,
            Ok(_) => {
                // A response sent to a server: nothing to answer.
                counters.malformed += 1;
                return Outcome::Drop;
            }
            Err(_) => {
                counters.malformed += 1;
                return error_response(query, ResponseCode::FormErr).map_or(Outcome::Drop, Outcome::Answer);
            }
        };
        let asker = match source {
            Source::Port { port, address } => directory.asker(port).filter(|_| directory.owns_address(port, address)),
            Source::Network { network, address } => directory.asker_by_address(network, address),
        };
        let Some(asker) = asker else {
            counters.refused += 1;
            return Outcome::Answer(respond(&message, ResponseCode::Refused, Vec::new(), false, transport, counters));
        };
        if message.metadata.op_code != OpCode::Query {
            counters.refused += 1;
            return Outcome::Answer(respond(&message, ResponseCode::NotImp, Vec::new(), false, transport, counters));
        }
        let [question] = message.queries.as_slice() else {
            counters.malformed += 1;
            return Outcome::Answer(respond(&message, ResponseCode::FormErr, Vec::new(), false, transport, counters));
        };
        if let Some(edns) = &message.edns
            && edns.version() != 0
        {
            // RFC 6891 6.1.3: only EDNS version 0 exists.
            counters.malformed += 1;
            // hickory puts the extended RCODE's upper bits in the OPT record.
            return Outcome::Answer(respond(&message, ResponseCode::BADVERS, Vec::new(), false, transport, counters));
        }
        let qtype = question.query_type();
        let found = if question.query_class() == DNSClass::IN {
            let advance = match qtype {
                RecordType::A => Advance::V4,
                RecordType::AAAA => Advance::V6,
                RecordType::ANY => Advance::Both,
                _ => Advance::None,
            };
            directory.lookup(&asker.scope, &question.name().to_ascii(), advance)
        } else {
            None
        };
        let qname = question.name().clone();
        let local = |rcode, records, counters: &mut Counters| {
            counters.answered_locally += 1;
            Outcome::Answer(respond(&message, rcode, records, asker.forwarding, transport, counters))
        };
        match found {
            Some(Found::Addresses { v4, v6 })
                if matches!(qtype, RecordType::A | RecordType::AAAA | RecordType::ANY) =>
            {
                let v4 = v4.into_iter().filter(|_| qtype != RecordType::AAAA).map(|a| RData::A(A(a)));
                let v6 = v6.into_iter().filter(|_| qtype != RecordType::A).map(|a| RData::AAAA(AAAA(a)));
                let records: Vec<Record> =
                    v4.chain(v6).map(|data| Record::from_rdata(qname.clone(), TTL, data)).collect();
                if records.is_empty() {
                    // The name exists with the other family's addresses only.
                    counters.nodata += 1;
                }
                local(ResponseCode::NoError, records, counters)
            }
            Some(Found::Pointer(target)) if matches!(qtype, RecordType::PTR | RecordType::ANY) => {
                match Name::from_ascii(format!("{target}.")) {
                    Ok(target) => {
                        let record = Record::from_rdata(qname, TTL, RData::PTR(PTR(target)));
                        local(ResponseCode::NoError, vec![record], counters)
                    }
                    // A sandbox or network name that is no DNS name: say
                    // there is no such record rather than forward it.
                    Err(_) => {
                        counters.nodata += 1;
                        local(ResponseCode::NoError, Vec::new(), counters)
                    }
                }
            }
            Some(Found::Addresses { .. } | Found::Pointer(_)) => {
                counters.nodata += 1;
                local(ResponseCode::NoError, Vec::new(), counters)
            }
            Some(Found::NoSuchAddress) => {
                counters.nxdomain += 1;
                local(ResponseCode::NXDomain, Vec::new(), counters)
            }
            None if !asker.forwarding => {
                counters.nxdomain += 1;
                local(ResponseCode::NXDomain, Vec::new(), counters)
            }
            None => {
                let upstreams =
                    if asker.upstreams.is_empty() { self.upstreams.clone() } else { asker.upstreams.clone() };
                if upstreams.is_empty() {
                    counters.upstream_failures += 1;
                    return Outcome::Answer(respond(
                        &message,
                        ResponseCode::ServFail,
                        Vec::new(),
                        true,
                        transport,
                        counters,
                    ));
                }
                if !forward_room {
                    counters.refused_over_limit += 1;
                    return Outcome::Answer(respond(
                        &message,
                        ResponseCode::Refused,
                        Vec::new(),
                        true,
                        transport,
                        counters,
                    ));
                }
                counters.forwarded += 1;
                Outcome::Forward(upstreams)
            }
        }
    }
}

/// Encodes the answer to `query`: its question, `records`, EDNS if it used
/// EDNS, and the switch's flags (authoritative for what it answers itself).
/// A UDP answer too large for the client goes out truncated (TC, no
/// records).
fn respond(
    query: &Message,
    rcode: ResponseCode,
    records: Vec<Record>,
    recursion_available: bool,
    transport: Transport,
    counters: &mut Counters,
) -> Vec<u8> {
    let mut message = Message::new(query.metadata.id, MessageType::Response, query.metadata.op_code);
    message.metadata = Metadata::response_from_request(&query.metadata);
    message.metadata.authoritative = rcode == ResponseCode::NoError || rcode == ResponseCode::NXDomain;
    message.metadata.recursion_available = recursion_available;
    message.metadata.response_code = rcode;
    message.add_queries(query.queries.iter().cloned());
    message.add_answers(records);
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        message.set_edns(edns);
    }
    let limit = match transport {
        Transport::Udp { path_limit } => {
            let client = query.edns.as_ref().map_or(CLASSIC_UDP_LIMIT, |e| usize::from(e.max_payload()));
            client.max(CLASSIC_UDP_LIMIT).min(path_limit)
        }
        Transport::Tcp => usize::from(u16::MAX),
    };
    match message.to_vec() {
        Ok(bytes) if bytes.len() <= limit => bytes,
        _ => {
            counters.truncated += 1;
            message.answers.clear();
            // A query may carry many questions (answered FORMERR); header,
            // one question and OPT always fit 512 bytes.
            message.queries.truncate(1);
            message.metadata.truncation = true;
            message.to_vec().unwrap_or_default()
        }
    }
}

/// An error answer (`rcode`) to whatever of `query` can be read: its
/// question and EDNS when it parses, else just its ID and opcode. `None`
/// when not even a query header can be read (or it is a response), so the
/// sender gets nothing.
pub fn error_response(query: &[u8], rcode: ResponseCode) -> Option<Vec<u8>> {
    if let Ok(message) = Message::from_vec(query) {
        if message.metadata.message_type != MessageType::Query {
            return None;
        }
        let mut sink = Counters::default();
        return Some(respond(&message, rcode, Vec::new(), true, Transport::Tcp, &mut sink));
    }
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None;
    }
    let id = u16::from_be_bytes([query[0], query[1]]);
    let op_code = OpCode::from_u8((query[2] >> 3) & 0x0f);
    let mut message = Message::error_msg(id, op_code, rcode);
    message.metadata.recursion_desired = query[2] & 0x01 != 0;
    message.to_vec().ok()
}
