//! Helpers for VXLAN overlay tests: a `vswitchd` acting as the VTEP of a
//! simulated host ([`vtep_daemon`]), overlay networks and peers through
//! `vswitchctl`, counters by port, and parsing of captured VXLAN and TCP
//! headers.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use ctl::proto::{NetworkInfo, PeerInfo, PortStats};

use crate::daemon::Daemon;
use crate::underlay::UnderlayHost;

/// Starts `vswitchd --vtep <host's address> extra…` inside `host`'s
/// namespace and waits until it is ready.
pub fn vtep_daemon(host: &UnderlayHost, extra: &[&str]) -> Daemon {
    vtep_daemon_at(host, &host.addr.to_string(), extra)
}

/// Starts `vswitchd --vtep [<host's IPv6 address>]:4789 extra…` inside
/// `host`'s namespace (of a [dual-stack](crate::Underlay::dual_stack)
/// underlay) and waits until it is ready: a VTEP on the IPv6 underlay.
pub fn vtep6_daemon(host: &UnderlayHost, extra: &[&str]) -> Daemon {
    vtep_daemon_at(host, &host.vtep6().to_string(), extra)
}

/// Starts `vswitchd --vtep VTEP extra…` inside `host`'s namespace and waits
/// until it is ready.
pub fn vtep_daemon_at(host: &UnderlayHost, vtep: &str, extra: &[&str]) -> Daemon {
    let mut args = vec!["--vtep", vtep];
    args.extend_from_slice(extra);
    Daemon::builder().in_netns(host.netns_path()).args(&args).start()
}

/// The name `stats` gives the tunnel port to the VTEP `remote`.
pub fn tunnel_port(remote: SocketAddr) -> String {
    format!("vx:{remote}")
}

/// The name of the underlay endpoint's row in `stats`.
pub const VTEP_ROW: &str = "vtep";

impl Daemon {
    /// `network create -d overlay NAME --subnet SUBNET --vni VNI extra…`.
    pub fn overlay_create(&self, name: &str, subnet: &str, vni: u32, extra: &[&str]) -> NetworkInfo {
        let vni = vni.to_string();
        let mut args = vec!["network", "create", "-d", "overlay", name, "--subnet", subnet, "--vni", &vni];
        args.extend_from_slice(extra);
        self.ctl_json(&args)
    }

    /// `peer add ADDR [--network NET]…`.
    pub fn peer_add(&self, addr: SocketAddr, networks: &[&str]) {
        let addr = addr.to_string();
        let mut args = vec!["peer", "add", addr.as_str()];
        for n in networks {
            args.extend(["--network", n]);
        }
        self.ctl_ok(&args);
    }

    /// `peer ls`.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.ctl_json(&["peer", "ls"])
    }

    /// `stats`, keyed by (port, network): tunnel ports to one peer share
    /// their name across overlay networks.
    pub fn stats_map(&self) -> BTreeMap<(String, String), PortStats> {
        self.ctl_json::<Vec<PortStats>>(&["stats"])
            .into_iter()
            .map(|s| ((s.port.clone(), s.network.clone()), s))
            .collect()
    }

    /// Drops for `reason` on every row of `stats` named `port` (summed over
    /// networks).
    pub fn drops_of(&self, port: &str, reason: &str) -> u64 {
        self.ctl_json::<Vec<PortStats>>(&["stats"])
            .iter()
            .filter(|s| s.port == port)
            .map(|s| s.drops.get(reason).copied().unwrap_or(0))
            .sum()
    }
}

/// Offsets into an Ethernet frame carrying IPv4 (no VLAN tag).
const ETH_LEN: usize = 14;

/// The IPv4 header's length and the transport protocol of an Ethernet
/// frame, if it is IPv4.
fn ipv4_header(frame: &[u8]) -> Option<(usize, u8)> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ihl = usize::from(frame.get(ETH_LEN)? & 0x0f) * 4;
    Some((ihl, *frame.get(ETH_LEN + 9)?))
}

/// If `frame` is Ethernet/IPv4/UDP to port `port` carrying a VXLAN header:
/// (UDP source port, VNI, inner Ethernet frame).
pub fn parse_vxlan(frame: &[u8], port: u16) -> Option<(u16, u32, &[u8])> {
    let (ihl, proto) = ipv4_header(frame)?;
    if proto != 17 {
        return None;
    }
    let udp = frame.get(ETH_LEN + ihl..)?;
    let (src, dst) = (u16::from_be_bytes([*udp.first()?, *udp.get(1)?]), u16::from_be_bytes([udp[2], udp[3]]));
    if dst != port {
        return None;
    }
    let vx = udp.get(8..16)?;
    let vni = u32::from_be_bytes([0, vx[4], vx[5], vx[6]]);
    Some((src, vni, udp.get(16..)?))
}

/// If `frame` is Ethernet/IPv6/UDP (no extension headers): its source and
/// destination socket addresses, UDP checksum field and payload.
pub fn udp6_datagram(frame: &[u8]) -> Option<(SocketAddr, SocketAddr, u16, &[u8])> {
    if frame.get(12..14)? != [0x86, 0xdd] || *frame.get(ETH_LEN + 6)? != 17 {
        return None;
    }
    let ip = frame.get(ETH_LEN..ETH_LEN + 40)?;
    let addr =
        |at: usize| -> Option<std::net::Ipv6Addr> { Some(<[u8; 16]>::try_from(ip.get(at..at + 16)?).ok()?.into()) };
    let udp = frame.get(ETH_LEN + 40..)?;
    let port = |at: usize| Some(u16::from_be_bytes([*udp.get(at)?, *udp.get(at + 1)?]));
    let src = SocketAddr::new(addr(8)?.into(), port(0)?);
    let dst = SocketAddr::new(addr(24)?.into(), port(2)?);
    Some((src, dst, port(6)?, udp.get(8..)?))
}

/// If `frame` is Ethernet/IPv4/TCP with SYN set: (flags, the MSS option's
/// value if present).
pub fn tcp_syn_mss(frame: &[u8]) -> Option<(u8, Option<u16>)> {
    let (ihl, proto) = ipv4_header(frame)?;
    if proto != 6 {
        return None;
    }
    let tcp = frame.get(ETH_LEN + ihl..)?;
    let flags = *tcp.get(13)?;
    if flags & 0x02 == 0 {
        return None;
    }
    let data_offset = usize::from(tcp.get(12)? >> 4) * 4;
    let mut opts = tcp.get(20..data_offset)?;
    let mut mss = None;
    while let Some(&kind) = opts.first() {
        match kind {
            0 => break,
            1 => opts = &opts[1..],
            _ => {
                let len = usize::from(*opts.get(1)?);
                if len < 2 || len > opts.len() {
                    break;
                }
                if kind == 2 && len == 4 {
                    mss = Some(u16::from_be_bytes([opts[2], opts[3]]));
                }
                opts = &opts[len..];
            }
        }
    }
    Some((flags, mss))
}

/// The IPv4 address of an endpoint (panics with the endpoint when it has none).
pub fn ip_of(e: &ctl::proto::EndpointInfo) -> std::net::Ipv4Addr {
    e.ipv4.unwrap_or_else(|| panic!("endpoint {e:?} has no IPv4 address")).addr()
}

/// Creates sandbox `suffix` on `d` and connects it to `net` with address
/// `ip`, checking the address was given.
pub fn sandbox_on(d: &Daemon, net: &str, suffix: &str, ip: &str) -> (String, ctl::proto::EndpointInfo) {
    let name = d.name(suffix);
    d.sandbox_create(&name);
    let e = d.connect(net, &name, Some(ip));
    assert_eq!(e.ipv4.map(|n| n.addr().to_string()).as_deref(), Some(ip), "{e:?}");
    (name, e)
}

/// The MTU of `ifname` inside `sandbox`.
pub fn mtu_of(sandbox: &str, ifname: &str) -> u64 {
    let info = crate::link_info(sandbox, ifname).unwrap_or_else(|| panic!("no {ifname} in {sandbox}"));
    info["mtu"].as_u64().unwrap_or_else(|| panic!("no MTU in {info}"))
}
