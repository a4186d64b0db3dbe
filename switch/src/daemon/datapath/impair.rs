//! Link impairment on the datapath (`port impair`): frames leaving an
//! impaired TAP port, or a tunnel port toward an impaired VTEP, go through
//! its [`Impairer`] instead of straight out; the ones it queues are sent
//! when due, by the loop, which wakes up for the earliest departure (no
//! thread, no sleep). A port without impairment costs one check of an
//! emptiness flag on the send path (and an indexed flag once any port is
//! impaired).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::super::tunnel::{TunnelTx, TxOutcome};
use super::handle::{DatapathError, ImpairSnapshot, Snapshot};
use super::{Datapath, PortIo, tx_drop_reason};
use crate::counters::DropReason;
use crate::impair::{Decision, ImpairCounters, ImpairSettings, Impairer};
use crate::offload;
use crate::port::PortId;
use crate::wire::VirtioNetHdr;

/// One port's impairment: the core while impaired, and the counters of
/// the cores it had before (counters never go back while the port lives).
#[derive(Debug, Default)]
struct PortImpair {
    core: Option<Box<Impairer>>,
    earlier: ImpairCounters,
}

impl PortImpair {
    fn counters(&self) -> ImpairCounters {
        self.core.as_ref().map(|c| c.counters()).unwrap_or_default().after(self.earlier)
    }
}

/// Every port's impairment and the clock they share.
#[derive(Debug)]
pub(super) struct ImpairIo {
    ports: Vec<Option<PortImpair>>,
    /// Ports with a core: walked for deadlines and releases.
    active: Vec<PortId>,
    /// Per port index: it has a core (the send path's O(1) check).
    impaired: Vec<bool>,
    /// Impaired VTEPs: every tunnel port toward one, present or added
    /// later, gets a core of its own with these settings.
    tunnels: HashMap<SocketAddr, ImpairSettings>,
    /// Frames released to tunnel ports so far: their ids for the tunnel
    /// (apart from the batch's, whose ids start at bit 32 of a batch
    /// generation; the top bit is never a generation's).
    released: u64,
}

impl ImpairIo {
    pub(super) fn new() -> ImpairIo {
        ImpairIo { ports: Vec::new(), active: Vec::new(), impaired: Vec::new(), tunnels: HashMap::new(), released: 0 }
    }

    /// Whether frames to `port` go through an impairment: the send path's
    /// only cost when no port is impaired is the first comparison.
    #[inline]
    pub(super) fn is_impaired(&self, port: PortId) -> bool {
        !self.active.is_empty() && self.impaired.get(port.index()).copied().unwrap_or(false)
    }

    /// Records whether `port` has a core.
    fn mark(&mut self, port: PortId, impaired: bool) {
        if impaired {
            if self.impaired.len() <= port.index() {
                self.impaired.resize(port.index() + 1, false);
            }
            if !self.active.contains(&port) {
                self.active.push(port);
            }
        } else {
            self.active.retain(|p| *p != port);
        }
        if let Some(flag) = self.impaired.get_mut(port.index()) {
            *flag = impaired;
        }
    }

    /// How long the loop may wait, from `now` (ns on the loop's clock),
    /// before the next queued frame is due.
    pub(super) fn timeout(&self, now: u64) -> Option<Duration> {
        if self.active.is_empty() {
            return None;
        }
        let next = self.active.iter().filter_map(|p| self.core(*p)?.next_deadline()).min()?;
        Some(Duration::from_nanos(next.saturating_sub(now)))
    }

    fn core(&self, port: PortId) -> Option<&Impairer> {
        self.ports.get(port.index())?.as_ref()?.core.as_deref()
    }

    /// Forgets a removed port; its queued frames go with it.
    pub(super) fn remove(&mut self, port: PortId) {
        if let Some(slot) = self.ports.get_mut(port.index()) {
            *slot = None;
        }
        self.mark(port, false);
    }
}

impl Datapath {
    /// How long the loop may wait before the next impaired frame is due.
    pub(super) fn impair_timeout(&self) -> Option<Duration> {
        self.impair.timeout(self.clock.now_ns())
    }

    /// Offers frame `i` of the batch, bound for impaired `port`, to its
    /// impairment; true when it was queued or dropped, false when it is to
    /// be sent now as usual.
    pub(super) fn impair_offer(&mut self, port: PortId, i: usize) -> bool {
        let now = self.clock.now_ns();
        let hdr = self.batch.vnet_hdr(i);
        let frame = self.batch.frame(i);
        let wire = offload::wire_len(frame, &hdr) as u64;
        let Some(core) = self.impair.ports.get_mut(port.index()).and_then(Option::as_mut).and_then(|p| p.core.as_mut())
        else {
            return false;
        };
        let hdr = hdr.to_bytes();
        !matches!(core.offer(now, &[&hdr, frame], wire), Decision::SendNow)
    }

    /// Whether frame `i`, bound for tunnel port `port`, is too big for the
    /// tunnel: it bypasses the impairment, so that the send path answers
    /// it with ICMP (which needs the frame, gone from the batch once
    /// queued). False for any other port.
    pub(super) fn too_big_for_tunnel(&self, port: PortId, i: usize) -> bool {
        let (Some(Some(PortIo::Tunnel { .. })), Some(tunnel)) = (self.ports.get(port.index()), self.tunnel.as_ref())
        else {
            return false;
        };
        let encrypted = self
            .bridge
            .port_config(port)
            .ok()
            .and_then(|c| self.nets.get(c.network.index())?.as_ref())
            .is_some_and(|n| n.crypto.is_some());
        let ip_mtu = tunnel.ip_mtu(encrypted).min(u32::from(u16::MAX)) as u16;
        offload::exceeds_mtu(self.batch.frame(i), &self.batch.vnet_hdr(i), ip_mtu).is_some()
    }

    /// Sends the queued frames that are due.
    pub(super) fn release_impaired(&mut self) {
        if self.impair.active.is_empty() {
            return;
        }
        let now = self.clock.now_ns();
        for k in 0..self.impair.active.len() {
            let port = self.impair.active[k];
            let Some(slot) = self.impair.ports.get_mut(port.index()).and_then(Option::as_mut) else { continue };
            if slot.core.as_ref().and_then(|c| c.next_deadline()).is_none_or(|d| d > now) {
                continue;
            }
            // Out of its slot while it hands frames to the send path.
            let Some(mut core) = slot.core.take() else { continue };
            core.expire(now, |bytes| self.send_released(port, bytes));
            if let Some(slot) = self.impair.ports.get_mut(port.index()).and_then(Option::as_mut) {
                slot.core = Some(core);
            }
        }
        self.flush_tunnel();
        if self.captures.ports || self.captures.underlay {
            self.captures.wake();
        }
    }

    /// Sends a frame the impairment released (virtio-net header and
    /// Ethernet frame), as [`Datapath::send_one`] sends to a TAP or a
    /// tunnel port (whose pending train is flushed after the releases).
    fn send_released(&mut self, port: PortId, bytes: &[u8]) {
        match self.ports.get(port.index()) {
            Some(Some(PortIo::Tap(tap))) => {
                if let Err(e) = tap.send(bytes) {
                    self.bridge.count_drop(port, tx_drop_reason(&e));
                }
            }
            Some(Some(PortIo::Tunnel { vni, remote, .. })) => {
                let (vni, remote) = (*vni, *remote);
                self.send_released_to_tunnel(port, vni, remote, bytes);
            }
            _ => {}
        }
        // Captured as it leaves, after its delay.
        if self.captures.ports {
            let remote = match self.ports.get(port.index()) {
                Some(Some(PortIo::Tunnel { remote, .. })) => Some(*remote),
                _ => None,
            };
            super::capture::offer_written_to(&mut self.captures, &self.bridge, port, remote, bytes);
        }
    }

    /// Encapsulates (and on an encrypted overlay seals) a released frame
    /// toward `remote`. One too big for the tunnel is only counted: the
    /// frame it was is gone from the batch, so no ICMP error quotes it.
    fn send_released_to_tunnel(&mut self, port: PortId, vni: vxlan::Vni, remote: SocketAddr, bytes: &[u8]) {
        let Some(tunnel) = self.tunnel.as_mut() else { return };
        let Some(hdr) = VirtioNetHdr::parse(bytes) else { return };
        let frame = &bytes[VirtioNetHdr::LEN..];
        let network = self.bridge.port_config(port).map(|c| c.network).ok();
        let keys = network.and_then(|n| self.nets.get_mut(n.index())?.as_mut()?.crypto.as_deref_mut());
        self.impair.released += 1;
        let frame_id = 1 << 63 | self.impair.released;
        let tx = TunnelTx { port, vni, dest: remote, frame_id, frame, hdr: &hdr };
        match tunnel.send(tx, keys) {
            TxOutcome::Queued if self.captures.underlay => self.capture_underlay_sent(remote),
            TxOutcome::Queued => {}
            TxOutcome::Dropped(reason) => self.bridge.count_drop(port, reason),
            TxOutcome::TooBig(_) => self.bridge.count_drop(port, DropReason::TooBigForTunnel),
        }
    }

    /// Impairs `port` with `settings`, or clears its impairment (`None`).
    /// Frames queued under the previous settings are sent at once.
    pub(super) fn set_impairment(
        &mut self,
        port: PortId,
        settings: Option<ImpairSettings>,
    ) -> Result<(), DatapathError> {
        if !matches!(self.ports.get(port.index()), Some(Some(PortIo::Tap(_)))) {
            return Err(DatapathError::NotImpairable(port));
        }
        self.impair_port(port, settings);
        Ok(())
    }

    /// Impairs every tunnel port toward `remote` with `settings`, those
    /// added later too, or clears their impairment (`None`). Returns how
    /// many ports this worker has toward it now.
    pub(super) fn set_tunnel_impairment(&mut self, remote: SocketAddr, settings: Option<ImpairSettings>) -> usize {
        match &settings {
            Some(s) => self.impair.tunnels.insert(remote, *s),
            None => self.impair.tunnels.remove(&remote),
        };
        let ports: Vec<PortId> = self
            .ports
            .iter()
            .enumerate()
            .filter(|(_, io)| matches!(io, Some(PortIo::Tunnel { remote: r, .. }) if *r == remote))
            .map(|(index, _)| PortId(index as u32))
            .collect();
        for &port in &ports {
            self.impair_port(port, settings);
        }
        ports.len()
    }

    /// Gives a tunnel port just added toward `remote` the VTEP's
    /// impairment, if it has one.
    pub(super) fn impair_new_tunnel_port(&mut self, port: PortId, remote: SocketAddr) {
        if let Some(settings) = self.impair.tunnels.get(&remote).copied() {
            self.impair_port(port, Some(settings));
        }
    }

    fn impair_port(&mut self, port: PortId, settings: Option<ImpairSettings>) {
        if self.impair.ports.len() <= port.index() {
            self.impair.ports.resize_with(port.index() + 1, || None);
        }
        let now = self.clock.now_ns();
        let slot = self.impair.ports[port.index()].get_or_insert_with(PortImpair::default);
        slot.earlier = ImpairCounters { queued: 0, ..slot.counters() };
        if let Some(mut old) = slot.core.take() {
            old.flush(|bytes| self.send_released(port, bytes));
        }
        let slot = self.impair.ports[port.index()].get_or_insert_with(PortImpair::default);
        match settings {
            Some(settings) => {
                slot.core = Some(Box::new(Impairer::new(settings, fastrand::u64(..), now)));
                self.impair.mark(port, true);
            }
            None => self.impair.mark(port, false),
        }
        self.flush_tunnel();
    }

    /// Adds the impairments' counters to a snapshot: their drops to the
    /// ports' drop counters, the rest per port.
    pub(super) fn impair_snapshot(&self, snapshot: &mut Snapshot) {
        for (index, slot) in self.impair.ports.iter().enumerate() {
            let Some(slot) = slot else { continue };
            let port = PortId(index as u32);
            let counters = slot.counters();
            if let Some((_, _, c)) = snapshot.ports.iter_mut().find(|(p, _, _)| *p == port) {
                c.drops.add(DropReason::ImpairLoss, counters.lost);
                c.drops.add(DropReason::ImpairQueueFull, counters.queue_full);
            }
            let settings = slot.core.as_ref().map(|c| *c.settings().spec());
            snapshot.impair.push(ImpairSnapshot { port, settings, counters });
        }
    }
}
