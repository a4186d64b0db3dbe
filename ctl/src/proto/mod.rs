#![doc = include_str!("PROTOCOL.md")]
//!
//! ## Rust API
//!
//! A server reads a line, calls [`decode_request`], handles the [`Request`], and writes
//! [`encode_ok`] or [`encode_err`]. A client uses [`encode_request`] and [`decode_response`]
//! (or just [`crate::client::Client`]).

mod capture;
mod error;
mod event;
mod payload;
mod request;
mod stream;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

pub use capture::{
    CaptureInfo, CaptureSummary, CapturedFrame, Direction, LINKTYPE_ETHERNET, LINKTYPE_RAW, MAX_SNAPLEN,
    encode_frame_data,
};
pub use error::{CtlError, ErrorKind, ProtocolError};
pub use event::{Event, EventKind, EventsFollow, EventsSummary, LostScope, PortChange};
pub use payload::{
    Ack, ConfigInfo, ConfigReference, DnsRecord, DnsStats, EndpointInfo, EndpointResource, FdbEntry, FdbKind,
    FlushResult, GroStats, ImpairStats, Ipam, IpamConfig, KeyEpoch, MetricsText, NatFlow, NatStats, NetworkInfo,
    NetworkSummary, NodeInfo, NodeList, NodeRmResult, NodeStatus, PeerInfo, PortImpairInfo, PortKind, PortStats,
    Pruned, ResolverInfo, SandboxInfo, ServiceInfo, ServiceReplica, ShowNetwork, ShowPort, ShowTree, StoreState,
    VersionInfo, WorkerLoad,
};
pub use request::{CreateNetwork, Driver, PortType, Request, ServiceMode, UnknownDriver};
pub use stream::{StreamLine, decode_stream_line, encode_end, encode_item_raw};

/// The protocol version this crate speaks; sent as `v` in every message.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest request line accepted, in bytes, not counting the trailing newline.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

/// Longest response line a client accepts, in bytes (replies can list large tables).
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// A request envelope: `{"v":1,"id":ID,"req":{...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// Protocol version.
    pub v: u32,
    /// Client-chosen request ID, echoed in the response.
    pub id: u64,
    /// The request body.
    pub req: T,
}

/// A decoded response line: `{"v":1,"id":ID,"ok":PAYLOAD}` or `{"v":1,"id":ID,"err":{...}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// Protocol version.
    pub v: u32,
    /// The request ID this answers; `None` when the daemon could not read it.
    pub id: Option<u64>,
    /// The `ok` payload or the `err` object.
    pub result: Result<Value, CtlError>,
}

impl Response {
    /// Deserializes the `ok` payload into `T`; a daemon error is returned as is.
    pub fn into_payload<T: DeserializeOwned>(self) -> Result<Result<T, serde_json::Error>, CtlError> {
        self.result.map(serde_json::from_value)
    }
}

/// Wire shape of a response; `ok` and `err` are both optional here and checked afterwards.
#[derive(Serialize, Deserialize)]
struct WireResponse {
    v: u32,
    id: Option<u64>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    ok: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    err: Option<CtlError>,
}

/// Maps a present field (even `null`) to `Some`, so `"ok":null` differs from a missing `ok`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Last-resort line if a response cannot be serialized at all.
const ENCODE_FALLBACK: &[u8] = br#"{"v":1,"id":null,"err":{"kind":"internal","message":"cannot encode reply"}}"#;

/// Strips one trailing `\n` (and a `\r` before it).
fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Parses one request line (with or without its trailing newline). Never panics.
///
/// On failure returns the request's `id` when it could be read, and the reason.
pub fn parse_request(line: &[u8]) -> Result<Envelope<Request>, (Option<u64>, ProtocolError)> {
    let line = trim_newline(line);
    if line.len() > MAX_REQUEST_BYTES {
        return Err((None, ProtocolError::TooLarge { len: line.len(), max: MAX_REQUEST_BYTES }));
    }
    let value: Value = serde_json::from_slice(line).map_err(|e| (None, ProtocolError::MalformedJson(e.to_string())))?;
    let Value::Object(mut obj) = value else {
        return Err((None, ProtocolError::BadEnvelope("expected a JSON object".into())));
    };
    let bad = |id, msg: &str| (id, ProtocolError::BadEnvelope(msg.to_owned()));
    let id = match obj.get("id") {
        None => return Err(bad(None, "missing field \"id\"")),
        Some(v) => v.as_u64().ok_or_else(|| bad(None, "\"id\" must be an unsigned 64-bit integer"))?,
    };
    match obj.get("v") {
        None => return Err(bad(Some(id), "missing field \"v\"")),
        Some(v) if v.as_u64() == Some(u64::from(PROTOCOL_VERSION)) => {}
        Some(v) => return Err((Some(id), ProtocolError::UnsupportedVersion { got: v.to_string() })),
    }
    let req = match obj.remove("req") {
        Some(req @ Value::Object(_)) => req,
        Some(_) => return Err(bad(Some(id), "\"req\" must be an object")),
        None => return Err(bad(Some(id), "missing field \"req\"")),
    };
    let verb = match req.get("verb") {
        Some(Value::String(verb)) => verb.clone(),
        Some(_) => return Err(bad(Some(id), "\"req.verb\" must be a string")),
        None => return Err(bad(Some(id), "missing field \"req.verb\"")),
    };
    if !Request::VERBS.contains(&verb.as_str()) {
        return Err((Some(id), ProtocolError::UnknownVerb(verb)));
    }
    let req: Request = serde_json::from_value(req)
        .map_err(|e| (Some(id), ProtocolError::InvalidArguments { verb, message: e.to_string() }))?;
    Ok(Envelope { v: PROTOCOL_VERSION, id, req })
}

/// [`parse_request`] with the failure already converted to the wire error the daemon should send
/// (pass both halves to [`encode_err`]).
pub fn decode_request(line: &[u8]) -> Result<Envelope<Request>, (Option<u64>, CtlError)> {
    parse_request(line).map_err(|(id, e)| (id, e.into()))
}

/// Serializes a request envelope as one line, newline included.
pub fn encode_request(id: u64, req: &Request) -> Result<Vec<u8>, ProtocolError> {
    let env = Envelope { v: PROTOCOL_VERSION, id, req };
    let mut out = serde_json::to_vec(&env).map_err(|e| ProtocolError::Encode(e.to_string()))?;
    out.push(b'\n');
    Ok(out)
}

/// Serializes a success response line (newline included). If `payload` cannot be serialized,
/// the line is an `internal` error instead; this never panics.
pub fn encode_ok<T: Serialize + ?Sized>(id: u64, payload: &T) -> Vec<u8> {
    match serde_json::to_value(payload) {
        Ok(ok) => encode_wire(&WireResponse { v: PROTOCOL_VERSION, id: Some(id), ok: Some(ok), err: None }),
        Err(e) => encode_err(Some(id), ErrorKind::Internal, format!("cannot encode reply: {e}")),
    }
}

/// Serializes an error response line (newline included). `id` is `None` only when the request's
/// ID could not be read.
pub fn encode_err(id: Option<u64>, kind: ErrorKind, message: impl Into<String>) -> Vec<u8> {
    let err = CtlError::new(kind, message);
    encode_wire(&WireResponse { v: PROTOCOL_VERSION, id, ok: None, err: Some(err) })
}

fn encode_wire(w: &WireResponse) -> Vec<u8> {
    let mut out = serde_json::to_vec(w).unwrap_or_else(|_| ENCODE_FALLBACK.to_vec());
    out.push(b'\n');
    out
}

/// Parses one response line. Fails on bad JSON, a version other than [`PROTOCOL_VERSION`], or
/// a line with both or neither of `ok` and `err`. Never panics.
pub fn decode_response(line: &[u8]) -> Result<Response, ProtocolError> {
    let line = trim_newline(line);
    let value: Value = serde_json::from_slice(line).map_err(|e| ProtocolError::MalformedJson(e.to_string()))?;
    if let Some(v) = value.get("v")
        && v.as_u64() != Some(u64::from(PROTOCOL_VERSION))
    {
        return Err(ProtocolError::UnsupportedVersion { got: v.to_string() });
    }
    let w: WireResponse = serde_json::from_value(value).map_err(|e| ProtocolError::BadEnvelope(e.to_string()))?;
    let result = match (w.ok, w.err) {
        (Some(ok), None) => Ok(ok),
        (None, Some(err)) => Err(err),
        (Some(_), Some(_)) => return Err(ProtocolError::BadEnvelope("both \"ok\" and \"err\" present".into())),
        (None, None) => return Err(ProtocolError::BadEnvelope("neither \"ok\" nor \"err\" present".into())),
    };
    Ok(Response { v: w.v, id: w.id, result })
}
