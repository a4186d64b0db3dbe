//! Error types of the ctl protocol: the wire error object ([`CtlError`] with an
//! [`ErrorKind`]) and the local decoding error ([`ProtocolError`]).

use serde::{Deserialize, Serialize};

/// Machine-readable class of a failed request, sent as `err.kind` in snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The line is not a well-formed request envelope (bad JSON, missing `id`/`v`/`req`/`verb`).
    BadRequest,
    /// The envelope's `v` is not a protocol version this daemon speaks.
    UnsupportedVersion,
    /// `req.verb` names no known verb.
    UnknownVerb,
    /// A named object (network, sandbox, endpoint, port, FDB entry) does not exist.
    NotFound,
    /// The object already exists or the request contradicts current state (e.g. overlapping subnet).
    Conflict,
    /// A field has a wrong type or a value the daemon rejects (bad CIDR, MTU out of range, ...).
    InvalidArgument,
    /// The object cannot be removed because something still uses it (e.g. a network with endpoints).
    InUse,
    /// The daemon lacks the privilege for the operation, or the peer is not allowed to ask.
    PermissionDenied,
    /// The request is valid but the daemon does not implement it (e.g. a driver not built in).
    NotSupported,
    /// The daemon failed for a reason that is not the client's fault.
    Internal,
    /// The request line exceeded [`MAX_REQUEST_BYTES`](super::MAX_REQUEST_BYTES).
    TooLarge,
    /// The operation did not finish in time.
    Timeout,
    /// A service the request needs cannot be reached (the cluster store):
    /// nothing was changed; try again when it is back.
    Unavailable,
    /// A kind this client does not know (sent by a newer daemon).
    #[serde(other)]
    Unknown,
}

impl ErrorKind {
    /// The snake_case wire name, e.g. `"not_found"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::UnsupportedVersion => "unsupported_version",
            Self::UnknownVerb => "unknown_verb",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::InvalidArgument => "invalid_argument",
            Self::InUse => "in_use",
            Self::PermissionDenied => "permission_denied",
            Self::NotSupported => "not_supported",
            Self::Internal => "internal",
            Self::TooLarge => "too_large",
            Self::Timeout => "timeout",
            Self::Unavailable => "unavailable",
            Self::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error object of a failed response: `{"kind":"not_found","message":"network \"x\" not found"}`.
/// Its `Display` is the human message alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct CtlError {
    /// Machine-readable class.
    pub kind: ErrorKind,
    /// Human-readable text, printed by `vswitchctl` as `Error: <message>`.
    pub message: String,
}

impl CtlError {
    /// Builds an error of `kind` with a human message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }

    /// `not_found` error.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// `conflict` error.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    /// `invalid_argument` error.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    /// `in_use` error.
    pub fn in_use(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InUse, message)
    }

    /// `internal` error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

/// Why a protocol line could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The line is longer than the protocol allows.
    #[error("request of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Length of the offending line in bytes.
        len: usize,
        /// The limit that applied.
        max: usize,
    },
    /// The line is not valid JSON.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// The JSON is valid but not an object, or a required envelope field is missing or mistyped.
    #[error("malformed envelope: {0}")]
    BadEnvelope(String),
    /// The envelope carries a version other than [`PROTOCOL_VERSION`](super::PROTOCOL_VERSION).
    #[error("unsupported protocol version {got} (this side speaks version {})", super::PROTOCOL_VERSION)]
    UnsupportedVersion {
        /// The `v` value received, as JSON text.
        got: String,
    },
    /// `req.verb` is not one of [`Request::VERBS`](super::Request::VERBS).
    #[error("unknown verb {0:?}")]
    UnknownVerb(String),
    /// The verb is known but its fields do not deserialize (missing, wrong type, bad address).
    #[error("invalid arguments for {verb}: {message}")]
    InvalidArguments {
        /// The verb whose fields were rejected.
        verb: String,
        /// serde's description of the problem.
        message: String,
    },
    /// A message could not be serialized (should not happen with the protocol's own types).
    #[error("cannot encode message: {0}")]
    Encode(String),
}

impl ProtocolError {
    /// The wire [`ErrorKind`] a daemon should answer this decoding failure with.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::TooLarge { .. } => ErrorKind::TooLarge,
            Self::MalformedJson(_) | Self::BadEnvelope(_) => ErrorKind::BadRequest,
            Self::UnsupportedVersion { .. } => ErrorKind::UnsupportedVersion,
            Self::UnknownVerb(_) => ErrorKind::UnknownVerb,
            Self::InvalidArguments { .. } => ErrorKind::InvalidArgument,
            Self::Encode(_) => ErrorKind::Internal,
        }
    }
}

impl From<ProtocolError> for CtlError {
    fn from(e: ProtocolError) -> Self {
        CtlError::new(e.kind(), e.to_string())
    }
}
