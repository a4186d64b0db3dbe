//! The consumer's side of a capture: the ctl stream that takes frames out
//! of the ring and writes each as a `capture` item (see PROTOCOL.md).
//!
//! When several workers fill the ring, frames stamped by one worker may
//! be queued just after a later frame of another: the stream takes
//! everything queued at once and sends it in timestamp order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ctl::proto::{CaptureSummary, Direction, encode_frame_data};
use serde::Serialize;
use serde_json::Value;

use super::ring::{CaptureRing, Popped, Record};
use crate::daemon::control::{StreamNext, StreamSource};
use crate::port::PortId;

/// A capture's stream.
pub struct CaptureSource {
    ring: Arc<CaptureRing>,
    /// Port names as `show` prints them, when the capture began.
    names: HashMap<PortId, String>,
    /// The name of every frame's port, for a capture of the underlay.
    only_port: Option<String>,
    delivered: u64,
    /// Base64 of the frame being sent (reused).
    data: String,
    /// Several workers fill the ring: frames are reordered by timestamp.
    merge: bool,
    /// Records taken out of the ring but not sent yet, latest first. They
    /// stay the ring's boxes: each goes back to the ring as it is.
    #[allow(clippy::vec_box)]
    pending: Vec<Box<Record>>,
    /// Held while the capture runs: counts running captures.
    _running: Arc<()>,
}

/// The wire form of one item ([`ctl::proto::CapturedFrame`], borrowed).
#[derive(Serialize)]
struct Item<'a> {
    sec: u64,
    nsec: u32,
    port: &'a str,
    dir: Direction,
    len: u32,
    data: &'a str,
}

impl CaptureSource {
    /// The stream of `ring`'s frames. `names` names the ports; for the
    /// underlay, every frame is `only_port`'s. `running` is held until
    /// the stream ends.
    pub fn new(
        ring: Arc<CaptureRing>,
        names: HashMap<PortId, String>,
        only_port: Option<String>,
        running: Arc<()>,
    ) -> CaptureSource {
        CaptureSource {
            ring,
            names,
            only_port,
            delivered: 0,
            data: String::new(),
            merge: false,
            pending: Vec::new(),
            _running: running,
        }
    }

    /// Frames come from several workers: send what is queued at once in
    /// timestamp order.
    pub fn merged(mut self) -> CaptureSource {
        self.merge = true;
        self
    }

    /// The next record to send: straight from the ring, or with several
    /// workers, the earliest of everything queued now.
    fn pop(&mut self, wait: Duration) -> Popped {
        if !self.merge {
            return self.ring.pop(wait);
        }
        if self.pending.is_empty() {
            match self.ring.pop(wait) {
                Popped::Record(record) => self.pending.push(record),
                other => return other,
            }
            while let Some(record) = self.ring.try_pop() {
                self.pending.push(record);
            }
            // Latest first, so the earliest is popped off the end.
            self.pending.sort_by_key(|r| std::cmp::Reverse(r.time));
        }
        self.pending.pop().map_or(Popped::Idle, Popped::Record)
    }

    fn encode(&mut self, record: &Record, out: &mut Vec<u8>) {
        self.data.clear();
        encode_frame_data(&record.data, &mut self.data);
        let fallback;
        let port = match (&self.only_port, self.names.get(&record.port), record.remote) {
            (Some(name), _, _) => name.as_str(),
            (None, Some(name), _) => name.as_str(),
            (None, None, Some(remote)) => {
                fallback = format!("vx:{remote}");
                &fallback
            }
            (None, None, None) => {
                fallback = record.port.to_string();
                &fallback
            }
        };
        let item = Item {
            sec: record.time.as_secs(),
            nsec: record.time.subsec_nanos(),
            port,
            dir: record.direction,
            len: record.orig_len,
            data: &self.data,
        };
        // Cannot fail: plain numbers and strings into a Vec.
        let _ = serde_json::to_writer(out, &item);
    }
}

impl StreamSource for CaptureSource {
    fn next(&mut self, wait: Duration, item: &mut Vec<u8>) -> StreamNext {
        match self.pop(wait) {
            Popped::Record(record) => {
                self.encode(&record, item);
                self.ring.recycle(record);
                self.delivered += 1;
                StreamNext::Item
            }
            Popped::Idle => StreamNext::Idle,
            Popped::Ended => StreamNext::Done,
        }
    }

    /// Frames still queued when the stream ends (the client stopped it)
    /// count as dropped: every frame that passed the filter is either
    /// captured or dropped.
    fn summary(&mut self) -> Value {
        let undelivered = self.ring.queued().saturating_sub(self.delivered);
        let dropped = self.ring.dropped() + undelivered;
        let summary = CaptureSummary { captured: self.delivered, dropped, filtered: self.ring.filtered() };
        serde_json::to_value(summary).unwrap_or(Value::Null)
    }
}

impl Drop for CaptureSource {
    fn drop(&mut self) {
        self.ring.close();
    }
}

#[cfg(test)]
mod tests {
    use ctl::proto::CapturedFrame;

    use super::*;

    #[test]
    fn frames_of_several_workers_are_sent_in_timestamp_order() {
        let ring = Arc::new(CaptureRing::new(8, 16, None));
        let names = HashMap::from([(PortId(3), "a".to_owned()), (PortId(5), "b".to_owned())]);
        let mut source = CaptureSource::new(ring.clone(), names, None, Arc::new(())).merged();
        // Worker 1 queued its frame (stamped 30) before worker 0 queued
        // frames stamped 10 and 20.
        for (port, nanos) in [(5, 30), (3, 10), (3, 20)] {
            ring.push_with(|r| {
                r.port = PortId(port);
                r.time = Duration::new(1, nanos);
            });
        }
        let mut item = Vec::new();
        let mut order = Vec::new();
        for _ in 0..3 {
            item.clear();
            assert_eq!(source.next(Duration::ZERO, &mut item), StreamNext::Item);
            let frame: CapturedFrame = serde_json::from_slice(&item).unwrap();
            order.push((frame.port, frame.nsec));
        }
        assert_eq!(order, [("a".to_owned(), 10), ("a".to_owned(), 20), ("b".to_owned(), 30)]);
        ring.end();
        assert_eq!(source.next(Duration::ZERO, &mut item), StreamNext::Done);
    }

    #[test]
    fn items_decode_as_captured_frames_and_the_summary_counts() {
        let ring = Arc::new(CaptureRing::new(4, 64, Some(2)));
        let running = Arc::new(());
        let names = HashMap::from([(PortId(3), "vswabc".to_owned())]);
        let mut source = CaptureSource::new(ring.clone(), names, None, running.clone());
        assert_eq!(Arc::strong_count(&running), 2);
        ring.push_with(|r| {
            r.port = PortId(3);
            r.direction = Direction::Tx;
            r.time = Duration::new(1_700_000_000, 123);
            r.orig_len = 1000;
            r.data.extend_from_slice(b"frame bytes");
        });
        ring.push_with(|r| {
            r.port = PortId(8);
            r.remote = Some("10.0.0.2:4789".parse().unwrap());
        });
        ring.push_with(|_| panic!("the frame count was reached"));
        let mut item = Vec::new();
        assert_eq!(source.next(Duration::ZERO, &mut item), StreamNext::Item);
        let frame: CapturedFrame = serde_json::from_slice(&item).unwrap();
        assert_eq!((frame.sec, frame.nsec, frame.port.as_str()), (1_700_000_000, 123, "vswabc"));
        assert_eq!((frame.dir, frame.len, frame.bytes().unwrap()), (Direction::Tx, 1000, b"frame bytes".to_vec()));
        item.clear();
        assert_eq!(source.next(Duration::ZERO, &mut item), StreamNext::Item);
        let frame: CapturedFrame = serde_json::from_slice(&item).unwrap();
        assert_eq!(frame.port, "vx:10.0.0.2:4789", "a tunnel port learned after the capture began");
        assert_eq!(source.next(Duration::ZERO, &mut item), StreamNext::Done);
        let summary: CaptureSummary = serde_json::from_value(source.summary()).unwrap();
        assert_eq!(summary, CaptureSummary { captured: 2, dropped: 0, filtered: 0 });
        drop(source);
        assert!(ring.is_closed());
        assert_eq!(Arc::strong_count(&running), 1);
    }
}
