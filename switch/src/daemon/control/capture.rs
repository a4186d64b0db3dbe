//! `capture`: resolves what to capture (a port, a network's ports, or the
//! underlay), compiles the filter, sizes the ring, and registers the
//! capture with the datapath. A refused request starts nothing.

use std::collections::HashMap;
use std::sync::Arc;

use ctl::proto::{CaptureInfo, CtlError, ErrorKind, LINKTYPE_ETHERNET, LINKTYPE_RAW, MAX_SNAPLEN};

use super::{Control, Subscription, VTEP_PORT_NAME, datapath_error, network_id, ok};
use crate::daemon::capture::{CaptureRing, CaptureSource, Filter, Scope, Session};
use crate::port::PortId;
use crate::sys::tap::Tap;

/// Bytes of frames one capture's ring holds, at most (records are
/// allocated when the capture starts; their pages are touched as frames
/// arrive).
const RING_BYTES: usize = 8 << 20;
/// Records of one capture's ring, at least and at most.
const MIN_RECORDS: usize = 64;
/// See [`MIN_RECORDS`].
const MAX_RECORDS: usize = 4096;
/// Captures running at once, at most.
pub(super) const MAX_CAPTURES: usize = 16;
/// The largest frame a port carries (a GSO super-frame) and the largest
/// underlay datagram with its IP and UDP header.
const MAX_FRAME: usize = Tap::RECV_BUF_LEN;
/// See [`MAX_FRAME`].
const MAX_DATAGRAM: usize = 40 + 8 + 65_535;

/// What a `capture` request asks for.
pub(super) struct CaptureRequest {
    pub(super) target: String,
    pub(super) outer: bool,
    pub(super) count: Option<u64>,
    pub(super) snaplen: Option<u32>,
    pub(super) filter: Option<String>,
}

/// The ring of a capture keeping `snaplen` bytes of frames up to
/// `max_frame` long: records of at most the snapshot length, as many as
/// [`RING_BYTES`] allows within [`MIN_RECORDS`]..=[`MAX_RECORDS`].
fn ring_for(snaplen: u32, max_frame: usize, count: Option<u64>) -> CaptureRing {
    let record_len = (snaplen as usize).min(max_frame);
    let records = (RING_BYTES / record_len.max(1)).clamp(MIN_RECORDS, MAX_RECORDS);
    CaptureRing::new(records, record_len, count)
}

fn invalid(message: String) -> CtlError {
    CtlError::new(ErrorKind::InvalidArgument, message)
}

impl Control {
    pub(super) fn capture(&mut self, req: CaptureRequest) -> Result<Subscription, CtlError> {
        let running = Arc::strong_count(&self.captures) - 1;
        if running >= MAX_CAPTURES {
            return Err(CtlError::new(
                ErrorKind::Conflict,
                format!("{running} captures are running, the most at once: stop one first"),
            ));
        }
        let snaplen = match req.snaplen {
            None | Some(0) => MAX_SNAPLEN,
            Some(n) if n <= MAX_SNAPLEN => n,
            Some(n) => return Err(invalid(format!("snaplen {n} is over the maximum {MAX_SNAPLEN}"))),
        };
        if req.count == Some(0) {
            return Err(invalid("count must be at least 1".into()));
        }
        let underlay = req.outer || req.target == VTEP_PORT_NAME;
        if underlay && req.target != VTEP_PORT_NAME {
            return Err(invalid(format!(
                "--outer captures the underlay: its target is {VTEP_PORT_NAME}, not {}",
                req.target
            )));
        }
        if underlay && self.vtep.is_none() {
            return Err(CtlError::new(
                ErrorKind::NotSupported,
                "there is no underlay to capture: start vswitchd with --vtep ADDR[:PORT]",
            ));
        }
        let linktype = if underlay { LINKTYPE_RAW } else { LINKTYPE_ETHERNET };
        let filter = match req.filter.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
            Some(expression) => Some(Filter::compile(expression, linktype).map_err(|e| invalid(e.to_string()))?),
            None => None,
        };
        let snapshot = self.datapath.snapshot().map_err(datapath_error)?;
        let (names, _) = self.port_names(&snapshot);
        let (scope, mut ports) = if underlay {
            (Scope::Underlay, vec![VTEP_PORT_NAME.to_owned()])
        } else {
            let ids: Vec<PortId> = names.iter().filter(|(_, name)| **name == req.target).map(|(&id, _)| id).collect();
            if ids.is_empty() {
                let network = self.model.network(&req.target).map_err(|_| {
                    CtlError::new(ErrorKind::NotFound, format!("no port or network named {:?}", req.target))
                })?;
                if !network.driver.is_switched() {
                    return Err(CtlError::new(
                        ErrorKind::NotSupported,
                        format!("network {} ({}) has no ports to capture", network.name, network.driver),
                    ));
                }
                let id = network_id(network);
                let members = snapshot.ports.iter().filter(|(_, net, _)| *net == id);
                let ports = members.filter_map(|(port, _, _)| names.get(port).cloned()).collect();
                (Scope::Network(id), ports)
            } else {
                (Scope::Ports(ids), vec![req.target.clone()])
            }
        };
        ports.sort();
        ports.dedup();
        let max_frame = if underlay { MAX_DATAGRAM } else { MAX_FRAME };
        let ring = Arc::new(ring_for(snaplen, max_frame, req.count));
        let only_port = underlay.then(|| VTEP_PORT_NAME.to_owned());
        let names: HashMap<PortId, String> = if underlay { HashMap::new() } else { names };
        let info = CaptureInfo {
            target: req.target,
            ports,
            linktype,
            snaplen,
            filter: filter.as_ref().map(|f| f.expression().to_owned()),
            count: req.count,
        };
        let reply = ok(&info)?;
        let source = CaptureSource::new(ring.clone(), names, only_port, self.captures.clone());
        let workers = self.datapath.capture(Session::new(ring, scope, filter)).map_err(datapath_error)?;
        // Ports on several workers (or the underlay of several): one ring
        // filled by each, frames sent in timestamp order.
        let source = if workers > 1 { source.merged() } else { source };
        tracing::info!(target = %info.target, filter = ?info.filter, count = ?info.count, "capture started");
        Ok(Subscription { reply, source: Box::new(source) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_hold_about_8_mib_of_snapshots_within_bounds() {
        let full = ring_for(MAX_SNAPLEN, MAX_FRAME, None);
        assert_eq!(full.record_len(), MAX_FRAME, "a record never needs more than the largest frame");
        let small = ring_for(96, MAX_FRAME, Some(5));
        assert_eq!(small.record_len(), 96);
        // Records: 8 MiB / 65,612 = 127 full-size ones; 4096 (the most) of 96 bytes.
        let records = |ring: &CaptureRing| {
            let mut n = 0;
            while ring.push_with(|_| {}) {
                n += 1;
            }
            n
        };
        assert_eq!(records(&full), 127);
        assert_eq!(records(&small), 5, "five frames asked for");
        assert_eq!(records(&ring_for(96, MAX_FRAME, None)), MAX_RECORDS);
        assert_eq!(records(&ring_for(1_000_000, 1_000_000, None)), MIN_RECORDS);
    }
}
