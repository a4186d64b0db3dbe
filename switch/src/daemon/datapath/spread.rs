//! One network over several workers (`-o spread`): what a worker does as a
//! network's owner and as its replica (the rules are [`crate::replica`]'s).
//!
//! Every endpoint TAP of a spread network has one queue per worker; the
//! kernel steers each flow the sandbox sends to one queue (by its hash,
//! then to the queue that last wrote the flow's frames back), so a flow
//! stays on one worker in both directions. An AF_XDP port's receive queues
//! are split over the workers too (a socket each, `XdpPort::split`), but
//! only the sender's hash picks one: its connections are neither placed
//! nor moved ([`PortDevice::is_spread_queue`](super::PortDevice) is false). The owner's queue is an ordinary
//! port of its bridge. A replica's queue is a port of its replica network,
//! whose gateway port id stands for the owner: a frame the replica cannot
//! forward alone is planned there, and [`Datapath::punt`] copies it (its
//! virtio-net header included) into a message to the owner, sent once per
//! batch. The owner reads those frames into its next batch as if its own
//! queue of the port had delivered them, and after every wake-up sends the
//! changes of its spread networks' tables to every replica.
//!
//! **Placing connections.** The kernel spreads flows by their hash, so a
//! new connection may land on a worker that is already busy while another
//! idles. A worker about to write the opening of a TCP connection (a SYN
//! without ACK) from one endpoint queue into another of a spread network
//! checks the workers' loads ([`Spread::choose`]: busy shares, plus what
//! was moved to each since) and, when another worker is markedly less busy
//! ([`MOVE_MARGIN`]), hands the SYN over to be written there; otherwise the
//! hash decides, as a SYN says nothing of the traffic to come. Whoever
//! writes a flow's frames into a TAP queue gets the flow's next frames from
//! that TAP (tun's flow table): the server's SYN-ACK comes back on the
//! chosen worker's queue, which writes it to the client's TAP, whose
//! following frames then take the same queue. One catch: tun records the
//! writer of a flow only after the written frame went through the sandbox's
//! stack, so the SYN-ACK (made while the SYN is delivered) and the client's
//! third segment (made while the SYN-ACK is delivered) still go by the
//! hash, which is the SYN's (the hash is symmetric): back to the worker that
//! moved the connection. That worker remembers what it moved (the last
//! [`MAX_REMEMBERED`] connections, for [`REMEMBER_MS`]) and hands those two
//! on as well; left to itself, a busy worker wrote the third segment after
//! the chosen worker's first data and pulled the connection back. So a
//! connection lands where there is room, at the cost of three hand-overs;
//! the hash decides where everything else starts (UDP flows, connections
//! that opened before a restart), and a busy worker may later move an open
//! connection or a UDP flow to an idle one ([`super::rebalance`]: its
//! frames handed over the same way).
//!
//! Punted frames are copied into a buffer of the worker that hands them
//! over, which the worker that reads them gives back (a lock-free queue of
//! at most [`MAX_SPARE_BUFFERS`] per worker, no wake-up): most are a flow's
//! first frames or broadcasts, but frames for ports only the owner has (the
//! gateway) and those of a moved connection can be
//! a steady stream. While at most [`MAX_SPARE_BUFFERS`] of a worker's are in
//! flight, such a stream allocates nothing per frame; beyond that, buffers
//! are allocated and freed as before (a freed one may be another thread's).
//! Frames forgotten with their removed port give their buffers back too.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_channel::Sender;
use crossbeam_queue::ArrayQueue;
use mio::Waker;

use super::handle::Command;
use super::{Datapath, PortIo};
use crate::counters::DropReason;
use crate::daemon::batch::Placed;
use crate::offload::ConnectionKey;
use crate::port::{NetworkId, PortId};
use crate::replica::{FdbChanges, MAX_HANDED_OVER};
use crate::time::Timestamp;

/// How often a worker re-reads the others' loads and moved connections
/// when it places a connection (milliseconds).
const LOAD_SAMPLE_MS: u64 = 100;

/// The shortest period (milliseconds) over which a worker publishes its
/// busy share: long enough to span many wake-ups, short enough to follow
/// a stream that started a moment ago.
const PUBLISH_MS: u64 = 50;

/// What a connection moved to a worker since its load was last read counts
/// for, in thousandths of a core: a burst of connections opened while one
/// worker is busy is spread, not all sent to whichever worker looked idle.
const PLACED_CONNECTION_LOAD: u64 = 100;

/// How much less loaded (thousandths of a core) another worker must be for
/// a connection to move there. Below it the connection stays where the
/// kernel's hash put it: a SYN tells nothing of the traffic that follows
/// (iperf3 opens an idle control connection before each stream), so
/// counting connections on idle workers would pair them up by their order
/// instead of spreading them by chance; load is what tells workers apart.
const MOVE_MARGIN: u64 = 200;

/// Buffers of handed-over frames a worker keeps for its next hand-overs
/// once the workers that read them gave them back: enough for a batch's
/// worth of a steady stream, at most 2 MiB of 64 KiB frames kept per worker
/// after a burst (the rest are freed).
pub(super) const MAX_SPARE_BUFFERS: usize = 32;

/// Connections placed elsewhere a worker remembers until their SYN-ACK.
const MAX_REMEMBERED: usize = 256;

/// How long a placed connection is remembered for its SYN-ACK
/// (milliseconds): a handshake's round trip, with room for a slow server.
const REMEMBER_MS: u64 = 3_000;

/// A connection a worker placed on another worker.
#[derive(Debug, Clone, Copy)]
struct Placement {
    key: ConnectionKey,
    worker: usize,
    at: Timestamp,
    /// Its SYN-ACK passed; its third segment is awaited.
    answered: bool,
}

/// A worker's load as the others see it: written by the worker after each
/// wake-up (busy time) and by whoever places a connection on it.
#[derive(Debug, Default)]
pub(super) struct WorkerLoad {
    /// Thousandths of a core the worker spent handling wake-ups over its
    /// last [`PUBLISH_MS`] or more (published after a wake-up; a worker
    /// that sleeps publishes at its next wake-up, at the latest its tick).
    recent: AtomicU64,
    /// Connections moved to the worker so far (by any worker).
    placed: AtomicU64,
}

/// What a worker last read of another's load.
#[derive(Debug, Clone, Copy, Default)]
struct LoadSample {
    /// Read at least once.
    read: bool,
    at: Timestamp,
    /// Connections placed on the worker by the reading before this one:
    /// those placed since still count, as their load may not show yet.
    placed_before: u64,
    /// Connections placed on the worker by this reading.
    placed: u64,
    /// Thousandths of a core busy, as the worker last published.
    load: u64,
}

/// Another worker's loop, reached without waiting for it: its command
/// channel and the waker of its poll.
#[derive(Debug, Clone)]
pub(super) struct WorkerLink {
    pub(super) commands: Sender<Command>,
    pub(super) waker: Arc<Waker>,
    /// Frames handed to this worker by replicas and not yet read into one
    /// of its batches (written by both sides, once per batch).
    pub(super) pending: Arc<AtomicUsize>,
    /// How busy the worker is and what was placed on it.
    pub(super) load: Arc<WorkerLoad>,
    /// Buffers of frames this worker handed over, given back by the
    /// workers that read them, for its next hand-overs.
    spares: Arc<ArrayQueue<Vec<u8>>>,
}

impl WorkerLink {
    /// A link to the loop behind `commands` and `waker`.
    pub(super) fn new(commands: Sender<Command>, waker: Arc<Waker>) -> WorkerLink {
        WorkerLink {
            commands,
            waker,
            pending: Arc::new(AtomicUsize::new(0)),
            load: Arc::default(),
            spares: Arc::new(ArrayQueue::new(MAX_SPARE_BUFFERS)),
        }
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
    /// The network of `port` when the frame was handed over: a tunnel port
    /// its owner removed meanwhile (a spread overlay's replica may still
    /// hand over its frames) and whose id went to another network's port
    /// must not deliver them there.
    pub(super) network: Option<NetworkId>,
    /// The remote VTEP, when `port` was a tunnel port: one whose id the
    /// owner gave to another peer of the same network meanwhile must not
    /// deliver them as that peer's.
    pub(super) tunnel: Option<SocketAddr>,
    pub(super) bytes: Vec<u8>,
    /// Placed on the receiving worker to be written there (a connection's
    /// SYN or SYN-ACK), or handed over to be decided.
    pub(super) placed: Placed,
    /// This hand-over places a connection (its SYN): counted once, by the
    /// worker that takes it.
    pub(super) places_connection: bool,
    /// The worker that handed it over: a placed frame for a port the
    /// receiver does not have goes back there.
    pub(super) from: usize,
    /// The worker whose buffer `bytes` is, given back to it once read:
    /// the one that copied the frame (a frame sent back keeps it).
    pub(super) lender: usize,
}

/// What a replica of a spread overlay keeps of it (see
/// [`Command::AddReplica`]): the replica receives its packets and sends on
/// its tunnel ports (mirrored by the owner).
#[derive(Debug, Clone)]
pub(super) struct ReplicaOverlay {
    pub(super) vni: vxlan::Vni,
    /// The network's MTU.
    pub(super) mtu: u32,
    /// Whether SYNs' MSS is clamped to the tunnel (`-o mss-clamp`).
    pub(super) mss_clamp: bool,
    /// An encrypted overlay's keys.
    pub(super) keys: Option<ReplicaKeys>,
}

/// How a replica of an encrypted overlay makes its keys: as the owner
/// did, from the cluster secret at the operator's epoch and rotation, or
/// (`store_keys`) as the store installs them, which the handle does on every
/// worker; either way sealing in sessions of its own lane (see
/// `crypto::lanes`).
#[derive(Debug, Clone)]
pub(super) struct ReplicaKeys {
    /// The operator's key epoch, before automatic rotation.
    pub(super) key_base: u32,
    /// The network's cipher.
    pub(super) cipher: crypto::Cipher,
    /// The automatic rotation period.
    pub(super) key_rotation: Option<std::num::NonZeroU64>,
    /// Whether the keys come from the cluster store: none until installed.
    pub(super) store_keys: bool,
    /// The network's lane (thread 0's: each worker takes its own index).
    pub(super) lane: crypto::SessionLane,
    /// The sessions of every worker sealing for the network.
    pub(super) host: Arc<crypto::HostSessions>,
}

/// A datagram a replica of a spread overlay read from a VTEP it has no
/// tunnel port for, handed as it came to the network's owner (see
/// [`super::overlay_rx`]).
#[derive(Debug)]
pub(super) struct HandedDatagram {
    /// Its sender.
    pub(super) from: SocketAddr,
    /// The whole datagram (VXLAN header first), or, `opened`, the inner
    /// frame of an encrypted packet the replica opened.
    pub(super) bytes: Vec<u8>,
    /// An opened packet's VNI and what is known of its frame's checksum.
    pub(super) opened: Option<(vxlan::Vni, crate::offload::ChecksumState)>,
    /// The worker whose buffer `bytes` is, given back to it once read.
    lender: usize,
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
    /// Datagrams for each owner (by worker index), sent with the frames.
    outgoing_datagrams: Vec<Vec<HandedDatagram>>,
    /// Frames replicas handed to this worker, not yet read into a batch.
    incoming: VecDeque<Punted>,
    /// Datagrams replicas handed to this worker, not yet read.
    incoming_datagrams: VecDeque<HandedDatagram>,
    /// When this worker last told owners which stations it forwarded for.
    seen_sent: crate::time::Timestamp,
    /// What this worker last read of every worker's load, by index.
    samples: Vec<LoadSample>,
    /// When this worker last published its load, and its busy time then.
    published: (Timestamp, std::time::Duration),
    /// Connections this worker placed on another worker whose handshake
    /// has not passed yet, oldest first.
    placements: VecDeque<Placement>,
    /// Of those, the ones answered (SYN-ACK passed) and waiting for their
    /// third segment: while there are any, every TCP segment this worker
    /// writes is checked against them.
    answered: usize,
    /// Samples this worker's connections while it is busy and remembers
    /// those it moved to another worker.
    rebalancer: super::rebalance::Rebalancer,
    /// Scratch of [`Spread::rebalance`]: every worker's load.
    scores: Vec<u64>,
    /// Connections this worker placed on another worker: at their opening,
    /// or moved later by the rebalancer.
    pub(super) placed_out: u64,
    /// Connections other workers placed on this one.
    pub(super) placed_in: u64,
    /// Frames this worker handed to owners.
    pub(super) punted: u64,
    /// Frames replicas handed to this worker.
    pub(super) taken: u64,
}

impl Spread {
    /// Connects worker `me` to every worker's loop.
    pub(super) fn connect(&mut self, me: usize, links: Vec<WorkerLink>) {
        self.outgoing = (0..links.len()).map(|_| Vec::new()).collect();
        self.outgoing_datagrams = (0..links.len()).map(|_| Vec::new()).collect();
        self.samples = vec![LoadSample::default(); links.len()];
        self.me = me;
        self.links = links;
    }

    /// Whether frames or datagrams from replicas wait to be read.
    pub(super) fn has_input(&self) -> bool {
        !self.incoming.is_empty() || !self.incoming_datagrams.is_empty()
    }

    /// Whether datagrams from replicas wait to be read.
    pub(super) fn has_datagrams(&self) -> bool {
        !self.incoming_datagrams.is_empty()
    }

    /// Takes frames and datagrams a replica handed over.
    pub(super) fn receive(&mut self, frames: Vec<Punted>, datagrams: Vec<HandedDatagram>) {
        self.placed_in += frames.iter().filter(|f| f.places_connection).count() as u64;
        self.taken += frames.iter().filter(|f| f.placed == Placed::Handed).count() as u64;
        self.taken += datagrams.len() as u64;
        self.incoming.extend(frames);
        self.incoming_datagrams.extend(datagrams);
    }

    /// The next datagram a replica handed over, if any (its buffer goes
    /// back with [`Spread::give_back_datagram`]; count what was read with
    /// [`Spread::taken_datagrams`]).
    pub(super) fn next_datagram(&mut self) -> Option<HandedDatagram> {
        self.incoming_datagrams.pop_front()
    }

    /// Gives a read datagram's buffer back to the worker that lent it.
    pub(super) fn give_back_datagram(&self, datagram: HandedDatagram) {
        self.give_back(datagram.lender, datagram.bytes);
    }

    /// Records that `n` handed-over datagrams were read.
    pub(super) fn taken_datagrams(&self, n: usize) {
        if let Some(me) = self.links.get(self.me) {
            me.pending.fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// Copies `datagram`, from `from` (or the inner frame of an encrypted
    /// packet, `opened`, with its VNI and checksum state), into the next
    /// message to worker `owner` (a network's owner, or the worker that
    /// opens an encrypted packet's session); false (nothing queued) when
    /// that worker already has its fill of handed-over frames and datagrams
    /// waiting: [`MAX_HANDED_OVER`], or half of it for a datagram handed on
    /// unopened (unauthenticated: anyone on the underlay can send those).
    pub(super) fn hand_over_datagram(
        &mut self,
        owner: usize,
        from: SocketAddr,
        datagram: &[u8],
        opened: Option<(vxlan::Vni, crate::offload::ChecksumState)>,
    ) -> bool {
        let limit = if opened.is_some() { MAX_HANDED_OVER } else { MAX_HANDED_OVER / 2 };
        if !self.has_room_below(owner, limit) {
            return false;
        }
        let mut bytes = self.spare_buffer();
        bytes.reserve_exact(datagram.len());
        bytes.extend_from_slice(datagram);
        let lender = self.me;
        let Some(queue) = self.outgoing_datagrams.get_mut(owner) else { return false };
        queue.push(HandedDatagram { from, bytes, opened, lender });
        self.punted += 1;
        true
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

    /// An empty buffer for a frame to hand over: one given back, else new.
    fn spare_buffer(&self) -> Vec<u8> {
        let spare = self.links.get(self.me).and_then(|me| me.spares.pop());
        spare
            .map(|mut bytes| {
                bytes.clear();
                bytes
            })
            .unwrap_or_default()
    }

    /// Gives the buffer of a handed-over frame back to worker `lender`,
    /// whose it is, once read (freed here when it keeps enough already).
    fn give_back(&self, lender: usize, bytes: Vec<u8>) {
        if let Some(link) = self.links.get(lender) {
            // A full queue hands the buffer back: dropped (freed) here.
            let _ = link.spares.push(bytes);
        }
    }

    /// Buffers this worker keeps for its next hand-overs.
    #[cfg(test)]
    pub(super) fn spares(&self) -> usize {
        self.links.get(self.me).map_or(0, |me| me.spares.len())
    }

    /// Whether worker `k` can take another handed-over frame or datagram:
    /// fewer than [`MAX_HANDED_OVER`] wait for it, counting this batch's.
    fn has_room(&self, k: usize) -> bool {
        self.has_room_below(k, MAX_HANDED_OVER)
    }

    /// Whether fewer than `limit` handed-over frames and datagrams wait
    /// for worker `k`, counting this batch's.
    fn has_room_below(&self, k: usize, limit: usize) -> bool {
        match (self.links.get(k), self.outgoing.get(k), self.outgoing_datagrams.get(k)) {
            (Some(link), Some(frames), Some(datagrams)) => {
                link.pending.load(Ordering::Relaxed) + frames.len() + datagrams.len() < limit
            }
            _ => false,
        }
    }

    /// Whether this worker owns any spread network.
    pub(super) fn owns_any(&self) -> bool {
        !self.owned.is_empty()
    }

    /// Whether this worker owns spread network `id`.
    pub(super) fn owns(&self, id: NetworkId) -> bool {
        self.owned.contains(&id)
    }

    /// Publishes this worker's busy time so far (after each wake-up): one
    /// relaxed store at most every [`PUBLISH_MS`] of its busy share since
    /// the last, read by workers placing connections. True when it did.
    pub(super) fn publish_busy(&mut self, busy: std::time::Duration, now: Timestamp) -> bool {
        let (at, before) = self.published;
        let elapsed = now.millis_since(at);
        if elapsed < PUBLISH_MS {
            return false;
        }
        let share = busy.saturating_sub(before).as_nanos() as u64 * 1000 / (elapsed * 1_000_000);
        if let Some(me) = self.links.get(self.me) {
            me.load.recent.store(share.min(1000), Ordering::Relaxed);
        }
        self.published = (now, busy);
        true
    }

    /// Every worker's load as this one sees it: its busy share at the last
    /// reading ([`Spread::read_loads`]; this worker's own as just
    /// published) plus [`PLACED_CONNECTION_LOAD`] for each connection moved
    /// to it since the reading before (whose load may not show yet).
    fn scores(&self) -> impl Iterator<Item = u64> + '_ {
        self.links.iter().zip(&self.samples).enumerate().map(|(k, (link, sample))| {
            let load = if k == self.me { link.load.recent.load(Ordering::Relaxed) } else { sample.load };
            score(link, sample, load)
        })
    }

    /// Lets the rebalancer ([`super::rebalance`]) start or end a sampling
    /// window on the loads as they are now; `written` gives every byte this
    /// worker wrote to any port so far (asked only when a window starts or
    /// ends). A connection it decides to move counts as placed with its
    /// first handed-over frame (one that ended just now never does).
    pub(super) fn rebalance(&mut self, now: Timestamp, written: impl FnOnce() -> u64) {
        self.read_loads(now);
        let mut scores = std::mem::take(&mut self.scores);
        scores.clear();
        scores.extend(self.scores());
        if let Some((_, target)) = self.rebalancer.step(now, self.me, &scores, written) {
            // At most one a second per worker (the rebalancer's quiet time).
            tracing::info!(worker = self.me, target, loads = ?scores, "moving a flow off a busy datapath worker");
        }
        self.scores = scores;
    }

    /// Reads every worker's published load and moved connections again
    /// where the last reading is at least [`LOAD_SAMPLE_MS`] old. Called
    /// when placing a connection and from the tick.
    pub(super) fn read_loads(&mut self, now: Timestamp) {
        for (link, sample) in self.links.iter().zip(&mut self.samples) {
            let elapsed = now.millis_since(sample.at);
            if elapsed < LOAD_SAMPLE_MS && sample.read {
                continue;
            }
            *sample = LoadSample {
                read: true,
                at: now,
                placed_before: sample.placed,
                placed: link.load.placed.load(Ordering::Relaxed),
                load: link.load.recent.load(Ordering::Relaxed),
            };
        }
    }

    /// The worker a new connection should go to: the least loaded, by its
    /// busy share at the last reading ([`Spread::read_loads`]) plus
    /// [`PLACED_CONNECTION_LOAD`] for each connection moved to it since the
    /// reading before (whose load may not show in the last one yet), when
    /// that is at least [`MOVE_MARGIN`] less than this worker's; else this
    /// worker (the kernel's hash decides).
    pub(super) fn choose(&mut self, now: Timestamp) -> usize {
        self.read_loads(now);
        let (mut best, mut least, mut mine) = (self.me, u64::MAX, 0);
        for (k, (link, sample)) in self.links.iter().zip(&self.samples).enumerate() {
            let score = score(link, sample, sample.load);
            if score < least {
                (best, least) = (k, score);
            }
            if k == self.me {
                mine = score;
            }
        }
        tracing::debug!(worker = self.me, mine, least, best, "worker loads for a new connection");
        if mine >= least.saturating_add(MOVE_MARGIN) { best } else { self.me }
    }

    /// Remembers that connection `key` was placed on worker `k`.
    fn remember(&mut self, key: ConnectionKey, k: usize, now: Timestamp) {
        self.forget_placements(now);
        if self.placements.len() == MAX_REMEMBERED
            && let Some(oldest) = self.placements.pop_front()
            && oldest.answered
        {
            self.answered -= 1;
        }
        self.placements.push_back(Placement { key, worker: k, at: now, answered: false });
    }

    /// Forgets placements older than [`REMEMBER_MS`].
    pub(super) fn forget_placements(&mut self, now: Timestamp) {
        while let Some(oldest) = self.placements.front()
            && now.millis_since(oldest.at) > REMEMBER_MS
        {
            if oldest.answered {
                self.answered -= 1;
            }
            self.placements.pop_front();
        }
    }

    /// Whether placed connections wait for their third segment.
    fn awaits_third_segments(&self) -> bool {
        self.answered > 0
    }

    /// The worker connection `key` was moved to, when this worker moved it
    /// and its SYN-ACK (`answer`, also a retransmitted one) or its third
    /// segment is what passes now.
    fn placed_on(&mut self, key: ConnectionKey, answer: bool, now: Timestamp) -> Option<(usize, usize)> {
        self.forget_placements(now);
        let at = self.placements.iter().rposition(|p| p.key == key && (answer || p.answered))?;
        Some((at, self.placements[at].worker))
    }

    /// Records that placement `at` (from [`Spread::placed_on`]) saw its
    /// SYN-ACK handed on, or forgets it after its third segment.
    fn passed(&mut self, at: usize, answer: bool) {
        if answer {
            if let Some(p) = self.placements.get_mut(at)
                && !p.answered
            {
                p.answered = true;
                self.answered += 1;
            }
        } else if self.placements.remove(at).is_some_and(|p| p.answered) {
            self.answered -= 1;
        }
    }

    /// Counts a connection moved to worker `k` (see [`Spread::choose`]).
    pub(super) fn count_placed(&self, k: usize) {
        if let Some(link) = self.links.get(k) {
            link.load.placed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Worker `link`'s score for placing or moving a connection: its busy share
/// `load` (thousandths of a core) plus [`PLACED_CONNECTION_LOAD`] for each
/// connection moved to it since the reading before `sample` (whose load may
/// not show in `load` yet).
fn score(link: &WorkerLink, sample: &LoadSample, load: u64) -> u64 {
    let placed = link.load.placed.load(Ordering::Relaxed);
    load + placed.saturating_sub(sample.placed_before) * PLACED_CONNECTION_LOAD
}

impl Datapath {
    /// Plans frame `i` of the batch for `owner`, the worker owning its
    /// network (its bytes are copied: the batch is reused); dropped as
    /// `owner_busy` when the owner already has its fill waiting.
    pub(super) fn punt(&mut self, owner: usize, i: usize) {
        // A frame placed here and handed on keeps its mark (and is not
        // counted as handed over to be decided: the owner does not count
        // it as taken either).
        let placed = match self.batch.entry(i).placed {
            Placed::No => Placed::Handed,
            placed => placed,
        };
        if self.hand_over(owner, i, placed, false) && placed == Placed::Handed {
            self.spread.punted += 1;
        }
    }

    /// Copies frame `i` of the batch into the next message to worker
    /// `owner` (the network's owner, or the worker a connection is placed
    /// on), in a buffer given back by an earlier reader when there is one,
    /// marked `placed` (and `places_connection` for a placed SYN); dropped as `owner_busy` when that worker
    /// already has its fill of handed-over frames waiting. True when queued.
    fn hand_over(&mut self, owner: usize, i: usize, placed: Placed, places_connection: bool) -> bool {
        let port = self.batch.entry(i).port;
        if !self.spread.has_room(owner) {
            self.bridge.count_drop(port, DropReason::OwnerBusy);
            return false;
        }
        if self.spread.outgoing.get(owner).is_none() {
            return false;
        }
        // Reserved exactly: a reused buffer grows to its longest frame, no
        // further (amortized doubling would keep up to twice that).
        let mut bytes = self.spread.spare_buffer();
        match self.batch.with_vnet_hdr(i) {
            Some(frame) => {
                bytes.reserve_exact(frame.len());
                bytes.extend_from_slice(frame);
            }
            None => {
                let frame = self.batch.frame(i);
                bytes.reserve_exact(super::HDR + frame.len());
                bytes.resize(super::HDR, 0);
                bytes.extend_from_slice(frame);
            }
        }
        let me = self.spread.me;
        let network = self.bridge.port_config(port).ok().map(|c| c.network);
        let tunnel = self.tunnel_remote(port);
        let Some(queue) = self.spread.outgoing.get_mut(owner) else { return false };
        queue.push(Punted { port, network, tunnel, bytes, placed, places_connection, from: me, lender: me });
        true
    }

    /// Places the connection frame `i` opens on the worker that should
    /// carry it (see the module docs): when the frame is a TCP SYN without
    /// ACK from an endpoint queue to another one (`port`) of a spread
    /// network, not placed before, and [`Spread::choose`] picks another
    /// worker, or the SYN-ACK or third segment of a connection this worker
    /// placed on another, or any frame of a connection or UDP flow this
    /// worker moved to another ([`super::rebalance`]), the frame is handed
    /// over to be written there, uncounted here (that worker counts it),
    /// and this returns true.
    pub(super) fn place_elsewhere(&mut self, port: PortId, i: usize) -> bool {
        let entry = self.batch.entry(i);
        let ingress = entry.port;
        if entry.placed != Placed::No {
            return false;
        }
        let handshake = crate::offload::tcp_handshake(self.batch.frame(i));
        let rebalancing = self.spread.rebalancer.wants_frames();
        if handshake.is_none() && !self.spread.awaits_third_segments() && !rebalancing {
            return false;
        }
        let is_queue =
            |p: PortId| matches!(self.ports.get(p.index()), Some(Some(PortIo::Tap(d))) if d.is_spread_queue());
        if !is_queue(port) || !is_queue(ingress) {
            return false;
        }
        let Ok(network) = self.bridge.port_config(port).map(|c| c.network) else { return false };
        let replica = self.bridge.is_replica(network);
        if !replica && !self.spread.owns(network) {
            return false;
        }
        let now = self.clock.now();
        // Only a frame that goes to this one port (known unicast): a flood
        // is written by whoever floods it, to every port once.
        let dst = self.batch.frame(i).get(..6).and_then(|d| <[u8; 6]>::try_from(d).ok()).map(crate::wire::MacAddr);
        if dst.and_then(|mac| self.bridge.lookup(network, mac, now)) != Some(port) {
            return false;
        }
        let (target, opening) = match handshake {
            Some(h) if !h.answer => {
                let target = self.spread.choose(now);
                tracing::debug!(worker = self.spread.me, target, connection = ?h.key, "a TCP connection opens");
                // A worker with its fill of handed-over frames waiting gets
                // no more: the connection stays where the kernel put it.
                if target == self.spread.me || !self.spread.has_room(target) {
                    return false;
                }
                self.spread.count_placed(target);
                self.spread.remember(h.key, target, now);
                self.spread.placed_out += 1;
                (target, true)
            }
            _ => {
                let answer = handshake.is_some();
                // A SYN-ACK's key is its handshake's; its way, one more
                // parse (a handshake frame is rare).
                let Some((key, forth)) = crate::offload::flow_key_and_way(self.batch.frame(i)) else {
                    return false;
                };
                if rebalancing && let Some(moved) = self.spread.rebalancer.moved_to(&key, forth, now) {
                    // A connection moved off this worker: its frames still
                    // queued here follow it (the first one counts the move,
                    // here and where it is taken). When its new worker has
                    // its fill of handed-over frames waiting, the frame is
                    // written here (tun may steer the connection back until
                    // a later frame is handed on).
                    if !self.spread.has_room(moved.worker) {
                        return false;
                    }
                    if moved.first {
                        self.spread.count_placed(moved.worker);
                        self.spread.placed_out += 1;
                    }
                    self.spread.rebalancer.handed(moved);
                    (moved.worker, moved.first)
                } else {
                    // Only TCP connections are placed at their opening.
                    let placed = if key.is_tcp() { self.spread.placed_on(key, answer, now) } else { None };
                    match placed {
                        Some((at, target)) if self.spread.has_room(target) => {
                            self.spread.passed(at, answer);
                            (target, false)
                        }
                        _ => {
                            if rebalancing {
                                self.spread.rebalancer.sample(key, forth, self.batch.frame(i).len() as u64);
                            }
                            return false;
                        }
                    }
                }
            }
        };
        tracing::debug!(
            worker = self.spread.me,
            target,
            opening,
            "handed a frame of a placed or moved flow to its worker"
        );
        self.bridge.uncount_forwarded(ingress, port, self.batch.frame(i).len() as u64);
        self.hand_over(target, i, if replica { Placed::ByReplica } else { Placed::ByOwner }, opening);
        true
    }

    /// Sends the frames and datagrams planned for owners, one message per
    /// owner.
    pub(super) fn send_punted(&mut self) {
        let Spread { outgoing, outgoing_datagrams, links, .. } = &mut self.spread;
        for ((frames, datagrams), link) in outgoing.iter_mut().zip(outgoing_datagrams.iter_mut()).zip(links.iter()) {
            if !frames.is_empty() || !datagrams.is_empty() {
                let n = frames.len() + datagrams.len();
                link.pending.fetch_add(n, Ordering::Relaxed);
                let (frames, datagrams) = (std::mem::take(frames), std::mem::take(datagrams));
                if !link.send(Command::Punted { frames, datagrams }) {
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
            let placed_here = matches!(punted.placed, Placed::ByOwner | Placed::ByReplica);
            if placed_here && !matches!(self.ports.get(punted.port.index()), Some(Some(_))) {
                // Placed on this worker, but it has no queue of the port the
                // frame came from (one that failed to open): back to the
                // worker that read it, which writes it itself.
                let from = punted.from;
                if let Some(queue) = self.spread.outgoing.get_mut(from) {
                    queue.push(Punted { from: self.spread.me, places_connection: false, ..punted });
                }
                continue;
            }
            // A frame of a connection this worker moved away, handed back
            // to be written here: its new worker moved it back.
            if placed_here
                && self.spread.rebalancer.has_moved()
                && let Some(key) = punted.bytes.get(super::HDR..).and_then(crate::offload::flow_key)
            {
                self.spread.rebalancer.forget(&key);
            }
            if self.bridge.port_config(punted.port).ok().map(|c| c.network) != punted.network
                || self.tunnel_remote(punted.port) != punted.tunnel
            {
                // Its port went (and its id may be another network's or
                // another peer's now).
                self.spread.give_back(punted.lender, punted.bytes);
                continue;
            }
            if !self.batch.push_received(punted.port, &punted.bytes, punted.placed) {
                self.bridge.count_drop(punted.port, DropReason::Truncated);
            }
            self.spread.give_back(punted.lender, punted.bytes);
        }
        if let Some(me) = self.spread.links.get(self.spread.me) {
            me.pending.fetch_sub(read, Ordering::Relaxed);
        }
    }

    /// The remote VTEP of `port`, when it is a tunnel port.
    fn tunnel_remote(&self, port: PortId) -> Option<SocketAddr> {
        match self.ports.get(port.index()) {
            Some(Some(PortIo::Tunnel { remote, .. })) => Some(*remote),
            _ => None,
        }
    }

    /// Forgets the frames replicas handed over for `port` (removed): its
    /// id may be reused by another network's port.
    pub(super) fn forget_punted(&mut self, port: PortId) {
        let spread = &mut self.spread;
        let mut forgotten = 0;
        // Once round the queue, in order: the port's frames leave it and
        // their buffers go back to their lenders.
        for _ in 0..spread.incoming.len() {
            let Some(punted) = spread.incoming.pop_front() else { break };
            if punted.port == port {
                forgotten += 1;
                spread.give_back(punted.lender, punted.bytes);
            } else {
                spread.incoming.push_back(punted);
            }
        }
        if let Some(me) = spread.links.get(spread.me) {
            me.pending.fetch_sub(forgotten, Ordering::Relaxed);
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

    /// The worker owning `network`, when this worker holds a replica of it
    /// (the port standing for the owner is at the network's gateway id).
    pub(super) fn owner_of_replica(&self, network: NetworkId) -> Option<usize> {
        match self.ports.get(super::gateway_port(network.0).index()) {
            Some(Some(PortIo::Owner(owner))) => Some(*owner),
            _ => None,
        }
    }

    /// Tells the owner of every replica network which stations this worker
    /// forwarded for since the last time (once a second, from the tick):
    /// their traffic never reaches the owner, whose table would age them
    /// out. A scan of each replica's table: O(entries) a second. Likewise
    /// the peers of spread overlays this worker received packets from,
    /// which age on their owner when it learned them.
    pub(super) fn send_replica_seen(&mut self, now: crate::time::Timestamp) {
        let since = std::mem::replace(&mut self.spread.seen_sent, now);
        let replicas: Vec<NetworkId> = self.bridge.network_ids().filter(|&n| self.bridge.is_replica(n)).collect();
        if replicas.is_empty() {
            return;
        }
        for &network in &replicas {
            let Some(owner) = self.owner_of_replica(network) else { continue };
            let seen = self.bridge.replica_seen(network, since);
            if let (false, Some(link)) = (seen.is_empty(), self.spread.links.get(owner)) {
                link.send(Command::FdbSeen { network, seen });
            }
        }
        self.send_peers_seen(&replicas, since);
    }

    /// Tells the owners of spread overlays among `replicas` which of their
    /// peers sent this worker packets since `since`: O(ports) a second.
    fn send_peers_seen(&self, replicas: &[NetworkId], since: crate::time::Timestamp) {
        let mut by_owner: Vec<Vec<(vxlan::Vni, SocketAddr)>> = vec![Vec::new(); self.spread.links.len()];
        for (index, io) in self.ports.iter().enumerate() {
            let Some(PortIo::Tunnel { vni, remote, .. }) = io else { continue };
            let Ok(network) = self.bridge.port_config(PortId(index as u32)).map(|c| c.network) else { continue };
            if !replicas.contains(&network) {
                continue;
            }
            // Strictly after the last report: the owner takes a report as
            // seen now, so reporting the packet of that millisecond again
            // would keep a silent peer alive for ever (one that came in the
            // same millisecond after the report is missed: its peer ages at
            // most a second early).
            let seen = self.peers.last_seen(*vni, *remote).is_some_and(|at| at > since.0);
            if let (true, Some(owner)) = (seen, self.owner_of_replica(network))
                && let Some(peers) = by_owner.get_mut(owner)
            {
                peers.push((*vni, *remote));
            }
        }
        for (peers, link) in by_owner.into_iter().zip(&self.spread.links) {
            if !peers.is_empty() {
                link.send(Command::PeersSeen { peers });
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
        overlay: Option<ReplicaOverlay>,
    ) -> Result<(), (crate::fdb::Fdb, super::DatapathError)> {
        let punt = super::gateway_port(id.0);
        if self.ports.get(punt.index()).is_some_and(Option::is_some) {
            return Err((fdb, crate::bridge::BridgeError::PortExists(punt).into()));
        }
        let info = match &overlay {
            Some(overlay) if self.vnis.contains_key(&overlay.vni.get()) => {
                return Err((fdb, super::DatapathError::VniInUse(overlay.vni.get())));
            }
            Some(overlay) => match self.replica_net_info(overlay, owner) {
                Ok(info) => Some(info),
                Err(e) => return Err((fdb, e)),
            },
            None => None,
        };
        self.bridge.add_replica_network(id, fdb, punt).map_err(|(fdb, e)| (fdb, e.into()))?;
        if self.ports.len() <= punt.index() {
            self.ports.resize_with(punt.index() + 1, || None);
        }
        self.ports[punt.index()] = Some(PortIo::Owner(owner));
        if let (Some(overlay), Some(info)) = (overlay, info) {
            // Its packets may reach this worker's socket (the reuseport
            // group hashes a spread overlay's flows over every worker).
            self.vnis.insert(overlay.vni.get(), id);
            if self.nets.len() <= id.index() {
                self.nets.resize_with(id.index() + 1, || None);
            }
            self.nets[id.index()] = Some(info);
        }
        Ok(())
    }

    /// What this worker keeps of spread overlay `overlay` owned by worker
    /// `owner`: with keys, its own sender sessions in its lane.
    fn replica_net_info(&self, overlay: &ReplicaOverlay, owner: usize) -> Result<super::NetInfo, super::DatapathError> {
        let mut info = super::NetInfo::replica_overlay(overlay.vni, overlay.mtu, overlay.mss_clamp, owner);
        if let Some(keys) = &overlay.keys {
            let crypto = if keys.store_keys {
                crypto::NetworkCrypto::with_installed_keys(overlay.vni, keys.key_base)
            } else {
                let secret = self.secret.as_ref().ok_or(super::DatapathError::NoSecret)?;
                let epoch = super::effective_epoch(keys.key_base, keys.key_rotation, self.clock.unix_secs());
                crypto::NetworkCrypto::new(secret, overlay.vni, epoch).map_err(super::DatapathError::Crypto)?
            };
            let mut crypto = crypto.with_cipher(keys.cipher).map_err(super::DatapathError::Crypto)?;
            crypto
                .spread(keys.lane.for_thread(self.spread.me as u32), keys.host.clone())
                .map_err(super::DatapathError::Crypto)?;
            info.crypto = Some(Box::new(crypto));
            info.key_base = keys.key_base;
            info.key_rotation = keys.key_rotation;
        }
        Ok(info)
    }

    /// Makes this worker, the owner of encrypted spread overlay `network`,
    /// seal in sessions of its own lane of `lane` and refuse every
    /// worker's sessions in `host` sent back.
    pub(super) fn spread_keys(
        &mut self,
        network: NetworkId,
        lane: crypto::SessionLane,
        host: Arc<crypto::HostSessions>,
    ) -> Result<(), super::DatapathError> {
        let net = self.nets.get_mut(network.index()).and_then(Option::as_mut);
        let keys = net.and_then(|n| n.crypto.as_deref_mut()).ok_or(super::DatapathError::NotEncrypted(network))?;
        keys.spread(lane.for_thread(self.spread.me as u32), host).map_err(super::DatapathError::Crypto)
    }

    /// Makes the tunnel port `port` toward `remote` on replica `network`
    /// that the owner made (see [`Command::MirrorTunnel`]): a bridge port
    /// under the owner's id, and a peer the overlay's receive path finds.
    /// It is held (it never ages here; the owner removes it) and raises no
    /// event (the owner's did).
    pub(super) fn mirror_tunnel(&mut self, network: NetworkId, port: PortId, remote: SocketAddr) {
        let Some(info) = self.nets.get(network.index()).and_then(Option::as_ref) else { return };
        let (Some(vni), mtu) = (info.vni, info.mtu) else { return };
        let same = |io: &Option<PortIo>| matches!(io, Some(PortIo::Tunnel { remote: r, .. }) if *r == remote);
        if self.ports.get(port.index()).is_some_and(same)
            && self.bridge.port_config(port).is_ok_and(|c| c.network == network)
        {
            // Mirrored already (the owner sends its ports again to a new
            // replica, see `mirror_existing`).
            return;
        }
        if !self.bridge.is_replica(network) || self.ports.get(port.index()).is_some_and(Option::is_some) {
            tracing::warn!(network = %network, port = %port, "a mirrored tunnel port clashes here; not made");
            return;
        }
        let config = crate::port::PortConfig { mtu, ..crate::port::PortConfig::tunnel(network) };
        if let Err(e) = self.bridge.add_port(port, config) {
            tracing::warn!(network = %network, port = %port, error = %e, "cannot mirror a tunnel port");
            return;
        }
        if let Err(e) = self.peers.add_static(vni, remote, port.0) {
            let _ = self.bridge.remove_port(port);
            tracing::warn!(network = %network, port = %port, error = %e, "cannot mirror a tunnel port's peer");
            return;
        }
        let owners = super::TunnelOwners { peer: true, cluster: false };
        *super::config::slot(&mut self.ports, port) = Some(PortIo::Tunnel { vni, remote, owners });
        self.impair_new_tunnel_port(port, remote);
        self.peer_ports.insert(remote.ip(), remote.port());
    }

    /// Removes the mirrored tunnel port `port` (its owner removed its own);
    /// nothing when `port` is not a tunnel port of a replica here.
    pub(super) fn unmirror_tunnel(&mut self, port: PortId) {
        let mirrored = matches!(self.ports.get(port.index()), Some(Some(PortIo::Tunnel { .. })))
            && self.bridge.port_config(port).is_ok_and(|c| self.bridge.is_replica(c.network));
        if mirrored {
            self.remove_port(port);
        }
    }

    /// Sends every tunnel port of spread overlay `network`, which this
    /// worker owns, to the replicas again, and its whole table after this
    /// wake-up: a port or station it learned before a replica existed (the
    /// overlay's packets all reach the owner until the replicas are added
    /// and the steering program loads) would be missing there. A replica
    /// that has a port already keeps it.
    pub(super) fn mirror_existing(&mut self, network: NetworkId) {
        if !self.spread.owns(network) {
            return;
        }
        // The next table update is the whole table.
        let _ = self.bridge.replicate(network);
        for (index, io) in self.ports.iter().enumerate() {
            let port = PortId(index as u32);
            if let Some(PortIo::Tunnel { remote, .. }) = io
                && self.bridge.port_config(port).is_ok_and(|c| c.network == network)
            {
                self.mirror_to_replicas(network, port, Some(*remote));
            }
        }
    }

    /// Tells the other workers about a tunnel port of a spread overlay this
    /// worker owns: made (`Some(remote)`) or removed.
    pub(super) fn mirror_to_replicas(&self, network: NetworkId, port: PortId, made: Option<SocketAddr>) {
        if !self.spread.owns(network) {
            return;
        }
        for link in self.spread.others() {
            link.send(match made {
                Some(remote) => Command::MirrorTunnel { network, port, remote },
                None => Command::UnmirrorTunnel { port },
            });
        }
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
