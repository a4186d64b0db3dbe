//! `events --follow`: one subscriber's queue as a ctl stream source.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use ctl::proto::{self, EventsSummary, LostScope};
use serde_json::Value;

use super::Item;
use crate::daemon::control::{StreamNext, StreamSource};

/// The events of one subscriber, as its client reads them. Dropping it
/// unsubscribes (the hub finds its queue closed).
pub struct EventStream {
    queue: Receiver<Item>,
    lost: Arc<AtomicU64>,
    delivered: u64,
}

impl EventStream {
    pub(super) fn new(queue: Receiver<Item>, lost: Arc<AtomicU64>) -> EventStream {
        EventStream { queue, lost, delivered: 0 }
    }

    /// What the stream delivered and lost so far.
    pub fn summary_now(&self) -> EventsSummary {
        EventsSummary { delivered: self.delivered, lost: self.lost.load(Ordering::Relaxed) }
    }
}

impl StreamSource for EventStream {
    fn next(&mut self, wait: Duration, item: &mut Vec<u8>) -> StreamNext {
        let written = match self.queue.recv_timeout(wait) {
            Ok(Item::Event(event)) => {
                self.delivered += 1;
                serde_json::to_writer(&mut *item, &*event)
            }
            Ok(Item::Lost { lost, seq, time }) => {
                let kind = proto::EventKind::EventsLost { lost, scope: LostScope::Stream };
                serde_json::to_writer(&mut *item, &proto::Event { seq, time, kind })
            }
            Err(RecvTimeoutError::Timeout) => return StreamNext::Idle,
            // The hub is gone: the daemon is stopping.
            Err(RecvTimeoutError::Disconnected) => return StreamNext::Done,
        };
        match written {
            Ok(()) => StreamNext::Item,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode an event");
                item.clear();
                StreamNext::Idle
            }
        }
    }

    fn summary(&mut self) -> Value {
        serde_json::to_value(self.summary_now()).unwrap_or(Value::Null)
    }
}
