//! Overlay receive, sans-IO: the [`Tunnel`](super::Tunnel) reads a batch of
//! datagrams and only says where they lie; [`classify`] decides, for each,
//! what becomes of it — an [`RxInstruction`] (deliver to a tunnel port,
//! create a learned peer and deliver, drop with a reason) — touching no
//! port, bridge or peer table; the loop applies the instructions after the
//! whole batch is classified (boringtun's "result as instruction").
//!
//! [`classify_batch`] authenticates and opens encrypted packets in place
//! (the replay windows of the network's keys are the only state it
//! changes), so nothing learns from a packet before it is known to be
//! genuine. It works on the batch: each header is read once, and a run of
//! packets of one sender session looks its key and replay window up once.
//!
//! On a replica of a spread overlay (see [`super::spread`]) on a VTEP that
//! learns peers, a datagram from a VTEP the replica has no tunnel port for
//! goes to the network's owner: a plain one as it came, classified there
//! as if the owner's socket had read it; an encrypted one opened here
//! first (its session's replay window is this worker's), its inner frame
//! then placed by the owner ([`classify_opened`]). The owner learns the
//! peer and mirrors its port to the replicas, which carry its flows from
//! then on (a peer it made a moment ago, whose mirror is still on its way,
//! is delivered). On a VTEP that does not learn peers the replica drops
//! such datagrams itself, as the owner would.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

use crypto::{InnerChecksum, OpenError};
use vxlan::{PeerTable, Vni};

use super::{Datapath, NetInfo, config};
use crate::counters::DropReason;
use crate::daemon::batch::{Placed, RxBatch, RxEntry};
use crate::daemon::tunnel::Received;
use crate::events::EventKind;
use crate::offload::{self, ChecksumState};
use crate::port::{NetworkId, PortId};
use crate::wire::VirtioNetHdr;

/// What the loop does with one received datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RxInstruction {
    /// Its inner frame enters the bridge from a known peer's tunnel port;
    /// the peer was seen.
    Deliver {
        /// The tunnel port of (network, peer).
        port: PortId,
        /// The batch buffer holding the datagram.
        buf: usize,
        /// The inner Ethernet frame in that buffer.
        frame: Range<usize>,
        /// What is known of its TCP/UDP checksum.
        checksum: ChecksumState,
        /// The peer, as the peer table knows it.
        peer: (Vni, SocketAddr),
    },
    /// From a VTEP not yet known, on a VTEP that learns peers: a tunnel
    /// port for it is created (unless an earlier datagram of the batch
    /// created it), then the frame is delivered.
    Learn {
        /// The network of the VNI.
        network: NetworkId,
        /// The peer to create.
        peer: (Vni, SocketAddr),
        /// The batch buffer holding the datagram.
        buf: usize,
        /// The inner Ethernet frame in that buffer.
        frame: Range<usize>,
        /// What is known of its TCP/UDP checksum.
        checksum: ChecksumState,
    },
    /// From a VTEP this replica of a spread overlay has no tunnel port
    /// for, opened here (its session's replay window is this worker's): the
    /// inner frame goes to the network's owner, which finds or learns its
    /// sender's tunnel port.
    HandOverOpened {
        /// The worker owning the network.
        owner: usize,
        /// The batch buffer holding the datagram.
        buf: usize,
        /// The inner Ethernet frame in that buffer.
        frame: Range<usize>,
        /// What is known of its TCP/UDP checksum.
        checksum: ChecksumState,
        /// Its VNI and sender.
        peer: (Vni, SocketAddr),
    },
    /// The whole datagram goes to another worker, to be classified there
    /// as if its own socket had read it: from a VTEP this replica of a
    /// spread overlay has no tunnel port for, to the network's owner; or an
    /// encrypted packet of a session another worker opens (it alone holds
    /// the session's replay window), to that worker, unopened.
    HandOver {
        /// The worker it goes to.
        worker: usize,
        /// The batch buffer holding the datagram.
        buf: usize,
        /// The datagram in that buffer.
        datagram: Range<usize>,
        /// Its sender.
        from: SocketAddr,
    },
    /// Refused, counted on the VTEP under this reason.
    Drop(DropReason),
}

/// What [`classify_batch`] reads of the datapath's overlay state.
pub(super) struct RxContext<'a> {
    /// The VTEP's own address.
    pub(super) local: SocketAddr,
    /// Unknown senders may become peers (`--learn-peers`).
    pub(super) learn: bool,
    /// VNI → overlay network.
    pub(super) vnis: &'a HashMap<u32, NetworkId>,
    /// Known peers.
    pub(super) peers: &'a PeerTable,
    /// The UDP port each peer IP listens on.
    pub(super) peer_ports: &'a HashMap<IpAddr, u16>,
    /// Whether datagrams may go to another worker: a replica's of unknown
    /// senders to its owner, any worker's of a session another worker
    /// opens to that one (false for datagrams another worker handed over
    /// already: none is handed on twice unopened; a replica still hands a
    /// stranger's packet it opened to its owner, which keeps it).
    pub(super) hand_over: bool,
}

/// A received datagram's header, read once for the whole batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Parsed {
    /// Plain VXLAN of this VNI.
    Plain(Vni),
    /// An encrypted packet with this header.
    Encrypted(crypto::Header),
    /// Neither: dropped for this reason.
    Bad(DropReason),
}

/// Reads the header of one datagram: plain VXLAN or encrypted.
fn parse(datagram: &[u8]) -> Parsed {
    if crypto::is_encrypted(datagram) {
        return match crypto::Header::parse(datagram) {
            Ok(header) => Parsed::Encrypted(header),
            Err(_) => Parsed::Bad(DropReason::CryptoMalformed),
        };
    }
    match vxlan::decapsulate(datagram) {
        Ok((vni, _)) => Parsed::Plain(vni),
        Err(vxlan::VxlanError::FlagNotSet { .. }) => Parsed::Bad(DropReason::VxlanBadFlags),
        Err(_) => Parsed::Bad(DropReason::VxlanMalformed),
    }
}

/// Whether two datagrams (of one sender) may share a run: the same VNI
/// and, encrypted, the same epoch, sender session and cipher, whose key
/// and replay window are then looked up once.
fn same_run(a: &Parsed, b: &Parsed) -> bool {
    match (a, b) {
        (Parsed::Plain(x), Parsed::Plain(y)) => x == y,
        (Parsed::Encrypted(x), Parsed::Encrypted(y)) => {
            (x.vni, x.epoch, x.session_id, x.cipher) == (y.vni, y.epoch, y.session_id, y.cipher)
        }
        _ => false,
    }
}

/// The buffers a received batch lies in.
pub(super) trait Datagrams {
    /// The datagram at `range` of buffer `buf`.
    fn datagram(&mut self, buf: usize, range: Range<usize>) -> &mut [u8];
}

impl Datagrams for RxBatch {
    fn datagram(&mut self, buf: usize, range: Range<usize>) -> &mut [u8] {
        self.buffer_mut(buf, range)
    }
}

/// Decides what becomes of every datagram of a received batch (lying in
/// `bufs` where `received` says), appending one instruction per datagram,
/// in order, to `plan`: which network and peer each belongs to, and, on an
/// encrypted network, whether it opens (decrypted in place with the
/// network's keys in `nets`).
///
/// Each header is read once (into `parsed`, scratch space). Consecutive
/// datagrams of one sender and VNI — and, encrypted, of one epoch and
/// sender session — form a run: its network and peer are looked up once,
/// and so are its session key and replay window; then each packet is
/// opened, and each is refused under its own reason (replayed, forged,
/// ...) while the rest of the run is delivered.
pub(super) fn classify_batch(
    ctx: &RxContext<'_>,
    nets: &mut [Option<NetInfo>],
    bufs: &mut impl Datagrams,
    received: &[Received],
    parsed: &mut Vec<Parsed>,
    plan: &mut Vec<RxInstruction>,
) {
    parsed.clear();
    parsed.extend(received.iter().map(|r| parse(bufs.datagram(r.buf, r.range.clone()))));
    let mut start = 0;
    while start < received.len() {
        let (from, first) = (received[start].from, parsed[start]);
        let len = 1 + received[start + 1..]
            .iter()
            .zip(&parsed[start + 1..])
            .take_while(|(r, p)| r.from == from && same_run(p, &first))
            .count();
        let end = start + len;
        classify_run(ctx, nets, bufs, &received[start..end], &parsed[start..end], plan);
        start = end;
    }
}

/// Classifies one run of [`classify_batch`].
fn classify_run(
    ctx: &RxContext<'_>,
    nets: &mut [Option<NetInfo>],
    bufs: &mut impl Datagrams,
    run: &[Received],
    parsed: &[Parsed],
    plan: &mut Vec<RxInstruction>,
) {
    let drop_all = |plan: &mut Vec<RxInstruction>, reason| plan.extend(run.iter().map(|_| RxInstruction::Drop(reason)));
    let (vni, header) = match parsed[0] {
        Parsed::Bad(reason) => return drop_all(plan, reason),
        Parsed::Plain(vni) => (vni, None),
        Parsed::Encrypted(header) => (header.vni, Some(header)),
    };
    let resolved = resolve_peer(ctx, nets, vni, run[0].from);
    // A replica knows only the peers its owner mirrored and learns none: on
    // a VTEP that learns peers, any other sender's datagrams go to the
    // owner, plain ones as they came, encrypted ones once opened here
    // (below). Otherwise they are dropped here, as the owner would (the
    // control side makes a peer's port reach every replica before it
    // returns): a stranger's packets cost no copy to the owner. Encrypted
    // ones go to the owner opened even when another worker handed them
    // here unopened (their session is this worker's): the owner has no
    // owner to hand them to, so they cannot come back.
    let unknown = matches!(resolved, Ok((_, _, None)) | Err(DropReason::UnknownPeer));
    let may_hand_over = ctx.hand_over || header.is_some();
    let to_owner = if unknown && may_hand_over && ctx.learn { replica_owner(ctx, nets, vni) } else { None };
    if let (Some(owner), None) = (to_owner, header) {
        return hand_over_run(plan, run, owner);
    }
    let (network, peer, known) = match (resolved, to_owner) {
        (Ok(found), _) => found,
        (Err(_), Some(_)) => match sender_of(ctx, vni, run[0].from) {
            Some((network, peer)) => (network, peer, None),
            None => return drop_all(plan, DropReason::UnknownVni),
        },
        (Err(reason), None) => return drop_all(plan, reason),
    };
    let Some(info) = nets.get_mut(network.index()).and_then(Option::as_mut) else {
        return drop_all(plan, DropReason::UnknownVni);
    };
    let instruction = |r: &Received, inner: Range<usize>, checksum| {
        let frame = r.range.start + inner.start..r.range.start + inner.end;
        match (known, to_owner) {
            (Some(port), _) => RxInstruction::Deliver { port, buf: r.buf, frame, checksum, peer },
            (None, Some(owner)) => RxInstruction::HandOverOpened { owner, buf: r.buf, frame, checksum, peer },
            (None, None) => RxInstruction::Learn { network, peer, buf: r.buf, frame, checksum },
        }
    };
    // Authenticate before anything learns from a packet.
    match (&mut info.crypto, header) {
        (Some(keys), Some(header)) => {
            let mut session = match keys.session(&header) {
                Ok(session) => session,
                // A session another worker opens, read from this worker's
                // socket: the kernel's GRO merged it behind one of ours (a
                // sender's new session after a key rotation), or the
                // steering program is missing.
                Err(OpenError::OtherThread { thread }) if ctx.hand_over => {
                    return hand_over_run(plan, run, thread as usize);
                }
                Err(e) => return drop_all(plan, open_drop_reason(e)),
            };
            for (r, p) in run.iter().zip(parsed) {
                let Parsed::Encrypted(header) = p else {
                    plan.push(RxInstruction::Drop(DropReason::CryptoMalformed));
                    continue;
                };
                let datagram = bufs.datagram(r.buf, r.range.clone());
                let opened = session.open(header, datagram).map_err(open_drop_reason).and_then(|opened| {
                    let checksum = opened_checksum(&datagram[opened.inner.clone()], opened.checksum)?;
                    Ok((opened.inner, checksum))
                });
                plan.push(match opened {
                    Ok((inner, checksum)) => instruction(r, inner, checksum),
                    Err(reason) => RxInstruction::Drop(reason),
                });
            }
        }
        (Some(_), None) => drop_all(plan, DropReason::Unencrypted),
        (None, Some(_)) => drop_all(plan, DropReason::UnexpectedEncrypted),
        (None, None) => {
            plan.extend(run.iter().map(|r| instruction(r, vxlan::HEADER_LEN..r.range.len(), ChecksumState::Unverified)))
        }
    }
}

/// Hands every datagram of `run`, as it came, to `worker`.
fn hand_over_run(plan: &mut Vec<RxInstruction>, run: &[Received], worker: usize) {
    plan.extend(run.iter().map(|r| RxInstruction::HandOver {
        worker,
        buf: r.buf,
        datagram: r.range.clone(),
        from: r.from,
    }));
}

/// Who sent a run: the network, the peer (as the peer table knows it) and
/// its tunnel port, if known.
type Sender = (NetworkId, (Vni, SocketAddr), Option<PortId>);

/// The network of `vni`, the peer `sender` is (at the port it listens on)
/// and its tunnel port if known; an unknown peer only where it may be
/// learned.
fn resolve_peer(
    ctx: &RxContext<'_>,
    nets: &[Option<NetInfo>],
    vni: Vni,
    sender: SocketAddr,
) -> Result<Sender, DropReason> {
    let (network, (_, remote)) = sender_of(ctx, vni, sender).ok_or(DropReason::UnknownVni)?;
    if nets.get(network.index()).and_then(Option::as_ref).is_none() {
        return Err(DropReason::UnknownVni);
    }
    let known = ctx.peers.lookup(vni, remote).map(PortId);
    // Only a peer the VTEP could answer is learned: never one of the other
    // address family (the kernel's IPv6 sockets are V6ONLY, so none arrives
    // from them; this keeps any underlay honest).
    if known.is_none() && (!ctx.learn || vxlan::check_peer(ctx.local, remote).is_err()) {
        return Err(DropReason::UnknownPeer);
    }
    Ok((network, (vni, remote), known))
}

/// The network of `vni` and the peer `sender` is (at the port it listens
/// on), known or not.
fn sender_of(ctx: &RxContext<'_>, vni: Vni, sender: SocketAddr) -> Option<(NetworkId, (Vni, SocketAddr))> {
    let &network = ctx.vnis.get(&vni.get())?;
    let ip = sender.ip();
    Some((network, (vni, SocketAddr::new(ip, ctx.peer_ports.get(&ip).copied().unwrap_or(ctx.local.port())))))
}

/// What becomes of an inner frame a replica opened and handed over (see
/// [`RxInstruction::HandOverOpened`]), lying at `frame` of buffer `buf`:
/// delivered from its sender's tunnel port, learned, or dropped.
pub(super) fn classify_opened(
    ctx: &RxContext<'_>,
    nets: &[Option<NetInfo>],
    (vni, from): (Vni, SocketAddr),
    buf: usize,
    frame: Range<usize>,
    checksum: ChecksumState,
) -> RxInstruction {
    match resolve_peer(ctx, nets, vni, from) {
        Ok((_, peer, Some(port))) => RxInstruction::Deliver { port, buf, frame, checksum, peer },
        Ok((network, peer, None)) => RxInstruction::Learn { network, peer, buf, frame, checksum },
        Err(reason) => RxInstruction::Drop(reason),
    }
}

/// The worker owning the network of `vni` when this worker holds a replica
/// of it (a spread overlay).
fn replica_owner(ctx: &RxContext<'_>, nets: &[Option<NetInfo>], vni: Vni) -> Option<usize> {
    let network = ctx.vnis.get(&vni.get())?;
    nets.get(network.index()).and_then(Option::as_ref)?.owner
}

/// What an opened packet's sender says of its inner frame's checksum. A
/// partial checksum must lie where [`offload::partial_checksum_hdr`] finds
/// it; an authenticated packet claiming one for another kind of frame is
/// refused as malformed.
fn opened_checksum(inner: &[u8], checksum: InnerChecksum) -> Result<ChecksumState, DropReason> {
    match checksum {
        InnerChecksum::AsSent => Ok(ChecksumState::AsSent),
        InnerChecksum::Partial if offload::partial_checksum_hdr(inner).is_some() => Ok(ChecksumState::Partial),
        InnerChecksum::Partial => Err(DropReason::CryptoMalformed),
    }
}

/// The drop reason for an encrypted packet that did not open.
fn open_drop_reason(e: OpenError) -> DropReason {
    match e {
        OpenError::Malformed(_) | OpenError::VniMismatch { .. } => DropReason::CryptoMalformed,
        OpenError::UnknownEpoch { .. } => DropReason::UnknownEpoch,
        OpenError::AuthenticationFailed => DropReason::AuthFailed,
        OpenError::CipherMismatch { .. } => DropReason::CipherMismatch,
        OpenError::OtherThread { .. } => DropReason::Misdirected,
        OpenError::Reflected => DropReason::Reflected,
        OpenError::Replayed { .. } | OpenError::TooOld { .. } => DropReason::Replayed,
    }
}

impl Datapath {
    /// Reads a batch from the underlay socket, classifies every datagram,
    /// then applies the instructions: frames join the batch from their
    /// tunnel ports, peers are seen or learned, the rest is counted.
    pub(super) fn read_tunnel(&mut self) {
        let now = self.clock.now();
        let Datapath {
            tunnel, batch, nets, vnis, peers, peer_ports, tunnel_ready, captures, rx_plan, rx_parsed, ..
        } = self;
        let Some(tunnel) = tunnel.as_mut() else { return };
        match tunnel.receive(batch) {
            Ok(more) => *tunnel_ready = more,
            Err(e) => {
                tracing::warn!(error = %e, "underlay receive failed; waiting for the next event");
                *tunnel_ready = false;
                return;
            }
        }
        let config = tunnel.config();
        if captures.underlay {
            for received in tunnel.received() {
                let datagram = batch.buffer_mut(received.buf, received.range.clone());
                captures.datagram(ctl::proto::Direction::Rx, received.from, config.local, datagram);
            }
        }
        let ctx =
            RxContext { local: config.local, learn: config.learn_peers, vnis, peers, peer_ports, hand_over: true };
        rx_plan.clear();
        classify_batch(&ctx, nets, batch, tunnel.received(), rx_parsed, rx_plan);
        self.apply_rx_plan(now);
    }

    /// Reads datagrams replicas handed over (see [`RxInstruction::HandOver`])
    /// into the batch's free buffers, classifies them as if this worker's
    /// socket had read them, and applies the instructions.
    pub(super) fn read_handed_datagrams(&mut self) {
        let now = self.clock.now();
        let mut received = std::mem::take(&mut self.rx_handed);
        received.clear();
        let mut opened = Vec::new();
        let mut read = 0;
        // At most half the batch, as for handed-over frames.
        while read < super::BUFFERS / 2 && !self.batch.is_full() {
            let Some(handed) = self.spread.next_datagram() else { break };
            read += 1;
            if let Some((buf, into)) = self.batch.take_buffer() {
                let len = handed.bytes.len();
                match (into.get_mut(..len), handed.opened) {
                    (Some(into), None) => {
                        into.copy_from_slice(&handed.bytes);
                        received.push(Received { buf, range: 0..len, from: handed.from });
                    }
                    (Some(into), Some((vni, checksum))) => {
                        into.copy_from_slice(&handed.bytes);
                        opened.push(((vni, handed.from), buf, len, checksum));
                    }
                    (None, _) => {
                        self.batch.return_buffer();
                        if let Some(tunnel) = self.tunnel.as_mut() {
                            tunnel.count_drop(DropReason::Oversize);
                        }
                    }
                }
            }
            self.spread.give_back_datagram(handed);
        }
        self.spread.taken_datagrams(read);
        let Some(tunnel) = self.tunnel.as_ref() else { return };
        let config = tunnel.config();
        let Datapath { batch, nets, vnis, peers, peer_ports, rx_plan, rx_parsed, .. } = self;
        let ctx =
            RxContext { local: config.local, learn: config.learn_peers, vnis, peers, peer_ports, hand_over: false };
        rx_plan.clear();
        classify_batch(&ctx, nets, batch, &received, rx_parsed, rx_plan);
        for (peer, buf, len, checksum) in opened {
            rx_plan.push(classify_opened(&ctx, nets, peer, buf, 0..len, checksum));
        }
        self.rx_handed = received;
        self.apply_rx_plan(now);
    }

    /// Carries out the instructions [`classify_batch`] left in `rx_plan`.
    fn apply_rx_plan(&mut self, now: crate::time::Timestamp) {
        let mut plan = std::mem::take(&mut self.rx_plan);
        for instruction in plan.drain(..) {
            self.apply(instruction, now);
        }
        self.rx_plan = plan;
    }

    /// Carries out one [`RxInstruction`].
    fn apply(&mut self, instruction: RxInstruction, now: crate::time::Timestamp) {
        let (port, buf, frame, checksum) = match instruction {
            RxInstruction::Drop(reason) => {
                if let Some(tunnel) = self.tunnel.as_mut() {
                    tunnel.count_drop(reason);
                }
                return;
            }
            RxInstruction::HandOver { worker, buf, datagram, from } => {
                let bytes = self.batch.buffer_mut(buf, datagram);
                if !self.spread.hand_over_datagram(worker, from, bytes, None)
                    && let Some(tunnel) = self.tunnel.as_mut()
                {
                    tunnel.count_drop(DropReason::HandOverBusy);
                }
                return;
            }
            RxInstruction::HandOverOpened { owner, buf, frame, checksum, peer: (vni, from) } => {
                let bytes = self.batch.buffer_mut(buf, frame);
                if !self.spread.hand_over_datagram(owner, from, bytes, Some((vni, checksum)))
                    && let Some(tunnel) = self.tunnel.as_mut()
                {
                    tunnel.count_drop(DropReason::OwnerBusy);
                }
                return;
            }
            RxInstruction::Deliver { port, buf, frame, checksum, peer: (vni, remote) } => {
                self.peers.on_packet(vni, remote, now.0);
                (port, buf, frame, checksum)
            }
            RxInstruction::Learn { network, peer: (vni, remote), buf, frame, checksum } => {
                match self.learn_peer(network, vni, remote, now) {
                    Ok(port) => (port, buf, frame, checksum),
                    Err(reason) => {
                        if let Some(tunnel) = self.tunnel.as_mut() {
                            tunnel.count_drop(reason);
                        }
                        return;
                    }
                }
            }
        };
        // Cannot fail: the tunnel took only as many buffers as the batch
        // has frame slots for.
        self.batch.push(RxEntry {
            buf,
            frame,
            port,
            has_vnet_hdr: false,
            hdr: VirtioNetHdr::default(),
            checksum,
            placed: Placed::No,
        });
    }

    /// The tunnel port of (`vni`, `remote`) on `network`: the one an earlier
    /// datagram of the batch created, or a new learned one.
    fn learn_peer(
        &mut self,
        network: NetworkId,
        vni: Vni,
        remote: SocketAddr,
        now: crate::time::Timestamp,
    ) -> Result<PortId, DropReason> {
        if let Some(handle) = self.peers.on_packet(vni, remote, now.0) {
            return Ok(PortId(handle));
        }
        let mtu = self.nets.get(network.index()).and_then(Option::as_ref).ok_or(DropReason::UnknownVni)?.mtu;
        if self.bridge.is_replica(network) {
            // Only the owner of a spread overlay makes its tunnel ports.
            return Err(DropReason::UnknownPeer);
        }
        let learned = super::TunnelOwners::LEARNED;
        let port = config::add_tunnel_port(
            &mut self.bridge,
            &mut self.ports,
            self.tunnel_slots,
            network,
            mtu,
            vni,
            remote,
            learned,
        )
        .map_err(|_| DropReason::UnknownPeer)?;
        if self.peers.learn(vni, remote, port.0, now.0).is_err() {
            let _ = self.bridge.remove_port(port);
            self.ports[port.index()] = None;
            return Err(DropReason::UnknownPeer);
        }
        self.impair_new_tunnel_port(port, remote);
        tracing::info!(peer = %remote, vni = vni.get(), "learned a new peer");
        self.bridge.events_mut().push(now, EventKind::TunnelUp { network, port, remote, learned: true });
        self.mirror_to_replicas(network, port, Some(remote));
        Ok(port)
    }
}

#[cfg(test)]
mod tests {
    //! [`classify_batch`] alone: bytes and tables in, instructions out.

    use crypto::{ClusterSecret, NetworkCrypto};

    use super::*;
    use crate::daemon::datapath::testing::frames::{BROADCAST, frame, mac, vtep, vxlan};

    const VNI: u32 = 4242;

    /// Datagrams each in a buffer of its own (buffer `i` is datagram `i`).
    struct Bufs(Vec<Vec<u8>>);

    impl Datagrams for Bufs {
        fn datagram(&mut self, buf: usize, range: Range<usize>) -> &mut [u8] {
            &mut self.0[buf][range]
        }
    }

    fn tables() -> (HashMap<u32, NetworkId>, PeerTable, Vec<Option<NetInfo>>) {
        let vnis = HashMap::from([(VNI, NetworkId(0))]);
        let mut peers = PeerTable::new(vxlan::PeerTableConfig::default());
        peers.add_static(Vni::new(VNI).unwrap(), vtep(2), 9).unwrap();
        peers.add_static(Vni::new(VNI).unwrap(), vtep(3), 10).unwrap();
        let info = NetInfo {
            vni: Vni::new(VNI),
            crypto: None,
            key_base: 0,
            key_rotation: None,
            mtu: 1450,
            egress: false,
            gateway: None,
            mss_clamp: false,
            dns: Default::default(),
            cluster: Default::default(),
            proxy: Default::default(),
            owner: None,
        };
        (vnis, peers, vec![Some(info)])
    }

    /// Classifies `datagrams` (each from its sender) as one batch.
    fn classify(
        ctx: &RxContext<'_>,
        nets: &mut [Option<NetInfo>],
        datagrams: &[(SocketAddr, Vec<u8>)],
    ) -> (Vec<RxInstruction>, Bufs) {
        let mut bufs = Bufs(datagrams.iter().map(|(_, d)| d.clone()).collect());
        let received: Vec<Received> = datagrams
            .iter()
            .enumerate()
            .map(|(buf, (from, d))| Received { buf, range: 0..d.len(), from: *from })
            .collect();
        let (mut parsed, mut plan) = (Vec::new(), Vec::new());
        classify_batch(ctx, nets, &mut bufs, &received, &mut parsed, &mut plan);
        assert_eq!(plan.len(), datagrams.len(), "one instruction per datagram");
        (plan, bufs)
    }

    #[test]
    fn datagrams_become_instructions_without_touching_ports_or_peers() {
        let (vnis, peers, mut nets) = tables();
        let ports = HashMap::new();
        let mut ctx =
            RxContext { local: vtep(1), learn: false, vnis: &vnis, peers: &peers, peer_ports: &ports, hand_over: true };
        let inner = frame(BROADCAST, mac(7), 1);
        let d = vxlan(VNI, &inner);
        let len = d.len();
        let vni = Vni::new(VNI).unwrap();
        let stranger = SocketAddr::from(([192, 0, 2, 9], 4789));
        let mut bad_flags = d.clone();
        bad_flags[0] = 0;
        let batch = [
            (vtep(2), d.clone()),
            (stranger, d.clone()),
            (vtep(2), vxlan(VNI + 1, &inner)),
            (vtep(2), bad_flags.clone()),
            (vtep(2), d.clone()),
        ];
        let deliver = |buf| RxInstruction::Deliver {
            port: PortId(9),
            buf,
            frame: 8..len,
            checksum: ChecksumState::Unverified,
            peer: (vni, vtep(2)),
        };
        let (plan, _) = classify(&ctx, &mut nets, &batch);
        assert_eq!(
            plan,
            vec![
                deliver(0),
                RxInstruction::Drop(DropReason::UnknownPeer),
                RxInstruction::Drop(DropReason::UnknownVni),
                RxInstruction::Drop(DropReason::VxlanBadFlags),
                deliver(4),
            ]
        );
        ctx.learn = true;
        let (plan, _) = classify(&ctx, &mut nets, &[(stranger, d.clone())]);
        assert_eq!(
            plan,
            vec![RxInstruction::Learn {
                network: NetworkId(0),
                peer: (vni, stranger),
                buf: 0,
                frame: 8..len,
                checksum: ChecksumState::Unverified,
            }]
        );
        assert_eq!(peers.len(), 2, "classifying learned nothing");
    }

    #[test]
    fn a_batch_opens_each_packet_and_drops_the_bad_ones_under_their_own_reasons() {
        let (vnis, peers, mut nets) = tables();
        let secret = ClusterSecret::from_bytes([3; 32]);
        let vni = Vni::new(VNI).unwrap();
        let mut ours = NetworkCrypto::new(&secret, vni, 5).unwrap();
        let mut own = Vec::new();
        ours.seal(0, &frame(BROADCAST, mac(7), 30), &mut own).unwrap();
        nets[0].as_mut().unwrap().crypto = Some(Box::new(ours));
        let ports = HashMap::new();
        let ctx =
            RxContext { local: vtep(1), learn: false, vnis: &vnis, peers: &peers, peer_ports: &ports, hand_over: true };

        // Host 2 seals six frames (counters 0..6) in one session; host 3
        // two in another; an epoch-9 sender (not accepted: 4..=6 are).
        let mut two = NetworkCrypto::new(&secret, vni, 5).unwrap();
        let mut three = NetworkCrypto::new(&secret, vni, 5).unwrap();
        let mut stale = NetworkCrypto::new(&secret, vni, 9).unwrap();
        let seal = |keys: &mut NetworkCrypto, tag: u8| {
            let mut out = Vec::new();
            keys.seal(0, &frame(BROADCAST, mac(7), tag), &mut out).unwrap();
            out
        };
        let p: Vec<Vec<u8>> = (0..6).map(|tag| seal(&mut two, tag)).collect();
        let (q0, q1) = (seal(&mut three, 10), seal(&mut three, 11));
        let mut forged = p[4].clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        let batch = [
            (vtep(2), p[1].clone()),
            (vtep(2), p[0].clone()),         // reordered: still delivered
            (vtep(2), p[1].clone()),         // replayed within the batch
            (vtep(2), forged),               // tag does not verify
            (vtep(2), seal(&mut stale, 20)), // epoch 9: unknown
            (vtep(2), p[2].clone()),
            (vtep(3), q1.clone()),
            (vtep(3), q0.clone()),
            (vtep(2), own),          // our own session, sent back
            (vtep(2), p[4].clone()), // the genuine one still opens
            (vtep(2), p[3].clone()),
            (vtep(2), vxlan(VNI, &frame(BROADCAST, mac(7), 40))), // plain
        ];
        let (plan, bufs) = classify(&ctx, &mut nets, &batch);
        let outcome: Vec<Result<(PortId, u8), DropReason>> = plan
            .iter()
            .map(|i| match i {
                RxInstruction::Deliver { port, buf, frame, .. } => Ok((*port, bufs.0[*buf][frame.clone()][14])),
                RxInstruction::Drop(reason) => Err(*reason),
                RxInstruction::Learn { .. } | RxInstruction::HandOver { .. } | RxInstruction::HandOverOpened { .. } => {
                    panic!("nothing to learn: {i:?}")
                }
            })
            .collect();
        // The frames' first payload byte is their tag.
        let tag = |n: u8| frame(BROADCAST, mac(7), n)[14];
        assert_eq!(
            outcome,
            vec![
                Ok((PortId(9), tag(1))),
                Ok((PortId(9), tag(0))),
                Err(DropReason::Replayed),
                Err(DropReason::AuthFailed),
                Err(DropReason::UnknownEpoch),
                Ok((PortId(9), tag(2))),
                Ok((PortId(10), tag(11))),
                Ok((PortId(10), tag(10))),
                Err(DropReason::Reflected),
                Ok((PortId(9), tag(4))),
                Ok((PortId(9), tag(3))),
                Err(DropReason::Unencrypted),
            ]
        );
        // Every accepted counter is now in the window: the whole batch again
        // is refused as replayed (the forged copy of counter 4 too, before
        // its tag is tried; stale and reflected as before).
        let (again, _) = classify(&ctx, &mut nets, &batch);
        let reasons: Vec<DropReason> = again
            .iter()
            .map(|i| match i {
                RxInstruction::Drop(reason) => *reason,
                other => panic!("accepted twice: {other:?}"),
            })
            .collect();
        use DropReason::{Reflected, Replayed, Unencrypted, UnknownEpoch};
        let expected = [
            Replayed,
            Replayed,
            Replayed,
            Replayed,
            UnknownEpoch,
            Replayed,
            Replayed,
            Replayed,
            Reflected,
            Replayed,
            Replayed,
            Unencrypted,
        ];
        assert_eq!(reasons, expected);
    }
}
