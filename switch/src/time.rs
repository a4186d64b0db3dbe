//! Time as the datapath sees it: a monotonic millisecond count passed in by
//! the caller, so tests drive a virtual clock and never sleep. The daemon
//! loop reads it through [`Clock`]; [`MonotonicClock`] is the real one.

use std::time::{Duration, Instant};

/// A point on a monotonic clock, in milliseconds since an arbitrary origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Milliseconds elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn millis_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// This timestamp moved forward by `d`.
    pub fn after(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(d.as_millis() as u64))
    }
}

/// Turns the process's monotonic clock into [`Timestamp`]s; the daemon's
/// single source of `now`.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    origin: Instant,
}

impl MonotonicClock {
    /// A clock whose origin is the moment of the call.
    pub fn new() -> Self {
        MonotonicClock { origin: Instant::now() }
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        Timestamp(self.origin.elapsed().as_millis() as u64)
    }
}

/// Where a loop takes `now` from: the process's clocks in the daemon, a
/// virtual clock that tests move by hand.
pub trait Clock: Send {
    /// The current monotonic time (FDB aging, timers, rate limits).
    fn now(&self) -> Timestamp;
    /// Whole seconds since the Unix epoch by the wall clock (automatic key
    /// rotation, which hosts agree on through NTP, not through each other).
    fn unix_secs(&self) -> u64;
    /// [`Clock::now`] in nanoseconds, on the same origin, for what needs
    /// more than milliseconds (link impairment paces frames by their
    /// transmission time). By default `now`'s milliseconds.
    fn now_ns(&self) -> u64 {
        self.now().0.saturating_mul(1_000_000)
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Timestamp {
        MonotonicClock::now(self)
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn unix_secs(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}
