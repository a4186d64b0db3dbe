//! A hierarchical timer wheel with 1 ms ticks over a preallocated slab.
//!
//! Six levels of 64 slots: level `l` slot width is `64^l` ms, so level 0
//! covers the current 64 ms, level 1 the current 4 s, and level 5 about two
//! years. An entry goes into the lowest level whose current block holds its
//! deadline (found from the highest bit where deadline and the wheel's
//! clock differ), in O(1); when the clock reaches a higher-level slot, its
//! entries cascade down, each at most five times in its life. The next slot
//! to expire is found from each level's 64-bit occupancy mask. Entries of
//! one slot stay in insertion order (lists keep head and tail), so frames
//! with equal deadlines leave in the order they came.
//!
//! The layout follows the wheel of the Linux kernel and of tokio's timer
//! driver; the slab holds at most `capacity` entries, allocated once.

/// Bits per level: 64 slots.
const LEVEL_BITS: u32 = 6;
/// Slots per level.
const SLOTS: usize = 1 << LEVEL_BITS;
/// Number of levels.
const LEVELS: usize = 6;
/// Deadlines at or beyond this many ms past the clock are clamped (≈ 2.2 years).
const MAX_SPAN: u64 = 1 << (LEVEL_BITS * LEVELS as u32);
/// No entry.
const NIL: u32 = u32::MAX;

/// One slab entry.
#[derive(Debug)]
struct Node<T> {
    deadline: u64,
    next: u32,
    value: Option<T>,
}

/// One level's slot lists and occupancy mask.
#[derive(Debug)]
struct Level {
    occupied: u64,
    head: [u32; SLOTS],
    tail: [u32; SLOTS],
}

impl Level {
    fn new() -> Level {
        Level { occupied: 0, head: [NIL; SLOTS], tail: [NIL; SLOTS] }
    }
}

/// The next slot to expire: its level, slot and deadline.
#[derive(Debug, Clone, Copy)]
struct Expiration {
    level: usize,
    slot: usize,
    deadline: u64,
}

/// Values with millisecond deadlines, handed back in deadline order (ties
/// in insertion order).
#[derive(Debug)]
pub(crate) struct TimerWheel<T> {
    /// The wheel's clock: everything before it has expired.
    elapsed: u64,
    levels: Vec<Level>,
    nodes: Vec<Node<T>>,
    free: u32,
    len: usize,
}

impl<T> TimerWheel<T> {
    /// An empty wheel holding at most `capacity` values, its clock at `now` ms.
    pub(crate) fn new(capacity: usize, now: u64) -> TimerWheel<T> {
        let capacity = capacity.min(NIL as usize);
        let nodes = (0..capacity)
            .map(|i| Node { deadline: 0, next: if i + 1 < capacity { i as u32 + 1 } else { NIL }, value: None })
            .collect();
        TimerWheel {
            elapsed: now,
            levels: (0..LEVELS).map(|_| Level::new()).collect(),
            nodes,
            free: if capacity > 0 { 0 } else { NIL },
            len: 0,
        }
    }

    /// Values held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// True when no value is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `value` due at `deadline` ms (a deadline already past is due at
    /// the next [`TimerWheel::expire`]); hands it back when the wheel is full.
    pub(crate) fn insert(&mut self, deadline: u64, value: T) -> Result<(), T> {
        if self.free == NIL {
            return Err(value);
        }
        let id = self.free;
        let node = &mut self.nodes[id as usize];
        self.free = node.next;
        node.value = Some(value);
        node.next = NIL;
        node.deadline = deadline.max(self.elapsed);
        self.len += 1;
        self.link(id);
        Ok(())
    }

    /// The deadline of the earliest value, if any (it may lie in the past).
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        self.next_expiration().map(|e| e.deadline)
    }

    /// Hands every value due at or before `now` ms to `f`, in deadline order.
    pub(crate) fn expire(&mut self, now: u64, mut f: impl FnMut(T)) {
        while let Some(e) = self.next_expiration().filter(|e| e.deadline <= now) {
            self.elapsed = e.deadline;
            let level = &mut self.levels[e.level];
            let mut id = level.head[e.slot];
            level.head[e.slot] = NIL;
            level.tail[e.slot] = NIL;
            level.occupied &= !(1u64 << e.slot);
            while id != NIL {
                let next = self.nodes[id as usize].next;
                self.nodes[id as usize].next = NIL;
                if e.level == 0 {
                    let value = self.release(id);
                    if let Some(value) = value {
                        f(value);
                    }
                } else {
                    // Cascade: it belongs to a lower level now.
                    self.link(id);
                }
                id = next;
            }
        }
        self.elapsed = self.elapsed.max(now);
    }

    /// Removes every value, in deadline order, whatever its deadline; the
    /// clock stays where it was.
    pub(crate) fn drain(&mut self, f: impl FnMut(T)) {
        let clock = self.elapsed;
        self.expire(u64::MAX - MAX_SPAN, f);
        // Empty now, so no entry sits relative to the far-future clock.
        self.elapsed = clock;
    }

    /// Puts node `id` into the slot its deadline belongs to.
    fn link(&mut self, id: u32) {
        let deadline = self.nodes[id as usize].deadline.clamp(self.elapsed, self.elapsed + (MAX_SPAN - 1));
        self.nodes[id as usize].deadline = deadline;
        let level = level_for(self.elapsed, deadline);
        let slot = ((deadline >> (level as u32 * LEVEL_BITS)) as usize) & (SLOTS - 1);
        let lvl = &mut self.levels[level];
        match lvl.tail[slot] {
            NIL => lvl.head[slot] = id,
            tail => self.nodes[tail as usize].next = id,
        }
        lvl.tail[slot] = id;
        lvl.occupied |= 1u64 << slot;
    }

    /// Frees node `id` and returns its value.
    fn release(&mut self, id: u32) -> Option<T> {
        let node = &mut self.nodes[id as usize];
        let value = node.value.take();
        node.next = self.free;
        self.free = id;
        self.len -= 1;
        value
    }

    /// The earliest non-empty slot: lower levels always expire first, since
    /// a level's entries lie beyond the current block of the level below.
    fn next_expiration(&self) -> Option<Expiration> {
        (0..LEVELS).find_map(|level| self.level_expiration(level))
    }

    fn level_expiration(&self, level: usize) -> Option<Expiration> {
        let lvl = &self.levels[level];
        if lvl.occupied == 0 {
            return None;
        }
        let shift = level as u32 * LEVEL_BITS;
        let now_slot = ((self.elapsed >> shift) as usize) & (SLOTS - 1);
        // The first occupied slot at or after the clock's, wrapping around.
        let slot = (now_slot + lvl.occupied.rotate_right(now_slot as u32).trailing_zeros() as usize) % SLOTS;
        let slot_width = 1u64 << shift;
        let level_width = slot_width << LEVEL_BITS;
        let level_start = self.elapsed & !(level_width - 1);
        let mut deadline = level_start + slot as u64 * slot_width;
        if slot < now_slot {
            deadline += level_width;
        }
        // A level-0 entry's own deadline; a higher slot's start (where it cascades).
        Some(Expiration { level, slot, deadline: deadline.max(self.elapsed) })
    }
}

/// The level a deadline belongs to, seen from the clock `elapsed`.
fn level_for(elapsed: u64, deadline: u64) -> usize {
    let masked = (elapsed ^ deadline) | (SLOTS as u64 - 1);
    let significant = 63 - masked.leading_zeros();
    ((significant / LEVEL_BITS) as usize).min(LEVELS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn collect(wheel: &mut TimerWheel<u32>, now: u64) -> Vec<u32> {
        let mut out = Vec::new();
        wheel.expire(now, |v| out.push(v));
        out
    }

    #[test]
    fn expires_in_deadline_then_insertion_order() {
        let mut w = TimerWheel::new(16, 1000);
        for (i, d) in [(0, 1010), (1, 1005), (2, 1010), (3, 1005), (4, 5000), (5, 1_000_000)].into_iter() {
            w.insert(d, i).unwrap();
        }
        assert_eq!(w.next_deadline(), Some(1005));
        assert_eq!(collect(&mut w, 1004), Vec::<u32>::new());
        assert_eq!(collect(&mut w, 1005), [1, 3]);
        assert_eq!(collect(&mut w, 1009), Vec::<u32>::new());
        assert_eq!(collect(&mut w, 4999), [0, 2]);
        assert_eq!(w.next_deadline(), Some(5000), "cascaded down on the way");
        assert_eq!(collect(&mut w, 5000), [4]);
        assert_eq!(w.next_deadline(), Some(3 << 18), "a level-3 slot cascades at its start");
        assert_eq!(w.len(), 1);
        assert_eq!(collect(&mut w, 999_999), Vec::<u32>::new());
        assert_eq!(collect(&mut w, 1_000_000), [5]);
        assert!(w.is_empty());
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn bounded_and_reuses_slots() {
        let mut w = TimerWheel::new(2, 0);
        w.insert(5, 1).unwrap();
        w.insert(5, 2).unwrap();
        assert_eq!(w.insert(5, 3), Err(3));
        assert_eq!(collect(&mut w, 5), [1, 2]);
        w.insert(3, 4).unwrap();
        assert_eq!(collect(&mut w, 100), [4]);
    }

    #[test]
    fn past_deadlines_are_due_at_once() {
        let mut w = TimerWheel::new(4, 0);
        assert!(collect(&mut w, 500).is_empty());
        w.insert(10, 1).unwrap();
        assert_eq!(w.next_deadline(), Some(500));
        assert_eq!(collect(&mut w, 500), [1]);
    }

    #[test]
    fn drain_takes_everything_in_order() {
        let mut w = TimerWheel::new(8, 7);
        for (i, d) in [(0u32, 90_000u64), (1, 8), (2, 300), (3, 8)] {
            w.insert(d, i).unwrap();
        }
        let mut out = Vec::new();
        w.drain(|v| out.push(v));
        assert_eq!(out, [1, 3, 2, 0]);
        assert!(w.is_empty());
    }

    proptest! {
        /// Used as the datapath does: expire only when the wheel says
        /// something is due, so its clock lags between uses. Every value
        /// still comes out at the first check at or after its deadline.
        #[test]
        fn due_values_come_out_when_expired_only_on_demand(
            start in 0u64..1u64 << 30,
            ops in proptest::collection::vec((0u64..100_000, 1u64..5_000, any::<bool>()), 1..200),
        ) {
            let mut w = TimerWheel::new(400, start);
            let mut now = start;
            let mut pending: Vec<(u64, u32)> = Vec::new();
            for (i, (delay, advance, insert)) in ops.into_iter().enumerate() {
                if insert {
                    w.insert(now + delay, i as u32).unwrap();
                    pending.push((now + delay, i as u32));
                }
                // Step the clock 1 ms at a time, expiring only when due.
                let end = now + advance;
                while now < end {
                    now += 1;
                    if w.next_deadline().is_some_and(|d| d <= now) {
                        let got = collect(&mut w, now);
                        for v in &got {
                            let k = pending.iter().position(|p| p.1 == *v).unwrap();
                            prop_assert_eq!(pending.remove(k).0, now, "value {} released late or early", v);
                        }
                    }
                    prop_assert!(pending.iter().all(|&(d, _)| d > now), "a value overdue at {}", now);
                }
            }
        }

        /// Against a sorted reference: every value comes out exactly once,
        /// never before its deadline, never after the first expire at or
        /// past it, in (deadline, insertion) order.
        #[test]
        fn matches_a_sorted_reference(
            start in 0u64..1u64 << 40,
            ops in proptest::collection::vec((0u64..200_000, 0u64..3_000, any::<bool>()), 1..300),
        ) {
            let mut w = TimerWheel::new(400, start);
            let mut now = start;
            let mut pending: Vec<(u64, u32)> = Vec::new();
            for (i, (delay, advance, insert)) in ops.into_iter().enumerate() {
                if insert {
                    w.insert(now + delay, i as u32).unwrap();
                    pending.push((now + delay, i as u32));
                }
                now += advance;
                let got = collect(&mut w, now);
                let mut due: Vec<(u64, u32)> = pending.iter().copied().filter(|&(d, _)| d <= now).collect();
                due.sort();
                pending.retain(|&(d, _)| d > now);
                prop_assert_eq!(got, due.iter().map(|&(_, v)| v).collect::<Vec<_>>());
                prop_assert_eq!(w.len(), pending.len());
                let earliest = pending.iter().map(|&(d, _)| d).min();
                // The wheel may name an earlier time (a cascade), never a later one.
                if let Some(earliest) = earliest {
                    let next = w.next_deadline().unwrap();
                    prop_assert!(next <= earliest && next > now);
                } else {
                    prop_assert_eq!(w.next_deadline(), None);
                }
            }
        }
    }
}
