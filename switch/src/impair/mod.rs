//! Link impairment for performance testing: what netem does to a Linux
//! interface, done to a switch port's egress, sans IO.
//!
//! An [`Impairer`] takes each frame leaving one port with the time
//! ([`Impairer::offer`]) and decides its fate: dropped (random loss, or a
//! full queue), sent now, or queued until its departure time, which
//! [`Impairer::expire`] hands back in order and [`Impairer::next_deadline`]
//! tells the event loop to wake up for. Queued frames are copied into a
//! preallocated pool (no allocation per frame) and kept on a hierarchical
//! timer wheel with 1 ms ticks (O(1) insert and expiry).
//!
//! Semantics follow netem's:
//!
//! - **loss** drops a frame with the given probability; **duplicate** sends
//!   a second copy, which is offered again (its own loss and delay draws,
//!   never duplicated again); a frame both lost and duplicated goes once;
//! - **delay ± jitter**: each frame's delay is drawn uniformly from
//!   `[delay − jitter, delay + jitter]` (at least 0); frames then leave by
//!   departure time, so jitter reorders, as it does in netem;
//! - **reorder**: with the given probability a frame skips the delay (and
//!   the rate) and leaves at once, ahead of the frames still delayed;
//! - **rate**: the link carries one frame at a time, each for its wire
//!   size × 8 / rate (a GSO frame for all the segments it stands for), so a
//!   frame leaves at `max(its delayed time, the previous frame's departure)
//!   + its transmission time`;
//! - **limit**: at most `limit` frames (default 1000, netem's) and
//!   `limit × 2 KiB` of frame bytes are queued; a frame that does not fit
//!   is dropped as `impair_queue_full`.
//!
//! Times are nanoseconds on the caller's monotonic clock; a frame never
//! leaves before its departure time, and at most one tick (1 ms) plus the
//! caller's wake-up latency after it.

mod pool;
mod settings;
mod wheel;

#[cfg(test)]
mod tests;

pub use settings::{ImpairError, ImpairSettings};

use crate::counters::DropReason;
use pool::{CHUNK, FramePool, Stored};
use wheel::TimerWheel;

/// Nanoseconds per wheel tick.
const TICK_NS: u64 = 1_000_000;
/// The largest frame stored: a 64 KiB GSO frame with its Ethernet, VLAN and
/// virtio-net headers.
pub const MAX_FRAME: usize = 12 + 65_536 + 64;

/// What [`Impairer::offer`] decided for the frame offered (a duplicate, if
/// one was made, is queued and counted on its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not sent: [`DropReason::ImpairLoss`] or [`DropReason::ImpairQueueFull`]
    /// (already counted in [`ImpairCounters`]).
    Drop(DropReason),
    /// Send it now, as without impairment.
    SendNow,
    /// Copied into the queue; [`Impairer::expire`] hands it back when due.
    Queued,
}

/// Per-port impairment counters: the wire type itself.
pub use ctl::ImpairCounters;

/// One port's impairment: settings, random stream, queue and counters.
#[derive(Debug)]
pub struct Impairer {
    settings: ImpairSettings,
    rng: fastrand::Rng,
    wheel: TimerWheel<Stored>,
    pool: FramePool,
    /// When the (rate-limited) link has finished sending the last frame.
    link_free_ns: u64,
    counters: ImpairCounters,
    /// Where a frame is put back together when it leaves.
    out: Box<[u8]>,
}

impl Impairer {
    /// An impairment with `settings`, drawing from a random stream seeded
    /// with `seed` (the same seed and offers give the same decisions), its
    /// clock at `now_ns`. Allocates the queue: `limit` entries and
    /// `limit × 2 KiB` of pool.
    pub fn new(settings: ImpairSettings, seed: u64, now_ns: u64) -> Impairer {
        let limit = settings.limit() as usize;
        Impairer {
            settings,
            rng: fastrand::Rng::with_seed(seed),
            wheel: TimerWheel::new(limit, now_ns / TICK_NS),
            pool: FramePool::new(limit.max(MAX_FRAME.div_ceil(CHUNK))),
            link_free_ns: 0,
            counters: ImpairCounters::default(),
            out: vec![0; MAX_FRAME].into_boxed_slice(),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &ImpairSettings {
        &self.settings
    }

    /// The counters (`queued` is the queue's length now).
    pub fn counters(&self) -> ImpairCounters {
        ImpairCounters { queued: self.wheel.len() as u64, ..self.counters }
    }

    /// Decides the fate of a frame leaving now: `parts` are its bytes as
    /// they will be sent (e.g. a virtio-net header and the Ethernet frame),
    /// `wire_bytes` what it costs on the link (see
    /// [`crate::offload::wire_len`]).
    pub fn offer(&mut self, now_ns: u64, parts: &[&[u8]], wire_bytes: u64) -> Decision {
        let duplicate = self.draw(self.settings.spec().duplicate_ppm);
        let lost = self.draw(self.settings.spec().loss_ppm);
        match (lost, duplicate) {
            (true, false) => {
                self.counters.lost += 1;
                Decision::Drop(DropReason::ImpairLoss)
            }
            // Lost and duplicated: one copy goes, like netem's count.
            (true, true) | (false, false) => self.schedule(now_ns, parts, wire_bytes, true),
            (false, true) => {
                let decision = self.schedule(now_ns, parts, wire_bytes, true);
                // The copy is offered again: its own loss and delay, no copy of its own.
                if self.draw(self.settings.spec().loss_ppm) {
                    self.counters.lost += 1;
                } else {
                    self.counters.duplicated += 1;
                    self.schedule(now_ns, parts, wire_bytes, false);
                }
                decision
            }
        }
    }

    /// Hands every frame due at `now_ns` to `send`, in departure order, as
    /// the bytes that were offered.
    pub fn expire(&mut self, now_ns: u64, mut send: impl FnMut(&[u8])) {
        let Impairer { wheel, pool, out, .. } = self;
        wheel.expire(now_ns / TICK_NS, |stored| {
            pool.take(stored, out);
            send(&out[..stored.len()]);
        });
    }

    /// Hands every queued frame to `send` at once, in departure order (the
    /// settings change or are cleared: what was accepted still goes).
    pub fn flush(&mut self, mut send: impl FnMut(&[u8])) {
        let Impairer { wheel, pool, out, .. } = self;
        wheel.drain(|stored| {
            pool.take(stored, out);
            send(&out[..stored.len()]);
        });
        self.link_free_ns = 0;
    }

    /// When the next queued frame is due (or a wheel level cascades), in
    /// nanoseconds; `None` with an empty queue.
    pub fn next_deadline(&self) -> Option<u64> {
        self.wheel.next_deadline().map(|tick| tick.saturating_mul(TICK_NS))
    }

    /// A draw with probability `ppm` in a million.
    fn draw(&mut self, ppm: u32) -> bool {
        ppm > 0 && self.rng.u32(0..1_000_000) < ppm
    }

    /// Delays (or reorders) and paces one copy; `may_send_now` is false for
    /// a duplicate, which is always queued (the caller sends the original
    /// only).
    fn schedule(&mut self, now_ns: u64, parts: &[&[u8]], wire_bytes: u64, may_send_now: bool) -> Decision {
        let reorder = self.draw(self.settings.spec().reorder_ppm);
        let overtakes = reorder && !self.wheel.is_empty();
        // The link's next free time if this frame is sent (rate only).
        let mut link_free = None;
        let departure = if reorder {
            now_ns
        } else {
            let delayed = now_ns + self.sample_delay_ns();
            match self.settings.rate_bps() {
                Some(rate) => {
                    let start = delayed.max(self.link_free_ns);
                    let bits = u128::from(wire_bytes) * 8 * 1_000_000_000;
                    let transmit = u64::try_from(bits.div_ceil(u128::from(rate.get()))).unwrap_or(u64::MAX);
                    let done = start.saturating_add(transmit);
                    link_free = Some(done);
                    done
                }
                None => delayed,
            }
        };
        // Ahead of queued frames only when reordered: otherwise the queue
        // keeps departure order.
        let send_now = may_send_now && departure <= now_ns && (reorder || self.wheel.is_empty());
        if !send_now {
            let len: usize = parts.iter().map(|p| p.len()).sum();
            if self.wheel.len() >= self.settings.limit() as usize || len > MAX_FRAME {
                self.counters.queue_full += 1;
                return Decision::Drop(DropReason::ImpairQueueFull);
            }
            let Some(stored) = self.pool.store(parts) else {
                self.counters.queue_full += 1;
                return Decision::Drop(DropReason::ImpairQueueFull);
            };
            if let Err(stored) = self.wheel.insert(departure.div_ceil(TICK_NS), stored) {
                self.pool.take(stored, &mut []);
                self.counters.queue_full += 1;
                return Decision::Drop(DropReason::ImpairQueueFull);
            }
            self.counters.delayed += 1;
        }
        if overtakes {
            self.counters.reordered += 1;
        }
        if let Some(done) = link_free {
            self.link_free_ns = done;
        }
        if send_now { Decision::SendNow } else { Decision::Queued }
    }

    /// A delay drawn uniformly from `delay ± jitter`, at least zero.
    fn sample_delay_ns(&mut self) -> u64 {
        let (delay, jitter) = (self.settings.delay_ns(), self.settings.jitter_ns());
        if jitter == 0 {
            return delay;
        }
        (delay + self.rng.u64(0..=2 * jitter)).saturating_sub(jitter)
    }
}
