//! The event hub: the switch's events, named, timed and numbered, kept in a
//! bounded history (`vswitchctl events`) and fanned out to subscribers
//! (`vswitchctl events --follow`).
//!
//! The datapath records events into its bridge's bounded buffer and hands
//! them over once per loop iteration as one [`EventBatch`] on a bounded
//! channel ([`DatapathEvents::flush`]): it never waits, and a batch that
//! finds the channel full is counted and reported as lost. A hub thread
//! turns datapath ids into the names `show` and `stats` use (from a
//! [`Names`] map the control plane keeps current, read under a short read
//! lock), stamps each event with the wall clock, numbers it, keeps the last
//! [`HISTORY`] and offers it to every subscriber's own bounded queue of
//! [`SUBSCRIBER_QUEUE`]. A subscriber that falls behind loses events,
//! counted per subscriber and reported in its stream (an `events_lost`
//! item once it has room again) and in its summary; nothing waits for it.
//! The control plane publishes its own events (ports up and down, gone
//! sandboxes) directly, already named.

mod hub;
mod names;
mod stream;

use std::sync::Arc;
use std::time::SystemTime;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use ctl::proto;

pub use hub::{EventCounters, EventHub};
pub use names::{Names, gateway_port_name, tunnel_port_name};
pub use stream::EventStream;

use crate::events::{EVENT_BUFFER, Event, EventBuffer};
use crate::time::Timestamp;

/// Events the history keeps (`vswitchctl events`).
pub const HISTORY: usize = 1024;
/// Events a subscriber's queue holds before it loses some.
pub const SUBSCRIBER_QUEUE: usize = 1024;
/// Batches in flight from the datapath to the hub.
pub const BATCHES: usize = 64;

/// Events the datapath hands over at once, with the two clocks read when
/// it did (the hub turns each event's monotonic time into wall time).
#[derive(Debug)]
pub struct EventBatch {
    /// The events, oldest first.
    pub events: Vec<Event>,
    /// Events lost before this batch: the bridge's buffer was full, or
    /// earlier batches found the channel full.
    pub lost: u64,
    /// The datapath's monotonic clock when the batch was sent.
    pub mono: Timestamp,
    /// The wall clock at the same moment.
    pub wall: SystemTime,
}

/// The datapath's end of the event channel.
#[derive(Debug)]
pub struct DatapathEvents {
    batches: Sender<EventBatch>,
    spares: Receiver<Vec<Event>>,
    lost: u64,
}

/// The hub's end of the event channel.
#[derive(Debug, Clone)]
pub struct DatapathEventsRx {
    batches: Receiver<EventBatch>,
    spares: Sender<Vec<Event>>,
}

/// A bounded channel for event batches from the datapath to the hub, and
/// one back for their emptied buffers (so the datapath rarely allocates).
pub fn datapath_channel() -> (DatapathEvents, DatapathEventsRx) {
    let (batches, batches_rx) = crossbeam_channel::bounded(BATCHES);
    let (spares_tx, spares) = crossbeam_channel::bounded(BATCHES);
    (DatapathEvents { batches, spares, lost: 0 }, DatapathEventsRx { batches: batches_rx, spares: spares_tx })
}

impl DatapathEventsRx {
    /// The batches waiting now (tests drive the datapath without a hub).
    #[cfg(test)]
    pub(crate) fn try_batches(&self) -> Vec<EventBatch> {
        self.batches.try_iter().collect()
    }
}

impl DatapathEvents {
    /// Another sending end of the same channel, for another datapath
    /// worker: the hub receives every worker's batches.
    pub fn fork(&self) -> DatapathEvents {
        DatapathEvents { batches: self.batches.clone(), spares: self.spares.clone(), lost: 0 }
    }

    /// Hands what `buffer` recorded to the hub, if anything, at monotonic
    /// time `now`. Never blocks: when the channel is full the events are
    /// counted and reported as lost with the next batch that gets through.
    pub fn flush(&mut self, buffer: &mut EventBuffer, now: Timestamp) {
        if buffer.is_empty() {
            return;
        }
        let mut events = self.spares.try_recv().unwrap_or_else(|_| Vec::with_capacity(EVENT_BUFFER));
        let overflow = buffer.drain_into(&mut events);
        let batch = EventBatch { events, lost: self.lost + overflow, mono: now, wall: SystemTime::now() };
        match self.batches.try_send(batch) {
            Ok(()) => self.lost = 0,
            Err(TrySendError::Full(batch) | TrySendError::Disconnected(batch)) => {
                self.lost = batch.lost + batch.events.len() as u64;
            }
        }
    }

    /// Events counted as lost and not reported yet.
    pub fn pending_lost(&self) -> u64 {
        self.lost
    }
}

/// One event as a subscriber's queue holds it.
#[derive(Debug, Clone)]
enum Item {
    /// An event (shared with the history and other subscribers).
    Event(Arc<proto::Event>),
    /// This subscriber lost `lost` events, the last of them numbered `seq`
    /// at `time`.
    Lost { lost: u64, seq: u64, time: String },
}

#[cfg(test)]
mod tests;
