//! The forwarding database of one network (bridge domain): MAC → port, with
//! learning, aging, static entries and a hard size limit.
//!
//! The table is allocated once with room for twice its limit, so inserts never
//! grow it: hashbrown only rehashes in place while it is at most half full,
//! which keeps memory bounded and the hot path free of allocation whatever
//! source addresses arrive. The hasher is randomly keyed (foldhash), so
//! crafted MACs cannot aim at one bucket chain.

use std::time::Duration;

use hashbrown::HashMap;

use crate::port::PortId;
use crate::time::Timestamp;
use crate::wire::MacAddr;

/// Default per-network limit on FDB entries.
pub const DEFAULT_FDB_LIMIT: usize = 8192;

/// One forwarding entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdbEntry {
    /// The port the MAC was learned on (or configured to).
    pub port: PortId,
    /// When a frame from this MAC was last seen (static: when added).
    pub last_seen: Timestamp,
    /// Static entries never age and learning never overwrites them.
    pub is_static: bool,
}

/// What learning a source address did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// Already known on this port; its age was reset.
    Refreshed,
    /// A new entry was created.
    New,
    /// The MAC moved here from another port.
    Moved {
        /// The port it was on before.
        from: PortId,
    },
    /// The MAC moved here but this port is at its limit: the old entry was
    /// removed (frames to it flood) and nothing was learned.
    MoveRefused {
        /// The port it was on before.
        from: PortId,
    },
    /// A static entry holds this MAC on another port; it was not changed.
    StaticConflict,
    /// New MAC, but the network's table is full.
    TableFull,
    /// New MAC, but the port's learning limit is reached.
    PortLimit,
}

/// Errors from FDB configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FdbError {
    /// The table already holds its limit of entries.
    #[error("forwarding table is full ({limit} entries)")]
    Full {
        /// The table's limit.
        limit: usize,
    },
    /// Group addresses cannot be stations.
    #[error("{0} is not an individual station address")]
    NotStation(MacAddr),
}

/// The forwarding database of one network.
#[derive(Debug)]
pub struct Fdb {
    table: HashMap<u64, FdbEntry, foldhash::fast::RandomState>,
    limit: usize,
}

impl Fdb {
    /// An empty table holding at most `limit` entries, allocated up front.
    pub fn new(limit: usize) -> Fdb {
        let capacity = limit.max(8).saturating_mul(2);
        Fdb { table: HashMap::with_capacity_and_hasher(capacity, Default::default()), limit }
    }

    /// The maximum number of entries.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Number of entries (learned and static).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when the table holds no entry.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Learns that `mac` was seen on `port` at `now`. `port_has_room` says
    /// whether `port` may gain an entry (its per-port limit).
    #[inline]
    pub fn learn(&mut self, mac: MacAddr, port: PortId, now: Timestamp, port_has_room: bool) -> Learned {
        let key = mac.to_u64();
        if let Some(entry) = self.table.get_mut(&key) {
            if entry.port == port {
                if !entry.is_static {
                    entry.last_seen = now;
                }
                return Learned::Refreshed;
            }
            if entry.is_static {
                return Learned::StaticConflict;
            }
            let from = entry.port;
            if port_has_room {
                entry.port = port;
                entry.last_seen = now;
                return Learned::Moved { from };
            }
            self.table.remove(&key);
            return Learned::MoveRefused { from };
        }
        if self.table.len() >= self.limit {
            return Learned::TableFull;
        }
        if !port_has_room {
            return Learned::PortLimit;
        }
        self.table.insert(key, FdbEntry { port, last_seen: now, is_static: false });
        Learned::New
    }

    /// The port `mac` lives on, unless unknown or (learned and) older than `aging`.
    #[inline]
    pub fn lookup(&self, mac: MacAddr, now: Timestamp, aging: Duration) -> Option<PortId> {
        let entry = self.table.get(&mac.to_u64())?;
        (entry.is_static || !is_expired(entry, now, aging)).then_some(entry.port)
    }

    /// The entry for `mac`, expired or not.
    pub fn get(&self, mac: MacAddr) -> Option<&FdbEntry> {
        self.table.get(&mac.to_u64())
    }

    /// Adds or replaces a static entry; returns the entry it replaced.
    pub fn insert_static(&mut self, mac: MacAddr, port: PortId, now: Timestamp) -> Result<Option<FdbEntry>, FdbError> {
        if !mac.is_valid_station() {
            return Err(FdbError::NotStation(mac));
        }
        let key = mac.to_u64();
        if !self.table.contains_key(&key) && self.table.len() >= self.limit {
            return Err(FdbError::Full { limit: self.limit });
        }
        Ok(self.table.insert(key, FdbEntry { port, last_seen: now, is_static: true }))
    }

    /// Removes the entry for `mac`, whatever its kind.
    pub fn remove(&mut self, mac: MacAddr) -> Option<FdbEntry> {
        self.table.remove(&mac.to_u64())
    }

    /// Removes every learned entry whose age has reached `aging`; calls
    /// `removed` with the MAC and the entry of each.
    pub fn age(&mut self, now: Timestamp, aging: Duration, mut removed: impl FnMut(MacAddr, &FdbEntry)) {
        self.table.retain(|&key, entry| {
            let keep = entry.is_static || !is_expired(entry, now, aging);
            if !keep {
                removed(MacAddr::from_u64(key), entry);
            }
            keep
        });
    }

    /// Removes the entries of `port` (learned only, or static too); calls
    /// `removed` for each.
    pub fn flush_port(&mut self, port: PortId, include_static: bool, mut removed: impl FnMut(&FdbEntry)) {
        self.table.retain(|_, entry| {
            let keep = entry.port != port || (entry.is_static && !include_static);
            if !keep {
                removed(entry);
            }
            keep
        });
    }

    /// Removes every learned entry (and static ones too if asked); calls
    /// `removed` for each.
    pub fn flush(&mut self, include_static: bool, mut removed: impl FnMut(&FdbEntry)) {
        self.table.retain(|_, entry| {
            let keep = entry.is_static && !include_static;
            if !keep {
                removed(entry);
            }
            keep
        });
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (MacAddr, &FdbEntry)> {
        self.table.iter().map(|(&k, e)| (MacAddr::from_u64(k), e))
    }
}

/// An entry's age has reached the aging time (as Linux: `updated + hold <= now`).
#[inline]
fn is_expired(entry: &FdbEntry, now: Timestamp, aging: Duration) -> bool {
    now.millis_since(entry.last_seen) >= aging.as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb]);
    const P1: PortId = PortId(1);
    const P2: PortId = PortId(2);
    const AGING: Duration = Duration::from_secs(300);

    #[test]
    fn learns_refreshes_and_moves() {
        let mut fdb = Fdb::new(16);
        assert_eq!(fdb.learn(A, P1, Timestamp(0), true), Learned::New);
        assert_eq!(fdb.learn(A, P1, Timestamp(10), true), Learned::Refreshed);
        assert_eq!(fdb.get(A).unwrap().last_seen, Timestamp(10));
        assert_eq!(fdb.learn(A, P2, Timestamp(20), true), Learned::Moved { from: P1 });
        assert_eq!(fdb.lookup(A, Timestamp(20), AGING), Some(P2));
        assert_eq!(fdb.learn(A, P1, Timestamp(30), false), Learned::MoveRefused { from: P2 });
        assert_eq!(fdb.lookup(A, Timestamp(30), AGING), None);
    }

    #[test]
    fn enforces_limits() {
        let mut fdb = Fdb::new(1);
        assert_eq!(fdb.learn(A, P1, Timestamp(0), true), Learned::New);
        assert_eq!(fdb.learn(B, P1, Timestamp(0), true), Learned::TableFull);
        assert_eq!(fdb.len(), 1);
        let mut fdb = Fdb::new(4);
        assert_eq!(fdb.learn(A, P1, Timestamp(0), false), Learned::PortLimit);
        assert!(fdb.is_empty());
        assert_eq!(fdb.insert_static(A, P1, Timestamp(0)), Ok(None));
        assert!(fdb.insert_static(MacAddr::BROADCAST, P1, Timestamp(0)).is_err());
    }

    #[test]
    fn static_entries_never_age_and_are_not_overwritten() {
        let mut fdb = Fdb::new(4);
        fdb.insert_static(A, P1, Timestamp(0)).unwrap();
        assert_eq!(fdb.learn(A, P2, Timestamp(5), true), Learned::StaticConflict);
        let mut removed = 0;
        fdb.age(Timestamp(u64::MAX / 2), AGING, |_, _| removed += 1);
        assert_eq!(removed, 0);
        assert_eq!(fdb.lookup(A, Timestamp(u64::MAX / 2), AGING), Some(P1));
        fdb.flush(false, |_| removed += 1);
        assert_eq!((removed, fdb.len()), (0, 1));
        fdb.flush_port(P1, true, |_| removed += 1);
        assert_eq!((removed, fdb.len()), (1, 0));
    }

    #[test]
    fn aging_removes_exactly_old_entries() {
        let mut fdb = Fdb::new(4);
        fdb.learn(A, P1, Timestamp(0), true);
        fdb.learn(B, P2, Timestamp(1000), true);
        let aging = Duration::from_secs(10);
        assert_eq!(fdb.lookup(A, Timestamp(9_999), aging), Some(P1));
        assert_eq!(fdb.lookup(A, Timestamp(10_000), aging), None, "expired entries are not used");
        let mut removed = vec![];
        fdb.age(Timestamp(10_000), aging, |mac, e| removed.push((mac, e.port)));
        assert_eq!(removed, vec![(A, P1)]);
        assert_eq!(fdb.lookup(B, Timestamp(10_000), aging), Some(P2));
    }
}
