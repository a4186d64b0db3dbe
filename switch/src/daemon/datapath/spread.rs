//! One network over several workers (`-o spread`): what a worker does as a
//! network's owner and as its replica (the rules are [`crate::replica`]'s).
//!
//! Every endpoint TAP of a spread network has one queue per worker; the
//! kernel steers each flow the sandbox sends to one queue (by its hash,
//! then to the queue that last wrote the flow's frames back), so a flow
//! stays on one worker in both directions. The owner's queue is an ordinary
//! port of its bridge. A replica's queue is a port of its replica network,
//! whose gateway port id stands for the owner: a frame the replica cannot
//! forward alone is planned there, and [`Datapath::punt`] copies it (its
//! virtio-net header included) into a message to the owner, sent once per
//! batch. The owner reads those frames into its next batch as if its own
//! queue of the port had delivered them, and after every wake-up sends the
//! changes of its spread networks' tables to every replica.
//!
//! Punted frames are copied into a fresh buffer each: they are a flow's
//! first frames (before the owner's table reached the replica, and the
//! kernel then steers the flow to whoever answered it), broadcasts, and
//! frames for ports only the owner has (the gateway, AF_XDP ports,
//! uplinks), not a flow's steady traffic.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::Sender;
use mio::Waker;

use super::handle::Command;
use super::{Datapath, PortIo};
use crate::counters::DropReason;
use crate::port::{NetworkId, PortId};
use crate::replica::{FdbChanges, MAX_HANDED_OVER};

/// Another worker's loop, reached without waiting for it: its command
/// channel and the waker of its poll.
#[derive(Debug, Clone)]
pub(super) struct WorkerLink {
    pub(super) commands: Sender<Command>,
    pub(super) waker: Arc<Waker>,
    /// Frames handed to this worker by replicas and not yet read into one
    /// of its batches (written by both sides, once per batch).
    pub(super) pending: Arc<AtomicUsize>,
}

impl WorkerLink {
    /// A link to the loop behind `commands` and `waker`.
    pub(super) fn new(commands: Sender<Command>, waker: Arc<Waker>) -> WorkerLink {
        WorkerLink { commands, waker, pending: Arc::new(AtomicUsize::new(0)) }
    }
}

impl WorkerLink {
    /// Queues `command` and wakes the worker; false (nothing sent) when
    /// the worker is gone (the daemon is stopping).
    fn send(&self, command: Command) -> bool {
        let sent = self.commands.send(command).is_ok();
        if sent {
            let _ = self.waker.wake();
        }
        sent
    }
}

/// A frame a replica handed to its network's owner: the port it arrived
/// on and its bytes, virtio-net header first.
#[derive(Debug)]
pub(super) struct Punted {
    pub(super) port: PortId,
    pub(super) bytes: Vec<u8>,
}

/// What a worker keeps for spread networks.
#[derive(Debug, Default)]
pub(super) struct Spread {
    /// This worker's index.
    me: usize,
    /// Every worker's link, by index (this one's included); empty in a
    /// single-worker datapath, which spreads nothing.
    links: Vec<WorkerLink>,
    /// Spread networks this worker owns.
    owned: Vec<NetworkId>,
    /// Frames for each owner (by worker index), sent after the batch.
    outgoing: Vec<Vec<Punted>>,
    /// Frames replicas handed to this worker, not yet read into a batch.
    incoming: VecDeque<Punted>,
    /// When this worker last told owners which stations it forwarded for.
    seen_sent: crate::time::Timestamp,
    /// Frames this worker handed to owners.
    pub(super) punted: u64,
    /// Frames replicas handed to this worker.
    pub(super) taken: u64,
}

impl Spread {
    /// Connects worker `me` to every worker's loop.
    pub(super) fn connect(&mut self, me: usize, links: Vec<WorkerLink>) {
        self.outgoing = (0..links.len()).map(|_| Vec::new()).collect();
        self.me = me;
        self.links = links;
    }

    /// Whether frames from replicas wait to be read.
    pub(super) fn has_input(&self) -> bool {
        !self.incoming.is_empty()
    }

    /// Takes frames a replica handed over.
    pub(super) fn receive(&mut self, frames: Vec<Punted>) {
        self.taken += frames.len() as u64;
        self.incoming.extend(frames);
    }

    /// The workers other than this one.
    fn others(&self) -> impl Iterator<Item = &WorkerLink> {
        let me = self.me;
        self.links.iter().enumerate().filter(move |&(k, _)| k != me).map(|(_, link)| link)
    }

    /// Whether a network can be spread: there is more than one worker.
    pub(super) fn can_spread(&self) -> bool {
        self.links.len() > 1
    }

    /// Records that this worker owns spread network `id`.
    pub(super) fn own(&mut self, id: NetworkId) {
        if !self.owned.contains(&id) {
            self.owned.push(id);
        }
    }

    /// Forgets spread network `id` (removed).
    pub(super) fn disown(&mut self, id: NetworkId) {
        self.owned.retain(|&n| n != id);
    }
}

impl Datapath {
    /// Plans frame `i` of the batch for `owner`, the worker owning its
    /// network (its bytes are copied: the batch is reused); dropped as
    /// `owner_busy` when the owner already has its fill waiting.
    pub(super) fn punt(&mut self, owner: usize, i: usize) {
        let port = self.batch.entry(i).port;
        let (Some(link), Some(queued)) = (self.spread.links.get(owner), self.spread.outgoing.get(owner)) else {
            return;
        };
        if link.pending.load(Ordering::Relaxed) + queued.len() >= MAX_HANDED_OVER {
            self.bridge.count_drop(port, DropReason::OwnerBusy);
            return;
        }
        let bytes = match self.batch.with_vnet_hdr(i) {
            Some(bytes) => bytes.to_vec(),
            None => {
                let mut bytes = vec![0; super::HDR];
                bytes.extend_from_slice(self.batch.frame(i));
                bytes
            }
        };
        let Some(queue) = self.spread.outgoing.get_mut(owner) else { return };
        queue.push(Punted { port, bytes });
        self.spread.punted += 1;
    }

    /// Sends the frames planned for owners, one message per owner.
    pub(super) fn send_punted(&mut self) {
        let Spread { outgoing, links, .. } = &mut self.spread;
        for (frames, link) in outgoing.iter_mut().zip(links.iter()) {
            if !frames.is_empty() {
                let n = frames.len();
                link.pending.fetch_add(n, Ordering::Relaxed);
                if !link.send(Command::Punted { frames: std::mem::take(frames) }) {
                    link.pending.fetch_sub(n, Ordering::Relaxed);
                }
            }
        }
    }

    /// Reads frames replicas handed over into the batch, as if this
    /// worker's own queue of their port had delivered them: at most half
    /// the batch's buffers, so that the owner's own ports and the replicas
    /// share its batches.
    pub(super) fn read_punted(&mut self) {
        let mut read = 0;
        while read < super::BUFFERS / 2 && !self.batch.is_full() {
            let Some(punted) = self.spread.incoming.pop_front() else { break };
            read += 1;
            if !self.batch.push_received(punted.port, &punted.bytes) {
                self.bridge.count_drop(punted.port, DropReason::Truncated);
            }
        }
        if let Some(me) = self.spread.links.get(self.spread.me) {
            me.pending.fetch_sub(read, Ordering::Relaxed);
        }
    }

    /// Forgets the frames replicas handed over for `port` (removed): its
    /// id may be reused by another network's port.
    pub(super) fn forget_punted(&mut self, port: PortId) {
        let before = self.spread.incoming.len();
        self.spread.incoming.retain(|p| p.port != port);
        if let Some(me) = self.spread.links.get(self.spread.me) {
            me.pending.fetch_sub(before - self.spread.incoming.len(), Ordering::Relaxed);
        }
    }

    /// Sends what changed in the tables of the spread networks this worker
    /// owns to every other worker.
    pub(super) fn send_fdb_changes(&mut self) {
        for index in 0..self.spread.owned.len() {
            let network = self.spread.owned[index];
            let Some(changes) = self.bridge.take_changes(network) else { continue };
            for link in self.spread.others() {
                link.send(Command::FdbChanges { network, changes: changes.clone() });
            }
        }
    }

    /// Tells the owner of every replica network which stations this worker
    /// forwarded for since the last time (once a second, from the tick):
    /// their traffic never reaches the owner, whose table would age them
    /// out. A scan of each replica's table: O(entries) a second.
    pub(super) fn send_replica_seen(&mut self, now: crate::time::Timestamp) {
        let since = std::mem::replace(&mut self.spread.seen_sent, now);
        let replicas: Vec<NetworkId> = self.bridge.network_ids().filter(|&n| self.bridge.is_replica(n)).collect();
        for network in replicas {
            let Some(Some(PortIo::Owner(owner))) = self.ports.get(super::gateway_port(network.0).index()) else {
                continue;
            };
            let seen = self.bridge.replica_seen(network, since);
            if let (false, Some(link)) = (seen.is_empty(), self.spread.links.get(*owner)) {
                link.send(Command::FdbSeen { network, seen });
            }
        }
    }

    /// Applies the owner's table changes to replica `network`.
    pub(super) fn apply_fdb_changes(&mut self, network: NetworkId, changes: FdbChanges) {
        if let Err(e) = self.bridge.apply_changes(network, changes) {
            tracing::debug!(%network, error = %e, "table changes for a network this worker does not replicate");
        }
    }

    /// Adds network `id` as a replica of worker `owner`'s: its gateway's
    /// port id stands for the owner. A refused table goes back in the
    /// error, to be freed off the packet path.
    #[expect(
        clippy::result_large_err,
        reason = "a control command, once per network and worker; the table is moved back, not boxed"
    )]
    pub(super) fn add_replica(
        &mut self,
        id: NetworkId,
        fdb: crate::fdb::Fdb,
        owner: usize,
    ) -> Result<(), (crate::fdb::Fdb, super::DatapathError)> {
        let punt = super::gateway_port(id.0);
        if self.ports.get(punt.index()).is_some_and(Option::is_some) {
            return Err((fdb, crate::bridge::BridgeError::PortExists(punt).into()));
        }
        self.bridge.add_replica_network(id, fdb, punt).map_err(|(fdb, e)| (fdb, e.into()))?;
        if self.ports.len() <= punt.index() {
            self.ports.resize_with(punt.index() + 1, || None);
        }
        self.ports[punt.index()] = Some(PortIo::Owner(owner));
        Ok(())
    }

    /// Frames this worker forwarded itself as a replica: what its ports of
    /// replica networks received (frames it handed on are not counted).
    pub(super) fn replica_rx(&self) -> u64 {
        self.bridge
            .network_ids()
            .filter(|&n| self.bridge.is_replica(n))
            .filter_map(|n| self.bridge.network_ports(n).ok())
            .flatten()
            .filter_map(|&p| self.bridge.port_counters(p).ok())
            .map(|c| c.rx_packets)
            .sum()
    }
}
