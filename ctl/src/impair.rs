//! Link impairment settings (`vswitchctl port impair`): the [`Impairment`]
//! the protocol and the daemon's state carry, and the netem-style units the
//! command line reads and `show` prints: durations (`10ms`, `500us`, `1.5s`),
//! percentages (`1%`, `0.1%`) and rates (`100mbit`, `1gbit`, `10mbps`).
//!
//! Percentages travel as parts per million and durations as microseconds, so
//! the values are exact integers on the wire; the daemon checks the ranges.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a port's egress does to frames, as netem would: delay with jitter,
/// random loss, duplication and reordering, a rate limit and a queue bound.
///
/// On the wire and in the state file only the fields set are written, e.g.
/// `{"delay_us":10000,"jitter_us":2000,"loss_ppm":10000,"rate_bps":100000000}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Impairment {
    /// Mean delay added to every frame, in microseconds.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub delay_us: u64,
    /// Each frame's delay is drawn uniformly from `delay ± jitter` (never
    /// below zero), in microseconds. Frames may then leave out of order, as
    /// with netem.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub jitter_us: u64,
    /// Probability that a frame is dropped, in parts per million.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub loss_ppm: u32,
    /// Probability that a frame is sent twice, in parts per million.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub duplicate_ppm: u32,
    /// Probability that a frame skips the delay and leaves at once (ahead of
    /// frames still delayed), in parts per million. Needs a delay.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub reorder_ppm: u32,
    /// Link rate in bits per second: each frame occupies the link for its
    /// wire size (a GSO frame: every segment it stands for) divided by the
    /// rate, after the previous one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_bps: Option<u64>,
    /// Frames the port's impairment queue holds at most (netem's `limit`;
    /// the daemon's default is 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

impl fmt::Display for Impairment {
    /// netem's words for the settings that are set, e.g.
    /// `delay 10ms jitter 2ms loss 1% rate 100mbit`; `none` when nothing is.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.delay_us > 0 {
            parts.push(format!("delay {}", format_duration_us(self.delay_us)));
        }
        if self.jitter_us > 0 {
            parts.push(format!("jitter {}", format_duration_us(self.jitter_us)));
        }
        for (word, ppm) in [("loss", self.loss_ppm), ("duplicate", self.duplicate_ppm), ("reorder", self.reorder_ppm)] {
            if ppm > 0 {
                parts.push(format!("{word} {}", format_percent_ppm(ppm)));
            }
        }
        if let Some(rate) = self.rate_bps {
            parts.push(format!("rate {}", format_rate_bps(rate)));
        }
        if let Some(limit) = self.limit {
            parts.push(format!("limit {limit}"));
        }
        if parts.is_empty() { f.write_str("none") } else { f.write_str(&parts.join(" ")) }
    }
}

/// A port's impairment counters: what the switch's impairment core counts and what `stats`
/// reports (one type for both, so a counter cannot be added to one and forgotten in the
/// other). Every counter but `queued` only grows while the port lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImpairCounters {
    /// Frames waiting in the impairment queue now.
    pub queued: u64,
    /// Frames that went through the queue (delayed or paced by the rate).
    pub delayed: u64,
    /// Frames dropped by random loss (also in `drops` as `impair_loss`).
    pub lost: u64,
    /// Extra copies sent by duplication.
    pub duplicated: u64,
    /// Frames sent at once, ahead of delayed ones, by reordering.
    pub reordered: u64,
    /// Frames dropped because the queue was full (also in `drops` as `impair_queue_full`).
    pub queue_full: u64,
}

impl ImpairCounters {
    /// The totals of `earlier` (counters of cores a port no longer has) and `self` (its
    /// core now): every total adds up, but `queued` is what waits now.
    pub fn after(self, earlier: Self) -> Self {
        Self {
            queued: self.queued,
            delayed: earlier.delayed + self.delayed,
            lost: earlier.lost + self.lost,
            duplicated: earlier.duplicated + self.duplicated,
            reordered: earlier.reordered + self.reordered,
            queue_full: earlier.queue_full + self.queue_full,
        }
    }

    /// The counters in the order of `vswitchctl stats`' IMPAIR columns: queued, delayed,
    /// lost, duplicated, reordered, queue full.
    pub fn columns(&self) -> [u64; 6] {
        [self.queued, self.delayed, self.lost, self.duplicated, self.reordered, self.queue_full]
    }
}

/// A value the command line could not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// not a duration: {0:?} (expected a number with a unit: us, ms or s, e.g. 10ms)
    #[error("not a duration: {0:?} (expected a number with a unit: us, ms or s, e.g. 10ms)")]
    Duration(String),
    /// not a percentage: {0:?} (expected e.g. 1% or 0.25%, at most 4 decimals)
    #[error("not a percentage: {0:?} (expected e.g. 1% or 0.25%, at most 4 decimals)")]
    Percent(String),
    /// not a rate: {0:?} (expected a number with a unit: bit, kbit, mbit, gbit, tbit, or bps, kbps, mbps, gbps for bytes per second)
    #[error(
        "not a rate: {0:?} (expected a number with a unit: bit, kbit, mbit, gbit, tbit, or bps, kbps, mbps, gbps \
         for bytes per second)"
    )]
    Rate(String),
}

/// Splits `s` into a decimal number (digits with at most one `.`) and its
/// unit suffix.
fn split_number(s: &str) -> Option<(&str, &str)> {
    let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(end);
    let valid = !number.is_empty() && number != "." && number.matches('.').count() <= 1;
    valid.then_some((number, unit))
}

/// `number × scale` exactly, where `number` is a decimal with at most as
/// many fractional digits as `scale` has zeros; `None` on overflow or if
/// the fraction is too fine.
fn scaled(number: &str, scale: u64) -> Option<u64> {
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let mut value = whole.checked_mul(scale)?;
    let mut unit = scale;
    for digit in frac.bytes() {
        if !unit.is_multiple_of(10) {
            return None;
        }
        unit /= 10;
        value = value.checked_add(u64::from(digit - b'0') * unit)?;
    }
    Some(value)
}

/// Reads a duration such as `10ms`, `2.5ms`, `500us` or `1s` (a bare `0`
/// too) into microseconds.
pub fn parse_duration_us(s: &str) -> Result<u64, UnitError> {
    let err = || UnitError::Duration(s.to_owned());
    let (number, unit) = split_number(s.trim()).ok_or_else(err)?;
    let scale = match unit {
        "us" | "µs" | "usec" => 1,
        "ms" | "msec" => 1_000,
        "s" | "sec" => 1_000_000,
        "" if number.bytes().all(|b| b == b'0' || b == b'.') => 1,
        _ => return Err(err()),
    };
    scaled(number, scale).ok_or_else(err)
}

/// Reads a percentage such as `1%`, `0.1%` or `100%` (the `%` may be left
/// out) into parts per million; at most 4 decimals, at most 100%.
pub fn parse_percent_ppm(s: &str) -> Result<u32, UnitError> {
    let err = || UnitError::Percent(s.to_owned());
    let (number, unit) = split_number(s.trim()).ok_or_else(err)?;
    if !matches!(unit, "%" | "") {
        return Err(err());
    }
    let ppm = scaled(number, 10_000).ok_or_else(err)?;
    if ppm > 1_000_000 {
        return Err(err());
    }
    u32::try_from(ppm).map_err(|_| err())
}

/// Reads a rate in tc's units into bits per second: `bit`, `kbit`, `mbit`,
/// `gbit`, `tbit` (powers of 1000), and `bps`, `kbps`, `mbps`, `gbps`
/// (bytes per second, as tc reads them).
pub fn parse_rate_bps(s: &str) -> Result<u64, UnitError> {
    let err = || UnitError::Rate(s.to_owned());
    let (number, unit) = split_number(s.trim()).ok_or_else(err)?;
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "bit" => 1,
        "kbit" => 1_000,
        "mbit" => 1_000_000,
        "gbit" => 1_000_000_000,
        "tbit" => 1_000_000_000_000,
        "bps" => 8,
        "kbps" => 8_000,
        "mbps" => 8_000_000,
        "gbps" => 8_000_000_000,
        _ => return Err(err()),
    };
    scaled(number, scale).ok_or_else(err)
}

/// A duration in the largest unit that shows it exactly: `10ms`, `1500us`, `2s`.
pub fn format_duration_us(us: u64) -> String {
    if us == 0 {
        "0ms".to_owned()
    } else if us.is_multiple_of(1_000_000) {
        format!("{}s", us / 1_000_000)
    } else if us.is_multiple_of(1_000) {
        format!("{}ms", us / 1_000)
    } else {
        format!("{us}us")
    }
}

/// Parts per million as a percentage without trailing zeros: `1%`, `0.25%`.
pub fn format_percent_ppm(ppm: u32) -> String {
    let whole = ppm / 10_000;
    let frac = ppm % 10_000;
    if frac == 0 {
        return format!("{whole}%");
    }
    let digits = format!("{frac:04}");
    format!("{whole}.{}%", digits.trim_end_matches('0'))
}

/// Bits per second in the largest tc unit that shows it exactly: `100mbit`, `1500kbit`.
pub fn format_rate_bps(bps: u64) -> String {
    for (scale, unit) in [(1_000_000_000_000, "tbit"), (1_000_000_000, "gbit"), (1_000_000, "mbit"), (1_000, "kbit")] {
        if bps >= scale && bps.is_multiple_of(scale) {
            return format!("{}{unit}", bps / scale);
        }
    }
    format!("{bps}bit")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_us("10ms"), Ok(10_000));
        assert_eq!(parse_duration_us("2.5ms"), Ok(2_500));
        assert_eq!(parse_duration_us("500us"), Ok(500));
        assert_eq!(parse_duration_us("1.5s"), Ok(1_500_000));
        assert_eq!(parse_duration_us("0"), Ok(0));
        assert!(parse_duration_us("10").is_err(), "a unit is needed");
        assert!(parse_duration_us("0.5us").is_err(), "finer than a microsecond");
        assert!(parse_duration_us("1.2.3ms").is_err());
        assert!(parse_duration_us("-1ms").is_err());
        assert!(parse_duration_us("ms").is_err());
        assert!(parse_duration_us("99999999999999999999s").is_err());
        assert_eq!(format_duration_us(10_000), "10ms");
        assert_eq!(format_duration_us(1_500), "1500us");
        assert_eq!(format_duration_us(2_000_000), "2s");
    }

    #[test]
    fn percentages() {
        assert_eq!(parse_percent_ppm("1%"), Ok(10_000));
        assert_eq!(parse_percent_ppm("0.1%"), Ok(1_000));
        assert_eq!(parse_percent_ppm("20"), Ok(200_000));
        assert_eq!(parse_percent_ppm("100%"), Ok(1_000_000));
        assert_eq!(parse_percent_ppm("0.0001%"), Ok(1));
        assert!(parse_percent_ppm("0.00001%").is_err());
        assert!(parse_percent_ppm("100.1%").is_err());
        assert!(parse_percent_ppm("1 %x").is_err());
        assert_eq!(format_percent_ppm(10_000), "1%");
        assert_eq!(format_percent_ppm(2_500), "0.25%");
        assert_eq!(format_percent_ppm(1), "0.0001%");
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate_bps("100mbit"), Ok(100_000_000));
        assert_eq!(parse_rate_bps("1.5Gbit"), Ok(1_500_000_000));
        assert_eq!(parse_rate_bps("10mbps"), Ok(80_000_000));
        assert_eq!(parse_rate_bps("64kbit"), Ok(64_000));
        assert!(parse_rate_bps("100").is_err(), "a unit is needed");
        assert!(parse_rate_bps("100mb").is_err());
        assert_eq!(format_rate_bps(100_000_000), "100mbit");
        assert_eq!(format_rate_bps(1_500_000), "1500kbit");
        assert_eq!(format_rate_bps(999), "999bit");
    }

    #[test]
    fn display_and_wire_form() {
        let i = Impairment {
            delay_us: 10_000,
            jitter_us: 2_000,
            loss_ppm: 10_000,
            duplicate_ppm: 1_000,
            reorder_ppm: 0,
            rate_bps: Some(100_000_000),
            limit: None,
        };
        assert_eq!(i.to_string(), "delay 10ms jitter 2ms loss 1% duplicate 0.1% rate 100mbit");
        let json = serde_json::to_string(&i).unwrap();
        assert_eq!(
            json,
            r#"{"delay_us":10000,"jitter_us":2000,"loss_ppm":10000,"duplicate_ppm":1000,"rate_bps":100000000}"#
        );
        assert_eq!(serde_json::from_str::<Impairment>(&json).unwrap(), i);
        assert_eq!(Impairment::default().to_string(), "none");
    }
}
