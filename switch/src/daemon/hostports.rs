//! Ports backed by host interfaces: AF_XDP endpoints (a veth pair whose
//! sandbox end is the sandbox's `ethN` and whose host end carries the XDP
//! program and the socket) and uplinks (an existing interface of the
//! daemon's namespace, through an `AF_PACKET` or an AF_XDP socket). Every
//! function either completes or undoes what it did.

use std::io;

use ctl::proto::PortType;

use super::datapath::{PacketDevice, PortDevice, XskDevice};
use super::plumbing::{self, PlumbError};
use crate::model::{Endpoint, Network, Uplink};
use crate::sys::afxdp::{MAX_QUEUES, XdpPort, XskError};
use crate::sys::netlink::{self, LinkConfig, Netlink, NetlinkError, XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE};
use crate::sys::netns::{self, NetNs};
use crate::sys::packet::PacketSocket;

/// Why a host-interface port could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HostPortError {
    /// Plumbing the sandbox's end failed.
    #[error(transparent)]
    Plumb(#[from] PlumbError),
    /// A netlink request failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// The AF_XDP socket or its program could not be set up.
    #[error(transparent)]
    Xsk(#[from] XskError),
    /// Turning the sandbox end's checksum offload off failed.
    #[error("cannot turn transmit checksum offload off on {ifname}: {source}")]
    Ethtool {
        /// The sandbox's interface.
        ifname: String,
        /// The OS error.
        source: io::Error,
    },
    /// The raw socket could not be opened.
    #[error("cannot open a raw socket on {interface}: {source}")]
    Packet {
        /// The interface.
        interface: String,
        /// The OS error.
        source: io::Error,
    },
}

/// A port device and how it runs (`show`'s `xdp` line for AF_XDP ports).
pub struct HostPort {
    /// The device, for the datapath (the owner worker's part of a port
    /// spread over workers).
    pub(crate) device: Box<dyn PortDevice>,
    /// On a spread network, the port's devices for the other workers, in
    /// worker order: an AF_XDP port's other receive queues
    /// (`XdpPort::split`), or a raw uplink's other sockets of its fanout
    /// group (`PacketSocket::open_group`); empty otherwise.
    pub(crate) extra: Vec<Box<dyn PortDevice>>,
    /// `zero-copy, native XDP` and the like; `None` for a raw socket.
    pub mode: Option<String>,
    /// An uplink's interface index (`None` for endpoints).
    pub ifindex: Option<u32>,
    /// Whether opening it set its interface up (an uplink that was down):
    /// a request that fails after that sets it down again
    /// ([`set_uplink_down`]), so that it changes nothing.
    pub brought_up: bool,
}

/// `sandbox`: the port is a local sandbox's endpoint, not an uplink (see
/// [`XskDevice`]'s checksum handling). `workers`: how many workers read
/// the port (those of a spread network, else 1); its receive queues are
/// split between them.
fn xdp_port(ifname: &str, sandbox: bool, workers: usize) -> Result<HostPort, HostPortError> {
    let port = XdpPort::open(ifname)?;
    let mut mode = port.mode().to_string();
    let mut parts =
        port.split(workers)?.into_iter().map(|part| Box::new(XskDevice::new(part, sandbox)) as Box<dyn PortDevice>);
    let device = parts.next().expect("a port splits into at least one part");
    let extra: Vec<_> = parts.collect();
    if !extra.is_empty() {
        mode = format!("{mode}, over {} workers", extra.len() + 1);
    }
    tracing::info!(interface = ifname, mode = %mode, "AF_XDP socket bound");
    Ok(HostPort { device, extra, mode: Some(mode), ifindex: None, brought_up: false })
}

/// Creates an AF_XDP endpoint: a veth pair with `ethN` in the sandbox
/// (configured as a TAP endpoint is: MAC, MTU, address, default route; and
/// transmit checksum offload off, see `sys::ethtool`) and its host end,
/// named like an endpoint's TAP, under an AF_XDP socket. On a network
/// spread over `workers` workers the pair has a queue per worker each way
/// (up to [`MAX_QUEUES`])
/// and each worker reads one (the sandbox's stack spreads its flows over
/// its transmit queues by their hash).
pub fn plumb_afxdp_endpoint(
    ns: &NetNs,
    endpoint: &Endpoint,
    network: &Network,
    workers: usize,
) -> Result<HostPort, HostPortError> {
    let host = endpoint.host_tap_name.as_str();
    let mut nl = Netlink::open()?;
    // No more queues than the port binds sockets to: the sandbox's stack
    // would send flows on the others, which the program passes to the host
    // end's stack (lost).
    let queues = (workers as u32).clamp(1, MAX_QUEUES);
    nl.create_veth(host, &endpoint.ifname_in_sandbox, ns, queues)?;
    let result = configure_afxdp_endpoint(&mut nl, ns, endpoint, network).and_then(|()| xdp_port(host, true, workers));
    if result.is_err() {
        if let Err(e) = plumbing::remove_source_routes(ns, endpoint) {
            tracing::warn!(port = host, error = %e, "cannot remove the endpoint's source rules");
        }
        let _ = nl.delete_link(host);
    }
    result
}

fn configure_afxdp_endpoint(
    nl: &mut Netlink,
    ns: &NetNs,
    endpoint: &Endpoint,
    network: &Network,
) -> Result<(), HostPortError> {
    let host = endpoint.host_tap_name.as_str();
    nl.set_mtu(host, network.mtu)?;
    nl.set_link_up(host)?;
    let ifname = endpoint.ifname_in_sandbox.clone();
    let name = ifname.clone();
    netns::run_in(ns, move || {
        crate::sys::ethtool::set_tx_checksum(&name, false)?;
        // Best effort: only a speed-up (GRO of what the switch writes).
        let _ = crate::sys::ethtool::set_gro(&name, true);
        Ok::<(), io::Error>(())
    })
    .map_err(|e| HostPortError::Plumb(e.into()))?
    .map_err(|source| HostPortError::Ethtool { ifname: ifname.clone(), source })?;
    let config = LinkConfig {
        new_name: None,
        mac: Some(endpoint.mac.0),
        mtu: Some(network.mtu),
        ipv4: endpoint.ipv4.map(|a| (a, endpoint.prefix_len)),
        ipv6: endpoint.ipv6.map(|a| (a, endpoint.prefix_len6)),
        txqueuelen: None,
        up: true,
    };
    netlink::configure_link(ns, &ifname, &config)?;
    plumbing::add_source_routes(ns, endpoint, network)?;
    if endpoint.is_default_gateway_network {
        plumbing::add_default_route(ns, endpoint, network)?;
    }
    Ok(())
}

/// Re-attaches to an AF_XDP endpoint after a restart: its veth pair outlives
/// the daemon (the program stays attached, redirecting to an empty map,
/// which passes frames to the host end's stack), so a new program and
/// socket are bound to the host end; a pair that is gone is plumbed anew.
/// The queues the pair was made with are split over `workers` (a pair
/// made with fewer queues than workers leaves the rest of them without).
pub fn reattach_afxdp_endpoint(
    ns: &NetNs,
    endpoint: &Endpoint,
    network: &Network,
    workers: usize,
) -> Result<HostPort, HostPortError> {
    if Netlink::open()?.link_exists(&endpoint.host_tap_name)? {
        // A pair plumbed by an older version has none yet.
        if let Err(e) = plumbing::add_source_routes(ns, endpoint, network) {
            tracing::warn!(port = %endpoint.host_tap_name, error = %e, "cannot add the endpoint's source routes");
        }
        return xdp_port(&endpoint.host_tap_name, true, workers);
    }
    plumb_afxdp_endpoint(ns, endpoint, network, workers)
}

/// Deletes an AF_XDP endpoint's veth pair (both ends go).
pub fn destroy_afxdp_endpoint(endpoint: &Endpoint) {
    match Netlink::open().and_then(|mut nl| nl.delete_link(&endpoint.host_tap_name)) {
        Ok(()) | Err(NetlinkError::NoSuchLink(_)) => {}
        Err(e) => tracing::warn!(port = %endpoint.host_tap_name, error = %e, "cannot delete the endpoint's veth"),
    }
}

/// Opens an uplink's device on its interface (brought up if it is down),
/// read by `workers` workers (those of a spread network, else 1): an
/// AF_XDP uplink's receive queues are split over them, a raw uplink gets
/// a socket each in a fanout group that spreads flows by their hash
/// (`PacketSocket::open_group`).
pub fn open_uplink(uplink: &Uplink, workers: usize) -> Result<HostPort, HostPortError> {
    let iface = uplink.interface.as_str();
    let mut nl = Netlink::open()?;
    let Some(link) = nl.link(iface)? else {
        return Err(NetlinkError::NoSuchLink(iface.to_owned()).into());
    };
    let brought_up = !link.up;
    if brought_up {
        nl.set_link_up(iface)?;
    }
    let opened = match uplink.port_type {
        PortType::Afxdp => {
            // A NIC filters unicast for other MACs before XDP sees it.
            nl.set_promisc(iface, true).map_err(HostPortError::from).and_then(|()| {
                xdp_port(iface, false, workers).inspect_err(|_| {
                    let _ = nl.set_promisc(iface, false);
                })
            })
        }
        _ => PacketSocket::open_group(iface, workers)
            .map_err(|source| HostPortError::Packet { interface: iface.to_owned(), source })
            .map(|sockets| {
                let mut devices = sockets.into_iter().map(|s| Box::new(PacketDevice::new(s)) as Box<dyn PortDevice>);
                let device = devices.next().expect("a group has a first socket");
                HostPort { device, extra: devices.collect(), mode: None, ifindex: None, brought_up: false }
            }),
    };
    match opened {
        Ok(port) => Ok(HostPort { ifindex: Some(link.index), brought_up, ..port }),
        Err(e) => {
            if brought_up {
                let _ = nl.set_link_down(iface);
            }
            Err(e)
        }
    }
}

/// Sets an uplink's interface down again, after a request that brought it
/// up ([`HostPort::brought_up`]) failed.
pub fn set_uplink_down(uplink: &Uplink) {
    if let Err(e) = Netlink::open().and_then(|mut nl| nl.set_link_down(&uplink.interface)) {
        tracing::warn!(interface = %uplink.interface, error = %e, "cannot set the interface down again");
    }
}

/// Gives an uplink's interface back to the host: its XDP program off and
/// promiscuous mode off (a raw socket's membership went with the socket).
pub fn release_uplink(uplink: &Uplink) {
    if uplink.port_type != PortType::Afxdp {
        return;
    }
    let Ok(mut nl) = Netlink::open() else { return };
    for flags in [XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE] {
        let _ = nl.set_xdp(&uplink.interface, None, flags);
    }
    let _ = nl.set_promisc(&uplink.interface, false);
}

/// Why the daemon refuses to take `interface` as an uplink without
/// `--force`: it carries the VTEP address, or a default route.
pub fn uplink_refusal(interface: &str, vtep: Option<std::net::IpAddr>) -> Option<String> {
    if let Some(ip) = vtep
        && crate::sys::ifaddr::interface_with_address(ip).as_deref() == Some(interface)
    {
        return Some(format!(
            "interface {interface} carries the VTEP address {ip}: attaching it would cut the overlay's underlay \
             (use --force to attach it anyway)"
        ));
    }
    if crate::sys::ifaddr::default_route_interfaces().iter().any(|i| i == interface) {
        return Some(format!(
            "interface {interface} carries a default route: attaching it may cut the host off (use --force to \
             attach it anyway)"
        ));
    }
    None
}
