//! Source-based routing inside a sandbox: a packet from an endpoint's
//! address leaves through that endpoint's gateway, whatever network
//! carries the sandbox's default route (the CNI `sbr` plugin's scheme).
//!
//! Three pieces per address family, none of which touches the main table:
//! - one rule `lookup main suppress_prefixlength 0` at [`SUPPRESS_PRIORITY`]:
//!   the main table decides every destination it has a route for other than
//!   its default route (on-link subnets, anything the sandbox added), so only
//!   the choice of default route depends on the source;
//! - per endpoint, a table of its own ([`table_of`] its interface index)
//!   holding `default via GATEWAY dev IFNAME`; it goes with the interface;
//! - per endpoint address, a rule `from ADDRESS lookup TABLE` at
//!   [`SOURCE_PRIORITY`], removed when the endpoint leaves.
//!
//! Without a matching source rule, lookups fall through to the main table's
//! own rule (priority 32766), as before.

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::{Netlink, NetlinkError};

/// Priority of the rule that lets the main table decide all but its default
/// route: after any rule of lower number a sandbox adds itself, before the
/// source rules.
pub const SUPPRESS_PRIORITY: u32 = 32_000;
/// Priority of the per-address rules, before the main table's own (32766).
pub const SOURCE_PRIORITY: u32 = 32_001;
/// Tables are numbered from here by interface index (the kernel's own
/// tables are 253–255, and 0 is unspecified).
const TABLE_BASE: u32 = 10_000;

/// The routing table of the interface with index `ifindex`.
pub fn table_of(ifindex: u32) -> u32 {
    TABLE_BASE + ifindex
}

fn family_of(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn full_prefix(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// A rule message of `family` that looks `table` up at `priority`.
fn rule(family: AddressFamily, table: u32, priority: u32) -> RuleMessage {
    let mut msg = RuleMessage::default();
    msg.header.family = family;
    msg.header.action = RuleAction::ToTable;
    // The header's table is a byte; a larger number goes in the attribute.
    msg.header.table = if table < 256 { table as u8 } else { RouteHeader::RT_TABLE_UNSPEC };
    msg.attributes.push(RuleAttribute::Table(table));
    msg.attributes.push(RuleAttribute::Priority(priority));
    msg
}

impl Netlink {
    /// Routes packets from `address` (an address of interface `ifname`)
    /// through `gateway` out of `ifname`, whatever the main table's default
    /// route: the interface's table gets the default route, the address
    /// its rule, and the family its suppressing rule. Idempotent: a rule
    /// that exists already is kept as it is.
    ///
    /// The suppressing rule goes first: a kernel without policy routing
    /// for the family (`CONFIG_IP_MULTIPLE_TABLES`,
    /// `CONFIG_IPV6_MULTIPLE_TABLES`) refuses it (see
    /// [`NetlinkError::is_unsupported`]) before a route meant for the
    /// interface's table could land in the main one.
    pub fn add_source_route(&mut self, address: IpAddr, gateway: IpAddr, ifname: &str) -> Result<(), NetlinkError> {
        let index = self.index(ifname)?.index;
        let family = family_of(address);
        let table = table_of(index);
        let mut suppress = rule(family, u32::from(RouteHeader::RT_TABLE_MAIN), SUPPRESS_PRIORITY);
        suppress.attributes.push(RuleAttribute::SuppressPrefixLen(0));
        self.add_rule("add suppressing rule", "main", suppress)?;
        let mut route = RouteMessage::default();
        route.header.address_family = family;
        route.header.destination_prefix_length = 0;
        route.header.table = RouteHeader::RT_TABLE_UNSPEC;
        route.header.protocol = RouteProtocol::Boot;
        route.header.scope = RouteScope::Universe;
        route.header.kind = RouteType::Unicast;
        route.attributes.push(RouteAttribute::Table(table));
        route.attributes.push(RouteAttribute::Gateway(match gateway {
            IpAddr::V4(g) => RouteAddress::Inet(g),
            IpAddr::V6(g) => RouteAddress::Inet6(g),
        }));
        route.attributes.push(RouteAttribute::Oif(index));
        let target = format!("{gateway} table {table}");
        self.request(
            "add source default route via",
            &target,
            RouteNetlinkMessage::NewRoute(route),
            NLM_F_CREATE | NLM_F_REPLACE,
        )?;
        let mut from = rule(family, table, SOURCE_PRIORITY);
        from.header.src_len = full_prefix(address);
        from.attributes.push(RuleAttribute::Source(address));
        self.add_rule("add source rule", &address.to_string(), from)
    }

    /// Removes the rules [`Netlink::add_source_route`] added for `address`
    /// (the table they pointed to goes with its interface, which may be
    /// gone already). Nothing to remove is not an error.
    pub fn remove_source_route(&mut self, address: IpAddr) -> Result<(), NetlinkError> {
        // Matched by source and priority, whatever the table (an
        // unspecified table matches any); every copy, should there be
        // several.
        loop {
            let mut from = RuleMessage::default();
            from.header.family = family_of(address);
            from.header.src_len = full_prefix(address);
            from.attributes.push(RuleAttribute::Source(address));
            from.attributes.push(RuleAttribute::Priority(SOURCE_PRIORITY));
            match self.request("delete source rule", &address.to_string(), RouteNetlinkMessage::DelRule(from), 0) {
                Ok(_) => {}
                Err(NetlinkError::Kernel { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Adds `msg` unless the same rule exists (rules have no replace: a
    /// second add would make a duplicate).
    fn add_rule(&mut self, op: &'static str, target: &str, msg: RuleMessage) -> Result<(), NetlinkError> {
        match self.request(op, target, RouteNetlinkMessage::NewRule(msg), NLM_F_CREATE | NLM_F_EXCL) {
            Err(NetlinkError::Kernel { source, .. }) if source.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            other => other.map(drop),
        }
    }

    /// The source rules of `family` at [`SOURCE_PRIORITY`]: each rule's
    /// source address and table.
    pub fn source_rules(&mut self, family: AddressFamily) -> Result<Vec<(IpAddr, u32)>, NetlinkError> {
        let mut msg = RuleMessage::default();
        msg.header.family = family;
        let replies =
            self.request("list rules", "", RouteNetlinkMessage::GetRule(msg), netlink_packet_core::NLM_F_DUMP)?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRule(r) => {
                    let attr = |f: fn(&RuleAttribute) -> Option<u32>| r.attributes.iter().find_map(f);
                    let priority = attr(|a| if let RuleAttribute::Priority(p) = a { Some(*p) } else { None });
                    let table = attr(|a| if let RuleAttribute::Table(t) = a { Some(*t) } else { None });
                    let source = r.attributes.iter().find_map(|a| match a {
                        RuleAttribute::Source(s) => Some(*s),
                        _ => None,
                    });
                    (priority == Some(SOURCE_PRIORITY)).then_some(())?;
                    Some((source?, table?))
                }
                _ => None,
            })
            .collect())
    }
}
