//! Where the datapath hands frames to the running captures: every frame of
//! a batch as it enters the bridge (received from its port: a TAP, a
//! tunnel's inner frame, the gateway's output), every frame as it leaves
//! through a port, and the underlay's datagrams both ways. Each call site
//! checks one flag first, so without captures this costs a branch.

use std::net::SocketAddr;

use ctl::proto::Direction;

use super::{Datapath, PortIo};
use crate::bridge::Bridge;
use crate::daemon::batch::{HDR, Placed};
use crate::daemon::capture::Captures;
use crate::port::{NetworkId, PortId};

/// Offers a frame written to the TAP `port` with its virtio-net header in
/// front (a GRO merge, a frame an impairment released) as sent.
pub(super) fn offer_written(captures: &mut Captures, bridge: &Bridge, port: PortId, with_vnet_hdr: &[u8]) {
    offer_written_to(captures, bridge, port, None, with_vnet_hdr);
}

/// [`offer_written`] for a frame sent to tunnel port `port` toward
/// `remote` (`None` for other ports).
pub(super) fn offer_written_to(
    captures: &mut Captures,
    bridge: &Bridge,
    port: PortId,
    remote: Option<SocketAddr>,
    with_vnet_hdr: &[u8],
) {
    if let Some(frame) = with_vnet_hdr.get(HDR..) {
        captures.frame(port, Direction::Tx, frame, || network_of(bridge, port), remote);
    }
}

/// The network of `port`.
fn network_of(bridge: &Bridge, port: PortId) -> Option<NetworkId> {
    bridge.port_config(port).ok().map(|c| c.network)
}

/// The remote VTEP of a tunnel port.
fn remote_of(ports: &[Option<PortIo>], port: PortId) -> Option<SocketAddr> {
    match ports.get(port.index()) {
        Some(Some(PortIo::Tunnel { remote, .. })) => Some(*remote),
        _ => None,
    }
}

impl Datapath {
    /// Offers every frame of the batch, as received from its port; except
    /// on a replica of a spread network, where a frame is offered as
    /// received only when the replica forwards it ([`Datapath::capture_sent`]),
    /// the owner offering those it hands over, so none is offered twice.
    pub(super) fn capture_batch(&mut self) {
        let Datapath { captures, batch, bridge, ports, .. } = self;
        for i in 0..batch.len() {
            let entry = batch.entry(i);
            let port = entry.port;
            // A replica's frames are offered as it forwards them; a frame
            // this owner placed on a replica and got back, when it was read.
            if bridge.on_replica(port) || entry.placed == Placed::ByOwner {
                continue;
            }
            let remote = remote_of(ports, port);
            captures.frame(port, Direction::Rx, batch.frame(i), || network_of(bridge, port), remote);
        }
    }

    /// Offers frame `i` of the batch as sent out of `port` (a frame a
    /// replica forwards, as received too; one it hands to the owner, not at
    /// all: the owner offers it).
    pub(super) fn capture_sent(&mut self, port: PortId, i: usize) {
        if let Some(Some(PortIo::Owner(_))) = self.ports.get(port.index()) {
            return;
        }
        self.capture_replica_rx(i);
        let Datapath { captures, batch, bridge, ports, .. } = self;
        let remote = remote_of(ports, port);
        captures.frame(port, Direction::Tx, batch.frame(i), || network_of(bridge, port), remote);
    }

    /// Offers frame `i` as received, when a replica of a spread network
    /// read it (the owner offered the ones it placed here when it read
    /// them): as [`Datapath::capture_sent`] does, also for a frame an
    /// impairment queues instead of sending.
    pub(super) fn capture_replica_rx(&mut self, i: usize) {
        let Datapath { captures, batch, bridge, .. } = self;
        let ingress = batch.entry(i).port;
        if bridge.on_replica(ingress) && batch.entry(i).placed != Placed::ByOwner {
            captures.frame(ingress, Direction::Rx, batch.frame(i), || network_of(bridge, ingress), None);
        }
    }

    /// Offers the datagrams the last tunnel send queued for the underlay.
    pub(super) fn capture_underlay_sent(&mut self, remote: SocketAddr) {
        let Datapath { captures, tunnel, .. } = self;
        let Some(tunnel) = tunnel.as_ref() else { return };
        let (source, datagrams) = tunnel.last_queued();
        for datagram in datagrams {
            captures.datagram(Direction::Tx, source, remote, datagram);
        }
    }
}
