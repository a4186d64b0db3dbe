//! The rtnetlink requests AF_XDP ports need: veth pairs, attaching an XDP
//! program to an interface (`IFLA_XDP`), promiscuous mode. A child module
//! of `netlink` so it shares its request loop.

use std::os::fd::{AsRawFd, RawFd};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, LinkXdp,
};

use super::{Netlink, NetlinkError, check_ifname};
use crate::sys::netns::NetNs;

/// `XDP_FLAGS_SKB_MODE`: the generic hook, after the kernel built an skb.
pub const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// `XDP_FLAGS_DRV_MODE`: the driver's own hook (native XDP).
pub const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

impl Netlink {
    /// Creates a veth pair: `name` in this socket's namespace and `peer` in
    /// `peer_ns` (created there directly, so no name clash with the host),
    /// each with `queues` transmit and receive queues (at least one: a
    /// veth steers what one end sends to the other's receive queue of the
    /// same index, so an AF_XDP socket per queue can be read by its own
    /// worker).
    pub fn create_veth(&mut self, name: &str, peer: &str, peer_ns: &NetNs, queues: u32) -> Result<(), NetlinkError> {
        check_ifname(name)?;
        check_ifname(peer)?;
        let queues = queues.max(1);
        let mut peer_msg = LinkMessage::default();
        peer_msg.attributes.push(LinkAttribute::IfName(peer.to_owned()));
        peer_msg.attributes.push(LinkAttribute::NetNsFd(peer_ns.as_raw_fd()));
        peer_msg.attributes.push(LinkAttribute::NumTxQueues(queues));
        peer_msg.attributes.push(LinkAttribute::NumRxQueues(queues));
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        msg.attributes.push(LinkAttribute::NumTxQueues(queues));
        msg.attributes.push(LinkAttribute::NumRxQueues(queues));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        self.request("create veth", name, RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL).map(drop)
    }

    /// Attaches XDP program `prog` to interface `name` in the mode `flags`
    /// names ([`XDP_FLAGS_DRV_MODE`] or [`XDP_FLAGS_SKB_MODE`]), replacing
    /// the program there; `None` detaches the program of that mode.
    pub fn set_xdp(&mut self, name: &str, prog: Option<RawFd>, flags: u32) -> Result<(), NetlinkError> {
        let op = if prog.is_some() { "attach XDP program to" } else { "detach XDP program from" };
        self.set_link(op, name, |m| {
            m.attributes.push(LinkAttribute::Xdp(vec![LinkXdp::Fd(prog.unwrap_or(-1)), LinkXdp::Flags(flags)]))
        })
    }

    /// Sets or clears `IFF_PROMISC` (a bridge port must see every frame).
    pub fn set_promisc(&mut self, name: &str, on: bool) -> Result<(), NetlinkError> {
        self.set_link("set promiscuous mode of", name, |m| {
            m.header.flags = if on { LinkFlags::Promisc } else { LinkFlags::empty() };
            m.header.change_mask = LinkFlags::Promisc;
        })
    }
}
