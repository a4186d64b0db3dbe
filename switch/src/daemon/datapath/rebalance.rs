//! Moving an established connection or UDP flow off a busy worker (spread
//! networks).
//!
//! Placement at the opening ([`super::spread`]) helps only when a worker is
//! already busy when a connection opens: two bulk connections that open
//! together on idle workers may still share one worker while the other
//! idles, for as long as they last. So a worker that stays busy while
//! another idles samples the flows it writes into TAP queues (TCP
//! connections and UDP flows, keyed by protocol and both endpoints: tun
//! steers either by the same hash) for [`WINDOW_MS`] (bytes per flow, in a
//! table of at most [`TRACKED`]
//! connections that never grows, against every byte the worker wrote to any
//! port meanwhile) and moves the connection that, moved to the least loaded
//! worker, leaves the busier of the two least busy, when that lowers it by
//! at least [`MIN_GAIN`]: every frame of it this worker reads from then on
//! is handed to that worker to write. tun's flow table then steers the
//! connection's next frames, in both directions, to that worker's queues
//! (whoever writes a flow's frames into a TAP queue gets its next ones),
//! and the few already queued here follow by hand-over. A connection that
//! is all of a worker's load is never moved: that would only move the load
//! (and it would come back). Nor is a UDP flow this worker did not see
//! both ways in the window: tun steers the frames a sandbox sends by what
//! was last written into that sandbox's TAP, so the sender's side of a
//! one-way flow (a stream of datagrams, no answers) would stay on this
//! worker's queue for good, every datagram read here and handed over (a
//! TCP connection always has its acknowledgments coming back). A window may
//! still catch a UDP flow's last answer before it goes one way (iperf3's
//! reply as its stream starts), so a moved UDP flow whose frames keep
//! reaching this worker one way only for [`MOVED_IDLE_MS`] is given back:
//! the move is forgotten and this worker writes the flow again, instead of
//! handing every datagram over for as long as it lasts. After a
//! decision the worker waits
//! [`QUIET_MS`] for the loads to show its effect. A worker that is handed a
//! frame of a connection it moved away itself forgets that move (the
//! connection was moved back), so two workers never hand one connection's
//! frames to each other.
//!
//! Sans-IO: bytes, connection keys, loads and the time go in; a decision
//! comes out. The frame path pays only while sampling or while a moved
//! connection's frames still arrive here: per frame written into a spread
//! queue, a TCP or UDP parse, the known-unicast check (a table lookup) and a scan
//! of at most [`TRACKED`] or [`MOVED_MAX`] keys.

use crate::offload::ConnectionKey;
use crate::time::Timestamp;

/// How long a busy worker samples its connections before deciding
/// (milliseconds).
const WINDOW_MS: u64 = 100;

/// Flows sampled per window at most (the rest are not candidates).
const TRACKED: usize = 32;

/// Moved connections remembered at most (the oldest is forgotten first).
const MOVED_MAX: usize = 8;

/// A moved connection is forgotten once none of its frames arrived here for
/// this long (milliseconds): the kernel steers all of it elsewhere.
const MOVED_IDLE_MS: u64 = 1_000;

/// How long a worker waits after a decision before it samples again
/// (milliseconds): the loads it reads are published every 50 ms and read
/// every 100 ms, so a move shows in them well within this.
const QUIET_MS: u64 = 1_000;

/// A worker busy for less than this (thousandths of a core) does not look
/// for a connection to move.
const BUSY: u64 = 400;

/// How much less busy another worker must be for sampling to start, and
/// still be when it ends (thousandths of a core).
const ARM_GAP: u64 = 200;

/// How much a move must lower the busier of the two workers (thousandths
/// of a core).
const MIN_GAIN: u64 = 100;

/// A connection this worker moved to another.
#[derive(Debug, Clone, Copy)]
struct Moved {
    key: ConnectionKey,
    worker: usize,
    /// When one of its frames last arrived here.
    last: Timestamp,
    /// A UDP flow's frames arriving here since `period` went these ways
    /// (bits as [`Sampled::ways`]); one way only for a whole
    /// [`MOVED_IDLE_MS`] gives the move up.
    ways: u8,
    period: Timestamp,
    /// A frame of it was handed over (the first one counts the move).
    handed: bool,
}

/// Where a frame of a moved connection goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MovedTo {
    /// The worker that writes it now.
    pub(super) worker: usize,
    /// No frame of the connection was handed over yet: this one counts the
    /// move (once it is handed over: [`Rebalancer::handed`]).
    pub(super) first: bool,
    /// Its entry among the moved connections (valid until the next call
    /// that changes them) and its key, which that entry must still have.
    index: usize,
    key: ConnectionKey,
}

/// A flow sampled in the current window.
#[derive(Debug, Clone, Copy)]
struct Sampled {
    key: ConnectionKey,
    /// Bytes of it written in the window.
    bytes: u64,
    /// The ways it was seen: bit 0 from the key's first endpoint, bit 1 to
    /// it.
    ways: u8,
}

impl Sampled {
    /// Whether moving it moves all of it: a TCP connection, or a UDP flow
    /// seen both ways (see the module docs).
    fn movable(&self) -> bool {
        self.key.is_tcp() || self.ways == 0b11
    }
}

/// One worker's sampling of its connections and the connections it moved.
#[derive(Debug)]
pub(super) struct Rebalancer {
    /// Sampling since then, when this worker had written that many bytes
    /// in all; `None` when not sampling.
    sampling: Option<(Timestamp, u64)>,
    /// Bytes written per flow in this window.
    flows: Vec<Sampled>,
    moved: Vec<Moved>,
    /// No sampling before then.
    quiet_until: Timestamp,
}

impl Default for Rebalancer {
    fn default() -> Self {
        Rebalancer {
            sampling: None,
            flows: Vec::with_capacity(TRACKED),
            moved: Vec::with_capacity(MOVED_MAX),
            quiet_until: Timestamp::default(),
        }
    }
}

impl Rebalancer {
    /// Whether the frames this worker writes into spread queues should be
    /// shown to [`Rebalancer::sample`] and [`Rebalancer::moved_to`].
    pub(super) fn wants_frames(&self) -> bool {
        self.sampling.is_some() || !self.moved.is_empty()
    }

    /// Whether this worker moved any connection it still remembers.
    pub(super) fn has_moved(&self) -> bool {
        !self.moved.is_empty()
    }

    /// Where connection `key` went, if this worker moved it (and notes that
    /// a frame of it, going from the key's first endpoint if `forth`,
    /// arrived here at `now`). `None` also for a UDP flow whose frames
    /// reached this worker one way only for a whole [`MOVED_IDLE_MS`]: the
    /// move is given up (see the module docs).
    pub(super) fn moved_to(&mut self, key: &ConnectionKey, forth: bool, now: Timestamp) -> Option<MovedTo> {
        let index = self.moved.iter().position(|m| m.key == *key)?;
        let moved = &mut self.moved[index];
        if !key.is_tcp() {
            if now.millis_since(moved.period) >= MOVED_IDLE_MS {
                if moved.ways != 0b11 {
                    self.moved.remove(index);
                    return None;
                }
                (moved.period, moved.ways) = (now, 0);
            }
            moved.ways |= if forth { 0b01 } else { 0b10 };
        }
        moved.last = now;
        Some(MovedTo { worker: moved.worker, first: !moved.handed, index, key: *key })
    }

    /// Notes that a frame of the moved connection [`Rebalancer::moved_to`]
    /// just answered `to` for was handed over.
    pub(super) fn handed(&mut self, to: MovedTo) {
        if let Some(moved) = self.moved.get_mut(to.index) {
            debug_assert!(moved.key == to.key, "a stale MovedTo");
            moved.handed = true;
        }
    }

    /// Forgets that this worker moved connection `key`: another worker
    /// handed one of its frames back here to be written (it moved it back).
    pub(super) fn forget(&mut self, key: &ConnectionKey) {
        self.moved.retain(|m| m.key != *key);
    }

    /// Counts `bytes` of flow `key` written into a spread queue, going
    /// from the key's first endpoint (`forth`) or back.
    pub(super) fn sample(&mut self, key: ConnectionKey, forth: bool, bytes: u64) {
        if self.sampling.is_none() {
            return;
        }
        let way = if forth { 0b01 } else { 0b10 };
        if let Some(flow) = self.flows.iter_mut().find(|f| f.key == key) {
            flow.bytes += bytes;
            flow.ways |= way;
        } else if self.flows.len() < TRACKED {
            self.flows.push(Sampled { key, bytes, ways: way });
        }
    }

    /// Called after this worker published its load: `loads[k]` is worker
    /// `k`'s (thousandths of a core; `me` is this one) and `written` gives
    /// every byte this worker wrote to any port so far (asked only when a
    /// window starts or ends: it sums every port's counter). Starts
    /// sampling, or ends it with a decision: the connection to move and
    /// where to.
    pub(super) fn step(
        &mut self,
        now: Timestamp,
        me: usize,
        loads: &[u64],
        written: impl FnOnce() -> u64,
    ) -> Option<(ConnectionKey, usize)> {
        self.moved.retain(|m| now.millis_since(m.last) <= MOVED_IDLE_MS);
        let mine = *loads.get(me)?;
        let (target, least) =
            loads.iter().copied().enumerate().filter(|&(k, _)| k != me).min_by_key(|&(_, load)| load)?;
        let uneven = mine >= BUSY && mine >= least.saturating_add(ARM_GAP);
        let Some((since, written_before)) = self.sampling else {
            if now >= self.quiet_until && uneven {
                self.flows.clear();
                self.sampling = Some((now, written()));
            }
            return None;
        };
        if now.millis_since(since) < WINDOW_MS {
            return None;
        }
        self.sampling = None;
        self.quiet_until = now.after(std::time::Duration::from_millis(QUIET_MS));
        if !uneven {
            return None;
        }
        // Each connection's share of this worker's load is its share of the
        // bytes the worker wrote; moving it leaves max(mine - load,
        // least + load) as the busier of the two. The one that leaves the
        // least goes; of equals, the lighter (fewer of its frames are in
        // flight to follow).
        let total = written().saturating_sub(written_before).max(1);
        let moved = &self.moved;
        let (key, after, _) = self
            .flows
            .iter()
            .filter(|f| f.movable() && !moved.iter().any(|m| m.key == f.key))
            .map(|&Sampled { key, bytes, .. }| {
                let load = mine.saturating_mul(bytes.min(total)) / total;
                (key, mine.saturating_sub(load).max(least.saturating_add(load)), load)
            })
            .min_by_key(|&(_, after, load)| (after, load))?;
        if mine.saturating_sub(after) < MIN_GAIN {
            return None;
        }
        if self.moved.len() == MOVED_MAX {
            self.moved.remove(0);
        }
        self.moved.push(Moved { key, worker: target, last: now, handed: false, ways: 0, period: now });
        Some((key, target))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::frames::Tcp;
    use super::*;

    fn key(port: u16) -> ConnectionKey {
        let tcp = Tcp::between(1, 2);
        let frame = Tcp { src: (tcp.src.0, tcp.src.1, port), ..tcp }.frame(&[1; 10]);
        crate::offload::flow_key(&frame).expect("a TCP segment")
    }

    fn at(ms: u64) -> Timestamp {
        Timestamp(ms)
    }

    /// Samples `flows` (connection port, bytes) in one window from `start`
    /// with worker 0 at `mine` and worker 1 at `other`, the worker writing
    /// only those bytes; the decision.
    fn window(r: &mut Rebalancer, start: u64, mine: u64, other: u64, flows: &[(u16, u64)]) -> Option<(u16, usize)> {
        let written = 1_000_000;
        assert_eq!(r.step(at(start), 0, &[mine, other], || written), None, "sampling starts");
        assert!(r.wants_frames());
        for &(port, bytes) in flows {
            r.sample(key(port), true, bytes);
        }
        let all: u64 = flows.iter().map(|f| f.1).sum();
        assert_eq!(r.step(at(start + 50), 0, &[mine, other], || written + all), None, "the window is not over");
        let decided = r.step(at(start + WINDOW_MS), 0, &[mine, other], || written + all);
        decided.map(|(k, worker)| {
            let port = (40_000..41_000).find(|&p| key(p) == k).expect("one of ours");
            (port, worker)
        })
    }

    /// Where a moved connection's frame goes, as `(worker, first)`.
    fn to(worker: usize, first: bool) -> Option<(usize, bool)> {
        Some((worker, first))
    }

    /// [`Rebalancer::moved_to`] as `(worker, first)`.
    fn goes(r: &mut Rebalancer, port: u16, now: Timestamp) -> Option<(usize, bool)> {
        r.moved_to(&key(port), true, now).map(|m| (m.worker, m.first))
    }

    #[test]
    fn of_bulk_connections_on_a_busy_worker_the_one_that_evens_the_load_moves_to_the_idle_one() {
        let mut r = Rebalancer::default();
        // Shares 40%, 50%, 10% of 900: moving the first leaves 540 and 360,
        // the second 450 and 450, the third 810 and 90.
        let flows = [(40_001, 40_000_000), (40_002, 50_000_000), (40_003, 10_000_000)];
        assert_eq!(window(&mut r, 1_000, 900, 0, &flows), Some((40_002, 1)));
        let moved = r.moved_to(&key(40_002), true, at(1_200));
        assert_eq!(moved.map(|m| (m.worker, m.first)), to(1, true), "its frames go on there");
        r.handed(moved.expect("moved"));
        assert_eq!(goes(&mut r, 40_002, at(1_200)), to(1, false), "the move counted once");
        assert_eq!(goes(&mut r, 40_001, at(1_200)), None, "the others stay");
    }

    #[test]
    fn a_connection_that_is_all_of_the_load_stays() {
        let mut r = Rebalancer::default();
        // Moving it would make the other worker as busy as this one is.
        assert_eq!(window(&mut r, 1_000, 900, 0, &[(40_001, 90_000_000), (40_002, 1_000)]), None);
        assert!(!r.wants_frames(), "nothing moved, nothing sampled");
        // Nor does it try again at once.
        assert_eq!(r.step(at(1_200), 0, &[900, 0], || 0), None);
        assert!(!r.wants_frames(), "quiet for a while after a decision");
        assert_eq!(r.step(at(2_100), 0, &[900, 0], || 0), None);
        assert!(r.wants_frames(), "then it samples again");
    }

    #[test]
    fn a_worker_busy_with_other_work_moves_no_small_connection() {
        let mut r = Rebalancer::default();
        // Two connections of 10 kB each, while the worker wrote 10 MB in
        // all (a gateway's traffic, say): each is 0.2% of its load.
        assert_eq!(r.step(at(1_000), 0, &[900, 0], || 0), None);
        r.sample(key(40_001), true, 10_000);
        r.sample(key(40_002), true, 10_000);
        assert_eq!(r.step(at(1_100), 0, &[900, 0], || 10_000_000), None);
        assert!(!r.has_moved());
    }

    #[test]
    fn a_window_that_ends_with_the_loads_even_moves_nothing() {
        let mut r = Rebalancer::default();
        assert_eq!(r.step(at(1_000), 0, &[900, 0], || 0), None);
        r.sample(key(40_001), true, 500);
        r.sample(key(40_002), true, 500);
        assert_eq!(r.step(at(1_100), 0, &[600, 500], || 1_000), None, "no longer uneven");
        assert!(!r.has_moved());
    }

    #[test]
    fn workers_that_are_not_busy_or_alike_sample_nothing() {
        let mut r = Rebalancer::default();
        assert_eq!(r.step(at(1_000), 0, &[300, 0], || 0), None);
        assert!(!r.wants_frames(), "not busy enough");
        assert_eq!(r.step(at(1_000), 0, &[900, 800], || 0), None);
        assert!(!r.wants_frames(), "the other is as busy");
        r.sample(key(40_001), true, 1_000);
        assert!(r.flows.is_empty(), "nothing counted while not sampling");
        assert_eq!(r.step(at(1_000), 0, &[900], || 0), None, "one worker alone");
    }

    #[test]
    fn a_moved_connection_is_forgotten_once_its_frames_stop_arriving_or_it_comes_back() {
        let mut r = Rebalancer::default();
        window(&mut r, 1_000, 1_000, 0, &[(40_001, 5), (40_002, 5)]).expect("one moves");
        let moved = (40_001..=40_002).find(|&p| r.moved_to(&key(p), true, at(1_500)).is_some()).expect("moved");
        assert_eq!(r.step(at(2_400), 0, &[500, 500], || 0), None);
        assert_eq!(goes(&mut r, moved, at(2_400)), to(1, true), "still arriving");
        r.step(at(3_500), 0, &[500, 500], || 0);
        assert_eq!(goes(&mut r, moved, at(3_500)), None, "none for a second: forgotten");
        assert!(!r.wants_frames());

        // Moved, then handed back by the worker it went to: forgotten at
        // once, so the two never hand its frames to each other.
        window(&mut r, 5_000, 1_000, 0, &[(40_001, 5), (40_002, 5)]).expect("one moves");
        let moved = (40_001..=40_002).find(|&p| r.moved_to(&key(p), true, at(5_200)).is_some()).expect("moved");
        r.forget(&key(moved));
        assert_eq!(goes(&mut r, moved, at(5_200)), None);
    }

    #[test]
    fn a_moved_connection_is_not_chosen_again() {
        let mut r = Rebalancer::default();
        assert_eq!(window(&mut r, 1_000, 900, 0, &[(40_002, 50), (40_001, 30), (40_003, 20)]), Some((40_002, 1)));
        // Were its frames written here meanwhile (its new worker had no
        // room), it would not be a candidate again.
        assert!(r.moved_to(&key(40_002), true, at(2_200)).is_some(), "still arriving here");
        assert_eq!(window(&mut r, 2_200, 900, 0, &[(40_002, 500), (40_001, 300), (40_003, 200)]), Some((40_001, 1)));
    }

    /// A UDP flow from station 1's `port` to station 2.
    fn udp_key(port: u16) -> ConnectionKey {
        use super::super::testing::frames::{ip, mac, udp};
        let datagram = udp((mac(1), ip(1), port), (mac(2), ip(2), 5201), &[1; 10]);
        crate::offload::flow_key(&datagram).expect("a UDP datagram")
    }

    #[test]
    fn a_udp_flow_moves_only_once_seen_both_ways() {
        let mut r = Rebalancer::default();
        // Half of the load is a UDP flow seen one way only: moving it would
        // even the load best, but tun would go on steering its datagrams
        // here. The next best candidate moves instead.
        assert_eq!(r.step(at(1_000), 0, &[900, 0], || 0), None);
        r.sample(udp_key(40_001), true, 50);
        r.sample(key(40_002), true, 40);
        r.sample(key(40_003), true, 10);
        assert_eq!(r.step(at(1_100), 0, &[900, 0], || 100), Some((key(40_002), 1)));
        // Seen both ways, it is a candidate like a connection.
        assert_eq!(r.step(at(2_100), 0, &[900, 0], || 100), None, "sampling again");
        r.sample(udp_key(40_001), true, 45);
        r.sample(udp_key(40_001), false, 5);
        r.sample(key(40_003), true, 30);
        assert_eq!(r.step(at(2_200), 0, &[900, 0], || 200), Some((udp_key(40_001), 1)));
    }

    #[test]
    fn a_moved_udp_flow_that_keeps_arriving_one_way_is_given_back() {
        let mut r = Rebalancer::default();
        assert_eq!(r.step(at(1_000), 0, &[900, 0], || 0), None);
        r.sample(udp_key(40_001), true, 45);
        r.sample(udp_key(40_001), false, 5);
        r.sample(key(40_003), true, 30);
        assert_eq!(r.step(at(1_100), 0, &[900, 0], || 100), Some((udp_key(40_001), 1)));
        // Its frames still reach this worker both ways for a second: the
        // move stands.
        for ms in (1_200..2_100).step_by(100) {
            assert!(r.moved_to(&udp_key(40_001), ms % 200 == 0, at(ms)).is_some(), "at {ms}");
        }
        // Then one way only (the answers stopped) for a whole second: tun
        // keeps that side here, so the flow is given back.
        for ms in (2_100..3_100).step_by(100) {
            assert!(r.moved_to(&udp_key(40_001), true, at(ms)).is_some(), "at {ms}");
        }
        assert!(r.moved_to(&udp_key(40_001), true, at(3_100)).is_none(), "given back");
        assert!(!r.has_moved());
        // A TCP connection's frames are never judged so.
        assert_eq!(r.step(at(3_100), 0, &[900, 0], || 0), None);
        r.sample(key(40_002), true, 50);
        r.sample(key(40_003), true, 30);
        assert_eq!(r.step(at(3_200), 0, &[900, 0], || 100), Some((key(40_002), 1)));
        for ms in (3_300..5_300).step_by(100) {
            assert!(r.moved_to(&key(40_002), true, at(ms)).is_some(), "at {ms}");
        }
    }

    #[test]
    fn the_table_of_sampled_connections_never_grows() {
        let mut r = Rebalancer::default();
        let (before, capacity) = (r.flows.as_ptr(), r.flows.capacity());
        r.step(at(1_000), 0, &[900, 0], || 0);
        for port in 40_000..40_100 {
            r.sample(key(port), true, 10);
        }
        assert_eq!(r.flows.len(), TRACKED);
        assert_eq!((r.flows.as_ptr(), r.flows.capacity()), (before, capacity), "no allocation after start");
    }
}
