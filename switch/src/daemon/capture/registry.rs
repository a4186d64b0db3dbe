//! The datapath's side of captures: which ports (or the underlay) are
//! captured, the filter of each capture, and the copy of matching frames
//! into each capture's ring.
//!
//! The datapath checks [`Captures::ports`] / [`Captures::underlay`] (one
//! flag) before offering anything, so with no capture running a frame costs
//! one branch. With captures, each frame is compared with each capture's
//! ports (a short list, or the port's network), filtered, and copied
//! (truncated to the snapshot length) into a preallocated record: no
//! allocation, lock or system call per frame; the consumers are woken once
//! per batch ([`Captures::wake`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ctl::proto::Direction;

use super::filter::Filter;
use super::outer::ip_udp_packet;
use super::ring::CaptureRing;
use crate::port::{NetworkId, PortId};

/// Room for the largest underlay datagram with the IP and UDP header put
/// in front of it.
const DATAGRAM_ROOM: usize = 40 + 8 + 65_535;

/// What one capture sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Frames crossing these ports (a tunnel port's name may stand for one
    /// port per overlay network).
    Ports(Vec<PortId>),
    /// Frames crossing any port of this network, including ports added
    /// after the capture began.
    Network(NetworkId),
    /// Datagrams sent and received on the underlay (their UDP payload).
    Underlay,
}

/// One capture as one datapath worker holds it: a capture of ports on
/// several workers is one session per worker, each with that worker's
/// ports, all filling one ring.
#[derive(Debug)]
pub struct Session {
    ring: Arc<CaptureRing>,
    scope: Scope,
    filter: Option<Filter>,
    /// Frames were queued since the consumer was last woken.
    pending: bool,
    /// Nothing of its scope is left on this worker (its ports or network
    /// were removed): forgotten at the next prune.
    done: bool,
}

impl Session {
    /// A capture of `scope` into `ring`, keeping frames `filter` accepts
    /// (all without one). The session is one of the ring's producers until
    /// it is dropped.
    pub fn new(ring: Arc<CaptureRing>, scope: Scope, filter: Option<Filter>) -> Session {
        ring.add_producer();
        Session { ring, scope, filter, pending: false, done: false }
    }

    /// Another session of the same capture (its ring and filter) over
    /// `scope`: what one more worker captures.
    pub fn with_scope(&self, scope: Scope) -> Result<Session, super::FilterError> {
        let filter = self.filter.as_ref().map(Filter::try_clone).transpose()?;
        Ok(Session::new(self.ring.clone(), scope, filter))
    }

    /// What it captures.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Keeps, of a capture of ports, only those `held` says this worker
    /// has; false when none is left (the worker should keep no session).
    /// Other scopes stay whole.
    pub fn retain_ports(&mut self, held: impl Fn(PortId) -> bool) -> bool {
        match &mut self.scope {
            Scope::Ports(ports) => {
                ports.retain(|&p| held(p));
                !ports.is_empty()
            }
            _ => true,
        }
    }

    /// Filters and queues one frame.
    fn offer(&mut self, port: PortId, direction: Direction, frame: &[u8], remote: Option<SocketAddr>, now: Duration) {
        if !self.ring.wants_frames() {
            return;
        }
        if self.filter.as_ref().is_some_and(|f| !f.matches(frame)) {
            self.ring.count_filtered();
            return;
        }
        let keep = frame.len().min(self.ring.record_len());
        self.ring.push_with(|r| {
            r.port = port;
            r.direction = direction;
            r.time = now;
            r.orig_len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
            r.remote = remote;
            r.data.extend_from_slice(&frame[..keep]);
        });
        self.pending = true;
    }
}

impl Drop for Session {
    /// The datapath forgets the capture (it ended, its ports went away, or
    /// the datapath stopped): once every worker's session of it has, the
    /// stream ends when its frames are sent.
    fn drop(&mut self) {
        self.ring.producer_done();
    }
}

/// Every running capture.
#[derive(Debug, Default)]
pub struct Captures {
    sessions: Vec<Session>,
    /// Some capture watches ports.
    pub ports: bool,
    /// Some capture watches the underlay.
    pub underlay: bool,
    /// An underlay datagram with its synthesized headers.
    scratch: Vec<u8>,
}

/// The wall-clock time of a captured frame.
fn now() -> Duration {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default()
}

impl Captures {
    /// Starts a capture.
    pub fn add(&mut self, session: Session) {
        if session.scope == Scope::Underlay && self.scratch.capacity() < DATAGRAM_ROOM {
            self.scratch.reserve_exact(DATAGRAM_ROOM);
        }
        self.sessions.push(session);
        self.prune();
    }

    /// Offers a frame that crossed `port` to every capture of that port:
    /// `network` names the port's network (asked only if a capture needs
    /// it), `remote` is the remote VTEP of a tunnel port.
    pub fn frame(
        &mut self,
        port: PortId,
        direction: Direction,
        frame: &[u8],
        network: impl FnOnce() -> Option<NetworkId>,
        remote: Option<SocketAddr>,
    ) {
        let mut network = Some(network);
        let mut net = None;
        let mut time = None;
        for session in &mut self.sessions {
            let hit = match &session.scope {
                Scope::Ports(ports) => ports.contains(&port),
                Scope::Network(n) => {
                    if let Some(lookup) = network.take() {
                        net = lookup();
                    }
                    net == Some(*n)
                }
                Scope::Underlay => false,
            };
            if hit {
                session.offer(port, direction, frame, remote, *time.get_or_insert_with(now));
            }
        }
    }

    /// Offers an underlay datagram (its UDP payload, from `src` to `dst`)
    /// to every capture of the underlay, as an IP packet.
    pub fn datagram(&mut self, direction: Direction, src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
        if !ip_udp_packet(src, dst, payload, &mut self.scratch) {
            return;
        }
        let remote = match direction {
            Direction::Rx => src,
            Direction::Tx => dst,
        };
        let time = now();
        for session in self.sessions.iter_mut().filter(|s| s.scope == Scope::Underlay) {
            session.offer(PortId(u32::MAX), direction, &self.scratch, Some(remote), time);
        }
    }

    /// Wakes the consumers of captures that queued frames (once per batch).
    pub fn wake(&mut self) {
        for session in self.sessions.iter_mut().filter(|s| s.pending) {
            session.pending = false;
            session.ring.wake();
        }
    }

    /// Forgets captures whose consumer left or whose frame count is reached.
    pub fn prune(&mut self) {
        self.sessions.retain(|s| !s.done && s.ring.wants_frames());
        self.ports = self.sessions.iter().any(|s| s.scope != Scope::Underlay);
        self.underlay = self.sessions.iter().any(|s| s.scope == Scope::Underlay);
    }

    /// A port was removed: this worker's sessions of it alone end (the
    /// capture ends once no worker has a captured port left).
    pub fn port_removed(&mut self, port: PortId) {
        for session in &mut self.sessions {
            if let Scope::Ports(ports) = &mut session.scope {
                ports.retain(|&p| p != port);
                session.done |= ports.is_empty();
            }
        }
        self.prune();
    }

    /// A network was removed: captures of it end.
    pub fn network_removed(&mut self, network: NetworkId) {
        for session in self.sessions.iter_mut().filter(|s| s.scope == Scope::Network(network)) {
            session.done = true;
        }
        self.prune();
    }

    /// Captures running.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// True when no capture runs.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use ctl::proto::LINKTYPE_ETHERNET;

    use super::super::ring::Popped;
    use super::*;

    fn ring(records: usize, len: usize, limit: Option<u64>) -> Arc<CaptureRing> {
        Arc::new(CaptureRing::new(records, len, limit))
    }

    fn frame(ethertype: [u8; 2], len: usize) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, ethertype[0], ethertype[1]];
        f.resize(len, 0xab);
        f
    }

    fn taken(ring: &CaptureRing) -> Vec<(PortId, Direction, u32, usize)> {
        let mut out = Vec::new();
        while let Popped::Record(r) = ring.pop(Duration::ZERO) {
            out.push((r.port, r.direction, r.orig_len, r.data.len()));
            ring.recycle(r);
        }
        out
    }

    #[test]
    fn only_captured_ports_are_copied_truncated_to_the_snapshot_length() {
        let mut captures = Captures::default();
        assert!(!captures.ports && !captures.underlay, "nothing to do without captures");
        let r = ring(8, 32, None);
        captures.add(Session::new(r.clone(), Scope::Ports(vec![PortId(3)]), None));
        assert!(captures.ports && !captures.underlay);
        let net = || -> Option<NetworkId> { panic!("a port capture never asks for the network") };
        captures.frame(PortId(3), Direction::Rx, &frame([8, 0], 100), net, None);
        captures.frame(PortId(6), Direction::Rx, &frame([8, 0], 100), net, None);
        captures.frame(PortId(3), Direction::Tx, &frame([8, 0], 20), net, None);
        assert_eq!(taken(&r), [(PortId(3), Direction::Rx, 100, 32), (PortId(3), Direction::Tx, 20, 20)]);
    }

    #[test]
    fn a_network_capture_sees_every_port_of_the_network_and_filters() {
        let mut captures = Captures::default();
        let r = ring(8, 2048, None);
        let filter = Filter::compile("arp", LINKTYPE_ETHERNET).unwrap();
        captures.add(Session::new(r.clone(), Scope::Network(NetworkId(1)), Some(filter)));
        for (port, net) in [(PortId(3), 1), (PortId(4), 1), (PortId(5), 2)] {
            captures.frame(port, Direction::Rx, &frame([8, 6], 60), || Some(NetworkId(net)), None);
            captures.frame(port, Direction::Rx, &frame([8, 0], 60), || Some(NetworkId(net)), None);
        }
        assert_eq!(taken(&r), [(PortId(3), Direction::Rx, 60, 60), (PortId(4), Direction::Rx, 60, 60)]);
        assert_eq!((r.filtered(), r.dropped()), (2, 0), "the IPv4 frames of network 1");
    }

    #[test]
    fn underlay_captures_get_ip_packets_and_the_remote() {
        let mut captures = Captures::default();
        let r = ring(4, 200, None);
        captures.add(Session::new(r.clone(), Scope::Underlay, None));
        assert!(captures.underlay && !captures.ports);
        let (local, peer) = ("10.0.0.1:4789".parse().unwrap(), "10.0.0.2:4789".parse().unwrap());
        captures.datagram(Direction::Rx, peer, local, &[0x08, 0, 0, 0, 0, 0, 1, 0]);
        let Popped::Record(rec) = r.pop(Duration::ZERO) else { panic!("no record") };
        assert_eq!((rec.orig_len, rec.remote, rec.data[0]), (36, Some(peer), 0x45));
        assert_eq!(&rec.data[12..16], &[10, 0, 0, 2], "source: the peer");
    }

    #[test]
    fn removed_ports_and_networks_and_finished_captures_are_forgotten() {
        let mut captures = Captures::default();
        let (a, b, c) = (ring(2, 16, None), ring(2, 16, Some(1)), ring(2, 16, None));
        captures.add(Session::new(a.clone(), Scope::Ports(vec![PortId(3), PortId(4)]), None));
        captures.add(Session::new(b.clone(), Scope::Ports(vec![PortId(3)]), None));
        captures.add(Session::new(c.clone(), Scope::Network(NetworkId(0)), None));
        captures.frame(PortId(3), Direction::Rx, &frame([8, 0], 60), || Some(NetworkId(0)), None);
        assert!(b.is_ended(), "one frame asked for, one queued");
        captures.prune();
        assert_eq!(captures.len(), 2);
        captures.port_removed(PortId(3));
        assert!(!a.is_ended(), "port 4 is still captured");
        captures.port_removed(PortId(4));
        assert!(a.is_ended());
        c.close();
        captures.prune();
        assert!(captures.is_empty() && !captures.ports);
    }

    #[test]
    fn a_capture_over_two_workers_ends_when_both_sessions_do_and_keeps_the_frame_count() {
        // Two workers' registries, one ring: each session holds its worker's port.
        let (mut w0, mut w1) = (Captures::default(), Captures::default());
        let r = ring(8, 64, Some(3));
        w0.add(Session::new(r.clone(), Scope::Ports(vec![PortId(3)]), None));
        w1.add(Session::new(r.clone(), Scope::Ports(vec![PortId(5)]), None));
        let none = || None;
        w0.frame(PortId(3), Direction::Rx, &frame([8, 0], 60), none, None);
        w1.frame(PortId(5), Direction::Tx, &frame([8, 0], 70), none, None);
        w0.port_removed(PortId(3));
        assert!(!r.is_ended(), "worker 1 still captures port 5");
        w1.frame(PortId(5), Direction::Rx, &frame([8, 0], 80), none, None);
        w1.frame(PortId(5), Direction::Rx, &frame([8, 0], 90), none, None);
        assert!(r.is_ended(), "three frames asked for");
        assert_eq!(
            taken(&r),
            [
                (PortId(3), Direction::Rx, 60, 60),
                (PortId(5), Direction::Tx, 70, 64),
                (PortId(5), Direction::Rx, 80, 64)
            ]
        );
        let other = ring(8, 64, None);
        w0.add(Session::new(other.clone(), Scope::Ports(vec![PortId(3)]), None));
        w1.add(Session::new(other.clone(), Scope::Ports(vec![PortId(5)]), None));
        w1.port_removed(PortId(5));
        assert!(!other.is_ended());
        drop(w0);
        assert!(other.is_ended(), "the last worker let go");
    }

    #[test]
    fn dropping_the_registry_ends_every_capture() {
        let r = ring(2, 16, None);
        let mut captures = Captures::default();
        captures.add(Session::new(r.clone(), Scope::Network(NetworkId(0)), None));
        drop(captures);
        assert!(r.is_ended());
    }
}
