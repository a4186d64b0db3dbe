//! One network sealed by several threads of one host (a network spread over
//! a switch's worker threads): each thread has its own sender session, so
//! nonces never collide, and the threads share two things.
//!
//! - [`SessionLane`]: how each thread picks its session ids. A receiver
//!   that reads with several threads steers each packet by its session id
//!   (the low 32 bits modulo its thread count), so all packets of a session
//!   reach the one thread that holds its replay window, whatever their
//!   outer addresses say. Thread `index` of `step` draws ids whose low 32
//!   bits are `base + index + step * n` (its `n`th session; `base` random
//!   per host start), so one host's threads land on different receiving
//!   threads (consecutive residues), and a host with one thread lands on
//!   a random one. The high 32 bits are random. Within one run no two of
//!   the host's sessions share an id (their low bits differ until
//!   2^32 / `step` sessions per thread); across runs `base` is drawn again.
//! - [`HostSessions`]: the session ids every thread of the host sealed
//!   with lately, so a thread refuses packets another thread sealed that
//!   someone sent back ([`crate::OpenError::Reflected`]).
//!
//! Receiving, a thread opens only the sessions its index is steered
//! ([`receiving_thread`]), whatever delivered the packet to it, and refuses
//! the others ([`crate::OpenError::OtherThread`]): were two threads to
//! judge one session, each with a replay window of its own, a packet
//! replayed to the other would be accepted again (the steering program
//! could be missing or replaced, or a packet handed between threads).

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

    /// The id of this thread's `n`th session: random high 32 bits, low 32
    /// bits `base + index + step * n`.
    pub(crate) fn session_id(self, n: u32) -> Result<u64, SealError> {
        let low = self.base.wrapping_add(self.index).wrapping_add(self.step.wrapping_mul(n));
        Ok(u64::from(random_u32()?) << 32 | u64::from(low))
    }
}

/// The receiving thread of a session: the low 32 bits of its id modulo the
/// receiver's `threads` (what a steering program computes from the header).
pub fn receiving_thread(session_id: u64, threads: u32) -> u32 {
    (session_id as u32) % threads.max(1)
}

/// How many recent sessions per thread [`HostSessions`] keeps: a session
/// ends at each key epoch, and packets of the previous and next epochs are
/// accepted, so each thread's last four cover them with room to spare.
pub const SESSIONS_PER_THREAD: usize = 4;

/// The sender sessions the threads of one host made lately for one
/// network, shared by them (an `Arc`): recorded when a session starts,
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

    #[test]
    fn the_threads_of_a_lane_land_on_consecutive_receiving_threads() {
        let lane = SessionLane::random(2).unwrap();
        for n in 0..4 {
            let ids: Vec<u64> = (0..2).map(|k| lane.for_thread(k).session_id(n).unwrap()).collect();
            let receivers: Vec<u32> = ids.iter().map(|&id| receiving_thread(id, 2)).collect();
            assert_ne!(receivers[0], receivers[1], "two senders on one receiver: {ids:x?}");
            // Three receiving threads: still two different ones.
            assert_ne!(receiving_thread(ids[0], 3), receiving_thread(ids[1], 3));
        }
        // One thread's sessions never repeat their low bits within a run.
        let one = lane.for_thread(1);
        let lows: std::collections::HashSet<u32> = (0..1000).map(|n| one.session_id(n).unwrap() as u32).collect();
        assert_eq!(lows.len(), 1000);
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
