//! The impairment core on a virtual clock: delays and their distribution,
//! loss on a seeded stream, rate pacing, reordering, duplication, the queue
//! bound and flushing.

use ctl::Impairment;

use super::*;

const MS: u64 = 1_000_000;

fn impairer(spec: Impairment, seed: u64) -> Impairer {
    Impairer::new(ImpairSettings::new(&spec).unwrap(), seed, 0)
}

/// A frame whose first 8 bytes carry `n`, `len` bytes in all.
fn frame(n: u64, len: usize) -> Vec<u8> {
    let mut f = vec![0xab; len.max(8)];
    f[..8].copy_from_slice(&n.to_be_bytes());
    f
}

fn id(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes[..8].try_into().unwrap())
}

/// Offers frame `n` of `len` bytes (its wire size) at `now`.
fn offer(imp: &mut Impairer, now: u64, n: u64, len: usize) -> Decision {
    let f = frame(n, len);
    imp.offer(now, &[&f[..4], &f[4..]], len as u64)
}

/// Expires at `now`, returning the ids of the frames released.
fn expire(imp: &mut Impairer, now: u64) -> Vec<u64> {
    let mut out = Vec::new();
    imp.expire(now, |b| out.push(id(b)));
    out
}

/// Runs the clock in 1 ms steps from `from` to `to` (inclusive) and
/// returns each release as (frame id, release time).
fn run(imp: &mut Impairer, from: u64, to: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut t = from;
    while t <= to {
        imp.expire(t, |b| out.push((id(b), t)));
        t += MS;
    }
    out
}

#[test]
fn a_delay_holds_frames_exactly_that_long_in_order() {
    let mut imp = impairer(Impairment { delay_us: 10_000, ..Impairment::default() }, 1);
    let t0 = 5 * MS + 300_000; // 5.3 ms
    for n in 0..5 {
        assert_eq!(offer(&mut imp, t0, n, 100), Decision::Queued);
    }
    assert_eq!(offer(&mut imp, t0 + 2 * MS, 5, 1500), Decision::Queued);
    // Due at 15.3 ms: released at the first tick at or after it.
    assert_eq!(imp.next_deadline(), Some(16 * MS));
    assert!(expire(&mut imp, 15 * MS + 999_999).is_empty(), "never early");
    assert_eq!(expire(&mut imp, 16 * MS), [0, 1, 2, 3, 4]);
    assert_eq!(imp.next_deadline(), Some(18 * MS));
    let mut bytes = Vec::new();
    imp.expire(18 * MS, |b| bytes = b.to_vec());
    assert_eq!(bytes, frame(5, 1500), "the bytes offered, parts joined");
    let c = imp.counters();
    assert_eq!((c.queued, c.delayed, c.lost), (0, 6, 0));
    assert_eq!(imp.next_deadline(), None);
}

#[test]
fn jitter_spreads_delays_uniformly_over_delay_plus_minus_jitter() {
    // 20,000 frames, one per 1 ms tick, delay 10 ms ± 4 ms: each draw is
    // uniform in [6, 14] ms and leaves at the tick at or after it, so the
    // delays seen are 7..=14 ms, an eighth each.
    let mut imp = impairer(Impairment { delay_us: 10_000, jitter_us: 4_000, ..Impairment::default() }, 7);
    let n = 20_000u64;
    let mut releases = Vec::new();
    for i in 0..n {
        imp.expire(i * MS, |b| releases.push((id(b), i * MS)));
        assert_eq!(offer(&mut imp, i * MS, i, 64), Decision::Queued);
    }
    releases.extend(run(&mut imp, n * MS, (n + 20) * MS));
    assert_eq!(releases.len() as u64, n);
    let delays: Vec<u64> = releases.iter().map(|&(i, at)| (at - i * MS) / MS).collect();
    assert!(delays.iter().all(|&d| (6..=14).contains(&d)), "{:?}", (delays.iter().min(), delays.iter().max()));
    // The mean of the ticks is 10.5 ms; the standard deviation of the mean
    // is 2.3 ms/√20000 ≈ 16 µs, so ±100 µs is more than 6σ.
    let mean = delays.iter().sum::<u64>() as f64 / n as f64;
    assert!((mean - 10.5).abs() < 0.1, "mean delay {mean} ms");
    // Each 2 ms quarter holds a quarter of the draws (±2%: more than 6σ of
    // a binomial(20000, 0.25), σ = 0.3%).
    let mut quarters = [0u64; 4];
    for &d in &delays {
        quarters[((d.max(7) - 7) / 2) as usize] += 1;
    }
    for q in quarters {
        assert!((q as f64 / n as f64 - 0.25).abs() < 0.02, "quarters {quarters:?}");
    }
    // Jitter reorders: frames leave by departure time, as with netem.
    assert!(releases.windows(2).any(|w| w[1].0 < w[0].0));
}

#[test]
fn loss_on_a_seeded_stream_is_the_probability_and_repeatable() {
    let spec = Impairment { loss_ppm: 200_000, ..Impairment::default() };
    let decide = |seed| {
        let mut imp = impairer(spec, seed);
        (0..100_000).map(|n| offer(&mut imp, 0, n, 64)).collect::<Vec<_>>()
    };
    let a = decide(42);
    assert_eq!(a, decide(42), "same seed, same decisions");
    assert_ne!(a, decide(43));
    let lost = a.iter().filter(|d| **d == Decision::Drop(DropReason::ImpairLoss)).count();
    let sent = a.iter().filter(|d| **d == Decision::SendNow).count();
    assert_eq!(lost + sent, a.len(), "no delay: whatever is not lost goes at once");
    // Binomial(100000, 0.2): σ = 126; 6σ = 760.
    assert!((lost as i64 - 20_000).abs() < 760, "{lost} lost");
    let mut imp = impairer(spec, 42);
    for n in 0..100_000 {
        offer(&mut imp, 0, n, 64);
    }
    assert_eq!(imp.counters().lost as usize, lost);
}

#[test]
fn a_rate_paces_frames_by_their_wire_size() {
    // 12 Mbit/s: a 1500-byte frame occupies the link for exactly 1 ms.
    let mut imp = impairer(Impairment { rate_bps: Some(12_000_000), ..Impairment::default() }, 3);
    for n in 0..100 {
        assert_eq!(offer(&mut imp, 0, n, 1500), Decision::Queued);
    }
    let released = run(&mut imp, 0, 200 * MS);
    assert_eq!(released.len(), 100);
    for (k, &(n, at)) in released.iter().enumerate() {
        assert_eq!((n, at), (k as u64, (k as u64 + 1) * MS), "frame k leaves when its last bit is sent");
    }
    // A GSO frame costs its full wire size: 64,000 bytes at 12 Mbit/s is
    // 42.67 ms, whatever its stored length.
    let mut imp = impairer(Impairment { rate_bps: Some(12_000_000), ..Impairment::default() }, 3);
    let gso = frame(1, 20_000);
    assert_eq!(imp.offer(0, &[&gso], 64_000), Decision::Queued);
    assert_eq!(offer(&mut imp, 0, 2, 1500), Decision::Queued);
    let released = run(&mut imp, 0, 100 * MS);
    assert_eq!(released, [(1, 43 * MS), (2, 44 * MS)]);
    // After an idle link, the next frame waits only for itself.
    assert_eq!(offer(&mut imp, 500 * MS, 3, 750), Decision::Queued);
    assert_eq!(run(&mut imp, 101 * MS, 600 * MS), [(3, 501 * MS)]);
}

#[test]
fn rate_and_delay_add_up_like_netem() {
    // Delay 5 ms, then 1 ms per frame on the link: departures at 6, 7, 8 ms.
    let spec = Impairment { delay_us: 5_000, rate_bps: Some(12_000_000), ..Impairment::default() };
    let mut imp = impairer(spec, 3);
    for n in 0..3 {
        offer(&mut imp, 0, n, 1500);
    }
    assert_eq!(run(&mut imp, 0, 20 * MS), [(0, 6 * MS), (1, 7 * MS), (2, 8 * MS)]);
}

#[test]
fn reordered_frames_skip_the_delay_and_overtake() {
    let spec = Impairment { delay_us: 10_000, reorder_ppm: 250_000, ..Impairment::default() };
    let mut imp = impairer(spec, 11);
    let mut now_sent = Vec::new();
    for n in 0..10_000u64 {
        let t = n * 10_000; // every 10 µs: the queue is never empty after the first frame
        if offer(&mut imp, t, n, 64) == Decision::SendNow {
            now_sent.push(n);
        }
        imp.expire(t, |_| {});
    }
    // Binomial(10000, 0.25): σ = 43; 6σ = 260.
    assert!((now_sent.len() as i64 - 2_500).abs() < 260, "{} sent at once", now_sent.len());
    let c = imp.counters();
    // The first frame, if drawn, overtook nothing; every other one did.
    assert!(c.reordered as usize + 1 >= now_sent.len() && c.reordered as usize <= now_sent.len());
    assert_eq!(c.delayed as usize, 10_000 - now_sent.len());
    // The rest keep their order.
    let rest = run(&mut imp, 100 * MS, 120 * MS);
    assert!(rest.windows(2).all(|w| w[0].0 < w[1].0));
}

#[test]
fn duplicates_are_extra_copies_with_their_own_fate() {
    let spec = Impairment { delay_us: 1_000, duplicate_ppm: 100_000, ..Impairment::default() };
    let mut imp = impairer(spec, 5);
    let mut released = Vec::new();
    for n in 0..10_000u64 {
        offer(&mut imp, n * MS, n, 64);
        imp.expire(n * MS, |b| released.push(id(b)));
    }
    released.extend(run(&mut imp, 10_000 * MS, 10_010 * MS).into_iter().map(|(n, _)| n));
    let c = imp.counters();
    // Binomial(10000, 0.1): σ = 30; 6σ = 180.
    assert!((c.duplicated as i64 - 1_000).abs() < 180, "{} duplicated", c.duplicated);
    assert_eq!(released.len() as u64, 10_000 + c.duplicated);
    let mut seen = std::collections::HashMap::<u64, u32>::new();
    for n in released {
        *seen.entry(n).or_default() += 1;
    }
    assert_eq!(seen.len(), 10_000);
    assert_eq!(seen.values().filter(|&&k| k == 2).count() as u64, c.duplicated);

    // Without a delay the original goes at once and the copy through the queue.
    let mut imp = impairer(Impairment { duplicate_ppm: 1_000_000, ..Impairment::default() }, 5);
    assert_eq!(offer(&mut imp, 0, 9, 64), Decision::SendNow);
    assert_eq!(imp.next_deadline(), Some(0));
    assert_eq!(expire(&mut imp, 0), [9]);
}

#[test]
fn the_queue_is_bounded_in_frames_and_bytes() {
    let spec = Impairment { delay_us: 10_000, limit: Some(40), ..Impairment::default() };
    let mut imp = impairer(spec, 1);
    for n in 0..40 {
        assert_eq!(offer(&mut imp, 0, n, 100), Decision::Queued);
    }
    assert_eq!(offer(&mut imp, 0, 40, 100), Decision::Drop(DropReason::ImpairQueueFull));
    assert_eq!(imp.counters().queue_full, 1);
    assert_eq!(expire(&mut imp, 10 * MS).len(), 40);
    // 40 frames' worth of bytes is 40 chunks of 2 KiB: one 64 KiB GSO frame
    // (33 chunks) fits, a second does not.
    let gso = frame(100, 65_000);
    assert_eq!(imp.offer(20 * MS, &[&gso], 70_000), Decision::Queued);
    assert_eq!(imp.offer(20 * MS, &[&gso], 70_000), Decision::Drop(DropReason::ImpairQueueFull));
    assert_eq!(offer(&mut imp, 20 * MS, 101, 1500), Decision::Queued, "small frames still fit");
    let mut out = Vec::new();
    imp.expire(30 * MS, |b| out.push(b.to_vec()));
    assert_eq!(out, [gso, frame(101, 1500)]);
    // Frames larger than a GSO frame never fit.
    let huge = vec![0u8; MAX_FRAME + 1];
    assert_eq!(imp.offer(40 * MS, &[&huge], 1), Decision::Drop(DropReason::ImpairQueueFull));
    assert_eq!(imp.counters().queue_full, 3);
}

#[test]
fn flush_hands_back_every_queued_frame_in_departure_order() {
    let spec = Impairment { delay_us: 50_000, jitter_us: 40_000, ..Impairment::default() };
    let mut imp = impairer(spec, 9);
    for n in 0..200 {
        offer(&mut imp, n * 100_000, n, 64);
    }
    assert_eq!(imp.counters().queued, 200);
    let mut flushed = Vec::new();
    imp.flush(|b| flushed.push(id(b)));
    assert_eq!(flushed.len(), 200);
    assert_eq!(imp.counters().queued, 0);
    assert_eq!(imp.next_deadline(), None);
    // Still usable afterwards, on the same clock.
    assert_eq!(offer(&mut imp, 30 * MS, 1000, 64), Decision::Queued);
    let released = run(&mut imp, 30 * MS, 200 * MS);
    assert_eq!(released.len(), 1);
    assert!((40 * MS..=121 * MS).contains(&released[0].1));
}
