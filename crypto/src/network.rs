//! [`NetworkCrypto`]: everything one host needs to encrypt one overlay
//! network, and key rotation.

use std::collections::VecDeque;
use std::ops::Range;

use vxlan::Vni;

use crate::error::{OpenError, SealError};
use crate::keys::NetworkKey;
use crate::open::{Opened, Opener};
use crate::seal::Sealer;
use crate::secret::ClusterSecret;
use crate::wire::{Header, InnerChecksum};

/// How many of this host's own recent sender sessions are remembered, so
/// that packets it sent cannot be reflected back to it.
const OWN_SESSIONS: usize = 16;

/// The secret-derived state of one encrypted overlay network on one host: a
/// [`Sealer`] for the current epoch and an [`Opener`] accepting the previous,
/// current and next epochs.
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
#[derive(Debug)]
pub struct NetworkCrypto {
    secret: ClusterSecret,
    sealer: Sealer,
    opener: Opener,
    own_sessions: VecDeque<u64>,
}

impl NetworkCrypto {
    /// The state of network `vni` at key epoch `epoch`, with a new sender
    /// session.
    pub fn new(secret: &ClusterSecret, vni: Vni, epoch: u32) -> Result<NetworkCrypto, SealError> {
        let mut crypto = NetworkCrypto {
            secret: secret.clone(),
            sealer: Sealer::new(NetworkKey::derive(secret, vni, epoch))?,
            opener: Opener::new(secret, vni, epoch),
            own_sessions: VecDeque::with_capacity(OWN_SESSIONS),
        };
        crypto.remember_own_session();
        Ok(crypto)
    }

    /// Records the sealer's session id as one of this host's own.
    fn remember_own_session(&mut self) {
        let id = self.sealer.session_id();
        if self.own_sessions.back() != Some(&id) {
            if self.own_sessions.len() == OWN_SESSIONS {
                self.own_sessions.pop_front();
            }
            self.own_sessions.push_back(id);
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
    /// Setting the current epoch again changes nothing.
    pub fn set_epoch(&mut self, epoch: u32) -> Result<(), SealError> {
        if epoch == self.current_epoch() {
            return Ok(());
        }
        self.sealer = Sealer::new(NetworkKey::derive(&self.secret, self.vni(), epoch))?;
        self.opener.set_epoch(epoch);
        self.remember_own_session();
        Ok(())
    }

    /// A further sender session at the current epoch, for another thread
    /// sealing for this network. Replace it when the epoch changes.
    pub fn new_sealer(&self) -> Result<Sealer, SealError> {
        Sealer::new(NetworkKey::derive(&self.secret, self.vni(), self.current_epoch()))
    }

    /// See [`Sealer::seal`].
    pub fn seal(&mut self, inner: &[u8], out: &mut Vec<u8>) -> Result<Range<usize>, SealError> {
        let sealed = self.sealer.seal(inner, out);
        self.remember_own_session();
        sealed
    }

    /// See [`Sealer::seal_in_place`].
    pub fn seal_in_place(
        &mut self,
        packet: &mut [u8],
        inner_len: usize,
        checksum: InnerChecksum,
    ) -> Result<usize, SealError> {
        let sealed = self.sealer.seal_in_place(packet, inner_len, checksum);
        self.remember_own_session();
        sealed
    }

    /// See [`Opener::open`]; also refuses packets of this host's own recent
    /// sender sessions ([`OpenError::Reflected`]).
    pub fn open(&mut self, packet: &mut [u8]) -> Result<Opened, OpenError> {
        let header = Header::parse(packet)?;
        if self.own_sessions.contains(&header.session_id) {
            return Err(OpenError::Reflected);
        }
        self.opener.open(packet)
    }

    /// The sender session.
    pub fn sealer(&mut self) -> &mut Sealer {
        &mut self.sealer
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
        a.seal(&[0x5a; 60], &mut packet).unwrap();
        assert_eq!(a.open(&mut packet.clone()).unwrap_err(), OpenError::Reflected);
        b.open(&mut packet.clone()).expect("another host opens it");
        // Sessions from before a rotation are remembered too.
        a.set_epoch(1).unwrap();
        assert_eq!(a.open(&mut packet).unwrap_err(), OpenError::Reflected);
    }
}
