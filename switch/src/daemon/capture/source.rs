//! The consumer's side of a capture: the ctl stream that takes frames out
//! of the ring and writes each as a `capture` item (see PROTOCOL.md).

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
        CaptureSource { ring, names, only_port, delivered: 0, data: String::new(), _running: running }
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
        match self.ring.pop(wait) {
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
