//! IP reassembly for the L4 translator, sans-IO: a sandbox that sends a UDP
//! datagram larger than its MTU sends it in IP fragments (IPv4 fragments,
//! or IPv6 fragment headers), and the translator, which hands whole
//! payloads to host sockets, needs the datagram whole. [`Reassembler::add`]
//! takes the fragments as they come and gives back the whole frame (the
//! first fragment's Ethernet and IP headers, lengths fixed, around the
//! joined payload) once every byte has arrived.
//!
//! Fragments are reassembled per port they came in on (the key holds the
//! caller's port number besides the RFC's fields), so sandboxes never mix,
//! whatever their addresses, and one sandbox's fragments cannot complete
//! or spoil another's. Bounded per port and in all: at most
//! [`MAX_PER_PORT`] datagrams of one port (its own oldest makes room for
//! its next), [`MAX_DATAGRAMS`] and [`BUDGET_BYTES`] in all (the oldest of
//! all makes room), [`MAX_FRAGMENTS`] fragments a datagram, each datagram
//! given up after [`TIMEOUT_MS`] (Linux's `ipfrag_time`). Overlapping
//! fragments give the whole datagram up (RFC 5722 for IPv6; for IPv4 the
//! same rule denies the overlap tricks that evade filters); an exact
//! duplicate is ignored. Fragments are rare and never on the fast path:
//! each datagram in reassembly owns its buffer, and with at most
//! [`MAX_FRAGMENTS`] pieces every step is a short scan.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Datagrams in reassembly at once, in all.
pub const MAX_DATAGRAMS: usize = 64;
/// Datagrams in reassembly at once from one port.
pub const MAX_PER_PORT: usize = 8;
/// Payload bytes held across every datagram in reassembly: sixteen
/// datagrams of the largest size.
pub const BUDGET_BYTES: usize = 1 << 20;
/// Fragments one datagram may come in: a 64 KiB datagram over IPv6's
/// minimum MTU of 1,280 bytes takes 53.
pub const MAX_FRAGMENTS: usize = 64;
/// How long a datagram may take to arrive whole (ms): Linux's
/// `net.ipv4.ipfrag_time` and `net.ipv6.ip6frag_time`, 30 s.
pub const TIMEOUT_MS: u64 = 30_000;

const ETH: usize = 14;
const IP6: usize = 40;
const FRAG6: usize = 8;
/// IPv6's fragment header.
const NEXT_FRAGMENT: u8 = 44;
/// The longest IP packet: the whole datagram must fit one.
const MAX_PACKET: usize = 65_535;

/// What [`Reassembler::add`] did with a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Kept: its datagram is not whole yet (or it was an exact duplicate).
    Held,
    /// The last missing piece: the whole datagram as one frame.
    Complete(Vec<u8>),
    /// Refused, and with it the datagram it belongs to (see [`Refusal`]).
    Refused(Refusal),
}

/// Why a fragment was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a well-formed IPv4 fragment or IPv6 fragment (fragment header
    /// right after the fixed header), or a fragment that is not the last
    /// but not a multiple of 8 bytes long.
    Malformed,
    /// It overlaps a fragment already received.
    Overlap,
    /// The datagram would exceed 65,535 bytes or [`MAX_FRAGMENTS`]
    /// fragments, or a last fragment contradicts the length an earlier one
    /// gave.
    TooLong,
}

/// The identity of a datagram in reassembly: the port it came in on, and
/// RFC 791's source, destination, protocol and identification (RFC 8200:
/// source, destination, identification).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    port: u32,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    id: u32,
}

/// One datagram in reassembly.
#[derive(Debug)]
struct Partial {
    key: Key,
    started: u64,
    /// The Ethernet and IP headers of the fragment at offset 0, once seen
    /// (IPv6: the fixed header only, without the fragment header).
    head: Option<Vec<u8>>,
    /// IPv6: the protocol of the payload, from the fragment at offset 0.
    next: u8,
    data: Vec<u8>,
    /// The fragments received, as ranges of the payload (to tell an exact
    /// duplicate from an overlap).
    pieces: Vec<(usize, usize)>,
    /// What they cover: sorted, touching ranges joined.
    have: Vec<(usize, usize)>,
    /// The payload's length, once the last fragment is in.
    total: Option<usize>,
}

/// One fragment, read.
struct Piece<'a> {
    key: Key,
    v6: bool,
    /// Ethernet and IP headers to rebuild the datagram around (IPv6: the
    /// fixed header).
    head: &'a [u8],
    next: u8,
    offset: usize,
    more: bool,
    payload: &'a [u8],
}

/// Datagrams in reassembly. See the module documentation.
#[derive(Debug, Default)]
pub struct Reassembler {
    partials: Vec<Partial>,
    held: usize,
    /// Tags of datagrams given up (timed out, or evicted to make room)
    /// since [`Reassembler::take_given_up`] was last called.
    given_up: Vec<u32>,
}

impl Reassembler {
    /// A reassembler holding nothing.
    pub fn new() -> Reassembler {
        Reassembler::default()
    }

    /// Datagrams in reassembly now.
    pub fn in_progress(&self) -> usize {
        self.partials.len()
    }

    /// Takes one fragment (a whole Ethernet frame) that came in on port
    /// `port` (the caller's number, given back for datagrams given up) at
    /// `now` (ms). Gives up first the datagrams older than [`TIMEOUT_MS`].
    pub fn add(&mut self, frame: &[u8], port: u32, now: u64) -> Outcome {
        self.expire(now);
        let Some(piece) = read(frame, port) else { return Outcome::Refused(Refusal::Malformed) };
        let end = piece.offset + piece.payload.len();
        // An IPv6 payload may be 65,535 bytes; an IPv4 packet, header
        // included (checked again against the first fragment's header).
        let header = if piece.v6 { 0 } else { piece.head.len() - ETH };
        if header + end > MAX_PACKET {
            self.forget(piece.key);
            return Outcome::Refused(Refusal::TooLong);
        }
        if piece.offset == 0 && !piece.more {
            // An atomic fragment (RFC 6946): whole already.
            return Outcome::Complete(rebuild(piece.head, piece.next, piece.payload));
        }
        let index = match self.partials.iter().position(|p| p.key == piece.key) {
            Some(i) => i,
            None => {
                self.make_room(port, end);
                self.partials.push(Partial {
                    key: piece.key,
                    started: now,
                    head: None,
                    next: 0,
                    data: Vec::new(),
                    pieces: Vec::new(),
                    have: Vec::new(),
                    total: None,
                });
                self.partials.len() - 1
            }
        };
        let partial = &mut self.partials[index];
        match partial.accept(&piece, end) {
            Ok(false) => return Outcome::Held,
            Ok(true) => {}
            Err(refusal) => {
                self.remove(index);
                return Outcome::Refused(refusal);
            }
        }
        let grown = partial.data.len();
        if end > grown {
            partial.data.resize(end, 0);
            self.held += end - grown;
        }
        let partial = &mut self.partials[index];
        partial.data[piece.offset..end].copy_from_slice(piece.payload);
        if piece.offset == 0 {
            partial.head = Some(piece.head.to_vec());
            partial.next = piece.next;
        }
        match (partial.total, &partial.head, partial.have.as_slice()) {
            (Some(total), Some(head), [(0, got)]) if *got == total => {
                // IPv4: the first fragment's header and the payload in one packet.
                let fits = piece.v6 || head.len() - ETH + total <= MAX_PACKET;
                let frame = fits.then(|| rebuild(head, partial.next, &partial.data[..total]));
                self.remove(index);
                frame.map_or(Outcome::Refused(Refusal::TooLong), Outcome::Complete)
            }
            _ => Outcome::Held,
        }
    }

    /// Gives up the datagrams that started more than [`TIMEOUT_MS`]
    /// before `now` (their ports go to [`Reassembler::take_given_up`]).
    pub fn expire(&mut self, now: u64) {
        while let Some(i) = self.partials.iter().position(|p| now.saturating_sub(p.started) >= TIMEOUT_MS) {
            self.give_up(i);
        }
    }

    /// When the oldest datagram in reassembly times out (ms), if any.
    pub fn next_deadline(&self) -> Option<u64> {
        self.partials.iter().map(|p| p.started + TIMEOUT_MS).min()
    }

    /// Forgets the datagrams of port `port` (gone), uncounted.
    pub fn forget_port(&mut self, port: u32) {
        while let Some(i) = self.partials.iter().position(|p| p.key.port == port) {
            self.remove(i);
        }
    }

    /// The ports of the datagrams given up since the last call: one per
    /// datagram, for the caller to count.
    pub fn take_given_up(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.given_up)
    }

    /// Gives up the oldest datagrams until one more from `port` of up to
    /// `bytes` fits: that port's own oldest while it has
    /// [`MAX_PER_PORT`], then the oldest of all.
    fn make_room(&mut self, port: u32, bytes: usize) {
        let oldest = |partials: &[Partial], of: Option<u32>| {
            let candidates = partials.iter().enumerate().filter(|(_, p)| of.is_none_or(|port| p.key.port == port));
            candidates.min_by_key(|(_, p)| p.started).map(|(i, _)| i)
        };
        while self.partials.iter().filter(|p| p.key.port == port).count() >= MAX_PER_PORT {
            let Some(i) = oldest(&self.partials, Some(port)) else { break };
            self.give_up(i);
        }
        while self.partials.len() >= MAX_DATAGRAMS || self.held + bytes > BUDGET_BYTES {
            let Some(i) = oldest(&self.partials, None) else { break };
            self.give_up(i);
        }
    }

    /// Gives datagram `index` up, to be counted on its port.
    fn give_up(&mut self, index: usize) {
        let port = self.partials[index].key.port;
        self.remove(index);
        self.given_up.push(port);
    }

    /// Drops the datagram `key`, if it is in reassembly (a refused
    /// fragment takes its datagram with it).
    fn forget(&mut self, key: Key) {
        if let Some(i) = self.partials.iter().position(|p| p.key == key) {
            self.remove(i);
        }
    }

    fn remove(&mut self, index: usize) {
        let partial = self.partials.swap_remove(index);
        self.held -= partial.data.len();
    }
}

impl Partial {
    /// Records the range of `piece` (ending at `end`): `Ok(true)` if it is
    /// new, `Ok(false)` for an exact duplicate, `Err` if it overlaps
    /// another or contradicts the datagram's length.
    fn accept(&mut self, piece: &Piece<'_>, end: usize) -> Result<bool, Refusal> {
        let start = piece.offset;
        if self.pieces.contains(&(start, end)) {
            return Ok(false);
        }
        if self.pieces.len() >= MAX_FRAGMENTS {
            return Err(Refusal::TooLong);
        }
        if self.have.iter().any(|&(s, e)| start < e && s < end) {
            return Err(Refusal::Overlap);
        }
        match (piece.more, self.total) {
            // The last fragment: it fixes the length, beyond which nothing
            // may have arrived.
            (false, None) if self.have.iter().all(|&(_, e)| e <= end) => self.total = Some(end),
            (false, _) => return Err(Refusal::TooLong),
            (true, Some(total)) if end > total => return Err(Refusal::TooLong),
            (true, _) => {}
        }
        self.pieces.push((start, end));
        let at = self.have.partition_point(|&(s, _)| s < start);
        self.have.insert(at, (start, end));
        // Join neighbours that touch.
        let mut joined: Vec<(usize, usize)> = Vec::with_capacity(self.have.len());
        for &(s, e) in &self.have {
            match joined.last_mut() {
                Some(last) if last.1 == s => last.1 = e,
                _ => joined.push((s, e)),
            }
        }
        self.have = joined;
        Ok(true)
    }
}

/// Whether `frame` is a fragment [`Reassembler::add`] takes: an IPv4
/// packet with MF set or a non-zero offset, or an IPv6 packet with a
/// fragment header right after its fixed header.
pub fn is_fragment(frame: &[u8]) -> bool {
    match frame.get(12..14) {
        Some([0x08, 0x00]) => {
            frame.get(ETH + 6..ETH + 8).is_some_and(|f| u16::from_be_bytes([f[0], f[1]]) & 0x3fff != 0)
        }
        Some([0x86, 0xdd]) => frame.get(ETH + 6) == Some(&NEXT_FRAGMENT),
        _ => false,
    }
}

/// Reads a fragment: an IPv4 packet with MF set or a non-zero offset, or
/// an IPv6 packet whose fixed header is followed by a fragment header.
fn read(frame: &[u8], port: u32) -> Option<Piece<'_>> {
    let ip = frame.get(ETH..)?;
    match frame.get(12..14)? {
        [0x08, 0x00] => {
            let ihl = usize::from(*ip.first()? & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
            if ip[0] >> 4 != 4 || ihl < 20 || total < ihl || total > ip.len() {
                return None;
            }
            let field = u16::from_be_bytes([ip[6], ip[7]]);
            let (more, offset) = (field & 0x2000 != 0, usize::from(field & 0x1fff) * 8);
            let payload = &ip[ihl..total];
            if (!more && offset == 0) || (more && payload.len() % 8 != 0) || payload.is_empty() {
                return None;
            }
            let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
            let id = u32::from(u16::from_be_bytes([ip[4], ip[5]]));
            let key = Key { port, src: src.into(), dst: dst.into(), proto: ip[9], id };
            Some(Piece { key, v6: false, head: &frame[..ETH + ihl], next: ip[9], offset, more, payload })
        }
        [0x86, 0xdd] => {
            if ip.len() < IP6 + FRAG6 || ip[0] >> 4 != 6 || ip[6] != NEXT_FRAGMENT {
                return None;
            }
            let end = IP6 + usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            let fragment = ip.get(IP6..IP6 + FRAG6)?;
            let payload = ip.get(IP6 + FRAG6..end)?;
            let field = u16::from_be_bytes([fragment[2], fragment[3]]);
            let (more, offset) = (field & 1 != 0, usize::from(field >> 3) * 8);
            // A fragment that is not the last carries a non-empty multiple of 8 bytes.
            if more && (payload.is_empty() || payload.len() % 8 != 0) {
                return None;
            }
            let src = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).ok()?);
            let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[24..40]).ok()?);
            let id = u32::from_be_bytes([fragment[4], fragment[5], fragment[6], fragment[7]]);
            let key = Key { port, src: src.into(), dst: dst.into(), proto: 0, id };
            Some(Piece { key, v6: true, head: &frame[..ETH + IP6], next: fragment[0], offset, more, payload })
        }
        _ => None,
    }
}

/// The whole datagram's frame: `head` (Ethernet and IP headers of the
/// first fragment) with its lengths and fragment fields fixed, then
/// `payload`. IPv4 gets its header checksum again; IPv6 loses its fragment
/// header (`next` is the payload's protocol).
fn rebuild(head: &[u8], next: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(head.len() + payload.len());
    frame.extend_from_slice(head);
    frame.extend_from_slice(payload);
    let ip_len = head.len() - ETH;
    if frame[12..14] == [0x08, 0x00] {
        let total = (ip_len + payload.len()) as u16;
        frame[ETH + 2..ETH + 4].copy_from_slice(&total.to_be_bytes());
        frame[ETH + 6..ETH + 8].copy_from_slice(&0u16.to_be_bytes());
        frame[ETH + 10..ETH + 12].copy_from_slice(&[0, 0]);
        let sum = checksum(&frame[ETH..ETH + ip_len]);
        frame[ETH + 10..ETH + 12].copy_from_slice(&sum.to_be_bytes());
    } else {
        frame[ETH + 4..ETH + 6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
        frame[ETH + 6] = next;
    }
    frame
}

/// The Internet checksum (RFC 1071) of `bytes`.
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::VirtioNetHdr;

    const SRC: [u8; 4] = [10, 0, 0, 2];
    const DST: [u8; 4] = [192, 0, 2, 9];

    /// A UDP datagram's IP payload (UDP header and data) of `len` bytes.
    fn datagram(len: usize) -> Vec<u8> {
        let mut d: Vec<u8> = (0..len).map(|i| (i * 7 + 1) as u8).collect();
        d[4..6].copy_from_slice(&(len as u16).to_be_bytes());
        d
    }

    /// `frame` cut by the translator's own fragmenter into pieces of
    /// `mtu`, with identification `id`.
    fn split(frame: &mut [u8], mtu: usize, id: u32) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        super::super::packet::fragment(frame, VirtioNetHdr::default(), mtu, id, |max, write| {
            let mut f = vec![0u8; max];
            let n = write(&mut f);
            f.truncate(n);
            out.push(f);
        });
        out
    }

    /// IPv4 fragments of `payload` (id `id`), `size` payload bytes each.
    fn fragments4(payload: &[u8], id: u16, size: usize) -> Vec<Vec<u8>> {
        let mut f = vec![0u8; ETH + 20];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut f[ETH..];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&SRC);
        ip[16..20].copy_from_slice(&DST);
        f.extend_from_slice(payload);
        split(&mut f, size + 20, u32::from(id))
    }

    /// IPv6 fragments of `payload` (id `id`), the fragment header right
    /// after the fixed header.
    fn fragments6(payload: &[u8], id: u32, size: usize) -> Vec<Vec<u8>> {
        let mut f = vec![0u8; ETH + IP6];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        let ip = &mut f[ETH..];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
        ip[6] = 17;
        ip[7] = 64;
        ip[8..24].copy_from_slice(&"fd00::2".parse::<Ipv6Addr>().unwrap().octets());
        ip[24..40].copy_from_slice(&"2001:db8::9".parse::<Ipv6Addr>().unwrap().octets());
        f.extend_from_slice(payload);
        split(&mut f, size + IP6 + FRAG6, id)
    }

    #[test]
    fn ipv4_fragments_in_any_order_make_the_whole_datagram() {
        let payload = datagram(4000);
        let mut parts = fragments4(&payload, 7, 1480);
        parts.swap(0, 2);
        let mut r = Reassembler::new();
        assert_eq!(r.add(&parts[0], 1, 0), Outcome::Held);
        assert_eq!(r.add(&parts[1], 1, 5), Outcome::Held);
        assert_eq!(r.add(&parts[1], 1, 6), Outcome::Held, "an exact duplicate is ignored");
        let Outcome::Complete(frame) = r.add(&parts[2], 1, 10) else { panic!("not complete") };
        assert_eq!(&frame[ETH + 20..], &payload[..]);
        let ip = &frame[ETH..ETH + 20];
        assert_eq!(u16::from_be_bytes([ip[2], ip[3]]), 4020, "total length");
        assert_eq!(u16::from_be_bytes([ip[6], ip[7]]), 0, "no fragment fields");
        assert_eq!(checksum(ip), 0, "a valid header checksum");
        assert_eq!((r.in_progress(), r.held), (0, 0));
        // Two datagrams interleaved, of one source and destination, apart by id.
        let (a, b) = (fragments4(&datagram(2000), 1, 1000), fragments4(&datagram(3000), 2, 1000));
        let mut whole = 0;
        for f in [&a[0], &b[0], &b[1], &a[1], &b[2]] {
            whole += usize::from(matches!(r.add(f, 1, 20), Outcome::Complete(_)));
        }
        assert_eq!(whole, 2);
    }

    #[test]
    fn ipv6_fragments_lose_the_fragment_header() {
        let payload = datagram(3000);
        let parts = fragments6(&payload, 0xdead_beef, 1232);
        let mut r = Reassembler::new();
        assert_eq!(r.add(&parts[2], 4, 0), Outcome::Held);
        assert_eq!(r.add(&parts[0], 4, 0), Outcome::Held);
        let Outcome::Complete(frame) = r.add(&parts[1], 4, 0) else { panic!("not complete") };
        assert_eq!(frame.len(), ETH + IP6 + 3000);
        assert_eq!(frame[ETH + 6], 17, "next header: UDP, the fragment header gone");
        assert_eq!(u16::from_be_bytes([frame[ETH + 4], frame[ETH + 5]]), 3000);
        assert_eq!(&frame[ETH + IP6..], &payload[..]);
        // An atomic fragment is whole at once.
        let atomic = fragments6(&datagram(100), 9, 200).remove(0);
        let Outcome::Complete(frame) = r.add(&atomic, 4, 0) else { panic!("an atomic fragment") };
        assert_eq!(frame.len(), ETH + IP6 + 100);
    }

    #[test]
    fn overlaps_bad_lengths_and_garbage_are_refused_and_take_the_datagram() {
        let payload = datagram(3000);
        let parts = fragments4(&payload, 3, 1000);
        let mut r = Reassembler::new();
        r.add(&parts[0], 1, 0);
        // 8 bytes into the first fragment's range.
        let mut overlapping = fragments4(&payload[8..], 3, 1000).remove(0);
        overlapping[ETH + 6..ETH + 8].copy_from_slice(&(1u16 | 0x2000).to_be_bytes());
        assert_eq!(r.add(&overlapping, 1, 0), Outcome::Refused(Refusal::Overlap));
        assert_eq!(r.in_progress(), 0, "the datagram is given up");
        // A middle fragment not a multiple of 8, garbage, a non-fragment.
        let mut odd = parts[1].clone();
        odd.pop();
        odd[ETH + 3] -= 1;
        for bad in [odd, vec![0u8; 20], fragments4(&payload[..100], 4, 200).remove(0)] {
            assert_eq!(r.add(&bad, 1, 0), Outcome::Refused(Refusal::Malformed));
        }
        // Past 65,535 bytes.
        let mut far = parts[1].clone();
        far[ETH + 6..ETH + 8].copy_from_slice(&(8180u16 | 0x2000).to_be_bytes());
        assert_eq!(r.add(&far, 1, 0), Outcome::Refused(Refusal::TooLong));
        // A last fragment that ends before bytes already received.
        r.add(&parts[1], 1, 0);
        let mut early_end = fragments4(&payload[..8], 3, 8).remove(0);
        early_end[ETH + 6..ETH + 8].copy_from_slice(&(2u16).to_be_bytes());
        assert_eq!(r.add(&early_end, 1, 0), Outcome::Refused(Refusal::TooLong));
        assert_eq!(r.in_progress(), 0);
    }

    #[test]
    fn datagrams_time_out_and_the_oldest_makes_room() {
        let mut r = Reassembler::new();
        let first = fragments4(&datagram(2000), 1, 1000);
        r.add(&first[0], 11, 0);
        r.add(&fragments4(&datagram(2000), 2, 1000)[0], 12, TIMEOUT_MS - 1);
        assert!(r.take_given_up().is_empty());
        // The first is 30 s old when the next fragment arrives: given up.
        r.add(&fragments4(&datagram(2000), 3, 1000)[0], 13, TIMEOUT_MS);
        assert_eq!(r.take_given_up(), [11]);
        assert_eq!(r.add(&first[1], 11, TIMEOUT_MS), Outcome::Held, "its rest starts anew");
        assert_eq!(r.next_deadline(), Some(TIMEOUT_MS - 1 + TIMEOUT_MS));
        // One port beyond MAX_PER_PORT gives up its own oldest, not others'.
        let mut r = Reassembler::new();
        r.add(&fragments4(&datagram(2000), 999, 1000)[0], 1, 0);
        for id in 0..=MAX_PER_PORT as u16 {
            r.add(&fragments4(&datagram(2000), id, 1000)[0], 2, 1 + u64::from(id));
        }
        assert_eq!(r.in_progress(), MAX_PER_PORT + 1);
        assert_eq!(r.take_given_up(), [2], "port 2's own oldest");
        // Beyond MAX_DATAGRAMS in all, the oldest of all goes.
        let mut r = Reassembler::new();
        for id in 0..=MAX_DATAGRAMS as u16 {
            let port = u32::from(id) / MAX_PER_PORT as u32;
            r.add(&fragments4(&datagram(2000), id, 1000)[0], port, u64::from(id));
        }
        assert_eq!((r.in_progress(), r.take_given_up()), (MAX_DATAGRAMS, vec![0]));
        // Beyond BUDGET_BYTES: large first pieces far into their datagrams.
        let mut r = Reassembler::new();
        let far_piece = |id: u16| {
            let mut f = fragments4(&datagram(1480 * 2), id, 1480).remove(0);
            f[ETH + 6..ETH + 8].copy_from_slice(&(((60_000 / 8) as u16) | 0x2000).to_be_bytes());
            f
        };
        let fit = BUDGET_BYTES / 61_480;
        for id in 0..=fit as u16 {
            r.add(&far_piece(id), u32::from(id), u64::from(id));
        }
        assert!(r.held <= BUDGET_BYTES, "{} held", r.held);
        assert_eq!((r.in_progress(), r.take_given_up()), (fit, vec![0]));
        // A port removed takes its datagrams along, uncounted.
        r.forget_port(3);
        assert_eq!((r.in_progress(), r.take_given_up()), (fit - 1, vec![]));
    }

    #[test]
    fn ports_never_mix_and_a_datagram_has_at_most_max_fragments() {
        let payload = datagram(2000);
        let parts = fragments4(&payload, 5, 1000);
        let mut r = Reassembler::new();
        // The same addresses and id from two ports are two datagrams.
        assert_eq!(r.add(&parts[0], 1, 0), Outcome::Held);
        assert_eq!(r.add(&parts[1], 2, 0), Outcome::Held);
        assert_eq!(r.in_progress(), 2);
        assert!(matches!(r.add(&parts[1], 1, 0), Outcome::Complete(_)));
        // 8-byte fragments: the 65th is refused with its datagram.
        let tiny = fragments4(&datagram(8 * 70), 6, 8);
        let mut last = Outcome::Held;
        for (k, f) in tiny.iter().enumerate().take(MAX_FRAGMENTS + 1) {
            last = r.add(f, 3, k as u64);
        }
        assert_eq!(last, Outcome::Refused(Refusal::TooLong));
        assert!(r.partials.iter().all(|p| p.key.port != 3), "the datagram went with it");
    }

    #[test]
    fn an_ipv4_datagram_longer_than_a_packet_with_the_first_headers_options_is_refused() {
        // A first fragment with 40 bytes of options, a last one of IHL 20
        // ending where only a 20-byte header would fit.
        let payload = datagram(65_515);
        let mut first = fragments4(&payload[..1480], 8, 1480).remove(0);
        first[ETH] = 0x4f;
        first.splice(ETH + 20..ETH + 20, [1u8; 40]);
        let total = (60 + 1480) as u16;
        first[ETH + 2..ETH + 4].copy_from_slice(&total.to_be_bytes());
        first[ETH + 6..ETH + 8].copy_from_slice(&0x2000u16.to_be_bytes());
        let mut last = fragments4(&payload[..1480], 8, 1480).remove(0);
        last.truncate(ETH + 20 + 1480 - 5);
        last[ETH + 2..ETH + 4].copy_from_slice(&((20 + 1475) as u16).to_be_bytes());
        last[ETH + 6..ETH + 8].copy_from_slice(&((64_040 / 8) as u16).to_be_bytes());
        let mut r = Reassembler::new();
        assert_eq!(r.add(&first, 1, 0), Outcome::Held);
        assert_eq!(r.add(&last, 1, 0), Outcome::Held, "65,515 bytes fit a 20-byte header");
        assert_eq!(r.in_progress(), 1);
        // The middle is missing; filling it completes a datagram too long for
        // the first fragment's 60-byte header.
        let mut r = Reassembler::new();
        let mut middle_parts = Vec::new();
        for off in (1480..64_040).step_by(1480) {
            let len = 1480.min(64_040 - off);
            let mut f = fragments4(&payload[..len], 8, len).remove(0);
            f[ETH + 6..ETH + 8].copy_from_slice(&(((off / 8) as u16) | 0x2000).to_be_bytes());
            middle_parts.push(f);
        }
        assert!(middle_parts.len() < MAX_FRAGMENTS);
        r.add(&first, 1, 0);
        for f in &middle_parts {
            assert_eq!(r.add(f, 1, 0), Outcome::Held);
        }
        assert_eq!(r.add(&last, 1, 0), Outcome::Refused(Refusal::TooLong));
        assert_eq!(r.in_progress(), 0);
    }
}
