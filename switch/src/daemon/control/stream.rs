//! Streaming requests (`capture`, `events --follow`): the control plane sets
//! up a source under its lock, then the ctl server's client thread drains
//! it without the lock, so a long stream holds up no other request.

use std::time::Duration;

use ctl::proto::{CtlError, ErrorKind, Request};
use serde_json::Value;

use super::Control;

/// What a source produced when asked for its next item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamNext {
    /// One item was serialized (as one JSON value) into the buffer.
    Item,
    /// Nothing arrived within the wait; the server checks that the client
    /// is still there and asks again.
    Idle,
    /// The stream is complete (a capture reached its frame count); the
    /// server writes [`StreamSource::summary`] and closes the connection.
    Done,
}

/// The daemon's side of one stream.
pub trait StreamSource: Send {
    /// Waits at most `wait` for the next item and appends its JSON to
    /// `item` (cleared by the caller).
    fn next(&mut self, wait: Duration, item: &mut Vec<u8>) -> StreamNext;

    /// The stream's closing summary (e.g. frames captured and lost), sent
    /// as its `end` line whether it completed or the client stopped it.
    fn summary(&mut self) -> Value;
}

/// A stream set up by the control plane: the `ok` reply and its source.
pub struct Subscription {
    /// The `ok` payload sent before the first item.
    pub reply: Value,
    /// Where the items come from. Dropping it unsubscribes.
    pub source: Box<dyn StreamSource>,
}

impl Control {
    /// Sets up the stream a streaming request asks for
    /// ([`Request::is_stream`]).
    pub fn subscribe(&mut self, request: Request) -> Result<Subscription, CtlError> {
        match request {
            Request::Capture { target, outer, count, snaplen, filter } => {
                self.capture(super::capture::CaptureRequest { target, outer, count, snaplen, filter })
            }
            Request::Events { follow: true } => {
                let (reply, stream) = self.events.subscribe();
                let reply = serde_json::to_value(reply).map_err(|e| CtlError::internal(e.to_string()))?;
                Ok(Subscription { reply, source: Box::new(stream) })
            }
            _ => Err(CtlError::new(ErrorKind::NotSupported, format!("{} does not open a stream", request.verb()))),
        }
    }
}
