//! Live packet capture (`vswitchctl capture`): the datapath copies the
//! frames of captured ports (or the underlay's datagrams) that pass a
//! tcpdump filter into a bounded ring per capture, dropping and counting
//! what does not fit, and the capture's ctl stream sends them to the
//! client, which writes pcap. Forwarding never waits for a capture.

mod filter;
mod outer;
mod registry;
mod ring;
mod source;

pub use filter::{Filter, FilterError};
pub use registry::{Captures, Scope, Session};
pub use ring::{CaptureRing, Popped, Record};
pub use source::CaptureSource;
