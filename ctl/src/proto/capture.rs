//! The `capture` stream's payloads: its `ok` reply ([`CaptureInfo`]), one
//! item per frame ([`CapturedFrame`]) and its summary ([`CaptureSummary`]).
//! See "capture" in PROTOCOL.md.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

/// The pcap link type of frames that start with an Ethernet header.
pub const LINKTYPE_ETHERNET: u16 = 1;
/// The pcap link type of frames that start with an IPv4 or IPv6 header
/// (the underlay datagrams of `capture vtep --outer`).
pub const LINKTYPE_RAW: u16 = 101;
/// The snapshot length when the request gives none, and the largest one
/// accepted (as tcpdump's default).
pub const MAX_SNAPLEN: u32 = 262_144;

/// The `ok` reply of `capture`: what is being captured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureInfo {
    /// The port or network named in the request.
    pub target: String,
    /// The ports captured when the stream began (a network's ports; ports
    /// that join it later are captured too).
    pub ports: Vec<String>,
    /// The pcap link type of every frame: [`LINKTYPE_ETHERNET`] or
    /// [`LINKTYPE_RAW`].
    pub linktype: u16,
    /// At most this many bytes of each frame are sent.
    pub snaplen: u32,
    /// The filter expression in force, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// The stream ends after this many frames, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

/// Which way a captured frame crossed its port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Into the switch: sent by the sandbox, the gateway or the remote host
    /// behind the port (for the underlay: a datagram received).
    Rx,
    /// Out of the switch through the port (for the underlay: a datagram sent).
    Tx,
}

impl Direction {
    /// `"rx"` or `"tx"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rx => "rx",
            Self::Tx => "tx",
        }
    }
}

/// One captured frame: an item of the `capture` stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturedFrame {
    /// Wall-clock time the switch saw it: seconds since the Unix epoch…
    pub sec: u64,
    /// …and nanoseconds.
    pub nsec: u32,
    /// The port it crossed, as `show` and `stats` name it.
    pub port: String,
    /// Which way.
    pub dir: Direction,
    /// Its length on the wire (a GSO super-frame's whole length).
    pub len: u32,
    /// Its first `snaplen` bytes, base64 (standard alphabet, padded).
    pub data: String,
}

impl CapturedFrame {
    /// The captured bytes (decoded [`CapturedFrame::data`]).
    pub fn bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        STANDARD.decode(&self.data)
    }
}

/// Appends `bytes` in base64 to `out`: the daemon's encoding of
/// [`CapturedFrame::data`], into a reused buffer.
pub fn encode_frame_data(bytes: &[u8], out: &mut String) {
    STANDARD.encode_string(bytes, out);
}

/// The `end` line of a `capture` stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureSummary {
    /// Frames sent to the client.
    pub captured: u64,
    /// Frames that passed the filter but were not sent: the capture's
    /// buffer was full (the client did not read fast enough), or they were
    /// still in it when the client stopped the stream.
    pub dropped: u64,
    /// Frames the filter rejected.
    pub filtered: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_data_round_trips() {
        let bytes: Vec<u8> = (0..=255).collect();
        let mut data = String::new();
        encode_frame_data(&bytes, &mut data);
        let frame = CapturedFrame { sec: 1, nsec: 2, port: "p".into(), dir: Direction::Tx, len: 300, data };
        let json = serde_json::to_string(&frame).unwrap();
        assert!(json.contains(r#""dir":"tx""#), "{json}");
        let back: CapturedFrame = serde_json::from_str(&json).unwrap();
        assert_eq!(back.bytes().unwrap(), bytes);
    }
}
