//! The receiving side: [`Opener`], which authenticates, decrypts and checks
//! for replays the packets of one network, in the previous, current and next
//! key epochs.

use std::collections::VecDeque;
use std::fmt;
use std::ops::{Range, RangeInclusive};

use foldhash::fast::RandomState;
use hashbrown::HashMap;
use ring::aead::{Aad, LessSafeKey};
use vxlan::Vni;

use crate::cipher::Cipher;
use crate::error::{KeyError, MalformedReason, OpenError};
use crate::keys::{KeySource, NetworkKey};
use crate::replay::{Refused, ReplayWindow};
use crate::secret::ClusterSecret;
use crate::wire::{HEADER_LEN, Header, InnerChecksum, MIN_PACKET_LEN, TAG_LEN};

/// Default bound of [`Opener::with_max_sessions`]: sender sessions whose key
/// and replay window are kept per epoch: 256 sealing threads of
/// [`crate::FLOW_SESSIONS`] sessions each (about 600 bytes a session, made
/// only as sessions authenticate).
pub const DEFAULT_MAX_SESSIONS: usize = 256 * crate::lanes::FLOW_SESSIONS as usize;

/// How many forgotten sessions' newest counters are remembered per epoch, per
/// session kept.
const TOMBSTONES_PER_SESSION: usize = 16;

/// A packet [`Opener::open`] authenticated and decrypted in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The overlay network of the inner frame.
    pub vni: Vni,
    /// The key epoch the packet was sealed with.
    pub epoch: u32,
    /// The sender session that sealed it.
    pub session_id: u64,
    /// Its packet counter in that session.
    pub counter: u64,
    /// Where the decrypted inner Ethernet frame now lies in the packet
    /// buffer: `HEADER_LEN..packet.len() - TAG_LEN`.
    pub inner: Range<usize>,
    /// What the inner frame's TCP/UDP checksum holds, as the sender said.
    pub checksum: InnerChecksum,
}

/// Opens the encrypted packets of one network.
///
/// Its keys come from a [`KeySource`]: derived from the cluster secret
/// ([`Opener::new`]: every accepted epoch has a key), or installed epoch by
/// epoch ([`Opener::with_installed_keys`], [`Opener::install`]: an accepted
/// epoch without an installed key is refused as unknown).
///
/// Keeps, per accepted epoch and sender session, the session key and its
/// anti-replay window. Sessions enter the cache only once one of their
/// packets authenticates, so forged packets cannot evict real sessions; past
/// the bound the least recently used session is forgotten, but its newest
/// counter is remembered (up to 16 times the bound per epoch) and nothing up
/// to it is accepted again. Replays of sessions forgotten beyond that remain
/// possible until their epoch leaves the accepted range.
pub struct Opener {
    keys: KeySource,
    vni: Vni,
    /// The one cipher accepted: the network's.
    cipher: Cipher,
    current: u32,
    max_sessions: usize,
    /// The accepted epochs: at most three.
    epochs: Vec<EpochState>,
    /// Logical clock for least-recently-used eviction.
    clock: u64,
}

/// The sessions of one epoch.
struct EpochState {
    network: NetworkKey,
    sessions: HashMap<u64, Session, RandomState>,
    /// Newest counter of forgotten sessions, and the order they were forgotten in.
    tombstones: HashMap<u64, u64, RandomState>,
    tombstone_order: VecDeque<u64>,
}

/// One sender session.
struct Session {
    key: LessSafeKey,
    window: ReplayWindow,
    last_used: u64,
}

impl Opener {
    /// An opener for `vni` whose current epoch is `epoch`.
    pub fn new(secret: &ClusterSecret, vni: Vni, epoch: u32) -> Opener {
        Opener::with_source(KeySource::Derived(secret.clone()), vni, epoch)
    }

    /// An opener for `vni` whose current epoch is `epoch` and whose keys are
    /// installed one by one ([`Opener::install`]); none yet.
    pub fn with_installed_keys(vni: Vni, epoch: u32) -> Opener {
        Opener::with_source(KeySource::Installed(Default::default()), vni, epoch)
    }

    fn with_source(keys: KeySource, vni: Vni, epoch: u32) -> Opener {
        let mut opener = Opener {
            keys,
            vni,
            cipher: Cipher::ChaCha20Poly1305,
            current: epoch,
            max_sessions: DEFAULT_MAX_SESSIONS,
            epochs: Vec::with_capacity(3),
            clock: 0,
        };
        opener.set_epoch(epoch);
        opener
    }

    /// Keeps at most `max` sender sessions per epoch (at least 1).
    pub fn with_max_sessions(mut self, max: usize) -> Opener {
        self.max_sessions = max.max(1);
        self
    }

    /// Opens packets sealed with `cipher` (ChaCha20-Poly1305 unless told)
    /// and refuses any other ([`OpenError::CipherMismatch`]).
    pub fn with_cipher(mut self, cipher: Cipher) -> Opener {
        self.set_cipher(cipher);
        self
    }

    /// See [`Opener::with_cipher`]. Sessions kept so far hold keys of the
    /// old cipher: each is forgotten as the bound forgets one, its newest
    /// counter remembered, so its packets seen so far stay refused.
    pub(crate) fn set_cipher(&mut self, cipher: Cipher) {
        if cipher == self.cipher {
            return;
        }
        self.cipher = cipher;
        let max = self.max_sessions;
        for epoch in &mut self.epochs {
            let kept: Vec<(u64, u64)> = epoch.sessions.drain().map(|(id, s)| (id, s.window.newest())).collect();
            for (id, newest) in kept {
                epoch.remember(id, newest, max * TOMBSTONES_PER_SESSION);
            }
        }
    }

    /// The cipher this opener accepts.
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// The network this opener opens packets of.
    pub fn vni(&self) -> Vni {
        self.vni
    }

    /// The current epoch.
    pub fn current_epoch(&self) -> u32 {
        self.current
    }

    /// The epochs accepted: the previous, current and next one (fewer at the
    /// ends of the `u32` range).
    pub fn accepted_epochs(&self) -> RangeInclusive<u32> {
        self.current.saturating_sub(1)..=self.current.saturating_add(1)
    }

    /// Makes `epoch` current: packets of `epoch - 1`, `epoch` and `epoch + 1`
    /// are accepted from now on (with installed keys: those of them whose key
    /// is installed; installed keys older than `epoch - 1` are forgotten).
    /// Sessions of epochs still accepted keep their replay windows.
    pub fn set_epoch(&mut self, epoch: u32) {
        self.current = epoch;
        let accepted = self.accepted_epochs();
        self.epochs.retain(|e| accepted.contains(&e.network.epoch()));
        if let KeySource::Installed(keys) = &mut self.keys {
            keys.retain(|&e, _| e >= *accepted.start());
        }
        for e in accepted {
            if !self.epochs.iter().any(|s| s.network.epoch() == e)
                && let Some(key) = self.keys.key(self.vni, e)
            {
                self.epochs.push(EpochState::new(key));
            }
        }
    }

    /// Installs the key of one epoch (keys installed, not derived): from now
    /// on packets of its epoch are accepted whenever it is the previous,
    /// current or next one. Installing the key an epoch already has changes
    /// nothing (its sessions keep their replay windows); another key for it
    /// replaces it. A key of an epoch outside the accepted ones is kept for
    /// when [`Opener::set_epoch`] brings it in; keys older than the previous
    /// epoch are forgotten there.
    pub fn install(&mut self, key: NetworkKey) -> Result<(), KeyError> {
        if key.vni() != self.vni {
            return Err(KeyError::VniMismatch { expected: self.vni, found: key.vni() });
        }
        let accepted = self.accepted_epochs();
        let KeySource::Installed(keys) = &mut self.keys else { return Err(KeyError::Derived) };
        let epoch = key.epoch();
        if keys.get(&epoch).is_some_and(|k| k.same_as(&key)) {
            return Ok(());
        }
        keys.insert(epoch, key.clone());
        self.epochs.retain(|e| e.network.epoch() != epoch);
        if accepted.contains(&epoch) {
            self.epochs.push(EpochState::new(key));
        }
        Ok(())
    }

    /// The key of `epoch`, if the opener has (or derives) one.
    pub(crate) fn network_key(&self, epoch: u32) -> Option<NetworkKey> {
        self.keys.key(self.vni, epoch)
    }

    /// Whether keys are installed rather than derived from the secret.
    pub fn has_installed_keys(&self) -> bool {
        self.keys.is_installed()
    }

    /// The epochs whose keys are installed, lowest first (empty when keys
    /// derive from the cluster secret).
    pub fn installed_epochs(&self) -> Vec<u32> {
        self.keys.installed_epochs()
    }

    /// Sender sessions currently kept, over all accepted epochs.
    pub fn session_count(&self) -> usize {
        self.epochs.iter().map(|e| e.sessions.len()).sum()
    }

    /// Authenticates and decrypts `packet` (a whole UDP payload) in place and
    /// records its counter in the session's replay window.
    ///
    /// Checks, in order: the header ([`OpenError::Malformed`]), the VNI
    /// ([`OpenError::VniMismatch`]), the cipher
    /// ([`OpenError::CipherMismatch`]), the epoch ([`OpenError::UnknownEpoch`]),
    /// the replay window before decrypting ([`OpenError::Replayed`],
    /// [`OpenError::TooOld`]), the tag ([`OpenError::AuthenticationFailed`]).
    /// The window is updated only after authentication succeeds.
    ///
    /// On success the inner frame is at [`Opened::inner`]; on error the
    /// packet's bytes after the header are unspecified. Opening a batch,
    /// [`Opener::session`] looks the session up once for a run of packets.
    pub fn open(&mut self, packet: &mut [u8]) -> Result<Opened, OpenError> {
        let header = Header::parse(packet)?;
        self.session(&header)?.open(&header, packet)
    }

    /// The key and replay window of the sender session of `header` (its
    /// VNI, epoch and session id), looked up once to open a run of that
    /// session's packets ([`SessionRun::open`]) as a received batch holds
    /// them. Refuses a header of another VNI ([`OpenError::VniMismatch`]),
    /// sealed with another cipher than the network's
    /// ([`OpenError::CipherMismatch`]) or of an epoch not accepted
    /// ([`OpenError::UnknownEpoch`]). A session not yet kept is kept once
    /// one of its packets authenticates.
    pub fn session(&mut self, header: &Header) -> Result<SessionRun<'_>, OpenError> {
        if header.vni != self.vni {
            return Err(OpenError::VniMismatch { expected: self.vni, found: header.vni });
        }
        if header.cipher != self.cipher {
            return Err(OpenError::CipherMismatch { expected: self.cipher, found: header.cipher });
        }
        let current = self.current;
        let cipher = self.cipher;
        let Opener { epochs, clock, max_sessions, .. } = self;
        let Some(state) = epochs.iter_mut().find(|e| e.network.epoch() == header.epoch) else {
            return Err(OpenError::UnknownEpoch { epoch: header.epoch, current });
        };
        let id = header.session_id;
        let session = if state.sessions.contains_key(&id) {
            match state.sessions.get_mut(&id) {
                Some(session) => RunSession::Kept(session),
                None => return Err(auth_failed()),
            }
        } else {
            // A forgotten session resumes after its newest counter.
            let window = state.tombstones.get(&id).map_or_else(ReplayWindow::new, |&n| ReplayWindow::after(n));
            RunSession::New { state, window, key: None, max: *max_sessions }
        };
        Ok(SessionRun { vni: header.vni, epoch: header.epoch, session_id: id, cipher, clock, session })
    }
}

/// One sender session of one epoch, looked up once ([`Opener::session`])
/// to open a run of its packets.
pub struct SessionRun<'a> {
    vni: Vni,
    epoch: u32,
    session_id: u64,
    cipher: Cipher,
    clock: &'a mut u64,
    session: RunSession<'a>,
}

/// The session of a [`SessionRun`]. The new session's key and window are
/// large, but a run lives on the stack for one run of a batch: boxing them
/// would allocate per run.
#[allow(clippy::large_enum_variant)]
enum RunSession<'a> {
    /// Kept by the opener.
    Kept(&'a mut Session),
    /// Not kept yet: its window, and its key once derived; kept (in
    /// `state`, at most `max` sessions) when a packet authenticates.
    New { state: &'a mut EpochState, window: ReplayWindow, key: Option<LessSafeKey>, max: usize },
    /// Was new, and keeping it failed (cannot happen): nothing opens.
    Gone,
}

impl SessionRun<'_> {
    /// Whether `header` is of this run's session (VNI, epoch, session id
    /// and cipher), so [`SessionRun::open`] may open its packet.
    pub fn matches(&self, header: &Header) -> bool {
        (header.vni, header.epoch, header.session_id, header.cipher)
            == (self.vni, self.epoch, self.session_id, self.cipher)
    }

    /// Authenticates and decrypts `packet` in place, as [`Opener::open`]
    /// does, given its `header` as [`Header::parse`] read it (parsed once
    /// for the batch). The replay window is checked before decrypting and
    /// updated only after the tag verifies. A packet whose header is not
    /// of this session ([`SessionRun::matches`]) cannot authenticate under
    /// its key: it is refused as [`OpenError::AuthenticationFailed`]
    /// without decrypting, as is one too short to be a packet at all
    /// ([`OpenError::Malformed`]). A header that is not the packet's own
    /// gives the wrong nonce, and the packet fails authentication.
    pub fn open(&mut self, header: &Header, packet: &mut [u8]) -> Result<Opened, OpenError> {
        if packet.len() < MIN_PACKET_LEN {
            return Err(OpenError::Malformed(MalformedReason::TooShort { len: packet.len() }));
        }
        if !self.matches(header) {
            return Err(auth_failed());
        }
        *self.clock += 1;
        let clock = *self.clock;
        let counter = header.counter;
        let refused = |r| match r {
            Refused::Replayed => OpenError::Replayed { counter },
            Refused::TooOld { newest } => OpenError::TooOld { counter, newest },
        };
        let (aad, body) = packet.split_at_mut(HEADER_LEN);
        let inner = HEADER_LEN..HEADER_LEN + body.len() - TAG_LEN;
        match &mut self.session {
            RunSession::Kept(session) => {
                session.window.check(counter).map_err(refused)?;
                session.key.open_in_place(header.nonce(), Aad::from(&*aad), body).map_err(|_| auth_failed())?;
                session.window.accept(counter).map_err(refused)?;
                session.last_used = clock;
            }
            RunSession::New { state, window, key, .. } => {
                window.check(counter).map_err(refused)?;
                let key = key.get_or_insert_with(|| state.network.session_key(self.session_id, self.cipher));
                key.open_in_place(header.nonce(), Aad::from(&*aad), body).map_err(|_| auth_failed())?;
                window.accept(counter).map_err(refused)?;
                // Genuine: the opener keeps it from now on.
                let RunSession::New { state, window, key: Some(key), max } =
                    std::mem::replace(&mut self.session, RunSession::Gone)
                else {
                    return Err(auth_failed());
                };
                let session = Session { key, window, last_used: clock };
                self.session = RunSession::Kept(state.insert(self.session_id, session, max));
            }
            RunSession::Gone => return Err(auth_failed()),
        }
        Ok(Opened {
            vni: header.vni,
            epoch: header.epoch,
            session_id: header.session_id,
            counter,
            inner,
            checksum: header.checksum,
        })
    }
}

impl fmt::Debug for SessionRun<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionRun")
            .field("vni", &self.vni)
            .field("epoch", &self.epoch)
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

/// The error of a packet whose tag does not verify.
fn auth_failed() -> OpenError {
    OpenError::AuthenticationFailed
}

impl EpochState {
    fn new(network: NetworkKey) -> EpochState {
        EpochState {
            network,
            sessions: HashMap::default(),
            tombstones: HashMap::default(),
            tombstone_order: VecDeque::new(),
        }
    }

    /// Adds an authenticated session, first forgetting the least recently
    /// used one if `max` are kept (remembering its newest counter); returns
    /// it as kept.
    fn insert(&mut self, session_id: u64, session: Session, max: usize) -> &mut Session {
        if self.sessions.len() >= max {
            let lru = self.sessions.iter().min_by_key(|(_, s)| s.last_used).map(|(&id, _)| id);
            if let Some(old) = lru.and_then(|id| self.sessions.remove_entry(&id)) {
                self.remember(old.0, old.1.window.newest(), max * TOMBSTONES_PER_SESSION);
            }
        }
        if self.tombstones.remove(&session_id).is_some() {
            self.tombstone_order.retain(|&id| id != session_id);
        }
        self.sessions.entry(session_id).insert(session).into_mut()
    }

    /// Remembers the newest counter of a forgotten session, forgetting the
    /// oldest such record beyond `max`.
    fn remember(&mut self, session_id: u64, newest: u64, max: usize) {
        if self.tombstones.insert(session_id, newest).is_none() {
            self.tombstone_order.push_back(session_id);
        }
        while self.tombstone_order.len() > max {
            if let Some(id) = self.tombstone_order.pop_front() {
                self.tombstones.remove(&id);
            }
        }
    }
}

impl fmt::Debug for Opener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opener")
            .field("vni", &self.vni)
            .field("cipher", &self.cipher)
            .field("current_epoch", &self.current)
            .field("sessions", &self.session_count())
            .finish_non_exhaustive()
    }
}
