//! The VTEP peer table of one switch.
//!
//! Maps (VNI, remote VTEP socket address) to a caller-chosen `u32` handle
//! (the daemon uses its tunnel port id) and back. Peers are either static
//! (configured, never age) or learned (created when a valid packet arrives
//! from an unknown VTEP, refreshed by its traffic, removed by [`PeerTable::age`]
//! once silent for the configured time). Time is a millisecond timestamp the
//! caller passes in; the table never reads a clock.
//!
//! Per packet: [`PeerTable::on_packet`] (receive) and [`PeerTable::peer_of`]
//! (send to one port) are single hash lookups; [`PeerTable::peers`] (flood
//! to every VTEP of a VNI, head-end replication) returns a slice kept up to
//! date on add and remove, so nothing allocates per packet.

use std::net::SocketAddr;

use foldhash::fast::RandomState;
use hashbrown::HashMap;
use hashbrown::hash_map::Entry as MapEntry;

use crate::Vni;

/// Limits of a [`PeerTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerTableConfig {
    /// Most learned peers the table holds (static peers do not count); once
    /// full, new ones are refused and counted in [`PeerTable::refused`].
    pub max_learned: usize,
    /// Milliseconds a learned peer lives after its last packet; 0 means
    /// learned peers never age (like Linux's `ageing 0`).
    pub learned_ttl_ms: u64,
}

impl Default for PeerTableConfig {
    /// 1024 learned peers, aged after 300 s (the Linux vxlan default ageing).
    fn default() -> Self {
        PeerTableConfig { max_learned: 1024, learned_ttl_ms: 300_000 }
    }
}

/// How a peer got into the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerKind {
    /// Configured by the operator; never ages.
    Static,
    /// Learned from received traffic; ages out.
    Learned,
}

/// One remote VTEP of a VNI, as listed by [`PeerTable::peers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The remote VTEP's UDP socket address.
    pub addr: SocketAddr,
    /// The caller's handle for this (VNI, peer).
    pub handle: u32,
    /// Static or learned.
    pub kind: PeerKind,
}

/// A learned peer removed by [`PeerTable::age`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AgedPeer {
    /// The VNI it served.
    pub vni: Vni,
    /// Its socket address.
    pub addr: SocketAddr,
    /// Its handle, now free.
    pub handle: u32,
}

/// Why a peer could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// Peer {addr} of VNI {vni} already exists with handle {handle}.
    #[error("peer {addr} of VNI {vni} already exists with handle {handle}")]
    Exists {
        /// The VNI.
        vni: Vni,
        /// The peer's address.
        addr: SocketAddr,
        /// The handle it already has.
        handle: u32,
    },
    /// Handle {handle} is already used by another peer.
    #[error("handle {handle} is already used by another peer")]
    HandleInUse {
        /// The handle asked for.
        handle: u32,
    },
    /// Learned-peer table full ({max} peers): new peer refused.
    #[error("learned-peer table full ({max} peers): new peer refused")]
    Full {
        /// The configured maximum.
        max: usize,
    },
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    handle: u32,
    kind: PeerKind,
    last_seen_ms: u64,
}

/// The registry of remote VTEPs of one switch; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct PeerTable {
    config: PeerTableConfig,
    by_key: HashMap<(Vni, SocketAddr), Entry, RandomState>,
    by_handle: HashMap<u32, (Vni, SocketAddr), RandomState>,
    by_vni: HashMap<Vni, Vec<Peer>, RandomState>,
    learned: usize,
    refused: u64,
}

impl PeerTable {
    /// An empty table with the given limits.
    pub fn new(config: PeerTableConfig) -> PeerTable {
        PeerTable {
            config,
            by_key: HashMap::default(),
            by_handle: HashMap::default(),
            by_vni: HashMap::default(),
            learned: 0,
            refused: 0,
        }
    }

    /// The table's limits.
    pub fn config(&self) -> PeerTableConfig {
        self.config
    }

    /// Adds a static peer: `addr` serves `vni` under `handle` until removed.
    pub fn add_static(&mut self, vni: Vni, addr: SocketAddr, handle: u32) -> Result<(), PeerError> {
        self.insert(vni, addr, Entry { handle, kind: PeerKind::Static, last_seen_ms: 0 })
    }

    /// Adds a learned peer, after [`PeerTable::on_packet`] returned `None`
    /// for a valid packet from `addr` on `vni` and the caller chose `handle`
    /// for it. Its age counts from `now_ms`.
    ///
    /// Refused with [`PeerError::Full`] (and counted) when the table already
    /// holds `max_learned` learned peers.
    pub fn learn(&mut self, vni: Vni, addr: SocketAddr, handle: u32, now_ms: u64) -> Result<(), PeerError> {
        self.insert(vni, addr, Entry { handle, kind: PeerKind::Learned, last_seen_ms: now_ms })
    }

    fn insert(&mut self, vni: Vni, addr: SocketAddr, entry: Entry) -> Result<(), PeerError> {
        if let Some(existing) = self.by_key.get(&(vni, addr)) {
            return Err(PeerError::Exists { vni, addr, handle: existing.handle });
        }
        if self.by_handle.contains_key(&entry.handle) {
            return Err(PeerError::HandleInUse { handle: entry.handle });
        }
        if entry.kind == PeerKind::Learned {
            if self.learned >= self.config.max_learned {
                self.refused += 1;
                return Err(PeerError::Full { max: self.config.max_learned });
            }
            self.learned += 1;
        }
        self.by_key.insert((vni, addr), entry);
        self.by_handle.insert(entry.handle, (vni, addr));
        self.by_vni.entry(vni).or_default().push(Peer { addr, handle: entry.handle, kind: entry.kind });
        Ok(())
    }

    /// Removes the peer `addr` of `vni`, static or learned; returns its
    /// handle, or `None` when there was no such peer.
    pub fn remove(&mut self, vni: Vni, addr: SocketAddr) -> Option<u32> {
        let entry = self.by_key.remove(&(vni, addr))?;
        self.unlink(vni, addr, entry);
        Some(entry.handle)
    }

    /// Removes the peer with `handle`; returns its VNI and address.
    pub fn remove_handle(&mut self, handle: u32) -> Option<(Vni, SocketAddr)> {
        let (vni, addr) = *self.by_handle.get(&handle)?;
        self.remove(vni, addr).map(|_| (vni, addr))
    }

    /// Drops the secondary indexes of an entry already taken out of `by_key`.
    fn unlink(&mut self, vni: Vni, addr: SocketAddr, entry: Entry) {
        self.by_handle.remove(&entry.handle);
        if entry.kind == PeerKind::Learned {
            self.learned -= 1;
        }
        if let MapEntry::Occupied(mut list) = self.by_vni.entry(vni) {
            let peers = list.get_mut();
            if let Some(i) = peers.iter().position(|p| p.addr == addr) {
                peers.swap_remove(i);
            }
            if peers.is_empty() {
                list.remove();
            }
        }
    }

    /// The handle of peer `addr` on `vni`, if known. Does not refresh it.
    pub fn lookup(&self, vni: Vni, addr: SocketAddr) -> Option<u32> {
        self.by_key.get(&(vni, addr)).map(|e| e.handle)
    }

    /// A valid packet from `addr` arrived on `vni` at `now_ms`: returns the
    /// peer's handle and records when it was last seen, which restarts a
    /// learned peer's age (a static peer never ages, but when it was seen
    /// is kept for [`PeerTable::last_seen`]). `None` means an unknown peer:
    /// drop the packet, or [`PeerTable::learn`] it.
    pub fn on_packet(&mut self, vni: Vni, addr: SocketAddr, now_ms: u64) -> Option<u32> {
        let entry = self.by_key.get_mut(&(vni, addr))?;
        if now_ms > entry.last_seen_ms {
            entry.last_seen_ms = now_ms;
        }
        Some(entry.handle)
    }

    /// When a packet of peer `addr` on `vni` last arrived (the latest
    /// `now_ms` given to [`PeerTable::on_packet`]; for a learned peer never
    /// seen since, when it was learned; 0 for a static peer never seen).
    /// Lets a switch whose packets are read by several threads tell the one
    /// that ages its learned peers which ones others saw.
    pub fn last_seen(&self, vni: Vni, addr: SocketAddr) -> Option<u64> {
        self.by_key.get(&(vni, addr)).map(|e| e.last_seen_ms)
    }

    /// The VNI and address of the peer with `handle`: where to send a frame
    /// the bridge forwarded to that tunnel port.
    pub fn peer_of(&self, handle: u32) -> Option<(Vni, SocketAddr)> {
        self.by_handle.get(&handle).copied()
    }

    /// Every peer of `vni`, static and learned, in no particular order: the
    /// destinations of head-end replication. Empty for an unknown VNI.
    pub fn peers(&self, vni: Vni) -> &[Peer] {
        self.by_vni.get(&vni).map_or(&[], Vec::as_slice)
    }

    /// Every (VNI, peer) in the table, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (Vni, &Peer)> {
        self.by_vni.iter().flat_map(|(&vni, peers)| peers.iter().map(move |p| (vni, p)))
    }

    /// Removes every learned peer silent for at least the configured TTL at
    /// `now_ms` and returns them, so the caller can drop their ports. Static
    /// peers are never removed. A no-op when the TTL is 0.
    pub fn age(&mut self, now_ms: u64) -> Vec<AgedPeer> {
        let ttl = self.config.learned_ttl_ms;
        if ttl == 0 || self.learned == 0 {
            return Vec::new();
        }
        let expired: Vec<((Vni, SocketAddr), Entry)> = self
            .by_key
            .extract_if(|_, e| e.kind == PeerKind::Learned && now_ms.saturating_sub(e.last_seen_ms) >= ttl)
            .collect();
        expired
            .into_iter()
            .map(|((vni, addr), entry)| {
                self.unlink(vni, addr, entry);
                AgedPeer { vni, addr, handle: entry.handle }
            })
            .collect()
    }

    /// Number of peers, static and learned.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// True when the table holds no peer.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Number of learned peers.
    pub fn learned_len(&self) -> usize {
        self.learned
    }

    /// How many new learned peers were refused because the table was full.
    pub fn refused(&self) -> u64 {
        self.refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vni(v: u32) -> Vni {
        Vni::new(v).unwrap()
    }

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, last], 4789))
    }

    fn table(max_learned: usize, ttl: u64) -> PeerTable {
        PeerTable::new(PeerTableConfig { max_learned, learned_ttl_ms: ttl })
    }

    fn sorted_handles(t: &PeerTable, v: Vni) -> Vec<u32> {
        let mut h: Vec<u32> = t.peers(v).iter().map(|p| p.handle).collect();
        h.sort_unstable();
        h
    }

    #[test]
    fn static_peers_lookup_both_ways() {
        let mut t = table(10, 1000);
        t.add_static(vni(1), addr(1), 100).unwrap();
        t.add_static(vni(1), addr(2), 101).unwrap();
        t.add_static(vni(2), addr(1), 200).unwrap();
        assert_eq!(t.lookup(vni(1), addr(1)), Some(100));
        assert_eq!(t.lookup(vni(2), addr(1)), Some(200));
        assert_eq!(t.lookup(vni(2), addr(2)), None);
        assert_eq!(t.peer_of(101), Some((vni(1), addr(2))));
        assert_eq!(t.peer_of(999), None);
        assert_eq!(sorted_handles(&t, vni(1)), [100, 101]);
        assert_eq!(sorted_handles(&t, vni(2)), [200]);
        assert!(t.peers(vni(3)).is_empty());
        assert_eq!((t.len(), t.learned_len()), (3, 0));
        assert_eq!(t.iter().count(), 3);
    }

    #[test]
    fn duplicates_are_refused() {
        let mut t = table(10, 1000);
        t.add_static(vni(1), addr(1), 100).unwrap();
        assert_eq!(
            t.add_static(vni(1), addr(1), 101),
            Err(PeerError::Exists { vni: vni(1), addr: addr(1), handle: 100 })
        );
        assert_eq!(
            t.learn(vni(1), addr(1), 101, 0),
            Err(PeerError::Exists { vni: vni(1), addr: addr(1), handle: 100 })
        );
        assert_eq!(t.add_static(vni(1), addr(2), 100), Err(PeerError::HandleInUse { handle: 100 }));
        assert_eq!(t.learn(vni(2), addr(2), 100, 0), Err(PeerError::HandleInUse { handle: 100 }));
        assert_eq!(t.len(), 1);
        assert_eq!(t.refused(), 0);
    }

    #[test]
    fn remove_updates_every_index() {
        let mut t = table(10, 1000);
        t.add_static(vni(1), addr(1), 100).unwrap();
        t.learn(vni(1), addr(2), 101, 0).unwrap();
        t.add_static(vni(1), addr(3), 102).unwrap();
        assert_eq!(t.remove(vni(1), addr(1)), Some(100));
        assert_eq!(t.remove(vni(1), addr(1)), None);
        assert_eq!(t.lookup(vni(1), addr(1)), None);
        assert_eq!(t.peer_of(100), None);
        assert_eq!(sorted_handles(&t, vni(1)), [101, 102]);
        assert_eq!(t.remove_handle(101), Some((vni(1), addr(2))));
        assert_eq!(t.learned_len(), 0);
        assert_eq!(t.remove_handle(101), None);
        assert_eq!(t.remove(vni(1), addr(3)), Some(102));
        assert!(t.is_empty());
        assert!(t.peers(vni(1)).is_empty());
        // The handle is free again.
        t.add_static(vni(5), addr(9), 100).unwrap();
    }

    #[test]
    fn learned_peers_age_static_do_not() {
        let mut t = table(10, 1000);
        t.add_static(vni(1), addr(1), 1).unwrap();
        assert_eq!(t.on_packet(vni(1), addr(2), 0), None);
        t.learn(vni(1), addr(2), 2, 0).unwrap();
        t.learn(vni(1), addr(3), 3, 500).unwrap();
        assert_eq!(t.learned_len(), 2);

        assert!(t.age(999).is_empty());
        // Traffic from peer 2 at 900 keeps it alive until 1900.
        assert_eq!(t.on_packet(vni(1), addr(2), 900), Some(2));
        assert!(t.age(1000).is_empty());
        assert_eq!(t.age(1500), vec![AgedPeer { vni: vni(1), addr: addr(3), handle: 3 }]);
        assert_eq!(t.lookup(vni(1), addr(3)), None);
        assert_eq!(t.peer_of(3), None);
        assert_eq!(sorted_handles(&t, vni(1)), [1, 2]);
        assert_eq!(t.age(1900), vec![AgedPeer { vni: vni(1), addr: addr(2), handle: 2 }]);
        // Static peer survives any amount of time.
        assert!(t.age(u64::MAX).is_empty());
        assert_eq!(t.on_packet(vni(1), addr(1), u64::MAX), Some(1));
        assert_eq!((t.len(), t.learned_len()), (1, 0));
    }

    #[test]
    fn last_seen_is_kept_for_static_and_learned_peers() {
        let mut t = table(10, 1000);
        t.add_static(vni(1), addr(1), 1).unwrap();
        t.learn(vni(1), addr(2), 2, 300).unwrap();
        assert_eq!((t.last_seen(vni(1), addr(1)), t.last_seen(vni(1), addr(2))), (Some(0), Some(300)));
        t.on_packet(vni(1), addr(1), 700);
        t.on_packet(vni(1), addr(2), 800);
        t.on_packet(vni(1), addr(2), 600);
        assert_eq!((t.last_seen(vni(1), addr(1)), t.last_seen(vni(1), addr(2))), (Some(700), Some(800)));
        assert_eq!(t.last_seen(vni(2), addr(1)), None);
        // Seen or not, a static peer still never ages.
        assert_eq!(t.age(u64::MAX).len(), 1);
        assert_eq!(t.lookup(vni(1), addr(1)), Some(1));
    }

    #[test]
    fn clock_going_backwards_does_not_rejuvenate_or_panic() {
        let mut t = table(10, 1000);
        t.learn(vni(1), addr(1), 1, 5000).unwrap();
        // An older timestamp does not move last-seen back, and aging with a
        // time before last-seen removes nothing.
        assert_eq!(t.on_packet(vni(1), addr(1), 100), Some(1));
        assert!(t.age(100).is_empty());
        assert!(t.age(5999).is_empty());
        assert_eq!(t.age(6000).len(), 1);
    }

    #[test]
    fn ttl_zero_never_ages() {
        let mut t = table(10, 0);
        t.learn(vni(1), addr(1), 1, 0).unwrap();
        assert!(t.age(u64::MAX).is_empty());
        assert_eq!(t.learned_len(), 1);
    }

    #[test]
    fn learned_peers_are_bounded() {
        let mut t = table(2, 1000);
        t.add_static(vni(1), addr(10), 10).unwrap();
        t.learn(vni(1), addr(1), 1, 0).unwrap();
        t.learn(vni(2), addr(2), 2, 0).unwrap();
        assert_eq!(t.learn(vni(1), addr(3), 3, 0), Err(PeerError::Full { max: 2 }));
        assert_eq!(t.learn(vni(3), addr(4), 4, 0), Err(PeerError::Full { max: 2 }));
        assert_eq!(t.refused(), 2);
        assert_eq!(t.lookup(vni(1), addr(3)), None);
        // Static peers are not bounded by max_learned.
        t.add_static(vni(1), addr(11), 11).unwrap();
        // Once one ages out there is room again.
        t.on_packet(vni(2), addr(2), 600);
        assert_eq!(t.age(1000).len(), 1);
        t.learn(vni(1), addr(3), 3, 1000).unwrap();
        assert_eq!((t.len(), t.learned_len(), t.refused()), (4, 2, 2));
        assert_eq!(t.lookup(vni(2), addr(2)), Some(2));
    }

    #[test]
    fn ipv6_peers() {
        let mut t = table(10, 1000);
        let a: SocketAddr = "[2001:db8::1]:4789".parse().unwrap();
        let b: SocketAddr = "[2001:db8::1]:4790".parse().unwrap();
        t.add_static(vni(7), a, 1).unwrap();
        t.learn(vni(7), b, 2, 0).unwrap();
        assert_eq!(t.lookup(vni(7), a), Some(1));
        assert_eq!(t.lookup(vni(7), b), Some(2));
        let kinds: Vec<PeerKind> = {
            let mut p = t.peers(vni(7)).to_vec();
            p.sort_by_key(|p| p.handle);
            p.iter().map(|p| p.kind).collect()
        };
        assert_eq!(kinds, [PeerKind::Static, PeerKind::Learned]);
    }
}
