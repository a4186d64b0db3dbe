//! The forwarding database of one network (bridge domain): MAC → port, with
//! learning, aging, static entries and a hard size limit.
//!
//! # The table
//!
//! A small open-addressing hash table of its own rather than `hashbrown`,
//! because the forwarding decision prefetches a batch's buckets before it
//! decides (see [`crate::bridge::Bridge::forward_batch`]) and for that it must
//! know *where* a MAC's entry lives from its hash alone. hashbrown keeps its
//! control bytes and its entries in two places (two cache misses per
//! lookup) and no longer exposes the raw bucket API that would let a caller
//! prefetch either. Here a bucket is exactly one 64-byte cache line holding
//! three entries (keys, timestamps and ports side by side), so one prefetch
//! brings in everything a learn or a lookup reads.
//!
//! Collisions probe the next buckets linearly. Each bucket counts the
//! entries that wanted to live in an earlier bucket but were placed past it
//! (F14's overflow counts), so a lookup of an absent MAC stops at the first
//! bucket whose count is zero and removal needs no tombstones: it clears the
//! slot and decrements the counts along the probe path. Entries never move.
//!
//! The table is allocated once with at least twice as many slots as its
//! limit (and a power of two of buckets), so inserts never grow it: memory is
//! bounded and the hot path is free of allocation whatever source addresses
//! arrive, and at most half the slots are ever used, which keeps probe
//! sequences short (most lookups read one line). A table of 2 MiB or more
//! (a limit above 24,576 MACs) lives in transparent huge pages
//! ([`HugeTable`]): a random lookup then misses the cache but not the TLB.
//!
//! The hash is foldhash's (one folded 64×64→128-bit multiply for a MAC held
//! in a `u64`, far cheaper than SipHash) with a random seed per table:
//! sandboxes choose their source MACs freely, and a fixed hash would let one
//! pick MACs that all land in one probe sequence (hash flooding).

use std::hash::BuildHasher;
use std::time::Duration;

use crate::port::PortId;
use crate::sys::mem::{HugeTable, prefetch};
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

/// A MAC's hash under one table's seed: computed once per frame by
/// [`Fdb::hash`], used to [`Fdb::prefetch`] the MAC's bucket and then to
/// learn or look it up without hashing again. Only meaningful for the table
/// that computed it (another table has another seed: a foreign hash makes
/// lookups miss and learning misplace, never anything unsafe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacHash(u64);

/// Entries per bucket: three (key, timestamp, port) triples and the
/// overflow count fill one 64-byte cache line.
const SLOTS: usize = 3;
/// Set in the key of every used slot (a zero key is a free slot).
const USED: u64 = 1 << 63;
/// Set in the key of a static entry.
const STATIC: u64 = 1 << 62;
/// The MAC's 48 bits in a key.
const MAC_BITS: u64 = (1 << 48) - 1;

/// One cache line of the table.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
struct Bucket {
    /// `USED | [STATIC |] mac`, or 0 when the slot is free.
    keys: [u64; SLOTS],
    /// `FdbEntry::last_seen` of each slot.
    seen: [u64; SLOTS],
    /// `FdbEntry::port` of each slot.
    ports: [u32; SLOTS],
    /// Entries whose home bucket comes before this one and that probed past
    /// it: a lookup that misses here may stop when this is zero.
    overflow: u32,
}

const _: () = assert!(std::mem::size_of::<Bucket>() == 64);

/// Where an entry lives: (bucket, slot).
type Place = (usize, usize);

/// The forwarding database of one network.
#[derive(Debug)]
pub struct Fdb {
    buckets: HugeTable<Bucket>,
    /// `buckets.len() - 1` (a power of two minus one).
    mask: usize,
    len: usize,
    limit: usize,
    hasher: foldhash::fast::RandomState,
}

impl Fdb {
    /// An empty table holding at most `limit` entries, allocated up front.
    pub fn new(limit: usize) -> Fdb {
        let slots = limit.max(8).saturating_mul(2);
        let buckets = slots.div_ceil(SLOTS).checked_next_power_of_two().expect("FDB limit too large");
        Fdb {
            buckets: HugeTable::new(buckets),
            mask: buckets - 1,
            len: 0,
            limit,
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// The maximum number of entries.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Number of entries (learned and static).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the table holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `mac`'s hash in this table, for [`Fdb::prefetch`],
    /// [`Fdb::learn_hashed`] and [`Fdb::lookup_hashed`].
    #[inline]
    pub fn hash(&self, mac: MacAddr) -> MacHash {
        MacHash(self.hasher.hash_one(mac.to_u64()))
    }

    /// Starts loading the bucket where the MAC with `hash` lives (or would
    /// live) into the CPU cache, so a learn or lookup of it a little later
    /// does not wait on memory. A hint: it changes nothing.
    #[inline]
    pub fn prefetch(&self, hash: MacHash) {
        prefetch(&self.buckets[self.home(hash)]);
    }

    /// Learns that `mac` was seen on `port` at `now`. `port_has_room` says
    /// whether `port` may gain an entry (its per-port limit).
    #[inline]
    pub fn learn(&mut self, mac: MacAddr, port: PortId, now: Timestamp, port_has_room: bool) -> Learned {
        self.learn_hashed(mac, self.hash(mac), port, now, port_has_room)
    }

    /// [`Fdb::learn`] with `mac`'s hash already computed by [`Fdb::hash`].
    #[inline(always)]
    pub fn learn_hashed(
        &mut self,
        mac: MacAddr,
        hash: MacHash,
        port: PortId,
        now: Timestamp,
        port_has_room: bool,
    ) -> Learned {
        let key = mac.to_u64();
        if let Some((b, s)) = self.find(key, hash) {
            let bucket = &mut self.buckets[b];
            let is_static = bucket.keys[s] & STATIC != 0;
            if bucket.ports[s] == port.0 {
                if !is_static {
                    bucket.seen[s] = now.0;
                }
                return Learned::Refreshed;
            }
            if is_static {
                return Learned::StaticConflict;
            }
            let from = PortId(bucket.ports[s]);
            if port_has_room {
                bucket.ports[s] = port.0;
                bucket.seen[s] = now.0;
                return Learned::Moved { from };
            }
            self.remove_at((b, s));
            return Learned::MoveRefused { from };
        }
        if self.len >= self.limit {
            return Learned::TableFull;
        }
        if !port_has_room {
            return Learned::PortLimit;
        }
        self.insert_new(key, hash, FdbEntry { port, last_seen: now, is_static: false });
        Learned::New
    }

    /// The port `mac` lives on, unless unknown or (learned and) older than `aging`.
    #[inline]
    pub fn lookup(&self, mac: MacAddr, now: Timestamp, aging: Duration) -> Option<PortId> {
        self.lookup_hashed(mac, self.hash(mac), now, aging)
    }

    /// [`Fdb::lookup`] with `mac`'s hash already computed by [`Fdb::hash`].
    #[inline(always)]
    pub fn lookup_hashed(&self, mac: MacAddr, hash: MacHash, now: Timestamp, aging: Duration) -> Option<PortId> {
        let entry = self.entry_at(self.find(mac.to_u64(), hash)?);
        (entry.is_static || !is_expired(&entry, now, aging)).then_some(entry.port)
    }

    /// Marks `mac`, learned on `port`, as seen at `now` (what another
    /// worker's copy of the table saw); false, changing nothing, when it is
    /// not learned there (unknown, static, or on another port).
    pub fn refresh(&mut self, mac: MacAddr, port: PortId, now: Timestamp) -> bool {
        let Some((b, s)) = self.find(mac.to_u64(), self.hash(mac)) else { return false };
        let bucket = &mut self.buckets[b];
        if bucket.keys[s] & STATIC != 0 || bucket.ports[s] != port.0 {
            return false;
        }
        bucket.seen[s] = bucket.seen[s].max(now.0);
        true
    }

    /// The entry for `mac`, expired or not.
    pub fn get(&self, mac: MacAddr) -> Option<FdbEntry> {
        Some(self.entry_at(self.find(mac.to_u64(), self.hash(mac))?))
    }

    /// Adds or replaces a static entry; returns the entry it replaced.
    pub fn insert_static(&mut self, mac: MacAddr, port: PortId, now: Timestamp) -> Result<Option<FdbEntry>, FdbError> {
        if !mac.is_valid_station() {
            return Err(FdbError::NotStation(mac));
        }
        let (key, hash) = (mac.to_u64(), self.hash(mac));
        let entry = FdbEntry { port, last_seen: now, is_static: true };
        if let Some(place) = self.find(key, hash) {
            let old = self.entry_at(place);
            self.set(place, key, entry);
            return Ok(Some(old));
        }
        if self.len >= self.limit {
            return Err(FdbError::Full { limit: self.limit });
        }
        self.insert_new(key, hash, entry);
        Ok(None)
    }

    /// Removes the entry for `mac`, whatever its kind.
    pub fn remove(&mut self, mac: MacAddr) -> Option<FdbEntry> {
        let place = self.find(mac.to_u64(), self.hash(mac))?;
        Some(self.remove_at(place))
    }

    /// Removes every learned entry whose age has reached `aging`; calls
    /// `removed` with the MAC and the entry of each.
    pub fn age(&mut self, now: Timestamp, aging: Duration, mut removed: impl FnMut(MacAddr, &FdbEntry)) {
        self.retain(|mac, entry| {
            let keep = entry.is_static || !is_expired(entry, now, aging);
            if !keep {
                removed(mac, entry);
            }
            keep
        });
    }

    /// Removes the entries of `port` (learned only, or static too); calls
    /// `removed` for each.
    pub fn flush_port(&mut self, port: PortId, include_static: bool, mut removed: impl FnMut(&FdbEntry)) {
        self.retain(|_, entry| {
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
        self.retain(|_, entry| {
            let keep = entry.is_static && !include_static;
            if !keep {
                removed(entry);
            }
            keep
        });
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (MacAddr, FdbEntry)> + '_ {
        self.buckets.iter().enumerate().flat_map(move |(b, bucket)| {
            (0..SLOTS)
                .filter(move |&s| bucket.keys[s] != 0)
                .map(move |s| (MacAddr::from_u64(bucket.keys[s] & MAC_BITS), self.entry_at((b, s))))
        })
    }

    /// The bucket where `hash`'s probe sequence starts.
    #[inline]
    fn home(&self, hash: MacHash) -> usize {
        hash.0 as usize & self.mask
    }

    /// Where the entry for the MAC `key` (with `hash`) lives, if anywhere.
    #[inline(always)]
    fn find(&self, key: u64, hash: MacHash) -> Option<Place> {
        let want = key | USED;
        let mut b = self.home(hash);
        // At most every bucket once (an overflow count of zero ends the
        // search long before, as at most half the slots are used).
        for _ in 0..=self.mask {
            let bucket = &self.buckets[b];
            // Compare all three slots without branching on each (which
            // slot holds a MAC is random, so per-slot branches mispredict).
            let matches = (0..SLOTS).fold(0u32, |m, s| m | (u32::from(bucket.keys[s] & !STATIC == want) << s));
            if matches != 0 {
                return Some((b, matches.trailing_zeros() as usize));
            }
            if bucket.overflow == 0 {
                return None;
            }
            b = (b + 1) & self.mask;
        }
        None
    }

    /// Stores `entry` for the absent MAC `key` in the first free slot of its
    /// probe sequence. The caller has checked the limit, so there is one.
    fn insert_new(&mut self, key: u64, hash: MacHash, entry: FdbEntry) {
        debug_assert!(self.len < self.limit);
        let mut b = self.home(hash);
        loop {
            let bucket = &mut self.buckets[b];
            if let Some(s) = bucket.keys.iter().position(|&k| k == 0) {
                self.set((b, s), key, entry);
                self.len += 1;
                return;
            }
            bucket.overflow += 1;
            b = (b + 1) & self.mask;
        }
    }

    /// Writes `entry` for the MAC `key` at `place`.
    #[inline]
    fn set(&mut self, (b, s): Place, key: u64, entry: FdbEntry) {
        let bucket = &mut self.buckets[b];
        bucket.keys[s] = key | USED | if entry.is_static { STATIC } else { 0 };
        bucket.seen[s] = entry.last_seen.0;
        bucket.ports[s] = entry.port.0;
    }

    /// The entry at a used `place`.
    #[inline]
    fn entry_at(&self, (b, s): Place) -> FdbEntry {
        let bucket = &self.buckets[b];
        FdbEntry {
            port: PortId(bucket.ports[s]),
            last_seen: Timestamp(bucket.seen[s]),
            is_static: bucket.keys[s] & STATIC != 0,
        }
    }

    /// Frees a used `place` and undoes the overflow counts its entry added
    /// on the way from its home bucket.
    fn remove_at(&mut self, (b, s): Place) -> FdbEntry {
        let entry = self.entry_at((b, s));
        let mac = MacAddr::from_u64(self.buckets[b].keys[s] & MAC_BITS);
        let mut at = self.home(self.hash(mac));
        while at != b {
            self.buckets[at].overflow -= 1;
            at = (at + 1) & self.mask;
        }
        self.buckets[b].keys[s] = 0;
        self.len -= 1;
        entry
    }

    /// Keeps the entries for which `keep` says true. Removing never moves
    /// another entry, so one pass over the buckets sees every entry once.
    fn retain(&mut self, mut keep: impl FnMut(MacAddr, &FdbEntry) -> bool) {
        for b in 0..self.buckets.len() {
            for s in 0..SLOTS {
                let key = self.buckets[b].keys[s];
                if key == 0 {
                    continue;
                }
                let entry = self.entry_at((b, s));
                if !keep(MacAddr::from_u64(key & MAC_BITS), &entry) {
                    self.remove_at((b, s));
                }
            }
        }
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

/// The table itself: growth to the limit, removal, overflow bookkeeping, and
/// every operation against a `HashMap` model.
#[cfg(test)]
mod table_tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    const AGING: Duration = Duration::from_secs(10);

    fn mac(i: u32) -> MacAddr {
        let b = i.to_be_bytes();
        MacAddr([0x02, 0x42, b[0], b[1], b[2], b[3]])
    }

    fn overflow_total(fdb: &Fdb) -> u64 {
        fdb.buckets.iter().map(|b| u64::from(b.overflow)).sum()
    }

    /// Every bucket's overflow count is the number of entries that passed it
    /// on the way from their home bucket, and `len` counts the used slots.
    fn check_bookkeeping(fdb: &Fdb) {
        let mut want = vec![0u32; fdb.buckets.len()];
        let mut used = 0;
        for (b, bucket) in fdb.buckets.iter().enumerate() {
            for s in 0..SLOTS {
                if bucket.keys[s] == 0 {
                    continue;
                }
                used += 1;
                let mut at = fdb.home(fdb.hash(MacAddr::from_u64(bucket.keys[s] & MAC_BITS)));
                while at != b {
                    want[at] += 1;
                    at = (at + 1) & fdb.mask;
                }
            }
        }
        let got: Vec<u32> = fdb.buckets.iter().map(|b| b.overflow).collect();
        assert_eq!(got, want, "overflow counts");
        assert_eq!(fdb.len(), used, "len");
    }

    #[test]
    fn fills_to_its_limit_and_empties_back_to_a_clean_table() {
        let limit = 10_000;
        let mut fdb = Fdb::new(limit);
        for i in 0..limit as u32 {
            assert_eq!(fdb.learn(mac(i), PortId(i % 7), Timestamp(0), true), Learned::New);
        }
        assert_eq!(fdb.learn(mac(limit as u32), PortId(0), Timestamp(0), true), Learned::TableFull);
        assert_eq!(fdb.len(), limit);
        assert!(overflow_total(&fdb) > 0, "at half load some entries overflow their home bucket");
        for i in 0..limit as u32 {
            assert_eq!(fdb.lookup(mac(i), Timestamp(1), AGING), Some(PortId(i % 7)), "entry {i}");
        }
        assert_eq!(fdb.lookup(mac(limit as u32 + 1), Timestamp(1), AGING), None);
        // Remove every other entry; the rest stay reachable past the holes.
        for i in (0..limit as u32).step_by(2) {
            assert_eq!(fdb.remove(mac(i)).map(|e| e.port), Some(PortId(i % 7)));
        }
        assert_eq!(fdb.len(), limit / 2);
        check_bookkeeping(&fdb);
        for i in 0..limit as u32 {
            let want = (i % 2 == 1).then_some(PortId(i % 7));
            assert_eq!(fdb.lookup(mac(i), Timestamp(1), AGING), want, "entry {i}");
        }
        // Refill the holes with other MACs, then flush everything.
        for i in 0..(limit / 2) as u32 {
            assert_eq!(fdb.learn(mac(1_000_000 + i), PortId(1), Timestamp(2), true), Learned::New);
        }
        assert_eq!(fdb.iter().count(), limit);
        check_bookkeeping(&fdb);
        let mut flushed = 0;
        fdb.flush(true, |_| flushed += 1);
        assert_eq!((flushed, fdb.len(), overflow_total(&fdb)), (limit, 0, 0));
        assert_eq!(fdb.iter().count(), 0);
    }

    #[test]
    fn each_table_has_its_own_hash_seed() {
        let (a, b) = (Fdb::new(16), Fdb::new(16));
        let differ = (0..64).filter(|&i| a.hash(mac(i)) != b.hash(mac(i))).count();
        assert_eq!(differ, 64, "two tables hash the same MACs differently");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Learn { mac: u32, port: u32, room: bool },
        Static { mac: u32, port: u32 },
        Remove { mac: u32 },
        Age,
        FlushPort { port: u32, include_static: bool },
        Flush { include_static: bool },
        Tick { ms: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few MACs and ports, so learning refreshes, moves and conflicts often.
        let mac = 0u32..48;
        let port = 0u32..4;
        prop_oneof![
            8 => (mac.clone(), port.clone(), proptest::bool::weighted(0.9))
                .prop_map(|(mac, port, room)| Op::Learn { mac, port, room }),
            1 => (mac.clone(), port.clone()).prop_map(|(mac, port)| Op::Static { mac, port }),
            2 => mac.prop_map(|mac| Op::Remove { mac }),
            1 => Just(Op::Age),
            1 => (port, any::<bool>()).prop_map(|(port, include_static)| Op::FlushPort { port, include_static }),
            1 => any::<bool>().prop_map(|include_static| Op::Flush { include_static }),
            2 => (0u64..6_000).prop_map(|ms| Op::Tick { ms }),
        ]
    }

    /// The behaviour the FDB had as a `HashMap` (the specification).
    fn model_learn(
        m: &mut HashMap<MacAddr, FdbEntry>,
        limit: usize,
        mac: MacAddr,
        port: PortId,
        now: Timestamp,
        room: bool,
    ) -> Learned {
        if let Some(e) = m.get_mut(&mac) {
            if e.port == port {
                if !e.is_static {
                    e.last_seen = now;
                }
                return Learned::Refreshed;
            }
            if e.is_static {
                return Learned::StaticConflict;
            }
            let from = e.port;
            if room {
                *e = FdbEntry { port, last_seen: now, is_static: false };
                return Learned::Moved { from };
            }
            m.remove(&mac);
            return Learned::MoveRefused { from };
        }
        if m.len() >= limit {
            return Learned::TableFull;
        }
        if !room {
            return Learned::PortLimit;
        }
        m.insert(mac, FdbEntry { port, last_seen: now, is_static: false });
        Learned::New
    }

    fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
        v.sort();
        v
    }

    proptest! {
        #[test]
        fn behaves_like_a_hash_map(limit in 1usize..40, ops in proptest::collection::vec(op(), 1..300)) {
            let mut fdb = Fdb::new(limit);
            let mut model: HashMap<MacAddr, FdbEntry> = HashMap::new();
            let mut now = Timestamp(0);
            for op in ops {
                match op {
                    Op::Learn { mac: i, port, room } => {
                        let got = fdb.learn(mac(i), PortId(port), now, room);
                        prop_assert_eq!(got, model_learn(&mut model, limit, mac(i), PortId(port), now, room));
                    }
                    Op::Static { mac: i, port } => {
                        let got = fdb.insert_static(mac(i), PortId(port), now);
                        let want = if !model.contains_key(&mac(i)) && model.len() >= limit {
                            Err(FdbError::Full { limit })
                        } else {
                            Ok(model.insert(mac(i), FdbEntry { port: PortId(port), last_seen: now, is_static: true }))
                        };
                        prop_assert_eq!(got, want);
                    }
                    Op::Remove { mac: i } => prop_assert_eq!(fdb.remove(mac(i)), model.remove(&mac(i))),
                    Op::Age => {
                        let mut removed = vec![];
                        fdb.age(now, AGING, |m, e| removed.push((m.to_u64(), e.port)));
                        let mut want = vec![];
                        model.retain(|m, e| {
                            let keep = e.is_static || !is_expired(e, now, AGING);
                            if !keep {
                                want.push((m.to_u64(), e.port));
                            }
                            keep
                        });
                        prop_assert_eq!(sorted(removed), sorted(want));
                    }
                    Op::FlushPort { port, include_static } => {
                        let mut removed = 0;
                        fdb.flush_port(PortId(port), include_static, |_| removed += 1);
                        let before = model.len();
                        model.retain(|_, e| e.port != PortId(port) || (e.is_static && !include_static));
                        prop_assert_eq!(removed, before - model.len());
                    }
                    Op::Flush { include_static } => {
                        let mut removed = 0;
                        fdb.flush(include_static, |_| removed += 1);
                        let before = model.len();
                        model.retain(|_, e| e.is_static && !include_static);
                        prop_assert_eq!(removed, before - model.len());
                    }
                    Op::Tick { ms } => now = Timestamp(now.0 + ms),
                }
                prop_assert_eq!(fdb.len(), model.len());
                check_bookkeeping(&fdb);
                for i in 0..48 {
                    prop_assert_eq!(fdb.get(mac(i)), model.get(&mac(i)).copied());
                    let want = model.get(&mac(i)).filter(|e| e.is_static || !is_expired(e, now, AGING)).map(|e| e.port);
                    prop_assert_eq!(fdb.lookup(mac(i), now, AGING), want);
                }
                let all = sorted(fdb.iter().map(|(m, e)| (m.to_u64(), e.port.0, e.last_seen.0, e.is_static)).collect());
                let want = sorted(model.iter().map(|(m, e)| (m.to_u64(), e.port.0, e.last_seen.0, e.is_static)).collect());
                prop_assert_eq!(all, want);
            }
            if fdb.is_empty() {
                prop_assert_eq!(overflow_total(&fdb), 0);
            }
        }
    }
}
