//! Zero-copy views over frame bytes, in the smoltcp `wire` style: a view wraps
//! any `AsRef<[u8]>`, `new_checked` validates the length once, and after that
//! no accessor can panic.

mod ethernet;
mod vnet_hdr;

pub use ethernet::{ETHERNET_HEADER_LEN, EtherType, EthernetFrame, VLAN_TAG_LEN, VlanTag};
/// The MAC address type, shared with the control protocol (`ctl`) from the
/// `netaddr` crate below both, so the frame views import no control protocol.
pub use netaddr::{MacAddr, MacParseError};
pub use vnet_hdr::{VirtioNetHdr, VnetHdrTooShort};

/// Why a byte buffer is not a valid frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer is shorter than the headers it claims to carry.
    #[error("frame truncated: {len} bytes, need at least {needed}")]
    Truncated {
        /// Bytes present.
        len: usize,
        /// Bytes the headers need.
        needed: usize,
    },
}
