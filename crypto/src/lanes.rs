//! How one host draws the ids of its sender sessions for a network, so
//! that a receiver reading with several threads can share their work, and
//! what several threads of one host sealing for one network (a network
//! spread over a switch's worker threads) share.
//!
//! - Sessions per flow: every sealer holds [`FLOW_SESSIONS`] sender
//!   sessions at once and seals each flow in one of them, chosen by the
//!   outer UDP source port the flow leaves from (so one outer 4-tuple
//!   carries one session of a network between key rotations; a receiver's
//!   UDP GRO, which merges by 4-tuple, still merges two networks' sessions,
//!   or a rotation's old and new ones, and its steering then follows the
//!   first, see below). A receiver that reads with several threads steers each
//!   packet by its session id (the low 32 bits modulo its thread count), so
//!   all packets of a session reach the one thread that holds its replay
//!   window, whatever their outer addresses say; with several sessions per
//!   sender, a host sealing on one thread still reaches up to
//!   [`FLOW_SESSIONS`] receiving threads, as plain VXLAN's flows spread by
//!   their source ports.
//! - [`SessionLane`]: how each thread picks its session ids. Thread `index`
//!   of `step` draws, for its `n`th set of sessions, ids whose low 32 bits
//!   are `base + index + step * slot + step * F * n` (`F` =
//!   [`FLOW_SESSIONS`], `slot` < `F`; `base` random per network and host
//!   start): the host's `step * F` sessions of a set are consecutive
//!   residues. So with as many receiving threads as sending ones, each
//!   sending thread lands on a receiving thread of its own, whatever the
//!   flow (the receiver's load follows the sender's placement of flows over
//!   its threads); with more receiving threads, each sending thread's flows
//!   spread over up to `F` of them by their slots; and a host lands on
//!   random ones. The high 32 bits are random. Within one run no two of the host's sessions share
//!   an id (their low bits differ until 2^32 / (`step` * `F`) sets per
//!   thread); across runs `base` is drawn again.
//! - [`HostSessions`]: the session ids every thread of the host sealed
//!   with lately, so a thread refuses packets another thread sealed that
//!   someone sent back ([`crate::OpenError::Reflected`]).
//!
//! Receiving, a thread of a spread network opens only the sessions its
//! index is steered ([`receiving_thread`]), whatever delivered the packet
//! to it, and refuses the others ([`crate::OpenError::OtherThread`], which
//! names the thread to pass the packet to, unopened): were two threads to
//! judge one session, each with a replay window of its own, a packet
//! replayed to the other would be accepted again (the steering program
//! could be missing or replaced, or the kernel's UDP GRO could merge a
//! sender's datagrams of two sessions, which the program then steers as
//! one by the first).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use ring::rand::{SecureRandom, SystemRandom};

use crate::error::SealError;

/// How one thread of a host draws its session ids for a network several
/// threads seal for (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLane {
    /// Random per network and host start, the same for every thread.
    pub base: u32,
    /// This thread's index among the network's sealing threads.
    pub index: u32,
    /// How many threads seal for the network.
    pub step: u32,
}

impl SessionLane {
    /// A lane of `step` threads with a random base, for thread 0 (see
    /// [`SessionLane::for_thread`]).
    pub fn random(step: u32) -> Result<SessionLane, SealError> {
        Ok(SessionLane { base: random_u32()?, index: 0, step: step.max(1) })
    }

    /// The same lane for thread `index`.
    pub fn for_thread(self, index: u32) -> SessionLane {
        SessionLane { index, ..self }
    }

    /// The id of session `slot` (< [`FLOW_SESSIONS`]) of this thread's
    /// `n`th set: random high 32 bits, low 32 bits `base + index + step *
    /// slot + step * F * n`.
    pub(crate) fn session_id(self, slot: u32, n: u32) -> Result<u64, SealError> {
        let session = self.index.wrapping_add(self.step.wrapping_mul(slot % FLOW_SESSIONS));
        let set = self.step.wrapping_mul(FLOW_SESSIONS).wrapping_mul(n);
        let low = self.base.wrapping_add(session).wrapping_add(set);
        Ok(u64::from(random_u32()?) << 32 | u64::from(low))
    }
}

/// The receiving thread of a session: the low 32 bits of its id modulo the
/// receiver's `threads` (what a steering program computes from the header).
pub fn receiving_thread(session_id: u64, threads: u32) -> u32 {
    (session_id as u32) % threads.max(1)
}

/// How many sender sessions a sealer holds at once, each carrying the flows
/// of its share of the outer source ports (see the [module docs](self)).
pub const FLOW_SESSIONS: u32 = 4;

/// How many recent sets of [`FLOW_SESSIONS`] sessions per thread
/// [`HostSessions`] keeps: a set ends at each key epoch, and packets of the
/// previous and next epochs are accepted, so each thread's last four sets
/// cover them with room to spare.
pub const SESSIONS_PER_THREAD: usize = 4 * FLOW_SESSIONS as usize;

/// The sender sessions the threads of one host made lately for one
/// network, shared by them (an `Arc`): recorded when a session seals its first packet,
/// read once per run of received packets of one session. Lock-free: a
/// ring of atomics, the oldest overwritten, [`SESSIONS_PER_THREAD`] per
/// thread (at least 64 slots).
#[derive(Debug)]
pub struct HostSessions {
    ids: Box<[AtomicU64]>,
    next: AtomicUsize,
}

impl HostSessions {
    /// An empty set for `threads` sealing threads.
    pub fn new(threads: usize) -> HostSessions {
        let slots = (threads * SESSIONS_PER_THREAD).max(64);
        HostSessions { ids: (0..slots).map(|_| AtomicU64::new(0)).collect(), next: AtomicUsize::new(0) }
    }

    /// Records session `id` as one of the host's.
    pub fn record(&self, id: u64) {
        let slot = self.next.fetch_add(1, Ordering::Relaxed) % self.ids.len();
        self.ids[slot].store(id, Ordering::Relaxed);
    }

    /// Whether `id` is one of the host's recent sessions. (A slot never
    /// written holds 0: a session id of 0, one in 2^64, would be taken for
    /// the host's own.)
    pub fn contains(&self, id: u64) -> bool {
        self.ids.iter().any(|slot| slot.load(Ordering::Relaxed) == id)
    }
}

fn random_u32() -> Result<u32, SealError> {
    let mut bytes = [0u8; 4];
    SystemRandom::new().fill(&mut bytes).map_err(|_| SealError::Random)?;
    Ok(u32::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::HashSet;

    #[test]
    fn the_sessions_of_a_lanes_threads_are_consecutive_residues() {
        let lane = SessionLane::random(2).unwrap();
        for n in 0..4 {
            // Every session of both threads' nth sets, slot by slot: 2 * F
            // consecutive low words, thread 0's and thread 1's alternating.
            let lows: Vec<u32> = (0..FLOW_SESSIONS)
                .flat_map(|slot| (0..2).map(move |k| lane.for_thread(k).session_id(slot, n).unwrap() as u32))
                .collect();
            let first = lane.base.wrapping_add(2 * FLOW_SESSIONS * n);
            let expected: Vec<u32> = (0..2 * FLOW_SESSIONS).map(|i| first.wrapping_add(i)).collect();
            assert_eq!(lows, expected, "set {n}");
        }
        // One thread's sessions never repeat their low bits within a run.
        let one = lane.for_thread(1);
        let lows: HashSet<u32> = (0..1000)
            .flat_map(|n| (0..FLOW_SESSIONS).map(move |slot| one.session_id(slot, n).unwrap() as u32))
            .collect();
        assert_eq!(lows.len(), 1000 * FLOW_SESSIONS as usize);
    }

    #[test]
    fn one_sealing_thread_reaches_as_many_receiving_threads_as_it_has_flow_sessions() {
        for receivers in 1..=FLOW_SESSIONS {
            let lane = SessionLane::random(1).unwrap();
            for n in 0..3 {
                let reached: HashSet<u32> = (0..FLOW_SESSIONS)
                    .map(|slot| receiving_thread(lane.session_id(slot, n).unwrap(), receivers))
                    .collect();
                assert_eq!(reached.len(), receivers as usize, "set {n} over {receivers} receiving threads");
            }
        }
        // Two threads of two: to two receivers, each thread's flows reach
        // a receiver of its own; to four, two each, all four in all.
        let lane = SessionLane::random(2).unwrap();
        let reached = |k: u32, receivers: u32| -> HashSet<u32> {
            (0..FLOW_SESSIONS)
                .map(|slot| receiving_thread(lane.for_thread(k).session_id(slot, 0).unwrap(), receivers))
                .collect()
        };
        let (zero, one) = (reached(0, 2), reached(1, 2));
        assert!(zero.len() == 1 && one.len() == 1 && zero != one, "{zero:?} {one:?}");
        let (zero, one) = (reached(0, 4), reached(1, 4));
        assert!(zero.len() == 2 && one.len() == 2 && zero.is_disjoint(&one), "{zero:?} {one:?}");
    }

    #[test]
    fn host_sessions_remember_the_latest_ids_of_every_thread() {
        for threads in [2usize, 100] {
            let host = HostSessions::new(threads);
            let slots = (threads * SESSIONS_PER_THREAD).max(64) as u64;
            for id in 1..=slots + 10 {
                host.record(id);
            }
            assert!(!host.contains(5), "overwritten by newer sessions");
            assert!(host.contains(11) && host.contains(slots + 10));
        }
    }
}
