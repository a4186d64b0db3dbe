//! TCP, mapped between a sandbox's connection and a host socket.
//!
//! The switch terminates the sandbox's TCP connection and carries its byte
//! stream over a kernel socket, mapping one onto the other the way passt
//! does rather than running a second TCP stack:
//! - **Sandbox → host**: in-order payload is written to the socket at once,
//!   and acknowledged when the kernel took it. Only when the socket is full
//!   are accepted bytes parked in a per-flow buffer (bounded by the window
//!   the switch advertises, and by a budget for all flows together); an
//!   idle connection holds no buffer at all.
//! - **Host → sandbox**: bytes stay in the socket's receive queue until the
//!   sandbox acknowledges them. The daemon peeks them (`MSG_PEEK` with
//!   `SO_PEEK_OFF`) straight into the frame, and discards them on the
//!   sandbox's ACK; a retransmission peeks again from the oldest
//!   unacknowledged byte. Frames are up to 64 KiB, cut into the sandbox's
//!   MSS by its own kernel (GSO), so the kernel's socket buffer is the only
//!   copy.
//!
//! No congestion control toward the sandbox (it is one switch hop away);
//! the sandbox's window bounds what is in flight. No SACK, no timestamps.

use std::io;

use super::flow::{FlowId, ListenerId};
use super::packet::Family;

/// The window shift the switch offers.
pub(crate) const OUR_SHIFT: u8 = 7;
/// The receive window the switch advertises (bytes it accepts beyond what
/// the socket took at once).
pub(crate) const WINDOW: u32 = 4 * 1024 * 1024;
/// First retransmission timeout toward a sandbox, and its cap.
pub(crate) const RTO_MIN_MS: u32 = 200;
pub(crate) const RTO_MAX_MS: u32 = 3_000;
/// Retransmissions of the same data before the connection is reset.
pub(crate) const MAX_RETRIES: u8 = 8;
/// A published connection's SYN toward a backend: first timeout, and tries
/// before the next backend is asked.
pub(crate) const SYN_RTO_MS: u32 = 1_000;
pub(crate) const SYN_TRIES: u8 = 3;
/// An egress connection whose host socket has not connected after this
/// long is given up (the kernel's own limit is about two minutes).
pub(crate) const HANDSHAKE_MS: u64 = 60_000;
/// A connection with no traffic for this long is reset (it leaked: its
/// sandbox vanished or its peer went silent).
pub(crate) const IDLE_MS: u64 = 2 * 3600 * 1000;

/// The MSS a peer that does not say assumes (RFC 9293 §3.7.1: 536 over
/// IPv4; 1220 over IPv6, whose minimum MTU is 1280), also the least the
/// switch offers.
pub(crate) fn default_mss(family: Family) -> u16 {
    match family {
        Family::V4 => 536,
        Family::V6 => 1220,
    }
}

/// Where in its life a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Egress: the sandbox's SYN arrived; the host socket is connecting.
    Connecting,
    /// Egress: connected; the switch answered SYN-ACK and waits for the ACK.
    SynAckSent,
    /// Inbound: the switch sent the backend a SYN for an accepted client.
    SynSent,
    /// Both directions open (or closing).
    Established,
}

/// One mapped connection.
#[derive(Debug)]
pub(crate) struct TcpFlow {
    pub(crate) phase: Phase,
    // Sandbox → host.
    /// The next sequence number expected from the sandbox.
    pub(crate) rcv_nxt: u32,
    /// The sandbox sent FIN (and it was accepted).
    pub(crate) fin_in: bool,
    /// The host socket was shut down for writing after that FIN.
    pub(crate) shut_wr: bool,
    /// Accepted bytes the socket could not take yet.
    pub(crate) pending: Vec<u8>,
    /// An ACK is owed to the sandbox.
    pub(crate) ack_due: bool,
    // Host → sandbox.
    pub(crate) iss: u32,
    pub(crate) snd_una: u32,
    pub(crate) snd_nxt: u32,
    /// The highest sequence number ever sent: after a rewind, the sandbox
    /// may still acknowledge up to here.
    pub(crate) snd_max: u32,
    /// The sequence number of the FIN the switch sent, if it did.
    pub(crate) fin_seq: Option<u32>,
    /// The sandbox's receive window, in bytes.
    pub(crate) snd_wnd: u32,
    /// The sandbox's window shift, and the switch's (0 unless both offered).
    pub(crate) shift: u8,
    pub(crate) our_shift: u8,
    /// The sandbox's MSS (the GSO segment size of frames toward it).
    pub(crate) mss: u16,
    /// The host socket may have bytes (or EOF) not yet peeked.
    pub(crate) readable: bool,
    /// The switch sent FIN (at `snd_nxt - 1`), and the sandbox acked it.
    pub(crate) fin_out: bool,
    pub(crate) fin_acked: bool,
    /// When the pending retransmission (SYN, SYN-ACK, data, FIN) or the
    /// handshake's end is due; `None` when only the idle limit applies.
    pub(crate) deadline: Option<u64>,
    pub(crate) rto_ms: u32,
    pub(crate) retries: u8,
    pub(crate) dupacks: u8,
    /// Waiting in the translator's queue of flows that may send.
    pub(crate) queued: bool,
    /// Inbound: the listener and the backends tried for it.
    pub(crate) listener: Option<(ListenerId, Tried)>,
}

/// Which backends of a published port a connection was offered to: those
/// from index `first` (the port's rotation when the connection came) on,
/// `count` of them. Failing over asks the next of its own, not the next in
/// the port's rotation, so each backend is asked once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tried {
    /// Index of the first backend asked.
    pub(crate) first: usize,
    /// How many were asked.
    pub(crate) count: usize,
}

impl TcpFlow {
    fn new(phase: Phase, iss: u32) -> TcpFlow {
        TcpFlow {
            phase,
            rcv_nxt: 0,
            fin_in: false,
            shut_wr: false,
            pending: Vec::new(),
            ack_due: false,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            fin_seq: None,
            snd_wnd: 0,
            shift: 0,
            our_shift: 0,
            mss: 536,
            readable: false,
            fin_out: false,
            fin_acked: false,
            deadline: None,
            rto_ms: RTO_MIN_MS,
            retries: 0,
            dupacks: 0,
            queued: false,
            listener: None,
        }
    }

    /// A connection a sandbox opened with a SYN (`seq`, its options; the
    /// family's default when it offered no MSS).
    pub(crate) fn egress(iss: u32, seq: u32, mss: u16, shift: Option<u8>) -> TcpFlow {
        let mut t = TcpFlow::new(Phase::Connecting, iss);
        t.rcv_nxt = seq.wrapping_add(1);
        t.mss = mss.max(64);
        if let Some(shift) = shift {
            t.shift = shift;
            t.our_shift = OUR_SHIFT;
        }
        t
    }

    /// A connection a client opened on a published port.
    pub(crate) fn inbound(iss: u32, listener: ListenerId, tried: Tried) -> TcpFlow {
        let mut t = TcpFlow::new(Phase::SynSent, iss);
        t.listener = Some((listener, tried));
        t
    }

    /// The window field for the sandbox: what is left of the switch's
    /// window once parked bytes are counted.
    pub(crate) fn window_field(&self) -> u16 {
        let free = WINDOW.saturating_sub(self.pending.len() as u32);
        (free >> self.our_shift).min(u32::from(u16::MAX)) as u16
    }

    /// Bytes the sandbox's window allows beyond what is in flight.
    pub(crate) fn room(&self) -> usize {
        let in_flight = self.snd_nxt.wrapping_sub(self.snd_una);
        self.snd_wnd.saturating_sub(in_flight) as usize
    }

    /// May the daemon peek more bytes for the sandbox now?
    pub(crate) fn can_send(&self) -> bool {
        self.phase == Phase::Established && self.readable && !self.fin_out && self.room() > 0
    }

    /// Moves `snd_nxt` forward by `n`, and `snd_max` with it.
    pub(crate) fn advance(&mut self, n: u32) {
        self.snd_nxt = self.snd_nxt.wrapping_add(n);
        if seq_gt(self.snd_nxt, self.snd_max) {
            self.snd_max = self.snd_nxt;
        }
    }

    /// Bytes and FIN in flight toward the sandbox.
    pub(crate) fn outstanding(&self) -> bool {
        self.snd_nxt != self.snd_una
    }

    /// The sandbox's window is shut while bytes may wait for it (the host
    /// socket was readable), and nothing is in flight that a retransmission
    /// or an ACK would move: only a window probe can.
    pub(crate) fn zero_window_stall(&self) -> bool {
        self.phase == Phase::Established && self.snd_wnd == 0 && self.readable && !self.fin_out && !self.outstanding()
    }

    /// Both directions finished: the flow can go.
    pub(crate) fn finished(&self) -> bool {
        self.fin_in && self.shut_wr && self.fin_acked
    }

    /// The state name `nat ls` shows.
    pub(crate) fn state_name(&self) -> &'static str {
        match self.phase {
            Phase::Connecting | Phase::SynSent => "syn-sent",
            Phase::SynAckSent => "syn-received",
            Phase::Established if self.fin_in || self.fin_out => "closing",
            Phase::Established => "established",
        }
    }
}

/// `a` comes after `b` in sequence space.
pub(crate) fn seq_gt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// What a host socket did with bytes written to it.
pub(crate) fn written(result: io::Result<usize>) -> Result<usize, io::Error> {
    match result {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => Ok(0),
        Err(e) => Err(e),
    }
}

/// Flows waiting for the daemon to peek bytes for them.
#[derive(Debug, Default)]
pub(crate) struct SendQueue(std::collections::VecDeque<FlowId>);

impl SendQueue {
    pub(crate) fn push(&mut self, id: FlowId, t: &mut TcpFlow) {
        if !t.queued {
            t.queued = true;
            self.0.push_back(id);
        }
    }

    pub(crate) fn pop(&mut self) -> Option<FlowId> {
        self.0.pop_front()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
