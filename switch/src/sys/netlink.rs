//! Interface configuration over rtnetlink, synchronously (never runs `ip`).
//!
//! **Crate choice.** We use `netlink-packet-route` (message types and their
//! (de)serialisation) with `netlink-packet-core` (framing) and `netlink-sys`
//! (the bare `AF_NETLINK` socket, default features off), driven by a small
//! blocking request/ACK loop here. That gives a sync API with few, light
//! dependencies (no tokio, futures or runtime, unlike `rtnetlink`), typed
//! messages instead of hand-packed attributes, and it is the same message
//! layer the async `rtnetlink` crate is built on (same maintainers). `neli`
//! would also work, but its rtnetlink messages are less completely typed.
//!
//! **Namespaces.** A netlink socket acts on the network namespace it was
//! created in. [`Netlink::open_in`] creates the socket on a helper thread that
//! joined the namespace ([`super::netns::run_in`]); afterwards it is used from
//! any thread. The free functions (`configure_link`, ...) do that for one
//! call; keep a [`Netlink`] around to issue several.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use thiserror::Error;

use super::netns::{NetNs, NetNsError, run_in};

mod source_routes;
mod watch;
mod xdp;
pub use source_routes::{SOURCE_PRIORITY, SUPPRESS_PRIORITY, table_of};
pub use watch::{LinkEvent, LinkWatcher};
pub use xdp::{XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE};

/// Longest interface name (`IFNAMSIZ - 1`).
const MAX_IFNAME_LEN: usize = 15;

/// The metric of the IPv6 default routes the switch sets: below the 1024
/// of the ones the kernel learns from router advertisements (every
/// gateway of a sandbox advertises itself), so the route the switch chose
/// (`--gw-priority`, the first network with IPv6) is the one used, not
/// whichever router the kernel prefers among equals.
pub const STATIC_DEFAULT6_METRIC: u32 = 512;

/// Receive buffer size; one datagram holds at least one full link message.
const RECV_BUF_LEN: usize = 64 * 1024;

/// Errors from netlink operations.
#[derive(Debug, Error)]
pub enum NetlinkError {
    /// Opening, binding or connecting the netlink socket failed.
    #[error("cannot open rtnetlink socket")]
    Socket(#[source] io::Error),
    /// Sending a request failed.
    #[error("sending netlink request failed")]
    Send(#[source] io::Error),
    /// Receiving a reply failed.
    #[error("receiving netlink reply failed")]
    Recv(#[source] io::Error),
    /// A reply could not be decoded.
    #[error("cannot decode netlink reply: {0}")]
    Decode(String),
    /// The kernel refused the request.
    #[error("{op} {target} refused by the kernel")]
    Kernel {
        /// The operation (`set link up`, `add address`, ...).
        op: &'static str,
        /// The interface (or route) concerned.
        target: String,
        /// The errno the kernel returned.
        #[source]
        source: io::Error,
    },
    /// No interface of that name exists in the namespace.
    #[error("no interface named {0:?}")]
    NoSuchLink(String),
    /// The interface name is not valid.
    #[error("invalid interface name {0:?}")]
    InvalidName(String),
    /// An IPv4 prefix length above 32.
    #[error("invalid IPv4 prefix length /{0}")]
    InvalidPrefix(u8),
    /// An IPv6 prefix length above 128.
    #[error("invalid IPv6 prefix length /{0}")]
    InvalidPrefix6(u8),
    /// Entering the namespace to open the socket failed.
    #[error("cannot enter the network namespace")]
    Namespace(#[source] Box<NetNsError>),
}

impl NetlinkError {
    /// Whether the kernel refused the request as a feature it lacks
    /// (`EAFNOSUPPORT`, `EOPNOTSUPP`), e.g. policy routing rules on a
    /// kernel built without multiple routing tables.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, NetlinkError::Kernel { source, .. }
            if matches!(source.raw_os_error(), Some(libc::EAFNOSUPPORT | libc::EOPNOTSUPP)))
    }
}

/// What [`configure_link`] sets on an interface; `None` leaves a property
/// unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkConfig {
    /// Rename the interface (e.g. to `eth0`).
    pub new_name: Option<String>,
    /// Ethernet address.
    pub mac: Option<[u8; 6]>,
    /// MTU in bytes.
    pub mtu: Option<u32>,
    /// An IPv4 address and prefix length to add (replacing the same address).
    pub ipv4: Option<(Ipv4Addr, u8)>,
    /// An IPv6 address and prefix length to add (replacing the same
    /// address) without duplicate address detection, so it is usable at
    /// once; the kernel adds its on-link prefix route. Added after the
    /// interface is brought up when `up` is set.
    pub ipv6: Option<(Ipv6Addr, u8)>,
    /// Transmit queue length (`IFLA_TXQLEN`). On a TAP this is the depth
    /// of each queue's ring between the interface and the reader.
    pub txqueuelen: Option<u32>,
    /// Bring the interface up at the end.
    pub up: bool,
}

/// A snapshot of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// MTU.
    pub mtu: Option<u32>,
    /// Link-layer address (6 bytes for Ethernet).
    pub mac: Option<Vec<u8>>,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Transmit queue length (`IFLA_TXQLEN`).
    pub txqueuelen: Option<u32>,
    /// Frames the kernel dropped on transmit (`tx_dropped` of
    /// `IFLA_STATS64`); on a TAP, frames its full queue turned away.
    pub tx_dropped: Option<u64>,
    /// Receive queues the device was created with (`IFLA_NUM_RX_QUEUES`);
    /// fewer may be in use (`ethtool -L`).
    pub rx_queues: Option<u32>,
}

/// A blocking rtnetlink socket bound to one network namespace.
#[derive(Debug)]
pub struct Netlink {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> Result<Netlink, NetlinkError> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
        sock.bind_auto().map_err(NetlinkError::Socket)?;
        sock.connect(&SocketAddr::new(0, 0)).map_err(NetlinkError::Socket)?;
        Ok(Netlink { sock, seq: 0, buf: Vec::with_capacity(RECV_BUF_LEN) })
    }

    /// Opens a socket that acts inside `ns` (no thread is spawned when `ns`
    /// is the caller's namespace).
    pub fn open_in(ns: &NetNs) -> Result<Netlink, NetlinkError> {
        let ns_err = |e| NetlinkError::Namespace(Box::new(e));
        if ns.is_current().map_err(ns_err)? {
            return Netlink::open();
        }
        run_in(ns, Netlink::open).map_err(ns_err)?
    }

    /// Looks an interface up by name; `None` if it does not exist.
    pub fn link(&mut self, name: &str) -> Result<Option<LinkState>, NetlinkError> {
        check_ifname(name)?;
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        let replies = match self.request("get link", name, RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(r) => r,
            Err(NetlinkError::Kernel { source, .. }) if source.raw_os_error() == Some(libc::ENODEV) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        Ok(replies.into_iter().find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(link_state(l)),
            _ => None,
        }))
    }

    /// True if an interface of that name exists.
    pub fn link_exists(&mut self, name: &str) -> Result<bool, NetlinkError> {
        Ok(self.link(name)?.is_some())
    }

    fn index(&mut self, name: &str) -> Result<LinkState, NetlinkError> {
        self.link(name)?.ok_or_else(|| NetlinkError::NoSuchLink(name.to_owned()))
    }

    fn set_link(
        &mut self,
        op: &'static str,
        name: &str,
        edit: impl FnOnce(&mut LinkMessage),
    ) -> Result<(), NetlinkError> {
        let index = self.index(name)?.index;
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        edit(&mut msg);
        self.request(op, name, RouteNetlinkMessage::SetLink(msg), 0).map(drop)
    }

    /// Sets `IFF_UP`.
    pub fn set_link_up(&mut self, name: &str) -> Result<(), NetlinkError> {
        self.set_link("set link up", name, |m| {
            m.header.flags = LinkFlags::Up;
            m.header.change_mask = LinkFlags::Up;
        })
    }

    /// Clears `IFF_UP`.
    pub fn set_link_down(&mut self, name: &str) -> Result<(), NetlinkError> {
        self.set_link("set link down", name, |m| {
            m.header.flags = LinkFlags::empty();
            m.header.change_mask = LinkFlags::Up;
        })
    }

    /// Sets the MTU.
    pub fn set_mtu(&mut self, name: &str, mtu: u32) -> Result<(), NetlinkError> {
        self.set_link("set mtu", name, |m| m.attributes.push(LinkAttribute::Mtu(mtu)))
    }

    /// Sets the transmit queue length (`IFLA_TXQLEN`); a TAP resizes its
    /// queues' rings to it.
    pub fn set_txqueuelen(&mut self, name: &str, len: u32) -> Result<(), NetlinkError> {
        self.set_link("set txqueuelen", name, |m| m.attributes.push(LinkAttribute::TxQueueLen(len)))
    }

    /// Moves the interface from this socket's namespace into `ns` (it arrives
    /// there down, addresses dropped).
    pub fn move_to_netns(&mut self, name: &str, ns: &NetNs) -> Result<(), NetlinkError> {
        let fd = ns.as_raw_fd();
        self.set_link("move link to netns", name, |m| m.attributes.push(LinkAttribute::NetNsFd(fd)))
    }

    /// Applies `cfg` to interface `name` (see [`LinkConfig`]). A rename takes
    /// the link down first, as the kernel requires.
    pub fn configure_link(&mut self, name: &str, cfg: &LinkConfig) -> Result<(), NetlinkError> {
        let state = self.index(name)?;
        if let Some(new) = &cfg.new_name {
            check_ifname(new)?;
        }
        if let Some((_, prefix)) = cfg.ipv4
            && prefix > 32
        {
            return Err(NetlinkError::InvalidPrefix(prefix));
        }
        if let Some((_, prefix)) = cfg.ipv6
            && prefix > 128
        {
            return Err(NetlinkError::InvalidPrefix6(prefix));
        }
        let renaming = cfg.new_name.as_deref().is_some_and(|n| n != name);
        if renaming && state.up {
            self.set_link_down(name)?;
        }
        let mut msg = LinkMessage::default();
        msg.header.index = state.index;
        if renaming && let Some(new) = &cfg.new_name {
            msg.attributes.push(LinkAttribute::IfName(new.clone()));
        }
        if let Some(mac) = cfg.mac {
            msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        if let Some(mtu) = cfg.mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(len) = cfg.txqueuelen {
            msg.attributes.push(LinkAttribute::TxQueueLen(len));
        }
        if !msg.attributes.is_empty() {
            self.request("configure link", name, RouteNetlinkMessage::SetLink(msg), 0)?;
        }
        let name = cfg.new_name.as_deref().unwrap_or(name);
        if let Some((addr, prefix)) = cfg.ipv4 {
            self.add_ipv4_addr(name, addr, prefix)?;
        }
        if cfg.up {
            self.set_link_up(name)?;
        }
        if let Some((addr, prefix)) = cfg.ipv6 {
            self.add_ipv6_addr(name, addr, prefix)?;
        }
        Ok(())
    }

    /// Adds (or replaces) `addr/prefix` on interface `name`.
    pub fn add_ipv4_addr(&mut self, name: &str, addr: Ipv4Addr, prefix: u8) -> Result<(), NetlinkError> {
        if prefix > 32 {
            return Err(NetlinkError::InvalidPrefix(prefix));
        }
        let index = self.index(name)?.index;
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix;
        msg.header.scope = AddressScope::Universe;
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(IpAddr::V4(addr)));
        msg.attributes.push(AddressAttribute::Address(IpAddr::V4(addr)));
        self.request("add address", name, RouteNetlinkMessage::NewAddress(msg), NLM_F_CREATE | NLM_F_REPLACE).map(drop)
    }

    /// Adds (or replaces) the IPv6 address `addr/prefix` on interface
    /// `name`, flagged `nodad` (no duplicate address detection: the switch
    /// hands out unique addresses, and the address is usable at once rather
    /// than tentative for a second or more). The kernel adds the on-link
    /// route to the prefix with it.
    pub fn add_ipv6_addr(&mut self, name: &str, addr: Ipv6Addr, prefix: u8) -> Result<(), NetlinkError> {
        if prefix > 128 {
            return Err(NetlinkError::InvalidPrefix6(prefix));
        }
        let index = self.index(name)?.index;
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet6;
        msg.header.prefix_len = prefix;
        msg.header.scope = AddressScope::Universe;
        msg.header.flags = AddressHeaderFlags::Nodad;
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(IpAddr::V6(addr)));
        msg.attributes.push(AddressAttribute::Address(IpAddr::V6(addr)));
        msg.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
        self.request("add address", name, RouteNetlinkMessage::NewAddress(msg), NLM_F_CREATE | NLM_F_REPLACE).map(drop)
    }

    /// Adds (or replaces) the IPv4 default route via `gateway` out of `ifname`
    /// in the main table.
    pub fn add_default_route(&mut self, gateway: Ipv4Addr, ifname: &str) -> Result<(), NetlinkError> {
        self.add_default_route_via(IpAddr::V4(gateway), ifname)
    }

    /// Adds (or replaces) the IPv6 default route via `gateway` out of
    /// `ifname` in the main table, at [`STATIC_DEFAULT6_METRIC`].
    pub fn add_default_route6(&mut self, gateway: Ipv6Addr, ifname: &str) -> Result<(), NetlinkError> {
        self.add_default_route_via(IpAddr::V6(gateway), ifname)
    }

    fn add_default_route_via(&mut self, gateway: IpAddr, ifname: &str) -> Result<(), NetlinkError> {
        let index = self.index(ifname)?.index;
        let mut msg = RouteMessage::default();
        msg.header.address_family = match gateway {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        msg.header.destination_prefix_length = 0;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes.push(RouteAttribute::Gateway(match gateway {
            IpAddr::V4(g) => RouteAddress::Inet(g),
            IpAddr::V6(g) => RouteAddress::Inet6(g),
        }));
        msg.attributes.push(RouteAttribute::Oif(index));
        if gateway.is_ipv6() {
            msg.attributes.push(RouteAttribute::Priority(STATIC_DEFAULT6_METRIC));
        }
        self.request(
            "add default route via",
            &gateway.to_string(),
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map(drop)
    }

    /// Deletes the interface.
    pub fn delete_link(&mut self, name: &str) -> Result<(), NetlinkError> {
        let index = self.index(name)?.index;
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.request("delete link", name, RouteNetlinkMessage::DelLink(msg), 0).map(drop)
    }

    /// Sends one request with `NLM_F_REQUEST | NLM_F_ACK | extra_flags` and
    /// collects the replies up to the ACK (or `NLMSG_DONE`).
    fn request(
        &mut self,
        op: &'static str,
        target: &str,
        msg: RouteNetlinkMessage,
        extra_flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | extra_flags;
        req.header.sequence_number = seq;
        req.finalize();
        let mut out = vec![0u8; req.buffer_len()];
        req.serialize(&mut out);
        self.sock.send(&out, 0).map_err(NetlinkError::Send)?;

        let mut replies = Vec::new();
        loop {
            self.buf.clear();
            self.sock.recv(&mut self.buf, 0).map_err(NetlinkError::Recv)?;
            let mut off = 0;
            while off < self.buf.len() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[off..])
                    .map_err(|e| NetlinkError::Decode(e.to_string()))?;
                let len = reply.header.length as usize;
                if len == 0 {
                    return Err(NetlinkError::Decode("zero-length netlink message".into()));
                }
                off += len.next_multiple_of(4);
                if reply.header.sequence_number != seq {
                    continue; // a stale reply to an earlier request
                }
                match reply.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(replies),
                            Some(_) => Err(NetlinkError::Kernel { op, target: target.to_owned(), source: e.to_io() }),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::InnerMessage(m) => replies.push(m),
                    _ => {}
                }
            }
        }
    }
}

fn link_state(msg: LinkMessage) -> LinkState {
    let mut state = LinkState {
        index: msg.header.index,
        name: String::new(),
        mtu: None,
        mac: None,
        up: msg.header.flags.contains(LinkFlags::Up),
        txqueuelen: None,
        tx_dropped: None,
        rx_queues: None,
    };
    for attr in msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => state.name = n,
            LinkAttribute::Mtu(m) => state.mtu = Some(m),
            LinkAttribute::Address(a) => state.mac = Some(a),
            LinkAttribute::TxQueueLen(n) => state.txqueuelen = Some(n),
            LinkAttribute::Stats64(st) => state.tx_dropped = Some(st.tx_dropped),
            LinkAttribute::NumRxQueues(n) => state.rx_queues = Some(n),
            _ => {}
        }
    }
    state
}

fn check_ifname(name: &str) -> Result<(), NetlinkError> {
    let bad = name.is_empty()
        || name.len() > MAX_IFNAME_LEN
        || name == "."
        || name == ".."
        || name.bytes().any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace());
    if bad { Err(NetlinkError::InvalidName(name.to_owned())) } else { Ok(()) }
}

/// Moves `ifname` from the calling thread's (host) namespace into `ns`.
pub fn move_link_to_netns(ifname: &str, ns: &NetNs) -> Result<(), NetlinkError> {
    Netlink::open()?.move_to_netns(ifname, ns)
}

/// Applies `cfg` to `current_name` inside `ns`.
pub fn configure_link(ns: &NetNs, current_name: &str, cfg: &LinkConfig) -> Result<(), NetlinkError> {
    Netlink::open_in(ns)?.configure_link(current_name, cfg)
}

/// Adds the IPv4 default route via `gateway` on `ifname` inside `ns`.
pub fn add_default_route(ns: &NetNs, gateway: Ipv4Addr, ifname: &str) -> Result<(), NetlinkError> {
    Netlink::open_in(ns)?.add_default_route(gateway, ifname)
}

/// Adds the IPv6 default route via `gateway` on `ifname` inside `ns`.
pub fn add_default_route6(ns: &NetNs, gateway: Ipv6Addr, ifname: &str) -> Result<(), NetlinkError> {
    Netlink::open_in(ns)?.add_default_route6(gateway, ifname)
}

/// Brings `ifname` up inside `ns` (use [`NetNs::current`] for the host).
pub fn set_link_up(ns: &NetNs, ifname: &str) -> Result<(), NetlinkError> {
    Netlink::open_in(ns)?.set_link_up(ifname)
}

/// Sets the MTU of `ifname` inside `ns`.
pub fn set_mtu(ns: &NetNs, ifname: &str, mtu: u32) -> Result<(), NetlinkError> {
    Netlink::open_in(ns)?.set_mtu(ifname, mtu)
}

/// Sets the transmit queue length of `ifname` inside `ns`.
pub fn set_txqueuelen(ns: &NetNs, ifname: &str, len: u32) -> Result<(), NetlinkError> {
    Netlink::open_in(ns)?.set_txqueuelen(ifname, len)
}

/// Deletes `ifname` inside `ns`.
pub fn delete_link(ns: &NetNs, ifname: &str) -> Result<(), NetlinkError> {
    Netlink::open_in(ns)?.delete_link(ifname)
}

/// True if `ifname` exists inside `ns`.
pub fn link_exists(ns: &NetNs, ifname: &str) -> Result<bool, NetlinkError> {
    Netlink::open_in(ns)?.link_exists(ifname)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::link::Stats64;

    #[test]
    fn link_state_reads_queue_length_and_tx_drops() {
        let mut msg = LinkMessage::default();
        msg.header.index = 7;
        msg.attributes.push(LinkAttribute::IfName("eth0".into()));
        msg.attributes.push(LinkAttribute::TxQueueLen(4096));
        let mut stats = Stats64::default();
        stats.tx_dropped = 1234;
        stats.rx_dropped = 5;
        msg.attributes.push(LinkAttribute::Stats64(stats));
        let state = link_state(msg);
        assert_eq!(state.txqueuelen, Some(4096));
        assert_eq!(state.tx_dropped, Some(1234));
        // A message without the attributes says so rather than claiming 0.
        let bare = link_state(LinkMessage::default());
        assert_eq!((bare.txqueuelen, bare.tx_dropped), (None, None));
    }

    #[test]
    fn interface_names_are_checked_before_any_syscall() {
        for bad in ["", "0123456789abcdef", "a/b", "a b", ".."] {
            assert!(matches!(check_ifname(bad), Err(NetlinkError::InvalidName(_))), "{bad:?}");
        }
        assert!(check_ifname("eth0").is_ok());
    }

    #[test]
    fn loopback_is_visible_without_privileges() {
        // Reading links needs no capability; every namespace has `lo`.
        let mut nl = Netlink::open().unwrap();
        let lo = nl.link("lo").unwrap().expect("lo exists");
        assert_eq!(lo.name, "lo");
        assert_eq!(lo.index, 1);
        assert!(lo.mtu.is_some());
        assert!(lo.txqueuelen.is_some(), "IFLA_TXQLEN is parsed");
        assert!(lo.tx_dropped.is_some(), "IFLA_STATS64 is parsed");
        assert!(lo.rx_queues.is_some_and(|n| n >= 1), "IFLA_NUM_RX_QUEUES is parsed");
        assert!(nl.link("vs-no-such-if0").unwrap().is_none());
        assert!(matches!(nl.set_link_up("vs-no-such-if0"), Err(NetlinkError::NoSuchLink(_))));
    }
}
