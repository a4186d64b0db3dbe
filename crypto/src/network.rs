//! [`NetworkCrypto`]: everything one host needs to encrypt one overlay
//! network, and key rotation.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use vxlan::Vni;

use crate::cipher::Cipher;
use crate::error::{KeyError, OpenError, SealError};
use crate::keys::NetworkKey;
use crate::lanes::{FLOW_SESSIONS, HostSessions, SessionLane};
use crate::open::{Opened, Opener, SessionRun};
use crate::seal::Sealer;
use crate::secret::ClusterSecret;
use crate::wire::{Header, InnerChecksum};

/// How many of this host's own recent sender sessions are remembered, so
/// that packets it sent cannot be reflected back to it: the last eight
/// sets of [`FLOW_SESSIONS`].
const OWN_SESSIONS: usize = 8 * FLOW_SESSIONS as usize;

/// The keys of one encrypted overlay network on one host: [`FLOW_SESSIONS`]
/// [`Sealer`]s for the current epoch, each sealing the flows of its share of
/// the outer source ports ([`NetworkCrypto::seal_in_place`]'s `flow`), and
/// an [`Opener`] accepting the previous, current and next epochs.
///
/// Keys derive from the cluster secret ([`NetworkCrypto::new`]), or, in
/// cluster mode, are installed epoch by epoch as the store distributes them
/// ([`NetworkCrypto::with_installed_keys`], [`NetworkCrypto::install`]). With
/// installed keys the host accepts only the previous, current and next
/// epochs it holds keys for, and sends only once the current epoch's key is
/// installed: until then [`NetworkCrypto::seal`] fails with
/// [`SealError::NoKey`], and [`NetworkCrypto::set_epoch`] refuses an epoch
/// without a key. Rotation without loss is then: every host installs the
/// next epoch's key (it accepts it as its next one at once), and only when
/// all hold it do they switch their send epoch, in any order.
///
/// Rotation (`vswitchctl network key rotate`) is [`NetworkCrypto::set_epoch`]
/// with the next epoch on every host, in any order: a host that has rotated
/// sends with the new epoch, which hosts not yet rotated accept as their next
/// one; it still accepts the old epoch as its previous one.
///
/// Every host of a network shares its keys, so the keys alone do not tell
/// who sent a packet: a packet this host sealed could be sent back to it by
/// someone on the underlay. [`NetworkCrypto::open`] therefore refuses the
/// host's own recent session ids ([`OpenError::Reflected`]).
///
/// Several threads of one host may each hold a `NetworkCrypto` of the same
/// network ([`NetworkCrypto::spread`]): each seals in sessions of its own
/// lane, and all refuse each other's sessions sent back.
#[derive(Debug)]
pub struct NetworkCrypto {
    /// The sender sessions, one per flow slot; none while the current
    /// epoch has no installed key.
    sealers: Vec<Sealer>,
    /// The cipher every sealer seals with and the opener accepts.
    cipher: Cipher,
    opener: Opener,
    own_sessions: VecDeque<u64>,
    /// The lane session ids are drawn in: this host's alone (one thread,
    /// random base, drawn with the first sessions) until
    /// [`NetworkCrypto::spread`] gives a shared one.
    lane: Option<SessionLane>,
    /// How many sets of sessions were drawn in `lane`.
    drawn: u32,
    /// With several sealing threads: the sessions of every thread.
    host: Option<Arc<HostSessions>>,
}

impl NetworkCrypto {
    /// The state of network `vni` at key epoch `epoch`, with a new set of
    /// [`FLOW_SESSIONS`] sender sessions.
    pub fn new(secret: &ClusterSecret, vni: Vni, epoch: u32) -> Result<NetworkCrypto, SealError> {
        let mut crypto = NetworkCrypto {
            sealers: Vec::new(),
            cipher: Cipher::ChaCha20Poly1305,
            opener: Opener::new(secret, vni, epoch),
            own_sessions: VecDeque::with_capacity(OWN_SESSIONS),
            lane: None,
            drawn: 0,
            host: None,
        };
        crypto.sealers = crypto.make_sealers(NetworkKey::derive(secret, vni, epoch))?;
        Ok(crypto)
    }

    /// The state of network `vni` at key epoch `epoch` with keys installed
    /// one by one ([`NetworkCrypto::install`]) instead of derived from a
    /// cluster secret: none yet, so nothing is sent or accepted until keys
    /// are installed.
    pub fn with_installed_keys(vni: Vni, epoch: u32) -> NetworkCrypto {
        NetworkCrypto {
            sealers: Vec::new(),
            cipher: Cipher::ChaCha20Poly1305,
            opener: Opener::with_installed_keys(vni, epoch),
            own_sessions: VecDeque::with_capacity(OWN_SESSIONS),
            lane: None,
            drawn: 0,
            host: None,
        }
    }

    /// Seals with `cipher` and accepts only packets sealed with it
    /// ([`OpenError::CipherMismatch`]); ChaCha20-Poly1305 unless told. Call
    /// it before sealing: the sender sessions are drawn anew under it.
    pub fn with_cipher(mut self, cipher: Cipher) -> Result<NetworkCrypto, SealError> {
        if cipher == self.cipher {
            return Ok(self);
        }
        self.cipher = cipher;
        self.opener.set_cipher(cipher);
        if let Some(epoch) = self.sealers.first().map(Sealer::epoch) {
            let key = self.opener.network_key(epoch).ok_or(SealError::NoKey { epoch })?;
            self.sealers = self.make_sealers(key)?;
        }
        Ok(self)
    }

    /// The cipher this network seals with and accepts.
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// Makes this one of several threads sealing for the network: from now
    /// on it seals in sessions of `lane` (a new one at once, if it can
    /// send), records them in `host`, and refuses packets of any session
    /// in `host` (another thread's, sent back). See [`crate::lanes`].
    pub fn spread(&mut self, lane: SessionLane, host: Arc<HostSessions>) -> Result<(), SealError> {
        // Sessions this thread sealed before it had a lane are the host's too.
        for &id in &self.own_sessions {
            host.record(id);
        }
        self.lane = Some(lane);
        self.drawn = 0;
        self.host = Some(host);
        if let Some(epoch) = self.sealers.first().map(Sealer::epoch) {
            let key = self.opener.network_key(epoch).ok_or(SealError::NoKey { epoch })?;
            self.sealers = self.make_sealers(key)?;
        }
        Ok(())
    }

    /// A new set of [`FLOW_SESSIONS`] sender sessions under `key`, the
    /// next in this thread's lane. Each is remembered as the host's own when
    /// it seals its first packet.
    fn make_sealers(&mut self, key: NetworkKey) -> Result<Vec<Sealer>, SealError> {
        let lane = match self.lane {
            Some(lane) => lane,
            None => *self.lane.insert(SessionLane::random(1)?),
        };
        let (n, cipher) = (self.drawn, self.cipher);
        self.drawn = n.wrapping_add(1);
        (0..FLOW_SESSIONS)
            .map(|slot| Ok(Sealer::with_session_id(key.clone(), cipher, lane.session_id(slot, n)?)))
            .collect()
    }

    /// Installs the key of one epoch (see [`Opener::install`]): packets of
    /// that epoch are accepted whenever it is the previous, current or next
    /// one. If it is the current epoch's key, sending starts with it (in a
    /// new session). Refused for keys of another network and for networks
    /// whose keys derive from the cluster secret.
    pub fn install(&mut self, key: NetworkKey) -> Result<(), KeyError> {
        let epoch = key.epoch();
        let current = self.current_epoch() == epoch;
        let changed = current && !self.opener.network_key(epoch).is_some_and(|k| k.same_as(&key));
        self.opener.install(key.clone())?;
        if current && (changed || self.sealers.is_empty()) {
            self.sealers = self.make_sealers(key).map_err(|_| KeyError::Random)?;
        }
        Ok(())
    }

    /// Whether keys are installed rather than derived from the secret.
    pub fn has_installed_keys(&self) -> bool {
        self.opener.has_installed_keys()
    }

    /// Whether a key to send with is at hand (always, with derived keys).
    pub fn can_send(&self) -> bool {
        !self.sealers.is_empty()
    }

    /// The epoch sent with, if a key to send with is at hand.
    pub fn send_epoch(&self) -> Option<u32> {
        self.can_send().then(|| self.current_epoch())
    }

    /// The epochs whose keys are installed, lowest first (empty when keys
    /// derive from the cluster secret).
    pub fn installed_epochs(&self) -> Vec<u32> {
        self.opener.installed_epochs()
    }

    /// Records session `id` as one of this host's own (when it seals its
    /// first packet: a session that never sealed cannot be sent back).
    fn remember_own_session(&mut self, id: u64) {
        if self.own_sessions.len() == OWN_SESSIONS {
            self.own_sessions.pop_front();
        }
        self.own_sessions.push_back(id);
        if let Some(host) = &self.host {
            host.record(id);
        }
    }

    /// The network.
    pub fn vni(&self) -> Vni {
        self.opener.vni()
    }

    /// The current key epoch: the one sent with.
    pub fn current_epoch(&self) -> u32 {
        self.opener.current_epoch()
    }

    /// Switches to key epoch `epoch`: sending uses it at once (in a new
    /// session), receiving accepts `epoch - 1`, `epoch` and `epoch + 1`.
    /// Setting the current epoch again changes nothing. With installed keys,
    /// refused ([`SealError::NoKey`], nothing changes) unless `epoch`'s key
    /// is installed.
    pub fn set_epoch(&mut self, epoch: u32) -> Result<(), SealError> {
        if epoch == self.current_epoch() && self.can_send() {
            return Ok(());
        }
        let key = self.opener.network_key(epoch).ok_or(SealError::NoKey { epoch })?;
        self.sealers = self.make_sealers(key)?;
        self.opener.set_epoch(epoch);
        Ok(())
    }

    /// Seals with the session of `flow` (any number: the flow's share,
    /// `flow % FLOW_SESSIONS`, picks the session; the datapath passes the
    /// index of the outer source port the packet leaves from), and
    /// remembers a session that sealed its first packet as the host's own.
    fn with_sealer<T>(
        &mut self,
        flow: usize,
        seal: impl FnOnce(&mut Sealer) -> Result<T, SealError>,
    ) -> Result<T, SealError> {
        let epoch = self.current_epoch();
        let count = self.sealers.len();
        let sealer = self.sealers.get_mut(flow % count.max(1)).ok_or(SealError::NoKey { epoch })?;
        let sealed = seal(sealer)?;
        // The first packet of a session, new or started by the sealer
        // itself before its counter could wrap.
        if sealer.next_counter() == 1 {
            let id = sealer.session_id();
            self.remember_own_session(id);
        }
        Ok(sealed)
    }

    /// See [`Sealer::seal`], in the session of `flow` (see
    /// [`NetworkCrypto::seal_in_place`]); [`SealError::NoKey`] while the
    /// current epoch has no installed key.
    pub fn seal(&mut self, flow: usize, inner: &[u8], out: &mut Vec<u8>) -> Result<Range<usize>, SealError> {
        self.with_sealer(flow, |sealer| sealer.seal(inner, out))
    }

    /// See [`Sealer::seal_in_place`]; [`SealError::NoKey`] while the
    /// current epoch has no installed key. `flow` picks the session
    /// (`flow % FLOW_SESSIONS`): pass the same number for every packet
    /// of one outer 4-tuple, so that a receiver's UDP GRO, which merges
    /// datagrams by 4-tuple, rarely merges two of this network's sessions
    /// (only across a key rotation), and a receiver steering by session
    /// spreads the flows over its threads.
    pub fn seal_in_place(
        &mut self,
        flow: usize,
        packet: &mut [u8],
        inner_len: usize,
        checksum: InnerChecksum,
    ) -> Result<usize, SealError> {
        self.with_sealer(flow, |sealer| sealer.seal_in_place(packet, inner_len, checksum))
    }

    /// See [`Opener::open`]; also refuses packets of this host's own recent
    /// sender sessions ([`OpenError::Reflected`]).
    pub fn open(&mut self, packet: &mut [u8]) -> Result<Opened, OpenError> {
        let header = Header::parse(packet)?;
        self.session(&header)?.open(&header, packet)
    }

    /// See [`Opener::session`]: the session of `header`, looked up once to
    /// open a run of its packets; also refuses this host's own recent
    /// sender sessions ([`OpenError::Reflected`]).
    pub fn session(&mut self, header: &Header) -> Result<SessionRun<'_>, OpenError> {
        let id = header.session_id;
        if self.own_sessions.contains(&id) || self.host.as_ref().is_some_and(|host| host.contains(id)) {
            return Err(OpenError::Reflected);
        }
        if self.host.is_some()
            && let Some(lane) = self.lane
        {
            let thread = crate::lanes::receiving_thread(id, lane.step);
            if thread != lane.index {
                return Err(OpenError::OtherThread { thread });
            }
        }
        self.opener.session(header)
    }

    /// The sender session of `flow` (see [`NetworkCrypto::seal_in_place`]),
    /// if the current epoch has a key. Read-only: sealing goes through
    /// [`NetworkCrypto::seal`] and [`NetworkCrypto::seal_in_place`], which
    /// remember each session as the host's own.
    pub fn sealer(&self, flow: usize) -> Option<&Sealer> {
        let count = self.sealers.len().max(1);
        self.sealers.get(flow % count)
    }

    /// The receiver.
    pub fn opener(&mut self) -> &mut Opener {
        &mut self.opener
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_refuses_its_own_packets_sent_back_to_it() {
        let secret = ClusterSecret::from_bytes([7; 32]);
        let vni = Vni::new(42).unwrap();
        let mut a = NetworkCrypto::new(&secret, vni, 0).unwrap();
        let mut b = NetworkCrypto::new(&secret, vni, 0).unwrap();
        let mut packet = Vec::new();
        a.seal(0, &[0x5a; 60], &mut packet).unwrap();
        assert_eq!(a.open(&mut packet.clone()).unwrap_err(), OpenError::Reflected);
        b.open(&mut packet.clone()).expect("another host opens it");
        // Sessions from before a rotation are remembered too.
        a.set_epoch(1).unwrap();
        assert_eq!(a.open(&mut packet).unwrap_err(), OpenError::Reflected);
    }

    #[test]
    fn threads_of_one_host_seal_in_their_lanes_and_refuse_each_others_packets_sent_back() {
        use crate::lanes::receiving_thread;

        let secret = ClusterSecret::from_bytes([7; 32]);
        let vni = Vni::new(42).unwrap();
        let host = Arc::new(HostSessions::new(2));
        let lane = SessionLane::random(2).unwrap();
        let mut threads: Vec<NetworkCrypto> = (0..2)
            .map(|k| {
                let mut t = NetworkCrypto::new(&secret, vni, 0).unwrap();
                t.spread(lane.for_thread(k), host.clone()).unwrap();
                t
            })
            .collect();
        let mut other = NetworkCrypto::new(&secret, vni, 0).unwrap();
        for epoch in [0, 1] {
            // Each thread's flows 0 and 1 (two sessions).
            let mut packets = Vec::new();
            for t in &mut threads {
                t.set_epoch(epoch).unwrap();
                for flow in 0..2 {
                    let mut packet = Vec::new();
                    t.seal(flow, &[0x5a; 60], &mut packet).unwrap();
                    packets.push(packet);
                }
            }
            let ids: Vec<u64> = packets.iter().map(|p| Header::parse(p).unwrap().session_id).collect();
            // Two sessions per thread; each thread lands on a receiving
            // thread of its own of two, whatever the flow.
            let receivers: Vec<u32> = ids.iter().map(|&id| receiving_thread(id, 2)).collect();
            assert!(receivers[0] == receivers[1] && receivers[2] == receivers[3], "{ids:x?}");
            assert_ne!(receivers[0], receivers[2], "{ids:x?}");
            // Each thread refuses the other's packets sent back; another
            // host opens them all.
            for p in &packets[..2] {
                assert_eq!(threads[1].open(&mut p.clone()).unwrap_err(), OpenError::Reflected);
            }
            for p in &packets[2..] {
                assert_eq!(threads[0].open(&mut p.clone()).unwrap_err(), OpenError::Reflected);
            }
            other.set_epoch(epoch).unwrap();
            for p in &mut packets {
                other.open(p).expect("another host opens it");
            }
        }
        // Another host's session steered to thread 1: thread 0 refuses it
        // (it keeps no window of it), thread 1 opens it.
        let mut far = NetworkCrypto::new(&secret, vni, 1).unwrap();
        far.spread(SessionLane { base: 1, index: 0, step: 1 }, Arc::new(HostSessions::new(1))).unwrap();
        let mut packet = Vec::new();
        far.seal(0, &[0x5a; 60], &mut packet).unwrap();
        assert_eq!(threads[0].open(&mut packet.clone()).unwrap_err(), OpenError::OtherThread { thread: 1 });
        threads[1].open(&mut packet).expect("the session's thread opens it");
    }

    fn key(vni: Vni, epoch: u32) -> NetworkKey {
        NetworkKey::from_bytes(vni, epoch, [epoch as u8 ^ 0xa5; 32])
    }

    /// Seals one frame with `from` and opens it with `to`.
    fn carry(from: &mut NetworkCrypto, to: &mut NetworkCrypto) -> Result<u32, OpenError> {
        let mut packet = Vec::new();
        from.seal(0, &[0x5a; 60], &mut packet).expect("a key to send with");
        to.open(&mut packet).map(|o| o.epoch)
    }

    #[test]
    fn hosts_of_one_cipher_talk_and_refuse_the_other_cipher_by_name() {
        let secret = ClusterSecret::from_bytes([7; 32]);
        let vni = Vni::new(42).unwrap();
        let aes = |epoch| NetworkCrypto::new(&secret, vni, epoch).unwrap().with_cipher(Cipher::Aes256Gcm).unwrap();
        let (mut a, mut b) = (aes(0), aes(0));
        assert_eq!((a.cipher(), a.sealer(0).unwrap().cipher()), (Cipher::Aes256Gcm, Cipher::Aes256Gcm));
        assert_eq!(carry(&mut a, &mut b), Ok(0));
        let mut chacha = NetworkCrypto::new(&secret, vni, 0).unwrap();
        let mismatch = |expected, found| Err(OpenError::CipherMismatch { expected, found });
        assert_eq!(carry(&mut a, &mut chacha), mismatch(Cipher::ChaCha20Poly1305, Cipher::Aes256Gcm));
        assert_eq!(carry(&mut chacha, &mut b), mismatch(Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305));
        // The cipher outlives rotation, and holds with installed keys and several threads.
        a.set_epoch(1).unwrap();
        assert_eq!(carry(&mut a, &mut b), Ok(1));
        let mut installed = NetworkCrypto::with_installed_keys(vni, 1).with_cipher(Cipher::Aes256Gcm).unwrap();
        installed.install(key(vni, 1)).unwrap();
        let mut peer = NetworkCrypto::with_installed_keys(vni, 1).with_cipher(Cipher::Aes256Gcm).unwrap();
        peer.install(key(vni, 1)).unwrap();
        peer.spread(SessionLane::random(1).unwrap(), Arc::new(HostSessions::new(1))).unwrap();
        assert_eq!(peer.sealer(0).unwrap().cipher(), Cipher::Aes256Gcm);
        assert_eq!(carry(&mut installed, &mut peer), Ok(1));
        assert_eq!(carry(&mut peer, &mut installed), Ok(1));
    }

    #[test]
    fn changing_the_cipher_back_and_forth_keeps_refusing_replays() {
        let secret = ClusterSecret::from_bytes([7; 32]);
        let vni = Vni::new(42).unwrap();
        let mut a = NetworkCrypto::new(&secret, vni, 0).unwrap();
        let mut b = NetworkCrypto::new(&secret, vni, 0).unwrap();
        let mut packet = Vec::new();
        a.seal(0, &[0x5a; 60], &mut packet).unwrap();
        b.open(&mut packet.clone()).expect("first time");
        b.opener().set_cipher(Cipher::Aes256Gcm);
        b.opener().set_cipher(Cipher::ChaCha20Poly1305);
        let again = b.open(&mut packet);
        assert!(matches!(again, Err(OpenError::Replayed { .. } | OpenError::TooOld { .. })), "{again:?}");
    }

    #[test]
    fn installed_keys_send_only_with_an_installed_current_epoch() {
        let vni = Vni::new(42).unwrap();
        let mut a = NetworkCrypto::with_installed_keys(vni, 0);
        assert!(a.has_installed_keys() && !a.can_send());
        assert_eq!(a.seal(0, &[0; 60], &mut Vec::new()), Err(SealError::NoKey { epoch: 0 }));
        assert_eq!(a.set_epoch(1), Err(SealError::NoKey { epoch: 1 }));
        assert_eq!(a.current_epoch(), 0, "a refused switch changes nothing");
        // The next epoch's key: received at once, sent with only when told.
        a.install(key(vni, 1)).unwrap();
        assert!(!a.can_send());
        a.set_epoch(1).unwrap();
        assert!(a.can_send() && a.sealer(0).unwrap().epoch() == 1);
        // Installing the current epoch's key starts sending with it.
        let mut b = NetworkCrypto::with_installed_keys(vni, 1);
        b.install(key(vni, 1)).unwrap();
        assert!(b.can_send());
        assert_eq!(carry(&mut a, &mut b), Ok(1));
        assert_eq!(carry(&mut b, &mut a), Ok(1));
        // Keys of another network and keys into a derived network are refused.
        let other = Vni::new(43).unwrap();
        assert_eq!(a.install(key(other, 2)), Err(KeyError::VniMismatch { expected: vni, found: other }));
        let mut derived = NetworkCrypto::new(&ClusterSecret::from_bytes([7; 32]), vni, 0).unwrap();
        assert_eq!(derived.install(key(vni, 1)), Err(KeyError::Derived));
        assert!(!derived.has_installed_keys() && derived.can_send());
    }

    #[test]
    fn an_epoch_without_an_installed_key_is_not_accepted() {
        let vni = Vni::new(42).unwrap();
        let (mut a, mut b) = (NetworkCrypto::with_installed_keys(vni, 5), NetworkCrypto::with_installed_keys(vni, 5));
        a.install(key(vni, 5)).unwrap();
        a.install(key(vni, 6)).unwrap();
        b.install(key(vni, 6)).unwrap();
        assert_eq!(carry(&mut a, &mut b), Err(OpenError::UnknownEpoch { epoch: 5, current: 5 }));
        a.set_epoch(6).unwrap();
        assert_eq!(carry(&mut a, &mut b), Ok(6), "the next epoch, installed");
        // A different key for the same epoch (another publisher's) fails the tag.
        let mut c = NetworkCrypto::with_installed_keys(vni, 6);
        c.install(NetworkKey::from_bytes(vni, 6, [1; 32])).unwrap();
        assert_eq!(carry(&mut a, &mut c), Err(OpenError::AuthenticationFailed));
        // ... and installing the right one replaces it.
        c.install(key(vni, 6)).unwrap();
        assert_eq!(carry(&mut a, &mut c), Ok(6));
        assert_eq!(carry(&mut c, &mut a), Ok(6), "c sends with the replaced key too");
    }

    #[test]
    fn installed_keys_rotate_without_loss_in_either_order() {
        let vni = Vni::new(42).unwrap();
        for a_first in [true, false] {
            let hosts: Vec<NetworkCrypto> = (0..3)
                .map(|_| {
                    let mut h = NetworkCrypto::with_installed_keys(vni, 1);
                    h.install(key(vni, 1)).unwrap();
                    h
                })
                .collect();
            let mut hosts = hosts;
            // Everyone installs epoch 2 before anyone sends with it.
            for h in &mut hosts {
                h.install(key(vni, 2)).unwrap();
            }
            let order: Vec<usize> = if a_first { vec![0, 1, 2] } else { vec![2, 1, 0] };
            for &switching in &order {
                hosts[switching].set_epoch(2).unwrap();
                for from in 0..3 {
                    for to in 0..3 {
                        if from != to {
                            let (f, t) = pair(&mut hosts, from, to);
                            carry(f, t).unwrap_or_else(|e| panic!("{from} -> {to} after {switching} switched: {e}"));
                        }
                    }
                }
            }
            // Epoch 1's key is forgotten once two epochs on.
            hosts[0].install(key(vni, 3)).unwrap();
            hosts[0].set_epoch(3).unwrap();
            assert_eq!(hosts[0].opener().installed_epochs(), vec![2, 3]);
            // A key behind the window is kept until the epoch moves (a store
            // that went back): the host can follow it.
            hosts[0].install(key(vni, 0)).unwrap();
            assert_eq!(hosts[0].installed_epochs(), vec![0, 2, 3]);
            hosts[0].set_epoch(0).unwrap();
            assert_eq!(hosts[0].send_epoch(), Some(0));
            assert_eq!(hosts[0].installed_epochs(), vec![0, 2, 3], "nothing below epoch 0 to forget");
            hosts[0].set_epoch(3).unwrap();
            assert_eq!(hosts[0].installed_epochs(), vec![2, 3]);
        }
    }

    /// Two distinct hosts of `hosts`, mutably.
    fn pair(hosts: &mut [NetworkCrypto], a: usize, b: usize) -> (&mut NetworkCrypto, &mut NetworkCrypto) {
        if a < b {
            let (x, y) = hosts.split_at_mut(b);
            (&mut x[a], &mut y[0])
        } else {
            let (x, y) = hosts.split_at_mut(a);
            (&mut y[0], &mut x[b])
        }
    }
}
