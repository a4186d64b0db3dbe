//! The datapath's end of the L4 translator: host sockets, listeners and
//! their event-loop registrations.

use std::net::SocketAddrV4;

use super::Datapath;
use super::handle::DatapathError;
use crate::nat::{FlowInfo, Proto, Publication};

impl Datapath {
    /// Opens listeners for new publications, updates the backends of open
    /// ones; all or nothing.
    pub(super) fn publish(&mut self, publications: Vec<Publication>) -> Result<(), DatapathError> {
        let _ = publications;
        Err(DatapathError::Unresponsive)
    }

    /// Closes published ports.
    pub(super) fn unpublish(&mut self, keys: &[(Proto, SocketAddrV4)]) {
        let _ = keys;
    }

    /// The live flows.
    pub(super) fn nat_flows(&self) -> Vec<FlowInfo> {
        Vec::new()
    }
}
