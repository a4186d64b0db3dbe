//! Flapping detection: a MAC that moves [`FLAP_MOVES`] times within one
//! interval is flapping. Its first move is reported as a move; every later
//! one, in this interval and the next ones while it keeps moving, is folded
//! into one [`EventKind::MacFlapping`] per interval naming the two ports of
//! its last move. An interval without a move ends the flapping.

use super::{EventBuffer, EventKind, FLAP_MOVES, FLAP_TRACKED};
use crate::port::{NetworkId, PortId};
use crate::time::Timestamp;
use crate::wire::MacAddr;

/// A MAC that moved recently.
#[derive(Debug, Clone, Copy)]
struct Mover {
    network: NetworkId,
    mac: MacAddr,
    /// Its last move: from, to.
    ports: [PortId; 2],
    /// Moves in the current interval.
    moves: u32,
    /// Of those, moves not reported on their own.
    suppressed: u32,
    flapping: bool,
    /// When it last moved.
    last: Timestamp,
}

/// The MACs that moved in the current or the last interval, in a table of
/// [`FLAP_TRACKED`] slots allocated once. Moves are rare next to frames, so
/// a slot is found by a linear scan, after a look at the slot of the last
/// move (a MAC flapping at line rate moves on every frame: that stays one
/// comparison). When every slot is taken, the MAC that
/// moved least recently (and is not flapping) makes room; when all of them
/// are flapping, the move is reported on its own and counted as untracked.
#[derive(Debug)]
pub struct FlapTracker {
    slots: Vec<Option<Mover>>,
    /// The slot of the last move.
    last: usize,
    interval_start: Timestamp,
    untracked: u64,
}

impl Default for FlapTracker {
    fn default() -> Self {
        FlapTracker::new(FLAP_TRACKED)
    }
}

impl FlapTracker {
    /// A tracker with room for `slots` moving MACs.
    pub fn new(slots: usize) -> FlapTracker {
        FlapTracker { slots: vec![None; slots.max(1)], last: 0, interval_start: Timestamp(0), untracked: 0 }
    }

    /// `mac` of `network` moved `from` → `to` at `now`. Returns whether the
    /// move is to be reported on its own (`false`: it is part of flapping,
    /// reported at the interval's end).
    pub fn on_move(&mut self, network: NetworkId, mac: MacAddr, from: PortId, to: PortId, now: Timestamp) -> bool {
        let is_it = |m: &Option<Mover>| m.is_some_and(|m| m.mac == mac && m.network == network);
        let found = if is_it(&self.slots[self.last]) { Some(self.last) } else { self.slots.iter().position(is_it) };
        if let Some(i) = found {
            self.last = i;
            let Some(m) = &mut self.slots[i] else { return true };
            m.moves = m.moves.saturating_add(1);
            m.ports = [from, to];
            m.last = now;
            if m.flapping || m.moves >= FLAP_MOVES {
                m.flapping = true;
                m.suppressed = m.suppressed.saturating_add(1);
                return false;
            }
            return true;
        }
        let free = match self.slots.iter().position(Option::is_none) {
            Some(i) => Some(i),
            None => self
                .slots
                .iter()
                .enumerate()
                .filter_map(|(i, m)| m.filter(|m| !m.flapping).map(|m| (i, m.last)))
                .min_by_key(|&(_, last)| last)
                .map(|(i, _)| i),
        };
        match free {
            Some(i) => {
                self.slots[i] = Some(Mover {
                    network,
                    mac,
                    ports: [from, to],
                    moves: 1,
                    suppressed: 0,
                    flapping: false,
                    last: now,
                });
                self.last = i;
            }
            None => self.untracked += 1,
        }
        true
    }

    /// Ends the interval: records one [`EventKind::MacFlapping`] per
    /// flapping MAC that moved in it, and forgets MACs that did not move.
    pub fn end_interval(&mut self, now: Timestamp, out: &mut EventBuffer) {
        let interval_ms = u32::try_from(now.millis_since(self.interval_start)).unwrap_or(u32::MAX);
        self.interval_start = now;
        for slot in &mut self.slots {
            let Some(m) = slot else { continue };
            if m.moves == 0 {
                *slot = None;
                continue;
            }
            if m.flapping {
                let kind = EventKind::MacFlapping {
                    network: m.network,
                    mac: m.mac,
                    ports: m.ports,
                    moves: m.moves,
                    suppressed: m.suppressed,
                    interval_ms,
                };
                out.push(now, kind);
            }
            m.moves = 0;
            m.suppressed = 0;
        }
    }

    /// Moves reported on their own because every slot held a flapping MAC.
    pub fn untracked(&self) -> u64 {
        self.untracked
    }

    /// Whether `mac` of `network` is flapping now.
    pub fn is_flapping(&self, network: NetworkId, mac: MacAddr) -> bool {
        self.slots.iter().flatten().any(|m| m.mac == mac && m.network == network && m.flapping)
    }
}
