//! What the embedded DNS server counts, per network (its gateway).

/// Counters of one DNS server. Plain integers: the datapath thread owns them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Queries received (UDP and TCP).
    pub queries: u64,
    /// Queries answered from the switch's own records, NXDOMAIN and NODATA included.
    pub answered_locally: u64,
    /// NXDOMAIN decided locally.
    pub nxdomain: u64,
    /// Known names asked for a type they lack (NOERROR, no records).
    pub nodata: u64,
    /// Queries forwarded upstream.
    pub forwarded: u64,
    /// Forwarded queries no upstream answered (SERVFAIL sent), or queries
    /// with no upstream to forward to.
    pub upstream_failures: u64,
    /// Messages that are not well-formed queries (answered FORMERR where
    /// the header can be read, dropped otherwise).
    pub malformed: u64,
    /// Queries refused: unknown or spoofed source, or an opcode other than QUERY.
    pub refused: u64,
    /// Queries refused because too many forwarded queries were in flight.
    pub refused_over_limit: u64,
    /// UDP answers sent truncated because they did not fit.
    pub truncated: u64,
    /// TCP connections closed for idling or for being too slow, or evicted
    /// to make room for a new one.
    pub tcp_closed_idle: u64,
}
