//! The capture ring: a bounded, preallocated set of frame records shared by
//! the datapath workers that own the captured ports (one producer each) and
//! the ctl client thread that streams them (one consumer).
//!
//! Records circulate between two lock-free queues: the producer takes one
//! from `free`, copies a frame into its preallocated buffer and puts it on
//! `filled`; the consumer takes it from `filled`, sends it and gives it back
//! to `free`. Nothing is allocated after [`CaptureRing::new`], and the
//! producer never waits: with no free record the frame is dropped and
//! counted. The consumer sleeps (thread parking) and is woken once per
//! datapath batch that queued anything, not once per frame. A capture of
//! ports on several workers has one producer per worker (both queues take
//! several producers); the ring ends when the last of them lets go
//! ([`CaptureRing::add_producer`], [`CaptureRing::producer_done`]).

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::Thread;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use ctl::proto::Direction;

use crate::port::PortId;

/// One captured frame.
#[derive(Debug)]
pub struct Record {
    /// The port it crossed (unused for underlay datagrams).
    pub port: PortId,
    /// Which way.
    pub direction: Direction,
    /// Wall-clock time since the Unix epoch.
    pub time: Duration,
    /// Its whole length; `data` may hold less (the snapshot length).
    pub orig_len: u32,
    /// The remote VTEP of a tunnel port's frame, if known.
    pub remote: Option<SocketAddr>,
    /// The captured bytes; its capacity is fixed when the ring is made.
    pub data: Vec<u8>,
}

/// What [`CaptureRing::pop`] found.
#[derive(Debug)]
pub enum Popped {
    /// A frame.
    Record(Box<Record>),
    /// Nothing within the wait.
    Idle,
    /// The producer has ended and everything it queued was taken.
    Ended,
}

/// The ring shared by the datapath and a capture stream.
#[derive(Debug)]
pub struct CaptureRing {
    free: ArrayQueue<Box<Record>>,
    filled: ArrayQueue<Box<Record>>,
    record_len: usize,
    limit: Option<u64>,
    /// Frames pushed or being pushed, against `limit`: with several
    /// producers, a frame first takes its place here, so exactly `limit`
    /// frames are queued.
    reserved: AtomicU64,
    queued: AtomicU64,
    dropped: AtomicU64,
    filtered: AtomicU64,
    /// The producer will queue nothing more (frame count reached, port
    /// removed, datapath stopped).
    ended: AtomicBool,
    /// The consumer is gone.
    closed: AtomicBool,
    /// Producers (datapath workers) still holding the ring.
    producers: AtomicUsize,
    consumer: OnceLock<Thread>,
}

impl CaptureRing {
    /// A ring of `records` records of `record_len` bytes each, all
    /// allocated now; the producer queues at most `limit` frames.
    pub fn new(records: usize, record_len: usize, limit: Option<u64>) -> CaptureRing {
        let records = records.max(1);
        let free = ArrayQueue::new(records);
        for _ in 0..records {
            let record = Box::new(Record {
                port: PortId(0),
                direction: Direction::Rx,
                time: Duration::ZERO,
                orig_len: 0,
                remote: None,
                data: Vec::with_capacity(record_len),
            });
            // Cannot fail: the queue has room for every record.
            let _ = free.push(record);
        }
        CaptureRing {
            free,
            filled: ArrayQueue::new(records),
            record_len,
            limit,
            reserved: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            filtered: AtomicU64::new(0),
            ended: AtomicBool::new(limit == Some(0)),
            closed: AtomicBool::new(false),
            producers: AtomicUsize::new(0),
            consumer: OnceLock::new(),
        }
    }

    /// The most bytes a record keeps of a frame.
    pub fn record_len(&self) -> usize {
        self.record_len
    }

    // The producers' side (datapath threads).

    /// One more producer holds the ring (a worker's capture session).
    pub fn add_producer(&self) {
        self.producers.fetch_add(1, Ordering::AcqRel);
    }

    /// A producer lets go of the ring (its session ended); once the last
    /// one has, the ring ends.
    pub fn producer_done(&self) {
        if self.producers.fetch_sub(1, Ordering::AcqRel) <= 1 {
            self.end();
        }
    }

    /// Whether frames are still wanted: the consumer is there and the
    /// frame count is not reached.
    pub fn wants_frames(&self) -> bool {
        !self.ended.load(Ordering::Relaxed) && !self.closed.load(Ordering::Relaxed)
    }

    /// Queues one frame: `fill` writes it into a free record (whose `data`
    /// is cleared and must not grow past [`CaptureRing::record_len`]).
    /// Without a free record the frame is counted as dropped. Returns
    /// whether it was queued.
    pub fn push_with(&self, fill: impl FnOnce(&mut Record)) -> bool {
        if !self.wants_frames() {
            return false;
        }
        if let Some(limit) = self.limit {
            // Take a place among the `limit` frames first: another
            // producer may be pushing at the same time.
            let taken =
                self.reserved.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1));
            if taken.is_err() {
                return false;
            }
        }
        let Some(mut record) = self.free.pop() else {
            if self.limit.is_some() {
                self.reserved.fetch_sub(1, Ordering::AcqRel);
            }
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        record.data.clear();
        fill(&mut record);
        // Cannot fail: there are as many slots in `filled` as records.
        let _ = self.filled.push(record);
        // Counted once it is in `filled`: the ring ends only when all
        // `limit` frames can be popped.
        let queued = self.queued.fetch_add(1, Ordering::AcqRel) + 1;
        if self.limit == Some(queued) {
            self.end();
        }
        true
    }

    /// Counts a frame the filter rejected.
    pub fn count_filtered(&self) {
        self.filtered.fetch_add(1, Ordering::Relaxed);
    }

    /// The producer will queue nothing more; the consumer ends the stream
    /// once it has sent what is queued.
    pub fn end(&self) {
        self.ended.store(true, Ordering::Release);
        self.wake();
    }

    /// Wakes the consumer if it sleeps (called once per batch that queued
    /// frames).
    pub fn wake(&self) {
        if let Some(consumer) = self.consumer.get() {
            consumer.unpark();
        }
    }

    /// Whether the consumer is gone (the producer forgets the ring).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Whether the producer will queue nothing more.
    pub fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    // The consumer's side (one thread).

    /// The next queued record, waiting at most `wait`.
    pub fn pop(&self, wait: Duration) -> Popped {
        // Parking needs the consumer's thread; always the same one.
        self.consumer.get_or_init(std::thread::current);
        let deadline = std::time::Instant::now() + wait;
        loop {
            // Read `ended` first: whatever was queued before it was set is
            // then visible to the pop below.
            let ended = self.is_ended();
            if let Some(record) = self.filled.pop() {
                return Popped::Record(record);
            }
            if ended {
                return Popped::Ended;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Popped::Idle;
            }
            std::thread::park_timeout(deadline - now);
        }
    }

    /// The next queued record if there is one now (no waiting, and no
    /// end-of-stream answer: [`CaptureRing::pop`] gives that).
    pub fn try_pop(&self) -> Option<Box<Record>> {
        self.filled.pop()
    }

    /// Gives a record back for reuse.
    pub fn recycle(&self, record: Box<Record>) {
        // Cannot fail: records only move between the two queues.
        let _ = self.free.push(record);
    }

    /// The consumer is gone: the producer stops queueing and drops its end.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    /// Frames dropped for want of a free record.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Frames the filter rejected.
    pub fn filtered(&self) -> u64 {
        self.filtered.load(Ordering::Relaxed)
    }

    /// Frames queued so far.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn push(ring: &CaptureRing, byte: u8, len: usize) -> bool {
        ring.push_with(|r| {
            r.port = PortId(u32::from(byte));
            r.orig_len = len as u32;
            let keep = len.min(ring.record_len());
            r.data.resize(keep, byte);
        })
    }

    #[test]
    fn a_full_ring_drops_and_counts_and_recycled_records_are_reused_without_allocating() {
        let ring = CaptureRing::new(4, 64, None);
        let buffers: Vec<*const u8> = (0..4)
            .map(|i| {
                assert!(push(&ring, i, 100));
                ring.filled.pop().map(|r| {
                    let p = r.data.as_ptr();
                    ring.recycle(r);
                    p
                })
            })
            .map(Option::unwrap)
            .collect();
        for i in 0..4u8 {
            assert!(push(&ring, i, 1000), "record {i}");
        }
        assert!(!push(&ring, 9, 10), "a fifth frame finds no free record");
        assert!(!push(&ring, 9, 10));
        assert_eq!((ring.queued(), ring.dropped()), (8, 2));
        for i in 0..4u8 {
            let Popped::Record(r) = ring.pop(Duration::ZERO) else { panic!("record {i} missing") };
            assert_eq!((r.port, r.orig_len, r.data.len()), (PortId(u32::from(i)), 1000, 64), "truncated to 64");
            assert_eq!(r.data.capacity(), 64, "the buffer never grew");
            assert!(buffers.contains(&r.data.as_ptr()), "a preallocated buffer");
            ring.recycle(r);
        }
        assert!(matches!(ring.pop(Duration::ZERO), Popped::Idle));
        assert!(push(&ring, 5, 10), "records come back after the consumer took them");
    }

    #[test]
    fn the_frame_count_ends_the_ring_after_exactly_that_many() {
        let ring = CaptureRing::new(8, 16, Some(3));
        for i in 0..5 {
            push(&ring, i, 10);
        }
        assert_eq!((ring.queued(), ring.dropped()), (3, 0));
        assert!(!ring.wants_frames());
        for _ in 0..3 {
            assert!(matches!(ring.pop(Duration::ZERO), Popped::Record(_)));
        }
        assert!(matches!(ring.pop(Duration::ZERO), Popped::Ended), "ended and drained");
    }

    #[test]
    fn a_closed_ring_takes_nothing() {
        let ring = CaptureRing::new(2, 16, None);
        ring.close();
        assert!(!push(&ring, 1, 1));
        assert_eq!((ring.queued(), ring.dropped()), (0, 0));
        assert!(ring.is_closed());
    }

    #[test]
    fn a_waiting_consumer_is_woken_by_the_producer() {
        let ring = Arc::new(CaptureRing::new(2, 16, None));
        let consumer = {
            let ring = ring.clone();
            std::thread::spawn(move || match ring.pop(Duration::from_secs(30)) {
                Popped::Record(r) => Some(r.orig_len),
                _ => None,
            })
        };
        // The producer may run before the consumer parks: the record waits.
        push(&ring, 1, 7);
        ring.wake();
        assert_eq!(consumer.join().unwrap(), Some(7));
        ring.end();
        assert!(matches!(ring.pop(Duration::from_secs(30)), Popped::Ended));
    }
}
