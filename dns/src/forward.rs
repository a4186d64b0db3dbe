//! Queries in flight to upstream servers, as a state machine: the caller
//! says what arrived (an answer, a failure, the time) and gets back what to
//! send and which clients are done. The caller owns the sockets and the
//! clock.
//!
//! Each forwarded query gets an ID of its own toward the upstreams (clients
//! choose theirs independently, so two could collide), and the client's ID
//! is put back in the answer, which is otherwise relayed byte for byte
//! (flags, EDNS, TC). An answer counts only if it comes from the upstream
//! currently asked, with that ID and the same question. Timeout, SERVFAIL,
//! REFUSED or an unreachable upstream move the query to the next upstream;
//! when none is left the client gets SERVFAIL.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;

use hickory_proto::op::{Query, ResponseCode};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use crate::resolver::error_response;

/// The caller's handle for one client query (the datapath maps it to the
/// way back: a UDP client or a TCP connection).
pub type Token = u64;

/// How long one upstream gets to answer before the next is asked. With at
/// most three upstreams the client hears back within 4.5 s, before glibc's
/// resolver gives up on its first try (5 s).
pub const UPSTREAM_TIMEOUT_MS: u64 = 1_500;

/// Upstreams asked per query, at most (as Docker's embedded DNS).
pub const MAX_UPSTREAMS: usize = 3;

/// Length of a DNS header.
const HEADER_LEN: usize = 12;
/// RCODE values that mean "ask someone else".
const RCODE_SERVFAIL: u8 = 2;
const RCODE_REFUSED: u8 = 5;

/// Something for the caller to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send `query` to `upstream`: one datagram, or over TCP (the caller
    /// adds the two-byte length) when `tcp`. Report what comes back with
    /// [`Forwarder::on_answer`], a failure with [`Forwarder::on_failure`].
    Send {
        /// The query's ID toward upstreams.
        id: u16,
        /// Whom to ask.
        upstream: SocketAddr,
        /// Over TCP (the client asked over TCP).
        tcp: bool,
        /// The query, with `id` in its header.
        query: Vec<u8>,
    },
    /// The client's answer is ready.
    Done {
        /// The client query.
        token: Token,
        /// What to send the client: the upstream's answer with the client's
        /// ID, or SERVFAIL.
        answer: Vec<u8>,
        /// No upstream answered (the answer is a SERVFAIL of our own).
        failed: bool,
    },
}

/// Why a query cannot be forwarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// As many queries as allowed are in flight.
    #[error("{0} forwarded queries in flight: the bound is reached")]
    Full(usize),
    /// The bytes are not a query with one question.
    #[error("not a query with one question")]
    NotAQuery,
    /// No upstream to ask.
    #[error("no upstream server")]
    NoUpstream,
}

/// One client query in flight.
#[derive(Debug)]
struct Pending {
    token: Token,
    client_id: u16,
    /// The query with the upstream ID in its header.
    query: Vec<u8>,
    /// Where its question lies (answers must repeat it).
    question: Range<usize>,
    upstreams: Arc<[SocketAddr]>,
    /// Index of the upstream asked now.
    attempt: usize,
    /// When the upstream asked now has had its time (ms).
    deadline: u64,
    tcp: bool,
}

impl Pending {
    fn send(&self, id: u16) -> Action {
        Action::Send { id, upstream: self.upstreams[self.attempt], tcp: self.tcp, query: self.query.clone() }
    }

    /// SERVFAIL for the client, from its own query.
    fn servfail(&self) -> Action {
        let mut query = self.query.clone();
        query[..2].copy_from_slice(&self.client_id.to_be_bytes());
        let answer = error_response(&query, ResponseCode::ServFail).unwrap_or_default();
        Action::Done { token: self.token, answer, failed: true }
    }
}

/// Forwarded queries in flight.
#[derive(Debug)]
pub struct Forwarder {
    pending: HashMap<u16, Pending>,
    limit: usize,
    timeout_ms: u64,
    rng: u64,
}

impl Forwarder {
    /// A forwarder allowing `limit` queries in flight (at most 65,536: one
    /// per ID), giving each upstream `timeout_ms`; `seed` (random, from the
    /// caller) makes upstream IDs unpredictable.
    pub fn new(limit: usize, timeout_ms: u64, seed: u64) -> Forwarder {
        Forwarder { pending: HashMap::new(), limit: limit.min(1 << 16), timeout_ms, rng: seed | 1 }
    }

    /// Queries in flight.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Whether upstream ID `id` is a query in flight (the caller drops
    /// connections of queries that are done).
    pub fn is_in_flight(&self, id: u16) -> bool {
        self.pending.contains_key(&id)
    }

    /// Whether another query may start.
    pub fn has_room(&self) -> bool {
        self.pending.len() < self.limit
    }

    /// The earliest deadline of a query in flight (ms), for the caller's
    /// timer.
    pub fn next_deadline(&self) -> Option<u64> {
        self.pending.values().map(|p| p.deadline).min()
    }

    fn next_id(&mut self) -> u16 {
        loop {
            // xorshift64*: IDs an off-path attacker cannot guess in order.
            self.rng ^= self.rng >> 12;
            self.rng ^= self.rng << 25;
            self.rng ^= self.rng >> 27;
            let id = (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 48) as u16;
            if !self.pending.contains_key(&id) {
                return id;
            }
        }
    }

    /// Starts forwarding client query `query` (`token` is the caller's way
    /// back) to `upstreams` in order (duplicates and those past the third
    /// are skipped). Returns the first send.
    pub fn start(
        &mut self,
        token: Token,
        query: &[u8],
        upstreams: &[SocketAddr],
        tcp: bool,
        now_ms: u64,
    ) -> Result<Action, ForwardError> {
        if !self.has_room() {
            return Err(ForwardError::Full(self.pending.len()));
        }
        let question = question_range(query).ok_or(ForwardError::NotAQuery)?;
        let mut unique: Vec<SocketAddr> = Vec::with_capacity(MAX_UPSTREAMS);
        for u in upstreams {
            if !unique.contains(u) && unique.len() < MAX_UPSTREAMS {
                unique.push(*u);
            }
        }
        if unique.is_empty() {
            return Err(ForwardError::NoUpstream);
        }
        let id = self.next_id();
        let mut bytes = query.to_vec();
        let client_id = u16::from_be_bytes([bytes[0], bytes[1]]);
        bytes[..2].copy_from_slice(&id.to_be_bytes());
        let pending = Pending {
            token,
            client_id,
            query: bytes,
            question,
            upstreams: unique.into(),
            attempt: 0,
            deadline: now_ms + self.timeout_ms,
            tcp,
        };
        let send = pending.send(id);
        self.pending.insert(id, pending);
        Ok(send)
    }

    /// An answer arrived from `from`. Returns the client's answer, the next
    /// upstream to ask (the answer was SERVFAIL or REFUSED), or `None` when
    /// the bytes answer nothing in flight (late, spoofed, or garbage).
    pub fn on_answer(&mut self, from: SocketAddr, answer: &[u8], now_ms: u64) -> Option<Action> {
        if answer.len() < HEADER_LEN || answer[2] & 0x80 == 0 {
            return None;
        }
        let id = u16::from_be_bytes([answer[0], answer[1]]);
        let p = self.pending.get(&id)?;
        if p.upstreams[p.attempt] != from || !same_question(&p.query, answer, &p.question) {
            return None;
        }
        let rcode = answer[3] & 0x0f;
        if rcode == RCODE_SERVFAIL || rcode == RCODE_REFUSED {
            return self.advance(id, now_ms);
        }
        let p = self.pending.remove(&id)?;
        let mut relayed = answer.to_vec();
        relayed[..2].copy_from_slice(&p.client_id.to_be_bytes());
        Some(Action::Done { token: p.token, answer: relayed, failed: false })
    }

    /// Sending query `id` failed, or its TCP connection broke before an
    /// answer: ask the next upstream (or give up).
    pub fn on_failure(&mut self, id: u16, now_ms: u64) -> Option<Action> {
        self.advance(id, now_ms)
    }

    /// `upstream` is unreachable (ICMP refused on its UDP socket): every
    /// UDP query waiting on it moves on.
    pub fn on_unreachable(&mut self, upstream: SocketAddr, now_ms: u64) -> Vec<Action> {
        let ids: Vec<u16> = self
            .pending
            .iter()
            .filter(|(_, p)| !p.tcp && p.upstreams[p.attempt] == upstream)
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter().filter_map(|id| self.advance(id, now_ms)).collect()
    }

    /// Gives up query `id` without an answer (its way back is gone): true
    /// if it was in flight.
    pub fn cancel(&mut self, id: u16) -> bool {
        self.pending.remove(&id).is_some()
    }

    /// Moves every query whose upstream has had its time on, into `out`.
    pub fn expire(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        let ids: Vec<u16> = self.pending.iter().filter(|(_, p)| p.deadline <= now_ms).map(|(id, _)| *id).collect();
        out.extend(ids.into_iter().filter_map(|id| self.advance(id, now_ms)));
    }

    /// Asks query `id`'s next upstream, or answers SERVFAIL when none is left.
    fn advance(&mut self, id: u16, now_ms: u64) -> Option<Action> {
        let timeout = self.timeout_ms;
        let p = self.pending.get_mut(&id)?;
        if p.attempt + 1 < p.upstreams.len() {
            p.attempt += 1;
            p.deadline = now_ms + timeout;
            return Some(p.send(id));
        }
        self.pending.remove(&id).map(|p| p.servfail())
    }
}

/// `answer` as it may go to a UDP client whose path carries at most
/// `limit` bytes: unchanged if it fits, else cut to its header and question
/// with TC set and no records, so the client retries over TCP (as a server
/// does when its answer does not fit; relayed answers are otherwise never
/// changed).
pub fn fit_udp(answer: &[u8], limit: usize) -> std::borrow::Cow<'_, [u8]> {
    if answer.len() <= limit || answer.len() < HEADER_LEN {
        return std::borrow::Cow::Borrowed(answer);
    }
    let question_end = match question_range(&query_view(answer)) {
        Some(q) => q.end,
        None => HEADER_LEN,
    };
    let mut cut = answer[..question_end.min(answer.len())].to_vec();
    cut[2] |= 0x02;
    if question_end == HEADER_LEN {
        cut[4..6].fill(0);
    }
    cut[6..12].fill(0);
    std::borrow::Cow::Owned(cut)
}

/// The header of `message` with QR cleared, so [`question_range`] reads an
/// answer's question as a query's.
fn query_view(message: &[u8]) -> Vec<u8> {
    let mut bytes = message.to_vec();
    if let Some(flags) = bytes.get_mut(2) {
        *flags &= 0x7f;
    }
    bytes
}

/// Where the single question of `query` lies, if it is a query with one
/// well-formed question.
fn question_range(query: &[u8]) -> Option<Range<usize>> {
    if query.len() < HEADER_LEN || query[2] & 0x80 != 0 || query[4..6] != [0, 1] {
        return None;
    }
    let mut decoder = BinDecoder::new(query);
    decoder.read_slice(HEADER_LEN).ok()?;
    Query::read(&mut decoder).ok()?;
    Some(HEADER_LEN..decoder.index())
}

/// Whether `answer` repeats the question of `query`: the name in any ASCII
/// case (some servers answer in their own), type and class exactly.
fn same_question(query: &[u8], answer: &[u8], question: &Range<usize>) -> bool {
    let Some(theirs) = answer.get(question.clone()) else { return false };
    let ours = &query[question.clone()];
    let name = ours.len().saturating_sub(4);
    answer[4..6] == [0, 1] && theirs[..name].eq_ignore_ascii_case(&ours[..name]) && theirs[name..] == ours[name..]
}
