//! Keeping one network's forwarding table in step between datapath workers.
//!
//! A network spread over several workers (`-o spread`) has one *owner*
//! worker, whose [`Bridge`](crate::bridge::Bridge) learns, floods, runs the
//! gateway and every other port, and *replicas* on the other workers, which
//! read and write their own queues of the network's multi-queue TAPs. A
//! replica forwards a frame itself only when the owner would send it to
//! exactly one port the replica has (known unicast between two of them);
//! anything else — a source the owner has not learned on that port, a
//! broadcast, an unknown or remote destination — goes to the owner
//! unchanged, which decides it as if it had read it. So the replica never
//! learns on its own: its table is the owner's, sent as the changes the
//! owner records ([`ChangeLog`]) after each of its wake-ups.
//!
//! This is owner-worker learning (the second option) rather than a
//! table shared under a lock: the per-frame path of every worker reads only
//! its own memory, and a change costs one message per replica. Changes are
//! rare next to frames (a MAC is learned once, then refreshed in place).
//!
//! A replica's entries never expire on their own (the owner's aging
//! removes them, as a change): a station that talks only through the owner
//! for a while keeps its entry on the replicas.

use crate::fdb::Fdb;
use crate::port::PortId;
use crate::wire::MacAddr;

/// Frames from replicas an owner worker holds at most, handed over and not
/// yet read into one of its batches: a replica drops more (`owner_busy`).
/// Each is a copy of up to 64 KiB, so this bounds them to 16 MiB per owner.
pub const MAX_HANDED_OVER: usize = 256;

/// Changes a [`ChangeLog`] keeps before it gives up listing them and asks
/// for the whole table instead (a MAC flood learns thousands per batch).
const MAX_LOGGED: usize = 4096;

/// One change of the owner's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdbChange {
    /// `mac` now lives on this port (learned, moved, or a static entry).
    Set(MacAddr, PortId),
    /// `mac` is no longer in the table.
    Remove(MacAddr),
}

/// What a replica applies to come level with the owner's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FdbChanges {
    /// These changes, in order.
    Changes(Vec<FdbChange>),
    /// The whole table: everything else is gone.
    Reset(Vec<(MacAddr, PortId)>),
}

/// The owner's record of its table's changes since replicas were last
/// sent them.
#[derive(Debug, Default)]
pub(crate) struct ChangeLog {
    changes: Vec<FdbChange>,
    /// Too many changes, or one that was not listed (a flush): the next
    /// update is the whole table.
    reset: bool,
}

impl ChangeLog {
    /// A log whose first update is the whole table (a replica that joins
    /// late starts from it).
    pub(crate) fn starting_with_reset() -> ChangeLog {
        ChangeLog { changes: Vec::new(), reset: true }
    }

    /// Records one change.
    #[inline]
    pub(crate) fn record(&mut self, change: FdbChange) {
        if self.reset {
            return;
        }
        if self.changes.len() >= MAX_LOGGED {
            self.reset();
        } else {
            self.changes.push(change);
        }
    }

    /// Records that the table changed in a way not listed change by change.
    pub(crate) fn reset(&mut self) {
        self.reset = true;
        self.changes = Vec::new();
    }

    /// Whether anything changed since the last [`ChangeLog::take`].
    pub(crate) fn is_empty(&self) -> bool {
        !self.reset && self.changes.is_empty()
    }

    /// The update for the replicas (`fdb` is the owner's table now), and
    /// an empty log.
    pub(crate) fn take(&mut self, fdb: &Fdb) -> Option<FdbChanges> {
        if self.reset {
            self.reset = false;
            self.changes = Vec::new();
            return Some(FdbChanges::Reset(fdb.iter().map(|(mac, e)| (mac, e.port)).collect()));
        }
        (!self.changes.is_empty()).then(|| FdbChanges::Changes(std::mem::take(&mut self.changes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    fn mac(n: u8) -> MacAddr {
        MacAddr([0x02, 0, 0, 0, 0, n])
    }

    #[test]
    fn changes_come_in_order_then_the_log_is_empty() {
        let fdb = Fdb::new(16);
        let mut log = ChangeLog::default();
        assert!(log.is_empty());
        assert_eq!(log.take(&fdb), None);
        log.record(FdbChange::Set(mac(1), PortId(3)));
        log.record(FdbChange::Remove(mac(1)));
        assert!(!log.is_empty());
        let expected = vec![FdbChange::Set(mac(1), PortId(3)), FdbChange::Remove(mac(1))];
        assert_eq!(log.take(&fdb), Some(FdbChanges::Changes(expected)));
        assert!(log.is_empty());
        assert_eq!(log.take(&fdb), None);
    }

    #[test]
    fn too_many_changes_or_a_flush_send_the_whole_table() {
        let mut fdb = Fdb::new(16);
        fdb.learn(mac(7), PortId(6), Timestamp(1), true);
        let mut log = ChangeLog::default();
        for n in 0..=MAX_LOGGED {
            log.record(FdbChange::Remove(mac(n as u8)));
        }
        assert_eq!(log.take(&fdb), Some(FdbChanges::Reset(vec![(mac(7), PortId(6))])));
        assert!(log.is_empty());
        log.record(FdbChange::Set(mac(1), PortId(3)));
        log.reset();
        log.record(FdbChange::Set(mac(2), PortId(3)));
        assert_eq!(log.take(&fdb), Some(FdbChanges::Reset(vec![(mac(7), PortId(6))])));
        assert!(ChangeLog::starting_with_reset().take(&Fdb::new(8)) == Some(FdbChanges::Reset(Vec::new())));
    }
}
