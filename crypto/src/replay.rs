//! The anti-replay sliding window of one sender session (RFC 6479): a ring
//! of 64-bit blocks, one bit per counter, that slides forward a block at a
//! time, so reordered packets within the window are accepted once each.

/// Blocks in the ring: one more than the window needs, so that sliding
/// clears whole blocks (RFC 6479 §2.3).
const BLOCKS: usize = 64;

/// Counters per block.
const BLOCK_BITS: u64 = u64::BITS as u64;

/// How far behind the newest counter a packet may be and still be accepted
/// (if not seen before): 4,032 packets.
pub const REPLAY_WINDOW: u64 = (BLOCKS as u64 - 1) * BLOCK_BITS;

/// A packet the window refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The counter was already accepted.
    Replayed,
    /// The counter is [`REPLAY_WINDOW`] or more behind the newest one.
    TooOld {
        /// The newest counter accepted.
        newest: u64,
    },
}

/// Which counters of one session were received.
#[derive(Clone)]
pub struct ReplayWindow {
    /// The highest counter accepted (0 before any).
    newest: u64,
    /// Bit `c % 64` of block `(c / 64) % BLOCKS` is set once counter `c` is
    /// accepted, for counters within the window.
    bitmap: [u64; BLOCKS],
}

impl Default for ReplayWindow {
    fn default() -> ReplayWindow {
        ReplayWindow::new()
    }
}

impl ReplayWindow {
    /// An empty window: every counter is acceptable.
    pub fn new() -> ReplayWindow {
        ReplayWindow { newest: 0, bitmap: [0; BLOCKS] }
    }

    /// A window that refuses every counter up to `newest` and accepts every
    /// later one: for a session whose window was forgotten, when only its
    /// newest counter is remembered.
    pub fn after(newest: u64) -> ReplayWindow {
        ReplayWindow { newest, bitmap: [u64::MAX; BLOCKS] }
    }

    /// The newest counter accepted (0 before any).
    pub fn newest(&self) -> u64 {
        self.newest
    }

    /// Whether `counter` would be accepted, without recording it.
    pub fn check(&self, counter: u64) -> Result<(), Refused> {
        if counter > self.newest {
            return Ok(());
        }
        if self.newest - counter >= REPLAY_WINDOW {
            return Err(Refused::TooOld { newest: self.newest });
        }
        let (block, bit) = position(counter);
        if self.bitmap[block] & bit != 0 { Err(Refused::Replayed) } else { Ok(()) }
    }

    /// Records `counter` as received if [`ReplayWindow::check`] accepts it.
    /// Call only once the packet has been authenticated.
    pub fn accept(&mut self, counter: u64) -> Result<(), Refused> {
        self.check(counter)?;
        if counter > self.newest {
            let current = self.newest / BLOCK_BITS;
            let target = counter / BLOCK_BITS;
            let advance = (target - current).min(BLOCKS as u64);
            for i in 1..=advance {
                self.bitmap[((current + i) % BLOCKS as u64) as usize] = 0;
            }
            self.newest = counter;
        }
        let (block, bit) = position(counter);
        self.bitmap[block] |= bit;
        Ok(())
    }
}

/// The block index and bit mask of `counter`.
fn position(counter: u64) -> (usize, u64) {
    (((counter / BLOCK_BITS) % BLOCKS as u64) as usize, 1 << (counter % BLOCK_BITS))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn window_is_at_least_2048() {
        const { assert!(REPLAY_WINDOW >= 2048) };
        assert_eq!(REPLAY_WINDOW, 4032);
    }

    #[test]
    fn in_order_then_replay() {
        let mut w = ReplayWindow::new();
        for c in 0..10_000 {
            assert_eq!(w.accept(c), Ok(()), "{c}");
            assert_eq!(w.accept(c), Err(Refused::Replayed), "{c}");
        }
        assert_eq!(w.accept(9_999 - REPLAY_WINDOW + 1), Err(Refused::Replayed));
        assert_eq!(w.accept(9_999 - REPLAY_WINDOW), Err(Refused::TooOld { newest: 9_999 }));
    }

    #[test]
    fn reordering_within_window_accepted_once() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.accept(REPLAY_WINDOW + 100), Ok(()));
        // Everything still inside the window, in reverse order.
        for c in (101..REPLAY_WINDOW + 100).rev() {
            assert_eq!(w.accept(c), Ok(()), "{c}");
        }
        for c in 101..=REPLAY_WINDOW + 100 {
            assert_eq!(w.accept(c), Err(Refused::Replayed), "{c}");
        }
        assert_eq!(w.accept(100), Err(Refused::TooOld { newest: REPLAY_WINDOW + 100 }));
        assert_eq!(w.accept(0), Err(Refused::TooOld { newest: REPLAY_WINDOW + 100 }));
    }

    #[test]
    fn big_jump_clears_the_window() {
        let mut w = ReplayWindow::new();
        for c in 0..64 * 70 {
            w.accept(c).unwrap();
        }
        let far = 1_000_000;
        w.accept(far).unwrap();
        // Counters that alias the old bits must read as unseen.
        for c in far - REPLAY_WINDOW + 1..far {
            assert_eq!(w.check(c), Ok(()), "{c}");
        }
        assert_eq!(w.check(u64::MAX - 1), Ok(()));
        w.accept(u64::MAX - 1).unwrap();
        assert_eq!(w.check(u64::MAX - 1), Err(Refused::Replayed));
        assert_eq!(w.check(u64::MAX - 2), Ok(()));
    }

    #[test]
    fn after_refuses_up_to_newest() {
        let w = ReplayWindow::after(5000);
        assert_eq!(w.check(5000), Err(Refused::Replayed));
        assert_eq!(w.check(4999), Err(Refused::Replayed));
        assert_eq!(w.check(0), Err(Refused::TooOld { newest: 5000 }));
        assert_eq!(w.check(5001), Ok(()));
    }

    proptest! {
        /// Against a model: a set of seen counters and the newest one.
        #[test]
        fn matches_model(counters in proptest::collection::vec(0u64..20_000, 1..2_000)) {
            let mut w = ReplayWindow::new();
            let mut seen = std::collections::HashSet::new();
            let mut newest = 0u64;
            for c in counters {
                let expected = if c + REPLAY_WINDOW <= newest {
                    Err(Refused::TooOld { newest })
                } else if seen.contains(&c) {
                    Err(Refused::Replayed)
                } else {
                    Ok(())
                };
                prop_assert_eq!(w.accept(c), expected, "counter {}", c);
                if expected.is_ok() {
                    seen.insert(c);
                    newest = newest.max(c);
                }
            }
        }
    }
}
