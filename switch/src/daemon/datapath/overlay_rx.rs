//! Overlay receive, sans-IO: the [`Tunnel`](super::Tunnel) reads a batch of
//! datagrams and only says where they lie; [`classify`] decides, for each,
//! what becomes of it — an [`RxInstruction`] (deliver to a tunnel port,
//! create a learned peer and deliver, drop with a reason) — touching no
//! port, bridge or peer table; the loop applies the instructions after the
//! whole batch is classified (boringtun's "result as instruction").
//!
//! [`classify`] authenticates and opens encrypted packets in place (the
//! replay window of the network's keys is the only state it changes), so
//! nothing learns from a packet before it is known to be genuine.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

use crypto::{InnerChecksum, OpenError};
use vxlan::{PeerTable, Vni};

use super::{Datapath, NetInfo, config};
use crate::counters::DropReason;
use crate::daemon::batch::RxEntry;
use crate::events::EventKind;
use crate::offload::{self, ChecksumState};
use crate::port::{NetworkId, PortId};

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
    /// Refused, counted on the VTEP under this reason.
    Drop(DropReason),
}

/// What [`classify`] reads of the datapath's overlay state.
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
}

/// Decides what becomes of `datagram` (lying at `range` of batch buffer
/// `buf`), sent from `sender`: which network and peer it belongs to, and,
/// on an encrypted network, whether it opens (decrypted in place with the
/// network's keys in `nets`).
pub(super) fn classify(
    ctx: &RxContext<'_>,
    nets: &mut [Option<NetInfo>],
    datagram: &mut [u8],
    buf: usize,
    range: Range<usize>,
    sender: SocketAddr,
) -> RxInstruction {
    match classify_inner(ctx, nets, datagram, sender) {
        Ok(Verdict { network, peer, known, inner, checksum }) => {
            let frame = range.start + inner.start..range.start + inner.end;
            match known {
                Some(port) => RxInstruction::Deliver { port, buf, frame, checksum, peer },
                None => RxInstruction::Learn { network, peer, buf, frame, checksum },
            }
        }
        Err(reason) => RxInstruction::Drop(reason),
    }
}

/// What [`classify_inner`] found.
struct Verdict {
    network: NetworkId,
    peer: (Vni, SocketAddr),
    known: Option<PortId>,
    inner: Range<usize>,
    checksum: ChecksumState,
}

fn classify_inner(
    ctx: &RxContext<'_>,
    nets: &mut [Option<NetInfo>],
    datagram: &mut [u8],
    sender: SocketAddr,
) -> Result<Verdict, DropReason> {
    let ip = sender.ip();
    let encrypted = crypto::is_encrypted(datagram);
    let vni = if encrypted {
        crypto::Header::parse(datagram).map_err(|_| DropReason::CryptoMalformed)?.vni
    } else {
        match vxlan::decapsulate(datagram) {
            Ok((vni, _)) => vni,
            Err(vxlan::VxlanError::FlagNotSet { .. }) => return Err(DropReason::VxlanBadFlags),
            Err(_) => return Err(DropReason::VxlanMalformed),
        }
    };
    let &network = ctx.vnis.get(&vni.get()).ok_or(DropReason::UnknownVni)?;
    let info = nets.get_mut(network.index()).and_then(Option::as_mut).ok_or(DropReason::UnknownVni)?;
    let remote = SocketAddr::new(ip, ctx.peer_ports.get(&ip).copied().unwrap_or(ctx.local.port()));
    let known = ctx.peers.lookup(vni, remote).map(PortId);
    // Only a peer the VTEP could answer is learned: never one of the other
    // address family (the kernel's IPv6 sockets are V6ONLY, so none arrives
    // from them; this keeps any underlay honest).
    if known.is_none() && (!ctx.learn || vxlan::check_peer(ctx.local, remote).is_err()) {
        return Err(DropReason::UnknownPeer);
    }
    // Authenticate before anything learns from the packet.
    let (inner, checksum) = match (&mut info.crypto, encrypted) {
        (Some(keys), true) => {
            let opened = keys.open(datagram).map_err(open_drop_reason)?;
            (opened.inner.clone(), opened_checksum(&datagram[opened.inner], opened.checksum)?)
        }
        (Some(_), false) => return Err(DropReason::Unencrypted),
        (None, true) => return Err(DropReason::UnexpectedEncrypted),
        (None, false) => (vxlan::HEADER_LEN..datagram.len(), ChecksumState::Unverified),
    };
    Ok(Verdict { network, peer: (vni, remote), known, inner, checksum })
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
        let Datapath { tunnel, batch, nets, vnis, peers, peer_ports, tunnel_ready, captures, rx_plan, .. } = self;
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
        let ctx = RxContext { local: config.local, learn: config.learn_peers, vnis, peers, peer_ports };
        rx_plan.clear();
        for received in tunnel.received() {
            let datagram = batch.buffer_mut(received.buf, received.range.clone());
            if captures.underlay {
                captures.datagram(ctl::proto::Direction::Rx, received.from, config.local, datagram);
            }
            rx_plan.push(classify(&ctx, nets, datagram, received.buf, received.range.clone(), received.from));
        }
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
        self.batch.push(RxEntry { buf, frame, port, has_vnet_hdr: false, gso: false, checksum });
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
        tracing::info!(peer = %remote, vni = vni.get(), "learned a new peer");
        self.bridge.events_mut().push(now, EventKind::TunnelUp { network, port, remote, learned: true });
        Ok(port)
    }
}

#[cfg(test)]
mod tests {
    //! [`classify`] alone: bytes and tables in, an instruction out.

    use super::*;
    use crate::daemon::datapath::testing::frames::{BROADCAST, frame, mac, vtep, vxlan};

    const VNI: u32 = 4242;

    fn tables() -> (HashMap<u32, NetworkId>, PeerTable, Vec<Option<NetInfo>>) {
        let vnis = HashMap::from([(VNI, NetworkId(0))]);
        let mut peers = PeerTable::new(vxlan::PeerTableConfig::default());
        peers.add_static(Vni::new(VNI).unwrap(), vtep(2), 9).unwrap();
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
        };
        (vnis, peers, vec![Some(info)])
    }

    #[test]
    fn datagrams_become_instructions_without_touching_ports_or_peers() {
        let (vnis, peers, mut nets) = tables();
        let ports = HashMap::new();
        let mut ctx = RxContext { local: vtep(1), learn: false, vnis: &vnis, peers: &peers, peer_ports: &ports };
        let inner = frame(BROADCAST, mac(7), 1);
        let mut d = vxlan(VNI, &inner);
        let len = d.len();
        let vni = Vni::new(VNI).unwrap();
        assert_eq!(
            classify(&ctx, &mut nets, &mut d, 3, 100..100 + len, vtep(2)),
            RxInstruction::Deliver {
                port: PortId(9),
                buf: 3,
                frame: 108..100 + len,
                checksum: ChecksumState::Unverified,
                peer: (vni, vtep(2)),
            }
        );
        let stranger = SocketAddr::from(([192, 0, 2, 9], 4789));
        assert_eq!(
            classify(&ctx, &mut nets, &mut d.clone(), 0, 0..len, stranger),
            RxInstruction::Drop(DropReason::UnknownPeer)
        );
        ctx.learn = true;
        assert_eq!(
            classify(&ctx, &mut nets, &mut d.clone(), 0, 0..len, stranger),
            RxInstruction::Learn {
                network: NetworkId(0),
                peer: (vni, stranger),
                buf: 0,
                frame: 8..len,
                checksum: ChecksumState::Unverified,
            }
        );
        assert_eq!(peers.len(), 1, "classifying learned nothing");
        let mut other = vxlan(VNI + 1, &inner);
        assert_eq!(
            classify(&ctx, &mut nets, &mut other, 0, 0..len, vtep(2)),
            RxInstruction::Drop(DropReason::UnknownVni)
        );
        d[0] = 0;
        assert_eq!(
            classify(&ctx, &mut nets, &mut d, 0, 0..len, vtep(2)),
            RxInstruction::Drop(DropReason::VxlanBadFlags)
        );
    }
}
