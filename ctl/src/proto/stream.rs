//! Streams: a request whose `ok` reply is followed by any number of `item`
//! lines and one closing `end` line on the same connection (`capture`,
//! `events --follow`). See "Streams" in PROTOCOL.md.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{CtlError, ErrorKind, PROTOCOL_VERSION, ProtocolError, encode_err, trim_newline};

/// One line of a stream after its `ok` reply.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamLine {
    /// `{"v":1,"id":ID,"item":ITEM}`: one element (an event, a frame).
    Item(Value),
    /// `{"v":1,"id":ID,"end":SUMMARY}`: the stream is over; the daemon
    /// closes the connection after it.
    End(Value),
    /// `{"v":1,"id":ID,"err":{...}}`: the stream failed.
    Err(CtlError),
}

/// Wire shape of a stream line; exactly one of the three is present.
#[derive(Deserialize)]
struct WireStreamLine {
    v: u32,
    id: Option<u64>,
    #[serde(default)]
    item: Option<Value>,
    #[serde(default)]
    end: Option<Value>,
    #[serde(default)]
    err: Option<CtlError>,
}

/// Appends `{"v":1,"id":ID,"item":` + `item_json` + `}\n` to `out`.
/// `item_json` must be one JSON value; the caller serialized it (so an item
/// is encoded once, into a reused buffer).
pub fn encode_item_raw(id: u64, item_json: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"v\":");
    out.extend_from_slice(PROTOCOL_VERSION.to_string().as_bytes());
    out.extend_from_slice(b",\"id\":");
    out.extend_from_slice(id.to_string().as_bytes());
    out.extend_from_slice(b",\"item\":");
    out.extend_from_slice(item_json);
    out.extend_from_slice(b"}\n");
}

/// Serializes a stream's closing line (newline included); an `internal`
/// error line if `summary` cannot be serialized.
pub fn encode_end<T: Serialize + ?Sized>(id: u64, summary: &T) -> Vec<u8> {
    #[derive(Serialize)]
    struct End<'a> {
        v: u32,
        id: u64,
        end: &'a Value,
    }
    let line =
        serde_json::to_value(summary).and_then(|end| serde_json::to_vec(&End { v: PROTOCOL_VERSION, id, end: &end }));
    match line {
        Ok(mut line) => {
            line.push(b'\n');
            line
        }
        Err(e) => encode_err(Some(id), ErrorKind::Internal, format!("cannot encode stream end: {e}")),
    }
}

/// Parses one line of a stream (after its `ok` reply). Returns the request
/// id it belongs to and the line. Never panics.
pub fn decode_stream_line(line: &[u8]) -> Result<(Option<u64>, StreamLine), ProtocolError> {
    let line = trim_newline(line);
    let value: Value = serde_json::from_slice(line).map_err(|e| ProtocolError::MalformedJson(e.to_string()))?;
    let w: WireStreamLine = serde_json::from_value(value).map_err(|e| ProtocolError::BadEnvelope(e.to_string()))?;
    if w.v != PROTOCOL_VERSION {
        return Err(ProtocolError::UnsupportedVersion { got: w.v.to_string() });
    }
    let line = match (w.item, w.end, w.err) {
        (Some(item), None, None) => StreamLine::Item(item),
        (None, Some(end), None) => StreamLine::End(end),
        (None, None, Some(err)) => StreamLine::Err(err),
        _ => return Err(ProtocolError::BadEnvelope("a stream line needs exactly one of item, end, err".into())),
    };
    Ok((w.id, line))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn items_and_ends_round_trip() {
        let mut out = Vec::new();
        encode_item_raw(7, br#"{"kind":"mac_learned","port":"p1"}"#, &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        let (id, line) = decode_stream_line(&out).unwrap();
        assert_eq!(id, Some(7));
        assert_eq!(line, StreamLine::Item(json!({"kind": "mac_learned", "port": "p1"})));

        let end = encode_end(7, &json!({"frames": 3, "dropped": 1}));
        let (id, line) = decode_stream_line(&end).unwrap();
        assert_eq!((id, line), (Some(7), StreamLine::End(json!({"frames": 3, "dropped": 1}))));

        let err = encode_err(Some(7), ErrorKind::Internal, "gone");
        assert!(matches!(decode_stream_line(&err).unwrap().1, StreamLine::Err(e) if e.message == "gone"));
    }

    #[test]
    fn malformed_lines_are_errors() {
        assert!(decode_stream_line(b"not json").is_err());
        assert!(decode_stream_line(br#"{"v":1,"id":1}"#).is_err());
        assert!(decode_stream_line(br#"{"v":1,"id":1,"item":1,"end":2}"#).is_err());
        assert!(decode_stream_line(br#"{"v":2,"id":1,"item":1}"#).is_err());
        assert!(decode_stream_line(br#"{"v":1,"id":1,"ok":{}}"#).is_err());
    }
}
