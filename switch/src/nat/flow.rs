//! The flow table: a slab of flows with a hash index by 5-tuple and a
//! bound on its size. Lookups cost the same with ten flows or 100,000.

use std::net::SocketAddr;

use hashbrown::HashMap;

use super::Proto;
use super::packet::Head;
use super::tcp::TcpFlow;
use crate::port::{NetworkId, PortId};

/// A flow's slot in the table; also the daemon's handle for its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(pub u32);

/// A published port's listener, as the daemon numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerId(pub u32);

/// What identifies a flow: the sandbox's network and the inner 5-tuple as
/// the sandbox sees it (ICMP echo: the echo id as the sandbox's port and 0
/// as the remote's). Both addresses are of one family and carry no IPv6
/// flow label or scope, so IPv4 and IPv6 flows share one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FlowKey {
    pub(crate) network: NetworkId,
    pub(crate) proto: Proto,
    pub(crate) sandbox: SocketAddr,
    pub(crate) remote: SocketAddr,
}

/// Where the host side of a flow lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostSide {
    /// Its own socket, held by the daemon under the flow's id.
    Own,
    /// A published UDP port's listening socket: the sandbox's datagrams
    /// are sent from it to the client.
    Listener(ListenerId),
}

/// Per-protocol state.
#[derive(Debug)]
pub(crate) enum FlowState {
    Tcp(Box<TcpFlow>),
    /// UDP and ICMP echo: whether the remote has answered yet.
    Datagram {
        answered: bool,
    },
}

/// One flow.
#[derive(Debug)]
pub(crate) struct Flow {
    pub(crate) key: FlowKey,
    pub(crate) inbound: bool,
    /// The gateway port frames toward the sandbox enter the bridge from.
    pub(crate) gateway: PortId,
    /// Addresses of frames toward the sandbox.
    pub(crate) head: Head,
    /// The client's real address when it differs from what the sandbox
    /// sees (a loopback client is shown as the gateway).
    pub(crate) outer_remote: SocketAddr,
    pub(crate) host: HostSide,
    pub(crate) state: FlowState,
    pub(crate) opened: u64,
    pub(crate) last_seen: u64,
    /// The timer the heap holds for this flow, if any.
    pub(crate) timer: Option<u64>,
    pub(crate) bytes_from_sandbox: u64,
    pub(crate) bytes_to_sandbox: u64,
}

/// Flows by slot and by key.
#[derive(Debug, Default)]
pub(crate) struct FlowTable {
    slots: Vec<Option<Flow>>,
    free: Vec<u32>,
    index: HashMap<FlowKey, u32, foldhash::fast::RandomState>,
    len: usize,
    /// The table emptied after a peak and gave its memory back.
    emptied: bool,
}

impl FlowTable {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn lookup(&self, key: &FlowKey) -> Option<FlowId> {
        self.index.get(key).map(|&slot| FlowId(slot))
    }

    pub(crate) fn get(&self, id: FlowId) -> Option<&Flow> {
        self.slots.get(id.0 as usize)?.as_ref()
    }

    pub(crate) fn get_mut(&mut self, id: FlowId) -> Option<&mut Flow> {
        self.slots.get_mut(id.0 as usize)?.as_mut()
    }

    /// Adds a flow whose key is not in the table.
    pub(crate) fn insert(&mut self, flow: Flow) -> FlowId {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(flow.key, slot);
        self.slots[slot as usize] = Some(flow);
        self.len += 1;
        FlowId(slot)
    }

    /// Files flow `id` under a new key (not in the table), keeping its slot.
    pub(crate) fn rekey(&mut self, id: FlowId, key: FlowKey) {
        let Some(flow) = self.slots.get_mut(id.0 as usize).and_then(Option::as_mut) else { return };
        self.index.remove(&flow.key);
        flow.key = key;
        self.index.insert(key, id.0);
    }

    pub(crate) fn remove(&mut self, id: FlowId) -> Option<Flow> {
        let flow = self.slots.get_mut(id.0 as usize)?.take()?;
        self.index.remove(&flow.key);
        self.free.push(id.0);
        self.len -= 1;
        // Give memory back once the table has emptied after a peak.
        if self.len == 0 && self.slots.len() > 1024 {
            self.slots = Vec::new();
            self.free = Vec::new();
            self.index = HashMap::default();
            self.emptied = true;
        }
        Some(flow)
    }

    /// Whether the table emptied after a peak since the last call.
    pub(crate) fn take_emptied(&mut self) -> bool {
        std::mem::take(&mut self.emptied)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (FlowId, &Flow)> {
        self.slots.iter().enumerate().filter_map(|(i, f)| Some((FlowId(i as u32), f.as_ref()?)))
    }
}
