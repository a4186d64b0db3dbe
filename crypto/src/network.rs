//! [`NetworkCrypto`]: everything one host needs to encrypt one overlay
//! network, and key rotation.

use std::ops::Range;

use vxlan::Vni;

use crate::error::{OpenError, SealError};
use crate::keys::NetworkKey;
use crate::open::{Opened, Opener};
use crate::seal::Sealer;
use crate::secret::ClusterSecret;

/// The secret-derived state of one encrypted overlay network on one host: a
/// [`Sealer`] for the current epoch and an [`Opener`] accepting the previous,
/// current and next epochs.
///
/// Rotation (`vswitchctl network key rotate`) is [`NetworkCrypto::set_epoch`]
/// with the next epoch on every host, in any order: a host that has rotated
/// sends with the new epoch, which hosts not yet rotated accept as their next
/// one; it still accepts the old epoch as its previous one.
#[derive(Debug)]
pub struct NetworkCrypto {
    secret: ClusterSecret,
    sealer: Sealer,
    opener: Opener,
}

impl NetworkCrypto {
    /// The state of network `vni` at key epoch `epoch`, with a new sender
    /// session.
    pub fn new(secret: &ClusterSecret, vni: Vni, epoch: u32) -> Result<NetworkCrypto, SealError> {
        Ok(NetworkCrypto {
            secret: secret.clone(),
            sealer: Sealer::new(NetworkKey::derive(secret, vni, epoch))?,
            opener: Opener::new(secret, vni, epoch),
        })
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
        Ok(())
    }

    /// A further sender session at the current epoch, for another thread
    /// sealing for this network. Replace it when the epoch changes.
    pub fn new_sealer(&self) -> Result<Sealer, SealError> {
        Sealer::new(NetworkKey::derive(&self.secret, self.vni(), self.current_epoch()))
    }

    /// See [`Sealer::seal`].
    pub fn seal(&mut self, inner: &[u8], out: &mut Vec<u8>) -> Result<Range<usize>, SealError> {
        self.sealer.seal(inner, out)
    }

    /// See [`Sealer::seal_in_place`].
    pub fn seal_in_place(&mut self, packet: &mut [u8], inner_len: usize) -> Result<usize, SealError> {
        self.sealer.seal_in_place(packet, inner_len)
    }

    /// See [`Opener::open`].
    pub fn open(&mut self, packet: &mut [u8]) -> Result<Opened, OpenError> {
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
