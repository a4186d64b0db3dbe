//! Checked impairment settings: what [`ctl::Impairment`] asks for, within
//! the ranges the switch carries out.

use std::num::NonZeroU64;

use ctl::Impairment;
use ctl::impair::{format_duration_us, format_percent_ppm, format_rate_bps};

/// Why an impairment was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImpairError {
    /// Every setting is zero: nothing would change (clearing is its own request).
    #[error("no impairment given: set at least one of delay, jitter, loss, duplicate, reorder, rate (or clear it)")]
    Nothing,
    /// A delay or jitter above the longest the switch holds frames for.
    #[error("{what} {} is too long: at most {}", format_duration_us(*us), format_duration_us(ImpairSettings::MAX_DELAY_US))]
    TooLong {
        /// `delay` or `jitter`.
        what: &'static str,
        /// The value given, in microseconds.
        us: u64,
    },
    /// A probability above 100%.
    #[error("{what} {} is above 100%", format_percent_ppm(*ppm))]
    AboveHundredPercent {
        /// `loss`, `duplicate` or `reorder`.
        what: &'static str,
        /// The value given, in parts per million.
        ppm: u32,
    },
    /// A rate outside what the pacing handles.
    #[error(
        "rate {} is out of range: {} to {}",
        format_rate_bps(*bps),
        format_rate_bps(ImpairSettings::MIN_RATE_BPS),
        format_rate_bps(ImpairSettings::MAX_RATE_BPS)
    )]
    RateOutOfRange {
        /// The value given, in bits per second.
        bps: u64,
    },
    /// A queue bound outside 1 to [`ImpairSettings::MAX_LIMIT`] frames.
    #[error("limit {limit} is out of range: 1 to {} frames", ImpairSettings::MAX_LIMIT)]
    LimitOutOfRange {
        /// The value given.
        limit: u32,
    },
    /// Reordering sends some frames ahead of delayed ones: without a delay
    /// there is nothing to overtake (netem refuses it too).
    #[error("reorder needs a delay: reordered frames are the ones sent without it")]
    ReorderWithoutDelay,
}

/// Impairment settings that passed [`ImpairSettings::new`]'s checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImpairSettings {
    spec: Impairment,
    rate: Option<NonZeroU64>,
    limit: u32,
}

impl ImpairSettings {
    /// The queue bound when none is given: netem's default `limit`.
    pub const DEFAULT_LIMIT: u32 = 1000;
    /// The largest queue bound (the pool then takes up to 128 MiB).
    pub const MAX_LIMIT: u32 = 65_536;
    /// The longest delay and the largest jitter: one minute.
    pub const MAX_DELAY_US: u64 = 60_000_000;
    /// The slowest rate: 1 kbit/s.
    pub const MIN_RATE_BPS: u64 = 1_000;
    /// The fastest rate: 1 Tbit/s.
    pub const MAX_RATE_BPS: u64 = 1_000_000_000_000;

    /// Checks `spec`.
    pub fn new(spec: &Impairment) -> Result<ImpairSettings, ImpairError> {
        let nothing = spec.delay_us == 0
            && spec.jitter_us == 0
            && spec.loss_ppm == 0
            && spec.duplicate_ppm == 0
            && spec.reorder_ppm == 0
            && spec.rate_bps.is_none();
        if nothing {
            return Err(ImpairError::Nothing);
        }
        for (what, us) in [("delay", spec.delay_us), ("jitter", spec.jitter_us)] {
            if us > Self::MAX_DELAY_US {
                return Err(ImpairError::TooLong { what, us });
            }
        }
        for (what, ppm) in [("loss", spec.loss_ppm), ("duplicate", spec.duplicate_ppm), ("reorder", spec.reorder_ppm)] {
            if ppm > 1_000_000 {
                return Err(ImpairError::AboveHundredPercent { what, ppm });
            }
        }
        let rate = match spec.rate_bps {
            Some(bps) if !(Self::MIN_RATE_BPS..=Self::MAX_RATE_BPS).contains(&bps) => {
                return Err(ImpairError::RateOutOfRange { bps });
            }
            bps => bps.and_then(NonZeroU64::new),
        };
        let limit = spec.limit.unwrap_or(Self::DEFAULT_LIMIT);
        if !(1..=Self::MAX_LIMIT).contains(&limit) {
            return Err(ImpairError::LimitOutOfRange { limit });
        }
        if spec.reorder_ppm > 0 && spec.delay_us == 0 {
            return Err(ImpairError::ReorderWithoutDelay);
        }
        Ok(ImpairSettings { spec: *spec, rate, limit })
    }

    /// The settings as given.
    pub fn spec(&self) -> &Impairment {
        &self.spec
    }

    /// The mean delay, in nanoseconds.
    pub(crate) fn delay_ns(&self) -> u64 {
        self.spec.delay_us * 1_000
    }

    /// The jitter, in nanoseconds.
    pub(crate) fn jitter_ns(&self) -> u64 {
        self.spec.jitter_us * 1_000
    }

    /// The link rate in bits per second, if limited.
    pub(crate) fn rate_bps(&self) -> Option<NonZeroU64> {
        self.rate
    }

    /// Frames the queue holds at most.
    pub fn limit(&self) -> u32 {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Impairment {
        Impairment { delay_us: 10_000, ..Impairment::default() }
    }

    #[test]
    fn checks_every_range() {
        assert_eq!(ImpairSettings::new(&spec()).unwrap().limit(), 1000);
        assert_eq!(ImpairSettings::new(&Impairment::default()), Err(ImpairError::Nothing));
        let e = ImpairSettings::new(&Impairment { delay_us: 61_000_000, ..spec() }).unwrap_err();
        assert_eq!(e.to_string(), "delay 61s is too long: at most 60s");
        let e = ImpairSettings::new(&Impairment { loss_ppm: 1_000_001, ..spec() }).unwrap_err();
        assert_eq!(e, ImpairError::AboveHundredPercent { what: "loss", ppm: 1_000_001 });
        let e = ImpairSettings::new(&Impairment { rate_bps: Some(999), ..spec() }).unwrap_err();
        assert_eq!(e.to_string(), "rate 999bit is out of range: 1kbit to 1tbit");
        let e = ImpairSettings::new(&Impairment { limit: Some(0), ..spec() }).unwrap_err();
        assert_eq!(e, ImpairError::LimitOutOfRange { limit: 0 });
        assert!(ImpairSettings::new(&Impairment { limit: Some(65_537), ..spec() }).is_err());
        let e = ImpairSettings::new(&Impairment { delay_us: 0, reorder_ppm: 10, ..spec() }).unwrap_err();
        assert_eq!(e, ImpairError::ReorderWithoutDelay);
        let rate_only = Impairment { rate_bps: Some(1_000_000), ..Impairment::default() };
        assert_eq!(ImpairSettings::new(&rate_only).unwrap().rate_bps(), NonZeroU64::new(1_000_000));
        assert!(ImpairSettings::new(&Impairment { loss_ppm: 1_000_000, ..Impairment::default() }).is_ok());
    }
}
